"""Admins manage users; nobody else may."""

from __future__ import annotations

import uuid

import pytest

from store.models import Lab, utcnow
from tests.portal.conftest import PASSWORD, bearer

NEW = {"username": "new.user-1", "password": "a long password"}


@pytest.fixture
def admin_token(make_user, token_for):
    admin = make_user("admin")
    return token_for(admin)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/users", None),
        ("post", "/api/users", NEW),
        ("get", "/api/users/1", None),
        ("patch", "/api/users/1", {"disabled": True}),
        ("delete", "/api/users/1", None),
    ],
)
def test_only_admins_manage_users(client, make_user, token_for, method, path, body):
    call = getattr(client, method)
    anonymous = call(path, json=body)
    assert anonymous.status_code == 401
    for role in ("student", "teacher"):
        refused = call(path, json=body, headers=bearer(token_for(make_user(role))))
        assert refused.status_code == 403, role
        assert refused.get_json()["error"]["message"] == "Only admin users may do this"


def test_an_admin_creates_lists_shows_and_deletes_a_user(client, admin_token):
    headers = bearer(admin_token)
    # A name of its own: the run's database holds users of other tests (schemathesis's too).
    name = f"ada-{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/api/users",
        json={**NEW, "username": name, "role": "teacher", "quotas": {"nodes": 4}},
        headers=headers,
    )
    assert created.status_code == 201, created.get_json()
    user = created.get_json()
    assert user["role"] == "teacher"
    assert user["quotas"]["nodes"] == 4
    assert user["quotas"]["running_labs"] == 2  # the platform's default
    listed = client.get(f"/api/users?q={name}&per_page=5", headers=headers).get_json()
    assert [row["username"] for row in listed["users"]] == [name]
    assert listed["per_page"] == 5 and listed["total"] == 1
    assert client.get(f"/api/users/{user['id']}", headers=headers).get_json() == user
    assert client.delete(f"/api/users/{user['id']}", headers=headers).status_code == 204
    assert client.get(f"/api/users/{user['id']}", headers=headers).status_code == 404
    login = client.post("/api/auth/login", json={"username": name, "password": NEW["password"]})
    assert login.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW, "username": "1abc"}, "username"),
        ({**NEW, "username": "ab"}, "username"),
        ({**NEW, "username": "Robert'); DROP TABLE users;--"}, "username"),
        ({**NEW, "username": "x" * 33}, "username"),
        ({**NEW, "password": "short"}, "password"),
        ({**NEW, "role": "root"}, "role"),
        ({**NEW, "quotas": {"nodes": -1}}, "nodes"),
        ({"username": "abc"}, "password"),
    ],
)
def test_bad_new_users_are_refused_naming_the_field(client, admin_token, body, field):
    answer = client.post("/api/users", json=body, headers=bearer(admin_token))
    assert answer.status_code == 422, answer.get_json()
    assert field in str(answer.get_json()["error"]["detail"])


def test_a_taken_username_is_refused(client, admin_token, make_user):
    taken = make_user("student")
    answer = client.post(
        "/api/users", json={**NEW, "username": taken.username}, headers=bearer(admin_token)
    )
    assert answer.status_code == 409
    assert taken.username in answer.get_json()["error"]["message"]


def test_disabling_ends_sessions_and_enabling_lets_the_user_back(
    client, app, admin_token, make_user, login
):
    user = make_user("student")
    student = app.test_client()
    login(student, user)
    headers = bearer(admin_token)
    assert (
        client.patch(f"/api/users/{user.id}", json={"disabled": True}, headers=headers).status_code
        == 200
    )
    assert student.get("/api/auth/me").status_code == 401
    refused = student.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert refused.status_code == 401
    enabled = client.patch(f"/api/users/{user.id}", json={"disabled": False}, headers=headers)
    assert enabled.get_json()["disabled"] is False
    login(student, user)
    assert student.get("/api/auth/me").status_code == 200


def test_an_admin_resets_a_password_role_and_quotas(client, app, admin_token, make_user, login):
    user = make_user("student")
    headers = bearer(admin_token)
    changed = client.patch(
        f"/api/users/{user.id}",
        json={
            "password": "reset by the admin",
            "role": "teacher",
            "quotas": {"running_labs": 5, "memory_bytes": None},
        },
        headers=headers,
    )
    assert changed.status_code == 200
    body = changed.get_json()
    assert body["role"] == "teacher" and body["quotas"]["running_labs"] == 5
    old = app.test_client().post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}
    )
    assert old.status_code == 401
    user.password = "reset by the admin"  # noqa: S105 - a test user's
    login(app.test_client(), user)


def test_an_admin_cannot_disable_demote_or_delete_themselves(client, make_user, token_for):
    admin = make_user("admin")
    headers = bearer(token_for(admin))
    for method, body in (
        ("patch", {"disabled": True}),
        ("patch", {"role": "student"}),
        ("delete", None),
    ):
        answer = getattr(client, method)(f"/api/users/{admin.id}", json=body, headers=headers)
        assert answer.status_code == 409
    assert client.get("/api/auth/me", headers=headers).get_json()["role"] == "admin"


def test_a_user_who_owns_a_lab_is_not_deleted(client, admin_token, make_user, store):
    user = make_user("student")
    with store() as session:
        now = utcnow()
        session.add(
            Lab(
                name="p1-owned",
                owner_id=user.id,
                state="running",
                topology="",
                hypervisor="localhost",
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    answer = client.delete(f"/api/users/{user.id}", headers=bearer(admin_token))
    assert answer.status_code == 409
    assert "1 labs" in answer.get_json()["error"]["message"]


def test_unknown_users_are_404(client, admin_token):
    assert client.get("/api/users/999999", headers=bearer(admin_token)).status_code == 404
    per_page = client.get("/api/users?per_page=1000", headers=bearer(admin_token))
    assert per_page.status_code == 422
