"""Template pages and the lab page: problems shown at their lines, versions, sharing,
deletion with a confirmation, starting a lab (at once or booked from now), the lab page with
its progress, nodes, SSH one-liners and actions, refusals shown where the user acted; and
one real deploy driven through the browser from a template with an error to a capture.

The Flask test web tests are light (no browser, no deploy); the browser test deploys one
two-node lab with a real worker and scheduler (Redis db of LTB_TEST_REDIS_URL).
"""

from __future__ import annotations

import re
import uuid

import pytest

from jobs.queue import cancel
from store.models import Lab, Reservation, Role, Template, utcnow
from tests.integration.conftest import TOPOLOGIES
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import app, login  # noqa: F401

PAIR = (TOPOLOGIES / "pair.lab.yml").read_text().replace("name: NAME", "name: pair")
# The pair lab with an unknown key on line 5 (a typo of "interfaces").
PAIR_WITH_ERROR = PAIR.replace("  a:\n    interfaces:", "  a:\n    interfacez:", 1)


def unique(prefix: str = "u2") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def page_text(answer) -> str:
    return answer.get_data(as_text=True)


def csrf_of(web) -> str:
    with web.session_transaction() as session:
        return session["csrf"]


@pytest.fixture
def web(app):  # noqa: F811
    """A browser without a browser: the Flask test client, which keeps the session cookie."""
    return app.test_client()


@pytest.fixture
def student(web, make_user, login):  # noqa: F811
    user = make_user(Role.STUDENT)
    login(web, user)
    return user


def upload(web, name: str, topology: str, **extra):
    form = {"csrf": csrf_of(web), "name": name, "description": "", "topology": topology}
    return web.post("/templates", data=form | extra)


def template_id_of(answer) -> int:
    assert answer.status_code == 302, page_text(answer)[:2000]
    return int(re.search(r"/templates/(\d+)", answer.headers["Location"]).group(1))


def test_an_upload_with_an_unknown_key_shows_the_problem_at_its_line_and_stores_nothing(
    web, student, store
):
    name = unique()
    answer = upload(web, name, PAIR_WITH_ERROR)
    assert answer.status_code == 422
    text = page_text(answer)
    assert PAIR_WITH_ERROR.splitlines()[4] == "    interfacez:"
    assert 'data-line="5">line 5</a>' in text and "nodes.a.interfacez" in text
    assert 'data-bad-lines="5"' in text and '<li class="bad">5</li>' in text
    # The form keeps what the user typed, to fix it.
    assert "interfacez:" in text and f'value="{name}"' in text
    with store() as session:
        assert session.query(Template).filter_by(name=name).count() == 0


def test_check_lists_errors_and_warnings_apart_without_saving(web, student):
    form = {"csrf": csrf_of(web), "topology": PAIR_WITH_ERROR}
    checked = web.post("/templates/check", data=form, headers={"HX-Request": "true"})
    assert checked.status_code == 200
    text = page_text(checked)
    assert "The topology has 1 error" in text and "line 5" in text
    good = web.post("/templates/check", data=form | {"topology": PAIR})
    assert "No errors." in page_text(good) and 'data-bad-lines=""' in page_text(good)
    broken = web.post("/templates/check", data=form | {"topology": "nodes: [\n"})
    assert "error" in page_text(broken) and "line" in page_text(broken)


def test_a_template_is_uploaded_from_a_file_edited_into_versions_shared_and_deleted(web, student):
    name = unique()
    files = {"file": (__import__("io").BytesIO(PAIR.encode()), "pair.lab.yml")}
    created = web.post(
        "/templates",
        data={"csrf": csrf_of(web), "name": name, "topology": ""} | files,
        content_type="multipart/form-data",
    )
    template_id = template_id_of(created)
    detail = page_text(web.get(f"/templates/{template_id}"))
    assert f"Template {name}" in detail
    assert (
        f'src="/api/templates/{template_id}/picture.svg"' in detail and 'alt="Topology of' in detail
    )
    assert web.get(f"/api/templates/{template_id}/picture.svg").mimetype == "image/svg+xml"

    form = {"csrf": csrf_of(web), "name": name, "description": "two hosts"}
    bad = web.post(f"/templates/{template_id}", data=form | {"topology": PAIR_WITH_ERROR})
    assert bad.status_code == 422 and "line 5" in page_text(bad)
    saved = web.post(f"/templates/{template_id}", data=form | {"topology": PAIR + "# v2\n"})
    assert saved.status_code == 302
    detail = page_text(web.get(f"/templates/{template_id}"))
    assert "View version 2" in detail and "View version 1" in detail and "two hosts" in detail
    version = page_text(web.get(f"/templates/{template_id}/versions/1"))
    assert "version 1" in version and "# v2" not in version
    assert web.get(f"/templates/{template_id}/versions/9").status_code == 404

    share = {"csrf": csrf_of(web), "visibility": "course", "course_id": ""}
    refused = web.post(f"/templates/{template_id}/share", data=share)
    assert refused.status_code == 422 and "course" in page_text(refused)
    public = web.post(f"/templates/{template_id}/share", data=share | {"visibility": "public"})
    assert public.status_code == 302
    assert name in page_text(web.get("/templates"))

    deleted = web.post(
        f"/templates/{template_id}/delete",
        data={"csrf": csrf_of(web)},
        headers={"HX-Request": "true"},
    )
    assert deleted.headers["HX-Redirect"] == "/templates"
    assert web.get(f"/templates/{template_id}").status_code == 404


