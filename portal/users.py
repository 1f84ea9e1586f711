"""The rules of users: logging in (with throttling of guesses), personal API tokens, and what
admins may change. Plain functions over the Flask-SQLAlchemy session; the views in
portal/api/auth.py and portal/api/users.py only parse and render.

Guessing is slowed per account and per address: a failed login is a LoginFailure row; once an
account (or an address) has THROTTLE_AFTER failures (ADDRESS_THROTTLE_AFTER for an address,
which many users may share) within the window, it must wait before the next try, and the wait
doubles with each further failure. Unknown users and wrong passwords get the same answer, in
about the same time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from math import ceil
from typing import Any

from apiflask import HTTPError
from flask import current_app
from sqlalchemy import delete, func, or_, select

from portal.auth import hash_password, new_token, password_matches, token_hash
from store.db import db
from store.models import (
    ApiToken,
    Course,
    Lab,
    LoginFailure,
    Reservation,
    Role,
    Template,
    User,
    utcnow,
)

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{2,31}$")
USERNAME_RULE = "3-32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter"
PASSWORD_MIN = 10
PASSWORD_MAX = 1024  # argon2 takes any length; a megabyte of password is only a cost
MAX_TOKEN_DAYS = 365
TOKEN_PREFIX_SHOWN = 12  # "ltb_" and 8 random characters, to tell tokens apart in lists

THROTTLE_WINDOW = timedelta(minutes=15)
THROTTLE_AFTER = 5
ADDRESS_THROTTLE_AFTER = 20
FIRST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(minutes=15)
WRONG_LOGIN = "Wrong username or password"
QUOTAS = ("running_labs", "nodes", "memory_bytes", "reservation_hours_week")
# A hash to verify against when the user is unknown, so that answer takes as long.
_DUMMY_HASH: list[str] = []


def username_problem(username: str) -> str | None:
    return None if USERNAME.match(username) else f"Usernames are {USERNAME_RULE}"


def password_problem(password: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return f"Passwords have at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"Passwords have at most {PASSWORD_MAX} characters"
    return None


def _wait(failures: int, threshold: int) -> timedelta | None:
    """How long to wait after the newest failure, once there are `failures` in the window."""
    if failures < threshold:
        return None
    return min(FIRST_WAIT * 2 ** (failures - threshold), LONGEST_WAIT)


def _throttled_for(username: str, address: str) -> int:
    """Seconds the caller must still wait before trying this account from this address."""
    now = utcnow()
    since = now - THROTTLE_WINDOW
    longest = 0
    for column, value, threshold in (
        (LoginFailure.username, username, THROTTLE_AFTER),
        (LoginFailure.address, address, ADDRESS_THROTTLE_AFTER),
    ):
        count, newest = db.session.execute(
            select(func.count(), func.max(LoginFailure.at)).where(
                column == value, LoginFailure.at > since
            )
        ).one()
        wait = _wait(count, threshold)
        if wait is not None and newest + wait > now:
            longest = max(longest, ceil((newest + wait - now).total_seconds()))
    return longest


def _record_failure(username: str, address: str) -> None:
    now = utcnow()
    # Old failures count for nothing: keep the table small.
    db.session.execute(delete(LoginFailure).where(LoginFailure.at <= now - THROTTLE_WINDOW))
    db.session.add(LoginFailure(username=username[:64], address=address[:64], at=now))
    db.session.commit()


def authenticate(username: str, password: str, address: str) -> User:
    """The user with this username and password; HTTPError 429 while throttled, else 401
    with the same message for an unknown user, a wrong password and a disabled user."""
    username = username.strip().lower()
    wait = _throttled_for(username, address)
    if wait:
        raise HTTPError(
            429,
            "Too many failed logins; try again later",
            {"retry_after_seconds": wait},
            headers={"Retry-After": str(wait)},
        )
    user = db.session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password("not a password of anyone"))
        password_matches(User(password_hash=_DUMMY_HASH[0]), password)
        ok = False
    else:
        ok = password_matches(user, password) and not user.disabled
    if not ok:
        _record_failure(username, address)
        raise HTTPError(401, WRONG_LOGIN)
    db.session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def set_password(user: User, password: str) -> None:
    """A new password; every session made before ends (tokens stay: revoke them apart)."""
    problem = password_problem(password)
    if problem:
        raise HTTPError(422, problem, {"password": [problem]})
    user.password_hash = hash_password(password)
    user.session_epoch += 1


def change_own_password(user: User, old: str, new: str) -> None:
    if not password_matches(user, old):
        raise HTTPError(403, "The old password is wrong", {"old_password": ["wrong"]})
    set_password(user, new)
    db.session.commit()


@dataclass
class NewToken:
    row: ApiToken
    token: str  # shown once, never stored


def create_token(user: User, name: str, days: int) -> NewToken:
    token = new_token()
    now = utcnow()
    row = ApiToken(
        user=user,
        name=name,
        token_hash=token_hash(token),
        prefix=token[:TOKEN_PREFIX_SHOWN],
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.session.add(row)
    db.session.commit()
    return NewToken(row, token)


def own_token_or_404(user: User, token_id: int) -> ApiToken:
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None:
        raise HTTPError(404, "No such token")
    return row


def revoke_token(row: ApiToken) -> None:
    row.revoked_at = utcnow()
    db.session.commit()


def active_tokens(user: User) -> list[ApiToken]:
    return list(
        db.session.scalars(
            select(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id)
        )
    )


def default_quotas() -> dict[str, int]:
    return {name: current_app.config[f"LTB_QUOTA_{name.upper()}"] for name in QUOTAS}


def quotas_of(user: User) -> dict[str, int]:
    """The user's quotas: their own where set, the platform's defaults elsewhere."""
    defaults = default_quotas()
    return {
        name: value if (value := getattr(user, f"quota_{name}")) is not None else defaults[name]
        for name in QUOTAS
    }


def create_user(
    username: str,
    password: str,
    role: str = Role.STUDENT.value,
    display_name: str | None = None,
    quotas: dict[str, int | None] | None = None,
) -> User:
    problem = username_problem(username)
    if problem:
        raise HTTPError(422, problem, {"username": [problem]})
    if db.session.scalars(select(User.id).where(User.username == username)).first():
        raise HTTPError(409, f"User {username} exists already", {"username": ["taken"]})
    user = User(
        username=username,
        display_name=display_name,
        role=Role(role).value,
        disabled=False,
        session_epoch=0,
        created_at=utcnow(),
        password_hash="",
    )
    set_password(user, password)
    for name, value in (quotas or {}).items():
        setattr(user, f"quota_{name}", value)
    db.session.add(user)
    db.session.commit()
    return user


def _refuse_self(admin: User, user: User, what: str) -> None:
    # An admin who disables, demotes or deletes themselves may leave nobody to undo it.
    if admin.id == user.id:
        raise HTTPError(409, f"Admins cannot {what} themselves; ask another admin")


def update_user(admin: User, user: User, changes: dict[str, Any]) -> User:
    """Apply an admin's changes: display name, role, disabled, password, quotas."""
    if "disabled" in changes and changes["disabled"] != user.disabled:
        if changes["disabled"]:
            _refuse_self(admin, user, "disable")
        user.disabled = changes["disabled"]
        user.session_epoch += 1
    if "role" in changes and changes["role"] != user.role:
        _refuse_self(admin, user, "change the role of")
        user.role = Role(changes["role"]).value
    if "display_name" in changes:
        user.display_name = changes["display_name"]
    if "password" in changes:
        set_password(user, changes["password"])
    for name, value in (changes.get("quotas") or {}).items():
        setattr(user, f"quota_{name}", value)
    db.session.commit()
    return user


