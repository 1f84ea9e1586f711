"""Connections to Redis and PostgreSQL from the settings."""

from __future__ import annotations

from redis import Redis
from rq import Queue
from sqlalchemy.orm import sessionmaker

from jobs.settings import Settings
from store.db import session_factory


def redis(settings: Settings) -> Redis:
    return Redis.from_url(settings.redis_url)


def queues(settings: Settings, connection: Redis | None = None) -> tuple[Queue, Queue]:
    """(control queue, task queue): workers serve them in this order."""
    connection = connection or redis(settings)
    return (
        Queue(settings.control_queue, connection=connection),
        Queue(settings.queue, connection=connection),
    )


def sessions(settings: Settings) -> sessionmaker:
    return session_factory(settings.database_url)
