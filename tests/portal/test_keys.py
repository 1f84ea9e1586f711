"""SSH keys through the API, and what the bastion's question answers (portal.keys): a key
reaches only the nodes of its user's running labs, and nothing once the key, the user or the
lab is gone. The real bastion and nodes are in tests/access/test_bastion.py."""

from __future__ import annotations

import hashlib
import subprocess
import uuid

import pytest

from store.models import Course, Lab, LabState, Node, Role, User, utcnow
from tests.app_config import portal_app
from tests.portal.conftest import bearer

SECRET = "bastion-secret-of-this-test"  # noqa: S105 - a test's made-up secret


def keygen(tmp_path, name: str = "id") -> str:
    path = tmp_path / f"{name}-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ada@laptop", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@pytest.fixture
def app(job_settings, roomy_inventory, tmp_path):  # the conftest's, with a bastion secret
    secret_hash = tmp_path / "portal-secret.sha256"
    secret_hash.write_text(hashlib.sha256(SECRET.encode()).hexdigest() + "\n")
    return portal_app(
        job_settings.database_url,
        roomy_inventory,
        LTB_BASTION_SECRET_HASH_FILE=str(secret_hash),
        LTB_BASTION_HOST="",
        LTB_BASTION_PORT=2222,
    )


def add(client, headers, public_key, name="laptop"):
    return client.post(
        "/api/users/me/keys", json={"name": name, "public_key": public_key}, headers=headers
    )


def ask_bastion(client, fingerprint, secret=SECRET):
    headers = {"X-LTB-Bastion-Secret": secret} if secret is not None else {}
    return client.get(
        "/api/bastion/authorized-keys", query_string={"fingerprint": fingerprint}, headers=headers
    )


