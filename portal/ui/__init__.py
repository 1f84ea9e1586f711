"""The portal in the browser: server-rendered pages (Jinja) with a little JavaScript (htmx),
over the same rules as the API (portal/*.py, store/). One module per area in portal/ui/
registers its routes on `bp`; pages are in portal/ui/pages/, static files in portal/ui/static/
(JavaScript packages from npm are copied to static/vendor/ by `make up`, never from a CDN).

Every page needs a logged-in user (else a redirect to the login page) and checks objects with
portal.access like the API: another user's lab is a 404 page. Every form and htmx request
that changes something carries the session's CSRF token (a hidden `csrf` field, or the
`X-CSRF-Token` header that base.html sets for htmx).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from apiflask import APIBlueprint, HTTPError
from flask import current_app, redirect, render_template, request, session, url_for
from werkzeug.exceptions import HTTPException

from portal.auth import current_user

bp = APIBlueprint(
    "ui",
    __name__,
    template_folder="pages",
    static_folder="static",
    static_url_path="/ui/static",
    enable_openapi=False,
)
# The areas of the UI, each a module of portal/ui that adds its routes to `bp`.
PAGES = (
    "auth",
    "dashboard",
    "templates",
    "labs",
    "reservations",
    "courses",
    "admin",
    "terminal",
    "usage",
    "keys",
)


def page_login_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A page for logged-in users (of `roles`, if given): others go to the login page."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None:
                return redirect(url_for("ui.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                raise HTTPError(403, "Your role may not use this page")
            return view(*args, **kwargs)

        return wrapper

    return decorator


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a path of this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("ui.dashboard")
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else url_for("ui.dashboard")


def csrf_token() -> str:
    """The session's CSRF token (made for a session that has none yet, e.g. the login form)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


@bp.before_request
def check_csrf() -> None:
    # current_user() checks X-CSRF-Token for a logged-in session; forms send a field.
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf", "")
    if not secrets.compare_digest(sent, session.get("csrf", "")):
        raise HTTPError(403, "This form has expired; reload the page and try again")
    if "X-CSRF-Token" not in request.headers:
        # A form post: let portal.auth find the token where it looks for it.
        request.environ["HTTP_X_CSRF_TOKEN"] = sent


def has_page(endpoint: str) -> bool:
    """Whether the UI has this page (navigation shows only pages that exist)."""
    return endpoint in current_app.view_functions


def page_user():
    """The logged-in user for a page's header and navigation. A post whose CSRF token is wrong
    has no user (current_user refuses it): its error page is shown logged out, not a 500."""
    try:
        return current_user()
    except HTTPError:
        return None


@bp.app_context_processor
def page_globals() -> dict[str, Any]:
    return {"current_user": page_user, "csrf_token": csrf_token, "has_page": has_page}


@bp.errorhandler(HTTPException)
@bp.errorhandler(HTTPError)
def error_page(error: Exception):
    """Errors of pages are pages, in words: never JSON, never a stack trace."""
    status = getattr(error, "status_code", None) or getattr(error, "code", None) or 500
    message = getattr(error, "message", None) or getattr(error, "description", None)
    return render_template("error.html", status=status, message=message), status


def register(app) -> None:
    import importlib

    for name in PAGES:
        importlib.import_module(f"portal.ui.{name}")
    app.register_blueprint(bp)
