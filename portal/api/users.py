"""Admins manage users: list, create, show, change (disable, role, password, quotas), delete."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import Boolean, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range

from portal.api.auth import UserOut, user_view
from portal.api.paging import PageOut, PageQuery, page_of
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
from store.models import Role

bp = APIBlueprint("users", __name__, url_prefix="/api")
ROLES = [role.value for role in Role]


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


class UserPageIn(PageQuery):
    q = String(load_default=None, validate=Length(max=64))


class UserListOut(PageOut):
    users = List(Nested(UserOut))


ADMIN = login_required(Role.ADMIN)


@bp.get("/users")
@ADMIN
@bp.input(UserPageIn, location="query", arg_name="query")
@bp.output(UserListOut)
@bp.doc(summary="List users (admins)")
def list_users(query):
    return page_of(find_users(query["q"]), query, user_view, key="users")


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