def running_lab(store, owner_id, address, course_id=None, state=LabState.RUNNING) -> int:
    name = f"bn-{uuid.uuid4().hex[:8]}"
    with store() as session:
        lab = Lab(
            name=name,
            owner_id=owner_id,
            course_id=course_id,
            topology=f"name: {name}\nnodes:\n  r1: {{}}\n",
            state=state.value,
            hypervisor="localhost",
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        lab.nodes.append(Node(name="r1", kind="container", mgmt_ipv4=f"{address}/24"))
        session.add(lab)
        session.commit()
        return lab.id


def test_a_user_adds_lists_and_deletes_their_keys_and_nobody_else_sees_them(
    client, make_user, token_for, tmp_path
):
    ada, bob = bearer(token_for(make_user())), bearer(token_for(make_user()))
    text = keygen(tmp_path)
    added = add(client, ada, text + "\n")
    assert added.status_code == 201, added.get_json()
    key = added.get_json()
    assert key["public_key"] == text and key["fingerprint"].startswith("SHA256:")
    listed = client.get("/api/users/me/keys", headers=ada).get_json()["keys"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert client.get("/api/users/me/keys", headers=bob).get_json()["keys"] == []
    assert client.delete(f"/api/users/me/keys/{key['id']}", headers=bob).status_code == 404
    assert client.delete(f"/api/users/me/keys/{key['id']}", headers=ada).status_code == 204
    assert client.get("/api/users/me/keys", headers=ada).get_json()["keys"] == []


def test_a_key_is_refused_with_422_naming_the_field_and_a_second_time_with_409(
    client, make_user, token_for, tmp_path
):
    ada, bob = bearer(token_for(make_user())), bearer(token_for(make_user()))
    text = keygen(tmp_path)
    hostile = (
        'command="sh" ' + text,
        text + "\n" + text,
        "ssh-ed25519 AAAA",
        text + " $(id)",
        text + " {{ lookup('pipe', 'id') }}",
    )
    for bad in hostile:
        refused = add(client, ada, bad)
        assert refused.status_code == 422, bad
        error = refused.get_json()["error"]
        assert "public_key" in error["detail"] and error["message"].startswith("public_key:")
    huge = add(client, ada, text.split(" ")[0] + " " + "A" * 1_000_000)
    assert huge.status_code == 422
    assert "public_key" in huge.get_json()["error"]["detail"]["json"]
    for name in ("x\ny", "{{ 7 * 7 }}", "../../x", "a" * 65):
        bad_name = add(client, ada, text, name=name)
        assert bad_name.status_code == 422, name
        assert "name" in str(bad_name.get_json()["error"]["detail"])
    assert add(client, ada, text).status_code == 201
    assert add(client, ada, text.rsplit(" ", 1)[0] + " other").status_code == 409
    assert add(client, bob, text).status_code == 409  # a key says who its user is: one user


def test_the_bastion_question_needs_the_bastions_secret(client, make_user, token_for, tmp_path):
    fingerprint = add(client, bearer(token_for(make_user())), keygen(tmp_path)).get_json()[
        "fingerprint"
    ]
    for secret in (None, "", "wrong", SECRET + "x"):
        assert ask_bastion(client, fingerprint, secret).status_code == 401
    # Not a user's token either.
    admin = bearer(token_for(make_user(Role.ADMIN)))
    asked = client.get(
        "/api/bastion/authorized-keys", query_string={"fingerprint": fingerprint}, headers=admin
    )
    assert asked.status_code == 401
    assert ask_bastion(client, fingerprint).status_code == 200


def test_a_key_reaches_its_users_running_labs_and_a_teachers_course_labs_only(
    client, make_user, token_for, store, tmp_path
):
    student, teacher, other = make_user(), make_user(Role.TEACHER), make_user()
    with store() as session:
        course = Course(name="bn-course", teacher_id=teacher.id, created_at=utcnow())
        session.add(course)
        session.commit()
        course_id = course.id
    running_lab(store, student.id, "10.250.1.2", course_id=course_id)
    running_lab(store, student.id, "10.250.2.2", state=LabState.REMOVED)
    running_lab(store, student.id, "10.250.2.3", state=LabState.REMOVING)
    running_lab(store, student.id, "10.250.2.4", state=LabState.DEPLOYING)
    running_lab(store, other.id, "10.250.3.2")
    running_lab(store, teacher.id, "10.250.4.2")
    mine = add(client, bearer(token_for(student)), keygen(tmp_path)).get_json()
    theirs = add(client, bearer(token_for(teacher)), keygen(tmp_path)).get_json()

    [entry] = ask_bastion(client, mine["fingerprint"]).get_json()["keys"]
    assert entry["permit_open"] == ["10.250.1.2"]
    assert entry["key"] == " ".join(mine["public_key"].split()[:2])
    [entry] = ask_bastion(client, theirs["fingerprint"]).get_json()["keys"]
    assert entry["permit_open"] == ["10.250.1.2", "10.250.4.2"]
    unknown = "SHA256:" + "A" * 43
    assert ask_bastion(client, unknown).get_json() == {"keys": []}


def test_a_disabled_user_a_deleted_key_or_a_removed_lab_reaches_nothing(
    client, make_user, token_for, store, tmp_path
):
    ada = make_user()
    headers = bearer(token_for(ada))
    lab_id = running_lab(store, ada.id, "10.250.5.2")
    key = add(client, headers, keygen(tmp_path)).get_json()
    assert ask_bastion(client, key["fingerprint"]).get_json()["keys"]

    with store() as session:
        session.get(Lab, lab_id).state = LabState.REMOVED.value
        session.commit()
    assert ask_bastion(client, key["fingerprint"]).get_json() == {"keys": []}
    with store() as session:
        session.get(Lab, lab_id).state = LabState.RUNNING.value
        session.get(User, ada.id).disabled = True
        session.commit()
    assert ask_bastion(client, key["fingerprint"]).get_json() == {"keys": []}
    with store() as session:
        session.get(User, ada.id).disabled = False
        session.commit()
    assert ask_bastion(client, key["fingerprint"]).get_json()["keys"]
    assert client.delete(f"/api/users/me/keys/{key['id']}", headers=headers).status_code == 204
    assert ask_bastion(client, key["fingerprint"]).get_json() == {"keys": []}


def test_a_labs_ssh_config_has_a_host_per_node_through_the_bastion(
    client, make_user, token_for, store
):
    ada = make_user()
    lab_id = running_lab(store, ada.id, "10.250.6.2")
    answer = client.get(f"/api/labs/{lab_id}/ssh_config", headers=bearer(token_for(ada)))
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    text = answer.get_data(as_text=True)
    with store() as session:
        name = session.get(Lab, lab_id).name
    assert f"Host {name}-r1\n    HostName 10.250.6.2\n    User root\n" in text
    assert "    ProxyJump ltb@localhost:2222\n" in text
    other = bearer(token_for(make_user()))
    assert client.get(f"/api/labs/{lab_id}/ssh_config", headers=other).status_code == 404


def test_the_lab_page_shows_the_bastion_one_liner_and_links_the_ssh_config(
    client, make_user, token_for, store
):
    ada = make_user()
    lab_id = running_lab(store, ada.id, "10.250.7.2")
    page = client.get(f"/labs/{lab_id}", headers=bearer(token_for(ada)))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "ssh -J ltb@localhost:2222 root@10.250.7.2" in html
    assert f'href="/api/labs/{lab_id}/ssh_config"' in html


def test_a_labs_nodes_take_the_keys_of_its_owner_and_its_courses_teacher_not_of_the_disabled(
    client, make_user, token_for, store, tmp_path
):
    from store.sshkeys import lab_authorized_keys

    owner, teacher, stranger = make_user(), make_user(Role.TEACHER), make_user()
    with store() as session:
        course = Course(name="bn-course", teacher_id=teacher.id, created_at=utcnow())
        session.add(course)
        session.commit()
        course_id = course.id
    lab_id = running_lab(store, owner.id, "10.250.8.2", course_id=course_id)
    keys = {
        person.id: add(client, bearer(token_for(person)), keygen(tmp_path)).get_json()
        for person in (owner, teacher, stranger)
    }
    with store() as session:
        lines = lab_authorized_keys(session, session.get(Lab, lab_id))
    assert lines == [keys[owner.id]["public_key"], keys[teacher.id]["public_key"]]
    with store() as session:
        session.get(User, teacher.id).disabled = True
        session.commit()
        assert lab_authorized_keys(session, session.get(Lab, lab_id)) == [
            keys[owner.id]["public_key"]
        ]