def test_another_students_template_and_lab_are_404_pages(web, student, make_user, store):
    template_id = template_id_of(upload(web, unique(), PAIR))
    other = make_user(Role.STUDENT)
    with web.session_transaction() as session:
        session.clear()
    answer = web.post(
        "/login",
        data={
            "csrf": csrf_of_login(web),
            "username": other.username,
            "password": other.password,
        },
    )
    assert answer.status_code == 302
    for path in (f"/templates/{template_id}", f"/templates/{template_id}/versions/1"):
        missing = web.get(path)
        assert missing.status_code == 404 and "Not found" in page_text(missing)
    with store() as session:
        lab = session.query(Lab).order_by(Lab.id).first()
    if lab is not None and lab.owner_id != other.id:
        assert web.get(f"/labs/{lab.id}").status_code == 404
    assert web.get("/labs/2147483648").status_code == 404


def csrf_of_login(web) -> str:
    web.get("/login")
    return csrf_of(web)


def test_a_started_lab_shows_its_nodes_ssh_and_progress_and_refuses_actions_in_words(
    web,
    student,
    redis_db,  # noqa: F811
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    started = web.post(
        f"/templates/{template_id}/start", data={"csrf": csrf_of(web), "title": "my lab"}
    )
    assert started.status_code == 302, page_text(started)[:2000]
    lab_path = started.headers["Location"]
    page = page_text(web.get(lab_path))
    job_id = re.search(r'data-job-id="([^"]+)"', page).group(1)
    try:
        assert "Lab my lab" in page and 'data-active="true"' in page
        assert f"/api/jobs/{job_id}/stream" in page and f"/api/jobs/{job_id}/events" in page
        assert page.count("ssh -i") == 2 and "Copy SSH command for a" in page
        assert '<option value="a:eth1">' in page and '<option value="b:eth1">' in page
        assert 'hx-confirm="Remove lab' in page and 'hx-confirm="Restore lab' in page
        htmx = {"HX-Request": "true"}
        busy = web.post(f"{lab_path}/remove", data={"csrf": csrf_of(web)}, headers=htmx)
        assert busy.status_code == 200 and 'role="alert"' in page_text(busy)
        assert job_id in page_text(busy)
        bad_name = web.post(f"{lab_path}/snapshot", data={"csrf": csrf_of(web), "name": "../x"})
        assert bad_name.status_code == 422
        text = page_text(bad_name)
        # The refusal is next to the snapshot button, in the whole lab page.
        assert re.search(r'id="snapshot-message"><p class="error" role="alert">[^<]*name', text)
        info = web.get(f"{lab_path}/nodes/a/info", headers=htmx)
        assert info.status_code == 200 and "could not be read" in page_text(info)
        assert web.get(f"{lab_path}/nodes/zz/info").status_code == 404
    finally:
        cancel(job_id)
    ended = page_text(web.get(lab_path))
    assert 'data-active="false"' in ended and "canceled" in ended


def test_start_now_books_from_now_and_waits_for_the_lab_of_the_reservation(
    web,
    student,
    store,
    redis_db,  # noqa: F811
):
    template_id = template_id_of(upload(web, unique(), PAIR))
    too_long = web.post(
        f"/templates/{template_id}/start-now",
        data={"csrf": csrf_of(web), "hours": "100"},
        headers={"HX-Request": "true"},
    )
    assert too_long.status_code == 200 and "longer than the maximum" in page_text(too_long)
    booked = web.post(
        f"/templates/{template_id}/start-now", data={"csrf": csrf_of(web), "hours": "1"}
    )
    assert booked.status_code == 302
    waiting_path = booked.headers["Location"]
    reservation_id = int(re.search(r"/reservations/(\d+)/lab", waiting_path).group(1))
    with store() as session:
        reservation = session.get(Reservation, reservation_id)
        assert reservation.owner_id == student.id and reservation.state == "scheduled"
        assert (reservation.end_at - reservation.start_at).total_seconds() == 3600
        lab_name = reservation.lab_name
    waiting = web.get(waiting_path)
    assert waiting.status_code == 200 and lab_name in page_text(waiting)
    assert 'hx-trigger="every 2s"' in page_text(waiting)
    # Once the reservation's start made its lab, the page goes to the lab.
    with store() as session:
        now = utcnow()
        session.add(
            Lab(
                name=lab_name,
                topology=PAIR,
                hypervisor="localhost",
                owner_id=student.id,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
        lab_id = session.query(Lab).filter_by(name=lab_name).one().id
        session.query(Reservation).filter_by(id=reservation_id).update({"state": "cancelled"})
        session.commit()
    found = web.get(waiting_path, headers={"HX-Request": "true"})
    assert found.headers["HX-Redirect"] == f"/labs/{lab_id}"
