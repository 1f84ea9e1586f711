"""Logging in and out, sessions with CSRF, throttled guessing, personal API tokens."""

from __future__ import annotations

import uuid

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from store.models import LoginFailure, User
from tests.app_config import TEST_PASSWORDS, portal_app
from tests.portal.conftest import PASSWORD, bearer


def test_login_sets_a_session_that_me_answers_and_logout_ends(client, make_user, login):
    user = make_user("student")
    assert client.get("/api/auth/me").status_code == 401
    csrf = login(client, user)
    me = client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.get_json()["username"] == user.username
    assert me.get_json()["role"] == "student"
    assert "password_hash" not in me.get_json()
    assert csrf
    assert client.post("/api/auth/logout").status_code == 204
    answer = client.get("/api/auth/me")
    assert answer.status_code == 401
    assert answer.get_json()["error"]["status"] == 401


def test_a_session_change_without_the_csrf_header_is_refused(client, make_user, login):
    user = make_user("student")
    csrf = login(client, user)
    body = {"name": "laptop"}
    refused = client.post("/api/auth/tokens", json=body)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["detail"] == {"header": "X-CSRF-Token"}
    wrong = client.post("/api/auth/tokens", json=body, headers={"X-CSRF-Token": "x" + csrf})
    assert wrong.status_code == 403
    ok = client.post("/api/auth/tokens", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_wrong_password_and_unknown_user_get_the_same_answer(client, make_user):
    user = make_user("student")
    env = {"REMOTE_ADDR": "10.9.0.1"}
    wrong = client.post(
        "/api/auth/login",
        json={"username": user.username, "password": "not the password"},
        environ_base=env,
    )
    unknown = client.post(
        "/api/auth/login",
        json={"username": "nobody-here", "password": "not the password"},
        environ_base=env,
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_failed_logins_of_an_account_are_throttled_with_a_growing_wait(client, make_user):
    user = make_user("student")

    def attempt(password, address):
        return client.post(
            "/api/auth/login",
            json={"username": user.username, "password": password},
            environ_base={"REMOTE_ADDR": address},
        )

    for number in range(5):
        assert attempt(f"guess number {number}", f"10.9.1.{number}").status_code == 401
    # Even the right password, from another address, waits: the account is throttled.
    throttled = attempt(PASSWORD, "10.9.1.99")
    assert throttled.status_code == 429
    first_wait = int(throttled.headers["Retry-After"])
    assert 0 < first_wait <= 30
    assert throttled.get_json()["error"]["detail"]["retry_after_seconds"] == first_wait


def test_failed_logins_from_an_address_are_throttled_for_every_account(client, make_user, store):
    from store.models import LoginFailure, utcnow

    user = make_user("student")
    address = "10.9.2.1"
    with store() as session:  # 20 failures from one address, each for another name
        session.add_all(
            LoginFailure(username=f"guess{n}", address=address, at=utcnow()) for n in range(20)
        )
        session.commit()
    answer = client.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": address},
    )
    assert answer.status_code == 429
    elsewhere = client.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.2.2"},
    )
    assert elsewhere.status_code == 200


def test_the_wait_doubles_with_each_failure_past_the_threshold(client, make_user, store):
    from datetime import timedelta

    from store.models import LoginFailure, utcnow

    user = make_user("student")
    # Seven failures, the newest a minute ago: 30 s * 2**2 = 120 s after it, 60 s left.
    with store() as session:
        session.add_all(
            LoginFailure(
                username=user.username, address="10.9.3.1", at=utcnow() - timedelta(minutes=1)
            )
            for _ in range(7)
        )
        session.commit()
    answer = client.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.3.2"},
    )
    assert answer.status_code == 429
    assert 55 <= int(answer.headers["Retry-After"]) <= 60


