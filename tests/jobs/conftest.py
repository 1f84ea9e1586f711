"""Fixtures of the job-layer tests: real PostgreSQL, Redis, rq workers and the scheduler.

Each test run gets a fresh database (created from the one `make up` set up, migrated with the
Alembic migrations, dropped afterwards) and a Redis database of its own, flushed around each
test. Workers and the scheduler are the ordinary commands (`python -m jobs worker`,
`python -m jobs scheduler`), started as processes with the test settings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from jobs.settings import Settings, load
from ltb.resources import find_lab_resources
from store.db import DEFAULT_DATABASE_URL, session_factory, upgrade_database
from store.models import Job, JobStatus, Lab, Reservation
from tests.integration.conftest import (  # noqa: F401
    TOPOLOGIES,
    assert_no_leftovers,
    docker_client,
    remove,
    wait_until,
)

ROOT = Path(__file__).parents[2]
TEST_REDIS_URL = os.environ.get("LTB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# Long enough for a two-node deploy on a busy two-core machine.
TASK_WAIT = 240


def _admin_url() -> str:
    return os.environ.get("LTB_DATABASE_URL", DEFAULT_DATABASE_URL)


@pytest.fixture(scope="session")
def job_settings(tmp_path_factory) -> Iterator[Settings]:
    """Settings of this test run, also put in os.environ for the code the tests call."""
    # pool_pre_ping: a test may restart PostgreSQL (tests/hostile/test_job_faults.py).
    admin = create_engine(_admin_url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"ltb_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # pragma: no cover - shown when the services are missing
        pytest.fail(f"PostgreSQL of the job layer is not usable ({error}); run `make up`")
    url = make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    env = {
        "LTB_DATABASE_URL": url,
        "LTB_REDIS_URL": TEST_REDIS_URL,
        "LTB_QUEUE": "ltb-test",
        "LTB_JOBS_DIR": str(tmp_path_factory.mktemp("runs")),
        "LTB_SCHEDULER_INTERVAL": "1",
        "LTB_SWEEP_INTERVAL": "5",
        "LTB_TASK_TIMEOUT": "600",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield load()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def redis_db(job_settings) -> Iterator[Redis]:
    connection = Redis.from_url(job_settings.redis_url)
    try:
        connection.ping()
    except Exception as error:  # pragma: no cover
        pytest.fail(f"Redis of the job layer is not usable ({error}); run `make up`")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def store(job_settings):
    """Sessions on the test run's database."""
    return session_factory(job_settings.database_url)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class JobProcesses:
    """Workers and schedulers started by a test; all stopped when it ends."""

    logs: Path
    running: list[subprocess.Popen] = field(default_factory=list)

    def start(self, command: str, **env: str) -> subprocess.Popen:
        log = open(self.logs / f"{command}-{len(self.running)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "jobs", command],
            cwd=ROOT,
            env=dict(os.environ, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        # rq: a first SIGTERM waits for the running job, a second one stops it.
        for _ in range(2):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    continue
        self.kill(process)

    def kill(self, process: subprocess.Popen) -> None:
        """SIGKILL the process and everything it started (a worker dying with its machine)."""
        tree = [process.pid, *descendants(process.pid)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)

    def log(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.iterdir())


@pytest.fixture
def processes(tmp_path, redis_db) -> Iterator[JobProcesses]:
    started = JobProcesses(tmp_path)
    yield started
    for process in reversed(started.running):
        started.stop(process)


@pytest.fixture
def topology() -> Callable[[str, str], str]:
    """Topology text of a test lab: a file of tests/integration/topologies, renamed."""

    def make(template: str, name: str) -> str:
        return (TOPOLOGIES / template).read_text().replace("name: NAME", f"name: {name}")

    return make


def slow_pair(topology: Callable[[str, str], str], name: str, seconds: int) -> str:
    """pair.lab.yml whose deploy lasts at least `seconds` however fast the machine: b's startup
    hook sleeps that long, and deploy waits until b is ready (a plain pair deploys within a
    few seconds, too fast for a test that must catch its deploy running)."""
    text = topology("pair.lab.yml", name).replace(
        "  b:\n", f'  b:\n    files: {{/etc/ltb/startup.sh: "sleep {seconds}\\n"}}\n'
    )
    assert f"sleep {seconds}" in text
    return text


def wait_for(check: Callable[[], Any], timeout: float, what: str, procs: JobProcesses) -> Any:
    value = wait_until(check, timeout, interval=0.2)  # a query of the store
    assert value, f"timed out waiting for {what}\n{procs.log()}"
    return value


def job_row(store, job_id: str) -> Job:
    with store() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def lab_row(store, name: str) -> Lab | None:
    with store() as session:
        return session.query(Lab).filter_by(name=name).one_or_none()


def reservation_row(store, reservation_id: int) -> Reservation:
    with store() as session:
        return session.get(Reservation, reservation_id)


def job_ended(store, job_id: str) -> Job | None:
    job = job_row(store, job_id)
    return job if job.status not in ("queued", "started") else None


@pytest.fixture
def cleanup(tmp_path):
    """Labs a test deploys; whatever a failing test leaves is removed by the playbook."""
    labs: dict[str, str] = {}
    yield labs
    for name, topology_text in labs.items():
        if not find_lab_resources(name).empty():
            path = tmp_path / f"{name}.lab.yml"
            path.write_text(topology_text)
            remove(path)


def run_to_end(store, processes, job_id: str) -> Job:
    """The job's row once it has ended (or fail with the processes' log)."""
    return wait_for(lambda: job_ended(store, job_id), TASK_WAIT, f"job {job_id}", processes)


def reservation_runs_its_course(store, processes, reservation_id: int, lab: str) -> None:
    """The reservation's lab is deployed at its start (on time, not late) and removed at its
    end, leaving nothing."""
    wait_for(
        lambda: reservation_row(store, reservation_id).deploy_job_id, 60, "the start", processes
    )
    started = reservation_row(store, reservation_id)
    assert not started.late
    deployed = run_to_end(store, processes, started.deploy_job_id)
    assert deployed.status == JobStatus.SUCCESSFUL, deployed.result
    wait_for(
        lambda: reservation_row(store, reservation_id).remove_job_id, 120, "the end", processes
    )
    removal = run_to_end(store, processes, reservation_row(store, reservation_id).remove_job_id)
    assert removal.status == JobStatus.SUCCESSFUL, removal.result
    assert_no_leftovers(lab)
