"""The admin pages' rules through the Flask test client (no browser): who may see them, and
what each form changes or refuses, in words next to the form. The browser tests of the same
pages are in test_login_and_admin.py."""

from __future__ import annotations

import pytest

from store.models import Job, JobEvent, Lab, User, utcnow
from tests.app_config import portal_app
from tests.jobs.conftest import job_settings  # noqa: F401
from tests.portal.conftest import app, client, login, make_user  # noqa: F401

ADMIN_PAGES = ("/admin", "/admin/labs", "/admin/jobs", "/admin/hypervisors")


@pytest.fixture
def admin_client(client, make_user, login):  # noqa: F811
    admin = make_user("admin")
    csrf = login(client, admin)
    client.admin, client.csrf = admin, csrf
    return client


def user_in_db(store, user_id: int) -> User:
    with store() as session:
        return session.get(User, user_id)


@pytest.mark.parametrize("path", ADMIN_PAGES)
@pytest.mark.parametrize("role", ["student", "teacher"])
def test_admin_pages_are_403_pages_for_other_roles(client, make_user, login, role, path):  # noqa: F811
    login(client, make_user(role))
    answer = client.get(path)
    assert answer.status_code == 403
    assert "Not allowed" in answer.text and "text/html" in answer.content_type


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_send_anonymous_users_to_the_login_page(client, path):  # noqa: F811
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_admin_pages_show_for_admins(admin_client, path):
    answer = admin_client.get(path)
    assert answer.status_code == 200, answer.text
    assert "<h1>" in answer.text


def test_admin_creates_a_user_and_a_taken_name_is_refused_next_to_the_field(admin_client, store):
    form = {"csrf": admin_client.csrf, "username": "u1-new", "password": "long enough pw"}
    created = admin_client.post("/admin/users", data={**form, "role": "teacher"})
    assert created.status_code == 302
    page = admin_client.get(created.headers["Location"])
    assert "User u1-new created (teacher)." in page.text
    again = admin_client.post("/admin/users", data=form)
    assert again.status_code == 422
    assert 'id="new-username-error"' in again.text and "User u1-new exists already" in again.text
    assert 'value="u1-new"' in again.text  # what the admin typed stays


def test_a_bad_username_and_short_password_are_named_on_the_create_form(admin_client):
    answer = admin_client.post(
        "/admin/users", data={"csrf": admin_client.csrf, "username": "U!", "password": "short"}
    )
    assert answer.status_code == 422
    assert 'id="new-password-error"' in answer.text


def test_a_form_without_the_csrf_token_changes_nothing(admin_client, store):
    answer = admin_client.post("/admin/users", data={"username": "u1-nocsrf", "password": "x" * 12})
    assert answer.status_code == 403
    with store() as session:
        assert session.query(User).filter_by(username="u1-nocsrf").count() == 0


def test_admin_disables_and_enables_a_user(admin_client, make_user, store):  # noqa: F811
    student = make_user("student")
    url = f"/admin/users/{student.id}/disabled"
    assert (
        admin_client.post(url, data={"csrf": admin_client.csrf, "disabled": "true"}).status_code
        == 302
    )
    assert user_in_db(store, student.id).disabled
    page = admin_client.get(f"/admin/users/{student.id}")
    assert f"User {student.username} disabled." in page.text and "Enable " in page.text
    admin_client.post(url, data={"csrf": admin_client.csrf, "disabled": "false"})
    assert not user_in_db(store, student.id).disabled


def test_an_admin_cannot_disable_themselves_and_is_told_by_the_button(admin_client, store):
    url = f"/admin/users/{admin_client.admin.id}/disabled"
    answer = admin_client.post(url, data={"csrf": admin_client.csrf, "disabled": "true"})
    assert answer.status_code == 409
    assert "Admins cannot disable themselves" in answer.text
    assert not user_in_db(store, admin_client.admin.id).disabled


def test_admin_resets_a_password_and_a_short_one_is_refused(admin_client, make_user, store):  # noqa: F811
    student = make_user("student")
    url = f"/admin/users/{student.id}/password"
    short = admin_client.post(url, data={"csrf": admin_client.csrf, "password": "short"})
    assert short.status_code == 422 and 'id="reset-password-error"' in short.text
    epoch = user_in_db(store, student.id).session_epoch
    done = admin_client.post(url, data={"csrf": admin_client.csrf, "password": "a new password"})
    assert done.status_code == 302
    assert user_in_db(store, student.id).session_epoch == epoch + 1


def test_admin_sets_quotas_memory_in_gib_and_empty_is_the_default(admin_client, make_user, store):  # noqa: F811
    student = make_user("student", quota_nodes=3)
    url = f"/admin/users/{student.id}/quotas"
    form = {
        "csrf": admin_client.csrf,
        "quota_running_labs": "4",
        "quota_nodes": "",
        "quota_memory_bytes": "1.5",
        "quota_reservation_hours_week": "12",
    }
    assert admin_client.post(url, data=form).status_code == 302
    saved = user_in_db(store, student.id)
    assert (saved.quota_running_labs, saved.quota_nodes) == (4, None)
    assert saved.quota_memory_bytes == 3 * 2**29
    assert saved.quota_reservation_hours_week == 12
    bad = admin_client.post(url, data={**form, "quota_reservation_hours_week": "200"})
    assert bad.status_code == 422
    assert 'id="quota-reservation_hours_week-error"' in bad.text
    assert user_in_db(store, student.id).quota_reservation_hours_week == 12


def test_failed_jobs_show_their_error_and_events(admin_client, make_user, store):  # noqa: F811
    owner = make_user("student")
    now = utcnow()
    with store() as session:
        lab = Lab(
            name=f"u1-failed-{owner.id}",
            owner_id=owner.id,
            topology="name: x\nnodes: {}\n",
            state="failed",
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
        )
        session.add(lab)
        session.flush()
        job = Job(
            id=f"u1-job-{owner.id}",
            lab_id=lab.id,
            task="deploy",
            status="failed",
            lab_state_before="removed",
            enqueued_at=now,
            ended_at=now,
            result={"error": "playbook failed: <r1> unreachable"},
        )
        session.add(job)
        session.add(
            JobEvent(
                job_id=job.id,
                seq=7,
                event="runner_on_failed",
                host="r1",
                task="Start the container",
                created_at=now,
                data={"res": {"msg": "image ltb/none not found"}},
            )
        )
        session.commit()
    page = admin_client.get("/admin/jobs").text
    assert f"u1-job-{owner.id}" in page
    assert "playbook failed: &lt;r1&gt; unreachable" in page  # escaped, never markup
    assert "Start the container" in page and "image ltb/none not found" in page
    labs = admin_client.get("/admin/labs").text
    assert f"u1-failed-{owner.id}" in labs and owner.username in labs


def test_the_hypervisors_page_says_when_the_inventory_cannot_be_read(
    job_settings,  # noqa: F811
    make_user,  # noqa: F811
    login,  # noqa: F811
    tmp_path,
):
    browser = portal_app(job_settings.database_url, tmp_path).test_client()  # no hosts.yaml
    login(browser, make_user("admin"))
    answer = browser.get("/admin/hypervisors")
    assert answer.status_code == 200
    assert "The hypervisors&#39; inventory cannot be read" in answer.text
    assert "hosts.yaml" in answer.text
