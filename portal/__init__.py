"""The LTB portal: a Flask application factory over the running-lab store.

`create_app()` reads its settings from the environment (LTB_DATABASE_URL); tests pass
`test_config`. The database schema comes from the migrations: `flask --app portal db-upgrade`.
"""

from __future__ import annotations

from typing import Any

import click
from flask import Flask

from store.db import database_url, db, upgrade_database


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        SQLALCHEMY_DATABASE_URI=database_url(),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
    )
    if test_config is not None:
        app.config.from_mapping(test_config)
    db.init_app(app)

    from portal import labs_api

    app.register_blueprint(labs_api.bp)

    @app.cli.command("db-upgrade")
    def db_upgrade() -> None:
        """Create or migrate the database schema to the newest revision."""
        upgrade_database(app.config["SQLALCHEMY_DATABASE_URI"])
        click.echo("database schema is up to date")

    return app
