"""Fixtures of the portal's API tests: the real application over a real PostgreSQL database
(one per test run, from tests/jobs/conftest.py), users of each role, logged in by the real
login endpoint or given real API tokens.

    def test_x(client, make_user, login, token_for):
        student = make_user("student")
        csrf = login(client, student)            # session cookie; send csrf on changes
        client.post("/api/...", headers={"X-CSRF-Token": csrf})
        token = token_for(make_user("admin"))    # for Authorization: Bearer <token>
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from jobs.queue import cancel
from portal.auth import new_token, token_hash
from store.models import (
    ApiToken,
    Job,
    JobStatus,
    Reservation,
    ReservationState,
    Role,
    Template,
    TemplateVersion,
    User,
    Visibility,
    utcnow,
)
from tests.app_config import TEST_PASSWORDS, portal_app
from tests.jobs.conftest import job_settings, store  # noqa: F401

PASSWORD = "correct horse battery"  # noqa: S105 - test users' password
_numbers = itertools.count()


@pytest.fixture(scope="session")
def roomy_inventory(tmp_path_factory) -> Path:
    """Hypervisors with room for any test: the run's database holds the labs of every test
    before (hostile, jobs), and they count against capacity. Capacity tests make their own."""
    inventory = tmp_path_factory.mktemp("inventory")
    (inventory / "hosts.yaml").write_text(
        "hypervisors:\n  hosts:\n    localhost:\n"
        "      ltb_capacity_cpus: 10000\n      ltb_capacity_memory: 10000GiB\n"
    )
    return inventory


@pytest.fixture(autouse=True)
def no_booking_outlives_its_test(store):  # noqa: F811
    """Reservations a test books and leaves scheduled are cancelled when it ends: the run's
    database is shared, and a later test that starts a scheduler would deploy them (the
    scheduler reconciles every scheduled reservation with rq-scheduler)."""
    with store() as session:
        before = session.scalar(select(func.coalesce(func.max(Reservation.id), 0)))
    yield
    with store.begin() as session:
        session.execute(
            update(Reservation)
            .where(
                Reservation.id > before,
                Reservation.state == ReservationState.SCHEDULED.value,
            )
            .values(state=ReservationState.CANCELLED.value)
        )


@pytest.fixture(autouse=True)
def no_queued_job_outlives_its_test(store):  # noqa: F811
    """Jobs a test queues and leaves queued (no worker of its own took them) are cancelled
    when it ends. The test flushes its Redis database but the job stays queued in the run's
    shared PostgreSQL database; the sweep of a later test's scheduler queues it again (a
    queued job Redis lost is queued again, jobs/health.py), and that test's worker deployed
    a lab nothing removed (test_access_matrix's POST /api/labs, late in a full run)."""
    began = utcnow()
    yield
    with store() as session:
        left = session.scalars(
            select(Job.id).where(Job.status == JobStatus.QUEUED.value, Job.enqueued_at >= began)
        ).all()
    for job_id in left:
        cancel(job_id)


@pytest.fixture
def app(job_settings, roomy_inventory):  # noqa: F811
    return portal_app(job_settings.database_url, roomy_inventory)


@pytest.fixture
def client(app):
    return app.test_client()


@functools.cache
def password_hash_of(password: str) -> str:
    """The argon2 hash of a test password, made once per password with TEST_PASSWORDS (the
    test apps' cheap hasher, tests/app_config.py)."""
    return TEST_PASSWORDS.hash(password)


def new_user(
    store,  # noqa: F811
    role: Role | str = Role.STUDENT,
    username: str | None = None,
    password: str = PASSWORD,
    prefix: str = "",
    **columns,
) -> User:
    """A user in the database, named `<prefix><role>-<random>` unless `username` is given. The
    user's password is also kept on the object as `user.password` (tests only). For fixtures
    of any scope; tests take `make_user`."""
    role = Role(role)
    name = username or f"{prefix}{role.value}-{uuid.uuid4().hex[:8]}{next(_numbers)}"
    with store() as session:
        user = User(
            username=name,
            password_hash=password_hash_of(password),
            role=role.value,
            disabled=False,
            session_epoch=0,
            created_at=utcnow(),
            **columns,
        )
        session.add(user)
        session.commit()
    user.password = password
    return user


def new_public_template(store, owner_id: int, name: str, topology: str) -> int:  # noqa: F811
    """A public template in the database with one version (number 1) of `topology`; its id."""
    now = utcnow()
    with store() as session:
        row = Template(
            owner_id=owner_id,
            name=name,
            visibility=Visibility.PUBLIC.value,
            created_at=now,
            updated_at=now,
        )
        row.versions.append(TemplateVersion(number=1, topology=topology, created_at=now))
        session.add(row)
        session.commit()
        return row.id


@pytest.fixture
def make_user(store) -> Callable[..., User]:  # noqa: F811
    """make_user(role, username=None, password=PASSWORD, **columns) -> User (new_user)."""

    def make(role: Role | str = Role.STUDENT, *args, **kwargs) -> User:
        return new_user(store, role, *args, **kwargs)

    return make


@pytest.fixture
def login() -> Callable:
    """login(client, user) -> the session's CSRF token (the client keeps the cookie)."""

    def log_in(client, user: User) -> str:
        answer = client.post(
            "/api/auth/login", json={"username": user.username, "password": user.password}
        )
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["csrf_token"]

    return log_in


@pytest.fixture
def token_for(store) -> Callable[..., str]:  # noqa: F811
    """token_for(user, days=30) -> a personal API token of the user, stored hashed."""

    def make(user: User, days: int = 30) -> str:
        token = new_token()
        now = utcnow()
        with store() as session:
            session.add(
                ApiToken(
                    user_id=user.id,
                    name="test",
                    token_hash=token_hash(token),
                    prefix=token[:12],
                    created_at=now,
                    expires_at=now + timedelta(days=days),
                )
            )
            session.commit()
        return token

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
