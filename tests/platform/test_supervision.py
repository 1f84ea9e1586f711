"""The platform's own daemons are supervised (roles/platform_daemon): a daemon that dies is
started again by systemd (Restart=on-failure) or, without systemd, by supervisord
(autorestart). Killed with SIGKILL, as a crash or the OOM killer would, the portal's gunicorn
master and an rq worker are back and answering within seconds: the portal's login page
through nginx, the worker registered in Redis.

Runs after test_site_from_nothing.py (tests/platform/conftest.py) on the running platform,
and leaves it running: it kills a worker only while it is idle, so no one's job dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from redis import Redis
from rq import Worker

ROOT = Path(__file__).parents[2]
SITE = "https://127.0.0.1"
CERTIFICATE = "/etc/ltb/tls/ltb.crt"
# How long a killed daemon may take to answer again.
BACK_WITHIN = 20

pytestmark = pytest.mark.integration


def role_default(role: str, name: str):
    return yaml.safe_load((ROOT / "roles" / role / "defaults/main.yml").read_text())[name]


PORTAL = role_default("platform_portal", "platform_portal_name")
REDIS_URL = role_default("platform_jobs", "platform_jobs_redis_url")
WORKER_COUNT = role_default("platform_jobs", "platform_jobs_workers")
WORKERS = [f"ltb-worker-{n}" for n in range(1, WORKER_COUNT + 1)]


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()  # what sd_booted() checks


def main_pid(daemon: str) -> int:
    """The pid of the daemon's main process, as its supervisor knows it (0: none)."""
    if systemd_runs():
        argv = ["systemctl", "show", "--property", "MainPID", "--value", daemon]
    else:
        argv = ["supervisorctl", "pid", daemon]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    value = done.stdout.strip()
    return int(value) if value.isdigit() else 0


def login_page_status() -> int:
    session = requests.Session()
    session.trust_env = False
    session.verify = CERTIFICATE
    try:
        return session.get(f"{SITE}/login", timeout=5).status_code
    except requests.RequestException:
        return 0


def registered_worker(redis: Redis, pid: int) -> Worker | None:
    """The rq worker of that pid on this host (jobs.worker names them ltb.<host>.<pid>)."""
    name = f"ltb.{socket.gethostname()}.{pid}"
    return next((w for w in Worker.all(connection=redis) if w.name == name), None)


def wait_for(what: str, check, seconds: float = BACK_WITHIN):
    """check()'s first true value, polled until `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s")
        time.sleep(0.25)


def started_again(daemon: str, before: int) -> int:
    """The daemon's new pid, once its supervisor has started it again."""

    def new_pid() -> int:
        pid = main_pid(daemon)
        return pid if pid != before else 0

    return wait_for(f"{daemon} started again", new_pid)


def killed(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(f"process {pid} gone after SIGKILL", lambda: not Path(f"/proc/{pid}").exists(), 5)


def test_a_killed_portal_master_is_started_again_and_the_portal_answers_through_nginx():
    before = main_pid(PORTAL)
    assert before, f"{PORTAL} is not running under its supervisor"
    assert login_page_status() == 200
    started = time.monotonic()
    killed(before)
    after = started_again(PORTAL, before)
    wait_for("the login page through nginx answers 200", lambda: login_page_status() == 200)
    seconds = time.monotonic() - started
    print(f"{PORTAL}: killed pid {before}, pid {after} answers after {seconds:.1f} s")


def test_a_killed_worker_is_started_again_and_registers_in_redis():
    redis = Redis.from_url(REDIS_URL)

    def idle_worker() -> tuple[str, int] | None:
        # An idle worker's kill costs no one a job.
        for daemon in WORKERS:
            pid = main_pid(daemon)
            worker = registered_worker(redis, pid) if pid else None
            if worker is not None and worker.get_state() == "idle":
                return daemon, pid
        return None

    daemon, before = wait_for("an idle worker of the platform", idle_worker, 60)
    started = time.monotonic()
    killed(before)
    after = started_again(daemon, before)
    wait_for(f"{daemon} (pid {after}) registered in Redis", lambda: registered_worker(redis, after))
    seconds = time.monotonic() - started
    print(f"{daemon}: killed pid {before}, pid {after} registered after {seconds:.1f} s")