def test_unknown_users_are_throttled_like_known_ones(client):
    for number in range(5):
        client.post(
            "/api/auth/login",
            json={"username": "ghost", "password": f"guess {number}"},
            environ_base={"REMOTE_ADDR": "10.9.4.1"},
        )
    answer = client.post(
        "/api/auth/login",
        json={"username": "ghost", "password": "guess 6"},
        environ_base={"REMOTE_ADDR": "10.9.4.1"},
    )
    assert answer.status_code == 429


def test_a_token_is_shown_once_stored_hashed_and_listed_without_it(client, make_user, login, store):
    user = make_user("student")
    csrf = login(client, user)
    created = client.post(
        "/api/auth/tokens", json={"name": "ci", "days": 7}, headers={"X-CSRF-Token": csrf}
    )
    assert created.status_code == 201
    token = created.get_json()["token"]
    assert token.startswith("ltb_") and len(token) > 40
    listed = client.get("/api/auth/tokens").get_json()["tokens"]
    assert [row["name"] for row in listed] == ["ci"]
    assert "token" not in listed[0]
    assert token.startswith(listed[0]["prefix"])
    with store() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).mappings().all()
    assert rows and all(token not in str(dict(row)) for row in rows)
    assert any(row["token_hash"] != token for row in rows)

    other = client.application.test_client()
    me = other.get("/api/auth/me", headers=bearer(token))
    assert me.status_code == 200 and me.get_json()["username"] == user.username
    # A token request needs no CSRF header.
    assert (
        other.post("/api/auth/tokens", json={"name": "x"}, headers=bearer(token)).status_code == 201
    )


def test_token_days_over_a_year_are_refused_naming_the_field(client, make_user, token_for):
    token = token_for(make_user("student"))
    answer = client.post("/api/auth/tokens", json={"name": "x", "days": 366}, headers=bearer(token))
    assert answer.status_code == 422
    assert "days" in str(answer.get_json()["error"]["detail"])


def test_revoked_and_expired_tokens_are_refused(client, make_user, token_for, store):
    user = make_user("student")
    token = token_for(user)
    listed = client.get("/api/auth/tokens", headers=bearer(token)).get_json()["tokens"]
    assert (
        client.delete(f"/api/auth/tokens/{listed[0]['id']}", headers=bearer(token)).status_code
        == 204
    )
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401

    expired = token_for(user, days=1)
    with store() as session:
        session.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 second'"))
        session.commit()
    answer = client.get("/api/auth/me", headers=bearer(expired))
    assert answer.status_code == 401
    assert answer.get_json()["error"]["message"]


def test_a_user_cannot_see_or_revoke_the_tokens_of_another(client, make_user, token_for):
    mine = token_for(make_user("student"))
    theirs = token_for(make_user("student"))
    their_id = client.get("/api/auth/tokens", headers=bearer(theirs)).get_json()["tokens"][0]["id"]
    assert client.delete(f"/api/auth/tokens/{their_id}", headers=bearer(mine)).status_code == 404
    assert client.get("/api/auth/me", headers=bearer(theirs)).status_code == 200


