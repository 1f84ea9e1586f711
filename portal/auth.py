"""Who is calling, and may they: personal API tokens and browser sessions, and roles.

A request is made by the user of its API token (`Authorization: Bearer ltb_...`) or of its
session cookie (set by logging in). A session request that changes something (any method
but GET, HEAD and OPTIONS) must also carry the session's CSRF token in `X-CSRF-Token`; a
token request needs none (a browser never adds that header by itself).

Passwords are stored as argon2id hashes, tokens as their SHA-256 (a token is random, 256
bits: a slow hash adds nothing); neither is ever stored or logged as given.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from apiflask import HTTPError
from apiflask.scaffold import _annotate
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, has_app_context, request, session
from sqlalchemy import select

from store.db import db
from store.models import ApiToken, Role, User, utcnow

PASSWORDS = PasswordHasher()
TOKEN_PREFIX = "ltb_"  # noqa: S105 - a marker that tells LTB tokens apart, not a secret
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# last_used_at of a token is written at most this often (a write per request is waste).
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
SECURITY = [{"BearerAuth": []}, {"SessionCookie": []}]


def password_hasher() -> PasswordHasher:
    """argon2 with its default (RFC 9106) parameters. Only a test application may be given a
    cheaper one, as the object `LTB_TEST_PASSWORD_HASHER` of its test_config: no setting of
    the environment or a file reaches it (portal/settings.py reads none)."""
    if has_app_context():
        return current_app.config.get("LTB_TEST_PASSWORD_HASHER") or PASSWORDS
    return PASSWORDS


def hash_password(password: str) -> str:
    return password_hasher().hash(password)


def password_matches(user: User, password: str) -> bool:
    """Check the password; rehash it when argon2's parameters have changed since (a hash
    holds its own parameters, so any older one still verifies)."""
    hasher = password_hasher()
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return True


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new personal API token, as shown once to its user."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def start_session(user: User) -> str:
    """Log the browser in as `user`; return the session's CSRF token."""
    session.clear()
    session.permanent = True
    session["user_id"] = user.id
    session["epoch"] = user.session_epoch
    session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def end_session() -> None:
    session.clear()


def _user_of_token(header: str) -> User | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        return None
    # The token and its user in one query: this runs on every API request (the polled lab
    # answers too, bench/portal.py), where a second round trip was a quarter of a lab's time.
    # Nothing is cached: a revoked token or a disabled user is refused at once, by any worker.
    found = db.session.execute(
        select(ApiToken, User)
        .join(ApiToken.user)
        .where(ApiToken.token_hash == token_hash(token.strip()))
    ).first()
    now = utcnow()
    if found is None:
        return None
    row, user = found
    if row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_RESOLUTION:
        row.last_used_at = now
        db.session.commit()
    return user


def _user_of_session() -> User | None:
    user_id = session.get("user_id")
    if user_id is None:
        return None
    user = db.session.get(User, user_id)
    # A changed password or a disabled user ends every session made before.
    if user is None or session.get("epoch") != user.session_epoch:
        return None
    if request.method not in SAFE_METHODS and not secrets.compare_digest(
        request.headers.get(CSRF_HEADER, ""), session.get("csrf", "")
    ):
        raise HTTPError(403, "Missing or wrong CSRF token", {"header": CSRF_HEADER})
    return user


def current_user() -> User | None:
    """The user who makes this request, or None (anonymous, expired or revoked)."""
    if "user" not in g:
        header = request.headers.get("Authorization")
        user = _user_of_token(header) if header else _user_of_session()
        g.user = user if user is not None and not user.disabled else None
    return g.user


def login_required(*roles: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The view needs a logged-in user, of one of `roles` if any are given. Objects are
    checked by the view (portal.access): a user who may not see one gets 404."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                raise HTTPError(401, "Log in, or give a valid API token")
            if roles and user.role not in roles:
                raise HTTPError(403, f"Only {' or '.join(roles)} users may do this")
            return view(*args, **kwargs)

        _annotate(wrapper, security=SECURITY)
        return wrapper

    return decorator
