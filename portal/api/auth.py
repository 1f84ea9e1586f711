"""Logging in and out, who am I, one's own password, and personal API tokens."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, DateTime, Dict, Integer, List, Nested, String
from apiflask.validators import Length, Range
from flask import current_app, request

from portal.auth import current_user, end_session, login_required, start_session
from portal.users import (
    MAX_TOKEN_DAYS,
    PASSWORD_MAX,
    PASSWORD_MIN,
    active_tokens,
    authenticate,
    change_own_password,
    create_token,
    own_token_or_404,
    quotas_of,
    revoke_token,
)
from store.models import Role

bp = APIBlueprint("auth", __name__, url_prefix="/api")


class LoginIn(Schema):
    username = String(required=True, validate=Length(1, 64))
    password = String(required=True, validate=Length(1, PASSWORD_MAX))


class UserOut(Schema):
    id = Integer()
    username = String()
    display_name = String(allow_none=True)
    role = String()
    disabled = Boolean()
    created_at = DateTime()
    last_login_at = DateTime(allow_none=True)
    quotas = Dict(keys=String(), values=Integer())


class LoginOut(Schema):
    user = Nested(UserOut)
    csrf_token = String(metadata={"description": "send it as X-CSRF-Token on changes"})


class PasswordIn(Schema):
    old_password = String(required=True, validate=Length(1, PASSWORD_MAX))
    new_password = String(required=True, validate=Length(PASSWORD_MIN, PASSWORD_MAX))


class PasswordOut(Schema):
    csrf_token = String(allow_none=True)


class TokenIn(Schema):
    name = String(required=True, validate=Length(1, 64))
    days = Integer(load_default=None, validate=Range(1, MAX_TOKEN_DAYS))


class TokenOut(Schema):
    id = Integer()
    name = String()
    prefix = String()
    created_at = DateTime()
    expires_at = DateTime()
    last_used_at = DateTime(allow_none=True)


class NewTokenOut(TokenOut):
    token = String(metadata={"description": "shown this once; store it now"})


class TokenListOut(Schema):
    tokens = List(Nested(TokenOut))


def user_view(user) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
        "quotas": quotas_of(user),
    }


@bp.post("/auth/login")
@bp.input(LoginIn, arg_name="body")
@bp.output(LoginOut)
@bp.doc(
    summary="Log in (sets the session cookie)",
    responses={401: "Wrong username or password", 429: "Too many failed logins"},
)
def login(body):
    user = authenticate(body["username"], body["password"], request.remote_addr or "")
    return {"user": user_view(user), "csrf_token": start_session(user)}


@bp.post("/auth/logout")
@bp.output({}, status_code=204)
@bp.doc(summary="Log out (ends the session)")
def logout():
    end_session()
    return ""


@bp.get("/auth/me")
@login_required()
@bp.output(UserOut)
@bp.doc(summary="The user who calls")
def me():
    return user_view(current_user())


@bp.get("/auth/admin")
@login_required(Role.ADMIN)
@bp.output({}, status_code=204)
@bp.doc(summary="204 for an admin (nginx asks it before it lets anyone reach Prometheus)")
def admin_check():
    return ""


@bp.post("/auth/password")
@login_required()
@bp.input(PasswordIn, arg_name="body")
@bp.output(PasswordOut)
@bp.doc(summary="Change one's own password (other sessions end)")
def change_password(body):
    user = current_user()
    change_own_password(user, body["old_password"], body["new_password"])
    # This session goes on, with a new CSRF token; a token caller has no session.
    csrf = None if request.headers.get("Authorization") else start_session(user)
    return {"csrf_token": csrf}


@bp.post("/auth/tokens")
@login_required()
@bp.input(TokenIn, arg_name="body")
@bp.output(NewTokenOut, status_code=201)
@bp.doc(summary="Create a personal API token (shown once)")
def new_token(body):
    days = body["days"] or current_app.config["LTB_TOKEN_DAYS"]
    created = create_token(current_user(), body["name"], min(days, MAX_TOKEN_DAYS))
    return {**_token_view(created.row), "token": created.token}


@bp.get("/auth/tokens")
@login_required()
@bp.output(TokenListOut)
@bp.doc(summary="One's own tokens (never the token itself)")
def tokens():
    return {"tokens": [_token_view(row) for row in active_tokens(current_user())]}


@bp.delete("/auth/tokens/<int:token_id>")
@login_required()
@bp.output({}, status_code=204)
@bp.doc(summary="Revoke one's own token")
def revoke(token_id: int):
    revoke_token(own_token_or_404(current_user(), token_id))
    return ""


def _token_view(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
    }
