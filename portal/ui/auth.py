"""Log in and out in the browser: the same rules as the API (portal.users.authenticate,
throttling included), shown as a form with its error next to it."""

from __future__ import annotations

from apiflask import HTTPError
from flask import redirect, render_template, request, url_for

from portal.auth import end_session, start_session
from portal.ui import bp, safe_next
from portal.users import authenticate


@bp.get("/login")
def login():
    return render_template("login.html", next=request.args.get("next", ""), error=None)


@bp.post("/login")
def login_post():
    username = request.form.get("username", "")
    target = request.form.get("next", "")
    try:
        user = authenticate(username, request.form.get("password", ""), request.remote_addr or "")
    except HTTPError as error:
        status = 429 if error.status_code == 429 else 401
        page = render_template("login.html", next=target, error=error.message, username=username)
        return page, status
    start_session(user)
    return redirect(safe_next(target))


@bp.post("/logout")
def logout():
    end_session()
    return redirect(url_for("ui.login"))
