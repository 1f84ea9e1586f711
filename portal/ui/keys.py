"""The page of my SSH keys: list, add (pasted from a .pub file) and delete them, and how to
reach a lab's nodes with them through the bastion. The rules are the API's (portal.keys)."""

from __future__ import annotations

from apiflask import HTTPError
from flask import flash, redirect, render_template, request, url_for

from portal import keys as rules
from portal.auth import current_user
from portal.ui import bp, page_login_required


def _keys_page(error=None, form=None, status=200):
    host, port = rules.bastion_address()
    page = render_template(
        "keys.html",
        keys=rules.user_keys(current_user()),
        error=error,
        form=form or {},
        bastion=f"{rules.BASTION_USER}@{host}" + (f":{port}" if port != 22 else ""),
    )
    return page, status


@bp.get("/keys")
@page_login_required()
def keys():
    return _keys_page()


@bp.post("/keys")
@page_login_required()
def key_add():
    form = {"name": request.form.get("name", ""), "public_key": request.form.get("public_key", "")}
    try:
        row = rules.add_key(current_user(), form["name"].strip(), form["public_key"])
    except HTTPError as error:
        return _keys_page(error=error, form=form, status=error.status_code)
    flash(f"Key {row.name} added ({row.fingerprint}).")
    return redirect(url_for("ui.keys"), 303)


@bp.post("/keys/<int:key_id>/delete")
@page_login_required()
def key_delete(key_id: int):
    row = rules.key_or_404(current_user(), key_id)
    name = row.name
    rules.delete_key(current_user(), row.id)
    flash(f"Key {name} deleted: new connections with it are refused.")
    return redirect(url_for("ui.keys"), 303)
