"""The LTB portal: a web application (APIFlask) over the lab store.

`create_app()` reads its settings from the environment (portal.settings); tests pass
`test_config`. One blueprint per area lives in portal/api/ (`BLUEPRINTS`); the rules they
apply are plain functions in the store and in portal's own modules, shared with the jobs and
the command line. The database schema comes from the store's migrations:
`flask --app portal db-upgrade` (or `python -m jobs migrate`).
"""

from __future__ import annotations

import importlib
from typing import Any

import click
from apiflask import APIFlask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from portal.access import LARGEST_ID
from portal.cli import users as users_cli
from portal.errors import register_error_handlers
from portal.inputs import refuse_nul_characters
from portal.metrics import init_metrics
from portal.openapi import PortalAPI
from portal.settings import load_settings
from portal.ui import register as register_pages
from store.db import db, upgrade_database

# The API's areas, each a module of portal/api with a blueprint `bp`.
BLUEPRINTS = (
    "auth",
    "users",
    "templates",
    "labs",
    "reservations",
    "courses",
    "usage",
    "keys",
    "bastion",
)


class IdConverter(IntegerConverter):
    """`<int:...>` in URLs: numbers past the store's integers do not match the rule (404)
    rather than reach the database and fail there (500)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", LARGEST_ID)
        super().__init__(url_map, *args, **kwargs)


def create_app(test_config: dict[str, Any] | None = None) -> APIFlask:
    app = PortalAPI(__name__, title="LTB portal API", version="1")
    app.url_map.converters["int"] = IdConverter
    app.config.from_mapping(load_settings())
    if test_config is not None:
        app.config.from_mapping(test_config)
    app.security_schemes = {
        "BearerAuth": {"type": "http", "scheme": "bearer"},
        "SessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
    }
    if app.config["LTB_PROXY_HOPS"]:
        # Behind nginx: the client's address (login throttling, logs) and scheme (https)
        # come from the proxy's X-Forwarded-* headers, trusted for that many proxies only.
        hops = app.config["LTB_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    db.init_app(app)
    register_error_handlers(app)
    app.before_request(refuse_nul_characters)
    init_metrics(app)
    app.cli.add_command(users_cli)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(f"portal.api.{name}").bp)
    register_pages(app)

    @app.cli.command("db-upgrade")
    def db_upgrade() -> None:
        """Create or migrate the database schema to the newest revision."""
        upgrade_database(app.config["SQLALCHEMY_DATABASE_URI"])
        click.echo("database schema is up to date")

    return app
