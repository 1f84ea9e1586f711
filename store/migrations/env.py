"""Alembic environment of the portal's database; run through store.db.upgrade_database or
`flask --app portal db-upgrade`. The URL comes from the caller or LTB_DATABASE_URL."""

from alembic import context
from sqlalchemy import create_engine, pool

import store.models  # noqa: F401 - registers the tables on Base.metadata
from store.db import Base, database_url

config = context.config
url = config.attributes.get("url") or database_url()


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
