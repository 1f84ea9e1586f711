"""Admins manage users: list, create, show, change (disable, role, password, quotas), delete."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from portal.api.auth import UserOut, user_view
from portal.auth import current_user, login_required
from portal.users import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    USERNAME_RULE,
    create_user,
    delete_user,
    find_users,
    update_user,
    user_or_404,
)
from store.db import db
from store.models import Role

bp = APIBlueprint("users", __name__, url_prefix="/api")
ROLES = [role.value for role in Role]
MAX_PER_PAGE = 100


class QuotasIn(Schema):
    # null: the platform's default.
    running_labs = Integer(allow_none=True, validate=Range(0, 1000))
    nodes = Integer(allow_none=True, validate=Range(0, 10_000))
    memory_bytes = Integer(allow_none=True, validate=Range(0, 2**50))
    reservation_hours_week = Integer(allow_none=True, validate=Range(0, 168))


class UserIn(Schema):
    username = String(
        required=True, validate=Length(1, 64), metadata={"description": USERNAME_RULE}
    )
    password = String(required=True, validate=Length(PASSWORD_MIN, PASSWORD_MAX))
    role = String(load_default=Role.STUDENT.value, validate=OneOf(ROLES))
    display_name = String(load_default=None, allow_none=True, validate=Length(max=128))
    quotas = Nested(QuotasIn, load_default=None)


class UserChangeIn(Schema):
    display_name = String(allow_none=True, validate=Length(max=128))
    role = String(validate=OneOf(ROLES))
    disabled = Boolean()
    password = String(validate=Length(PASSWORD_MIN, PASSWORD_MAX))
    quotas = Nested(QuotasIn)


class UserPageIn(Schema):
    page = Integer(load_default=1, validate=Range(1, 1_000_000))
    per_page = Integer(load_default=20, validate=Range(1, MAX_PER_PAGE))
    q = String(load_default=None, validate=Length(max=64))


class UserListOut(Schema):
    users = List(Nested(UserOut))
    page = Integer()
    per_page = Integer()
    total = Integer()


ADMIN = login_required(Role.ADMIN)


@bp.get("/users")
@ADMIN
@bp.input(UserPageIn, location="query", arg_name="query")
@bp.output(UserListOut)
@bp.doc(summary="List users (admins)")
def list_users(query):
    page = db.paginate(
        find_users(query["q"]),
        page=query["page"],
        per_page=query["per_page"],
        max_per_page=MAX_PER_PAGE,
        error_out=False,
    )
    return {
        "users": [user_view(user) for user in page.items],
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
    }


@bp.post("/users")
@ADMIN
@bp.input(UserIn, arg_name="body")
@bp.output(UserOut, status_code=201)
@bp.doc(summary="Create a user (admins)", responses={409: "The username is taken"})
def new_user(body):
    user = create_user(
        body["username"], body["password"], body["role"], body["display_name"], body["quotas"]
    )
    return user_view(user)


@bp.get("/users/<int:user_id>")
@ADMIN
@bp.output(UserOut)
@bp.doc(summary="Show a user (admins)")
def show_user(user_id: int):
    return user_view(user_or_404(user_id))


@bp.patch("/users/<int:user_id>")
@ADMIN
@bp.input(UserChangeIn, arg_name="body")
@bp.output(UserOut)
@bp.doc(summary="Disable or enable, set role, password or quotas (admins)")
def change_user(user_id: int, body):
    return user_view(update_user(current_user(), user_or_404(user_id), body))


@bp.delete("/users/<int:user_id>")
@ADMIN
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a user who owns nothing (admins)", responses={409: "Owns labs etc."})
def remove_user(user_id: int):
    delete_user(current_user(), user_or_404(user_id))
    return ""
