"""Logging in and out, sessions with CSRF, throttled guessing, personal API tokens."""

from __future__ import annotations

from sqlalchemy import select, text

from store.models import ApiToken
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
