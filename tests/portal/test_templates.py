"""Templates through the API: upload with validation (places and lines), versions on edit,
sharing (private, public, course), deletion refused while used, and pictures."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from store.models import Course, CourseMember, Lab, Reservation, Template, utcnow
from tests.portal.conftest import bearer

SVG = "{http://www.w3.org/2000/svg}"
VALID = """\
name: p2-pair
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.0.12.1/24}
  r2:
    interfaces:
      eth1: {ipv4: 10.0.12.2/24}
links:
  - endpoints: [r1:eth1, r2:eth1]
"""
# Errors at known lines: 5 (ipv4), 7 (unknown key), 10 (undefined node).
INVALID = """\
name: p2-bad
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.0.12.1/33}
  r2:
    colour: red
links:
  - endpoints:
      - r9:eth1
      - r2:eth1
"""


@pytest.fixture
def owner(make_user):
    return make_user("student")


@pytest.fixture
def as_owner(owner, token_for):
    return bearer(token_for(owner))


def upload(client, headers, topology=VALID, **fields):
    body = {"name": "p2 pair", "topology": topology, **fields}
    return client.post("/api/templates", json=body, headers=headers)


def created(client, headers, **fields) -> dict:
    answer = upload(client, headers, **fields)
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def parse_svg(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our own Graphviz's output, parsed to check it


def test_a_valid_upload_is_version_1_of_a_private_template_of_its_owner(client, owner, as_owner):
    template = created(client, as_owner, description="two routers")
    assert template["latest_version"] == 1
    assert template["visibility"] == "private"
    assert template["owner"] == {"id": owner.id, "username": owner.username}
    assert template["topology"] == VALID
    assert [v["number"] for v in template["versions"]] == [1]
    assert template["may_change"] is True
    shown = client.get(f"/api/templates/{template['id']}", headers=as_owner).get_json()
    assert shown["name"] == "p2 pair"
    assert shown["description"] == "two routers"
    assert shown["created_at"].endswith("+00:00")


def test_an_invalid_upload_gets_every_problem_with_its_place_and_line(
    client, owner, as_owner, store
):
    answer = upload(client, as_owner, topology=INVALID)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["status"] == 422
    assert "3 errors" in error["message"]
    lines = {p["place"]: p["line"] for p in error["detail"]["problems"]}
    assert lines == {
        "nodes.r1.interfaces.eth1.ipv4": 5,
        "nodes.r2.colour": 7,
        "links[0].endpoints[0]": 10,
    }
    assert all(p["message"] for p in error["detail"]["problems"])
    with store() as session:
        assert session.query(Template).filter_by(owner_id=owner.id).count() == 0


def test_invalid_yaml_is_a_problem_at_its_line_not_a_server_error(client, as_owner):
    answer = upload(client, as_owner, topology="name: p2-x\nnodes:\n  r1: {kind: [\n")
    assert answer.status_code == 422
    (problem,) = answer.get_json()["error"]["detail"]["problems"]
    assert problem["line"] == 4
    assert "not valid YAML" in problem["message"]


def test_validate_gives_problems_and_warnings_and_stores_nothing(client, as_owner, store):
    with store() as session:
        before = session.query(Template).count()
    bad = client.post("/api/templates/validate", json={"topology": INVALID}, headers=as_owner)
    assert bad.status_code == 200
    assert bad.get_json()["valid"] is False
    assert sorted(p["line"] for p in bad.get_json()["problems"]) == [5, 7, 10]
    # The same subnet on two links is allowed, with a warning at its line.
    warned = VALID + "  - endpoints: [r1:eth2, r2:eth2]\n"
    warned = warned.replace(
        "      eth1: {ipv4: 10.0.12.2/24}\n",
        "      eth1: {ipv4: 10.0.12.2/24}\n      eth2: {ipv4: 10.0.12.3/24}\n",
    )
    good = client.post("/api/templates/validate", json={"topology": warned}, headers=as_owner)
    assert good.get_json()["valid"] is True
    assert good.get_json()["problems"] == []
    assert [w["line"] for w in good.get_json()["warnings"]] == [9]
    with store() as session:
        assert session.query(Template).count() == before


def test_oversized_topologies_and_requests_are_413_in_the_envelope(client, as_owner):
    big = VALID + "#" * (1024**2)
    answer = upload(client, as_owner, topology=big)
    assert answer.status_code == 413
    assert "topology" in answer.get_json()["error"]["detail"]
    huge = client.post(
        "/api/templates",
        data=b'{"name": "x", "topology": "' + b"a" * (3 * 1024**2) + b'"}',
        headers={**as_owner, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.get_json()["error"]["status"] == 413


def test_a_missing_or_wrong_field_is_named(client, as_owner):
    answer = client.post("/api/templates", json={"name": "x"}, headers=as_owner)
    assert answer.status_code == 422
    assert "topology" in str(answer.get_json()["error"]["detail"])
    answer = upload(client, as_owner, visibility="everyone")
    assert answer.status_code == 422
    assert "visibility" in str(answer.get_json()["error"]["detail"])


def test_a_new_topology_makes_a_new_version_and_keeps_the_old_one(client, as_owner):
    template = created(client, as_owner)
    url = f"/api/templates/{template['id']}"
    renamed = client.put(url, json={"name": "p2 renamed"}, headers=as_owner).get_json()
    assert renamed["name"] == "p2 renamed"
    assert renamed["latest_version"] == 1
    changed_topology = VALID.replace("10.0.12.", "10.0.13.")
    changed = client.put(url, json={"topology": changed_topology}, headers=as_owner)
    assert changed.status_code == 200
    assert changed.get_json()["latest_version"] == 2
    assert [v["number"] for v in changed.get_json()["versions"]] == [1, 2]
    same = client.put(url, json={"topology": changed_topology}, headers=as_owner).get_json()
    assert same["latest_version"] == 2
    old = client.get(f"{url}/versions/1", headers=as_owner).get_json()
    assert old["topology"] == VALID
    assert old["number"] == 1
    assert client.get(f"{url}/versions/2", headers=as_owner).get_json()["topology"] == (
        changed_topology
    )
    assert client.get(f"{url}/versions/3", headers=as_owner).status_code == 404
    broken = client.put(url, json={"topology": INVALID}, headers=as_owner)
    assert broken.status_code == 422
    assert client.get(url, headers=as_owner).get_json()["latest_version"] == 2


def test_a_private_template_is_404_for_another_student_and_401_for_anonymous(
    client, make_user, token_for, as_owner
):
    template = created(client, as_owner)
    url = f"/api/templates/{template['id']}"
    other = bearer(token_for(make_user("student")))
    for method, path in [
        ("get", url),
        ("put", url),
        ("delete", url),
        ("get", f"{url}/versions/1"),
        ("get", f"{url}/picture.svg"),
    ]:
        answer = getattr(client, method)(path, json={"name": "x"}, headers=other)
        assert answer.status_code == 404, (method, path)
        assert getattr(client, method)(path, json={"name": "x"}).status_code == 401
    listed = client.get("/api/templates?per_page=100", headers=other).get_json()
    assert template["id"] not in [t["id"] for t in listed["templates"]]
    admin = bearer(token_for(make_user("admin")))
    assert client.get(url, headers=admin).get_json()["may_change"] is True


def test_a_public_template_is_seen_by_everyone_and_changed_only_by_its_owner(
    client, make_user, token_for, as_owner
):
    template = created(client, as_owner, visibility="public")
    url = f"/api/templates/{template['id']}"
    other = bearer(token_for(make_user("student")))
    shown = client.get(url, headers=other)
    assert shown.status_code == 200
    assert shown.get_json()["may_change"] is False
    listed = client.get("/api/templates?per_page=100", headers=other).get_json()
    assert template["id"] in [t["id"] for t in listed["templates"]]
    assert client.put(url, json={"name": "mine"}, headers=other).status_code == 403
    assert client.delete(url, headers=other).status_code == 403
    assert client.get(url, headers=other).get_json()["name"] == "p2 pair"


def test_a_course_template_is_seen_by_the_course_and_no_one_else(
    client, make_user, token_for, store
):
    teacher, member, outsider = make_user("teacher"), make_user("student"), make_user("student")
    with store() as session:
        course = Course(name="p2 course", teacher_id=teacher.id, created_at=utcnow())
        course.members.append(CourseMember(user_id=member.id))
        session.add(course)
        session.commit()
        course_id = course.id
    as_teacher = bearer(token_for(teacher))
    template = created(client, as_teacher, visibility="course", course_id=course_id)
    url = f"/api/templates/{template['id']}"
    assert template["course_id"] == course_id
    assert client.get(url, headers=bearer(token_for(member))).status_code == 200
    assert client.get(url, headers=bearer(token_for(outsider))).status_code == 404
    listed = client.get("/api/templates?per_page=100", headers=bearer(token_for(member)))
    assert template["id"] in [t["id"] for t in listed.get_json()["templates"]]
    listed = client.get("/api/templates?per_page=100", headers=bearer(token_for(outsider)))
    assert template["id"] not in [t["id"] for t in listed.get_json()["templates"]]
    # Only a course one teaches can be named; a course visibility needs one.
    as_member = bearer(token_for(member))
    refused = upload(client, as_member, visibility="course", course_id=course_id)
    assert refused.status_code == 422
    assert "course_id" in refused.get_json()["error"]["detail"]
    assert upload(client, as_teacher, visibility="course").status_code == 422
    # Made private again, the course no longer sees it.
    client.put(url, json={"visibility": "private"}, headers=as_teacher)
    assert client.get(url, headers=bearer(token_for(member))).status_code == 404


def test_the_list_is_paginated_and_mine_lists_only_the_callers(client, make_user, token_for):
    as_owner = bearer(token_for(make_user("student")))
    ids = [created(client, as_owner)["id"] for _ in range(3)]
    created(client, bearer(token_for(make_user("student"))), visibility="public")
    mine = "/api/templates?mine=true&per_page=2"
    first = client.get(f"{mine}&page=1", headers=as_owner).get_json()
    second = client.get(f"{mine}&page=2", headers=as_owner).get_json()
    assert first["total"] == second["total"] == 3
    assert [t["id"] for t in first["templates"] + second["templates"]] == ids
    assert client.get("/api/templates?per_page=101", headers=as_owner).status_code == 422


def test_delete_is_refused_while_a_lab_or_reservation_uses_a_version(client, as_owner, store):
    template = created(client, as_owner)
    url = f"/api/templates/{template['id']}"
    client.put(url, json={"topology": VALID.replace("10.0.12.", "10.0.14.")}, headers=as_owner)
    now = utcnow()
    with store() as session:
        first, _ = session.get(Template, template["id"]).versions
        lab = Lab(
            name="p2-used",
            topology=VALID,
            state="running",
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
            template_version_id=first.id,
        )
        reservation = Reservation(
            lab_name="p2-booked",
            topology=VALID,
            start_at=now + timedelta(hours=1),
            end_at=now + timedelta(hours=2),
            state="scheduled",
            template_version_id=first.id,
        )
        session.add_all([lab, reservation])
        session.commit()
        lab_id, reservation_id = lab.id, reservation.id
    refused = client.delete(url, headers=as_owner)
    assert refused.status_code == 409
    error = refused.get_json()["error"]
    assert "lab p2-used (running)" in error["message"]
    assert f"reservation {reservation_id}" in error["message"]
    assert error["detail"]["labs"] == [{"id": lab_id, "name": "p2-used", "state": "running"}]
    assert client.get(url, headers=as_owner).status_code == 200

    with store() as session:
        session.get(Lab, lab_id).state = "removed"
        session.get(Reservation, reservation_id).state = "ended"
        session.commit()
    assert client.delete(url, headers=as_owner).status_code == 204
    assert client.get(url, headers=as_owner).status_code == 404
    with store() as session:
        # What is over keeps its topology and forgets the deleted version.
        assert session.get(Lab, lab_id).template_version_id is None
        assert session.get(Lab, lab_id).topology == VALID
        assert session.get(Reservation, reservation_id).template_version_id is None


def test_the_picture_is_svg_of_the_chosen_version(client, as_owner):
    template = created(client, as_owner)
    url = f"/api/templates/{template['id']}"
    client.put(url, json={"topology": VALID.replace("r2", "core")}, headers=as_owner)
    answer = client.get(f"{url}/picture.svg", headers=as_owner)
    assert answer.status_code == 200
    assert answer.mimetype == "image/svg+xml"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    shown = [t.text for t in parse_svg(answer.data).iter(f"{SVG}text")]
    assert {"r1", "core", "eth1", "10.0.12.1/24"} <= set(shown)
    old = client.get(f"{url}/picture.svg?version=1", headers=as_owner)
    assert "r2" in [t.text for t in parse_svg(old.data).iter(f"{SVG}text")]
    assert client.get(f"{url}/picture.svg?version=7", headers=as_owner).status_code == 404
    assert client.get(f"{url}/picture.svg?version=x", headers=as_owner).status_code == 422