def test_a_disabled_user_cannot_log_in_nor_use_tokens_and_sessions_end(
    client, make_user, login, token_for, store
):
    from store.models import User

    user = make_user("student")
    token = token_for(user)
    login(client, user)
    with store() as session:
        row = session.get(User, user.id)
        row.disabled = True
        row.session_epoch += 1
        session.commit()
    assert client.get("/api/auth/me").status_code == 401
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 401
    answer = client.post(
        "/api/auth/login",
        json={"username": user.username, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.9.5.1"},
    )
    assert answer.status_code == 401
    assert answer.get_json()["error"]["message"] == "Wrong username or password"


def test_changing_ones_password_needs_the_old_one_and_ends_other_sessions(
    client, app, make_user, login
):
    user = make_user("student")
    csrf = login(client, user)
    other = app.test_client()
    login(other, user)
    headers = {"X-CSRF-Token": csrf}
    wrong = client.post(
        "/api/auth/password",
        json={"old_password": "not it at all", "new_password": "a new long password"},
        headers=headers,
    )
    assert wrong.status_code == 403
    short = client.post(
        "/api/auth/password",
        json={"old_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    assert short.status_code == 422 and "new_password" in str(short.get_json())
    ok = client.post(
        "/api/auth/password",
        json={"old_password": PASSWORD, "new_password": "a new long password"},
        headers=headers,
    )
    assert ok.status_code == 200 and ok.get_json()["csrf_token"]
    assert client.get("/api/auth/me").status_code == 200
    assert other.get("/api/auth/me").status_code == 401
    user.password = "a new long password"  # noqa: S105 - a test user's
    login(app.test_client(), user)


def test_login_input_is_validated_naming_the_field(client):
    answer = client.post("/api/auth/login", json={"username": "someone"})
    assert answer.status_code == 422
    assert "password" in answer.get_json()["error"]["detail"]["json"]
    assert client.post("/api/auth/login", data="not json").status_code in (400, 415, 422)


def test_login_updates_last_login_and_clears_the_accounts_failures(client, make_user, store):
    from store.models import LoginFailure

    user = make_user("student")
    env = {"REMOTE_ADDR": "10.9.6.1"}
    client.post(
        "/api/auth/login", json={"username": user.username, "password": "x" * 12}, environ_base=env
    )
    answer = client.post(
        "/api/auth/login", json={"username": user.username, "password": PASSWORD}, environ_base=env
    )
    assert answer.status_code == 200
    assert answer.get_json()["user"]["last_login_at"]
    with store() as session:
        left = session.scalars(select(LoginFailure).where(LoginFailure.username == user.username))
        assert list(left) == []


@pytest.mark.parametrize(("hops", "counted_address"), [(1, "203.0.113.7"), (0, "127.0.0.1")])
def test_failed_logins_count_the_client_behind_the_trusted_proxy_and_no_forged_one(
    job_settings, roomy_inventory, store, hops, counted_address
):
    # Behind nginx (LTB_PROXY_HOPS=1) the client's address comes from X-Forwarded-For, so
    # throttling per address does not lump every user together as nginx's 127.0.0.1; with
    # no proxy trusted, a forged header changes nothing.
    app = portal_app(job_settings.database_url, roomy_inventory, LTB_PROXY_HOPS=hops)
    name = f"nobody-{uuid.uuid4().hex[:8]}"
    answer = app.test_client().post(
        "/api/auth/login",
        json={"username": name, "password": "not the password"},
        headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    assert answer.status_code == 401
    with store() as session:
        addresses = session.scalars(
            select(LoginFailure.address).where(LoginFailure.username == name)
        ).all()
    assert addresses == [counted_address]


def test_the_cheap_test_hasher_reaches_no_application_but_through_test_config(
    job_settings, roomy_inventory, store, make_user, monkeypatch
):
    """The tests' users hold argon2 hashes of the lowest cost (TEST_PASSWORDS). An application
    not given that hasher in its test_config (not even with the setting's name in its
    environment) logs them in and stores the password again with argon2's defaults."""
    monkeypatch.setenv("LTB_TEST_PASSWORD_HASHER", "cheap")
    app = portal_app(job_settings.database_url, roomy_inventory, LTB_TEST_PASSWORD_HASHER=None)
    assert app.config.get("LTB_TEST_PASSWORD_HASHER") is None
    user = make_user()
    with store() as session:
        before = session.get(User, user.id).password_hash
    assert not TEST_PASSWORDS.check_needs_rehash(before), "the test users' hashes are cheap"

    answer = app.test_client().post(
        "/api/auth/login", json={"username": user.username, "password": user.password}
    )

    assert answer.status_code == 200, answer.get_json()
    with store() as session:
        after = session.get(User, user.id).password_hash
    assert after != before and not PasswordHasher().check_needs_rehash(after)
    PasswordHasher().verify(after, user.password)
