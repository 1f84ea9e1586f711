"""`flask --app portal users ...`: what an operator does before any admin exists."""

from __future__ import annotations

import os
from pathlib import Path

import click
from apiflask import HTTPError
from flask.cli import AppGroup
from sqlalchemy import select

from portal.users import create_user
from store.db import db
from store.models import Role, User

users = AppGroup("users", help="Manage portal users from the command line.")


@users.command("create-admin")
@click.argument("username")
@click.option(
    "--exists-ok",
    is_flag=True,
    help="Succeed without a change when USERNAME is an admin already (for setup scripts).",
)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Read the password from this file (its first line) instead.",
)
def create_admin(username: str, exists_ok: bool, password_file: str | None) -> None:
    """Make USERNAME an admin user; the password comes from --password-file,
    LTB_ADMIN_PASSWORD or a prompt."""
    existing = db.session.scalars(select(User).where(User.username == username)).first()
    if existing is not None:
        if exists_ok and existing.role == Role.ADMIN:
            click.echo(f"admin {username} exists already; nothing changed")
            return
        raise click.ClickException(
            f"user {username} exists already (role {existing.role}); nothing changed. "
            "Change it through the API (PATCH /api/users/ID) or pick another name."
        )
    if password_file:
        password = (Path(password_file).read_text().splitlines() or [""])[0]
    else:
        password = os.environ.get("LTB_ADMIN_PASSWORD") or click.prompt(
            f"Password for {username}", hide_input=True, confirmation_prompt=True
        )
    try:
        create_user(username, password, Role.ADMIN.value)
    except HTTPError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"admin {username} created")