def delete_user(admin: User, user: User) -> None:
    """Delete a user who owns nothing that runs or is booked; 409 names what they own."""
    _refuse_self(admin, user, "delete")
    owned = {
        "labs": select(func.count()).select_from(Lab).where(Lab.owner_id == user.id),
        "reservations": select(func.count())
        .select_from(Reservation)
        .where(Reservation.owner_id == user.id),
        "templates": select(func.count()).select_from(Template).where(Template.owner_id == user.id),
        "courses taught": select(func.count())
        .select_from(Course)
        .where(Course.teacher_id == user.id),
    }
    counts = {what: db.session.scalar(query) for what, query in owned.items()}
    held = {what: count for what, count in counts.items() if count}
    if held:
        listed = ", ".join(f"{count} {what}" for what, count in held.items())
        raise HTTPError(
            409, f"User {user.username} still owns {listed}; remove or disable instead", held
        )
    db.session.delete(user)
    db.session.commit()


def user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise HTTPError(404, "No such user")
    return user


def find_users(query: str | None = None):
    """Users by username, for the admin list (a select, paginated by the view)."""
    statement = select(User).order_by(User.username)
    if query:
        pattern = f"%{query.lower()}%"
        statement = statement.where(
            or_(User.username.like(pattern), func.lower(User.display_name).like(pattern))
        )
    return statement
