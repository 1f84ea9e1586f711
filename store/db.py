"""The lab store's database: one SQLAlchemy metadata for the portal, the jobs and the migrations.

The models are plain SQLAlchemy classes (`Base`), so the Flask app uses them through
Flask-SQLAlchemy (`db.session`) and the jobs, which run outside any app, through
`session_factory(url)`. The schema is made by the Alembic migrations in store/migrations.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase, sessionmaker

DEFAULT_DATABASE_URL = "postgresql+psycopg://ltb:ltb@127.0.0.1:5432/ltb"
MIGRATIONS = Path(__file__).parent / "migrations"


def database_url() -> str:
    return os.environ.get("LTB_DATABASE_URL", DEFAULT_DATABASE_URL)


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


@cache
def _engine(url: str, pid: int) -> Engine:
    # One engine per process: a forked rq work horse must not share its parent's connections.
    return create_engine(url, pool_pre_ping=True)


def engine(url: str | None = None) -> Engine:
    return _engine(url or database_url(), os.getpid())


def session_factory(url: str | None = None) -> sessionmaker:
    """Sessions for code that runs outside the Flask app (jobs, scheduler, tests)."""
    return sessionmaker(engine(url), expire_on_commit=False)


def upgrade_database(url: str | None = None, revision: str = "head") -> None:
    """Bring the schema of the database at `url` to `revision` with the Alembic migrations."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url or database_url()
    command.upgrade(config, revision)
