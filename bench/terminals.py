"""Web terminal benchmark: N concurrent terminals through the portal, each echoing keystrokes.

1. A scratch PostgreSQL database (made and dropped here), an rq worker of its own (Redis DB
   of LTB_TEST_REDIS_URL, default 10, its own queue) that deploys a one-container lab
   (`ws-bench-*`) owned by a bench user; the lab is removed at the end.
2. The portal under gunicorn as roles/platform_portal runs it (portal/gunicorn.conf.py, 2
   workers, 4 request threads each plus --per-worker terminal threads) on a free port, its
   terminal limits raised for one user to hold N terminals.
3. N WebSocket clients (simple-websocket) open the node's terminal at once, wait for the
   shell, then each types --keys characters one at a time; a keystroke's latency is the time
   from sending it until the node's echo of it arrives (browser -> portal -> SSH -> the
   node's pty -> back). While they type, a client times GET /api/auth/me: the API is not
   starved by the terminals.

Reported: keystroke echo latency p50/p90/p99/max, terminal open time, API latency under load,
and the portal's memory (RSS and PSS of gunicorn's master and workers) and threads before, with
the N terminals open, and after they closed; the same of the `ssh` clients the workers run (one
per terminal, outside gunicorn's RSS), and how many are left once the terminals closed (0).

    .venv/bin/python bench/terminals.py [--terminals 50] [--keys 20] [--label TEXT]

Results: a table on stdout and bench/results/terminals-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from simple_websocket import Client, ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import portal as bench_portal  # noqa: E402
from bench.measure import MIB, _read_pss, _read_stat  # noqa: E402
from bench.portal import Database, percentiles  # noqa: E402
from portal.auth import hash_password  # noqa: E402
from store.db import session_factory  # noqa: E402
from store.models import Job, Lab, Role, User, utcnow  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TOPOLOGY = "name: {name}\nnodes:\n  n1: {{}}\n"
PASSWORD = uuid.uuid4().hex
DEPLOY_SECONDS = 300
# A key not echoed in this time is counted as lost (and its terminal types on) rather than
# ending the run.
KEY_SECONDS = 10


class Worker:
    """`python -m jobs worker` on the scratch database and a queue of its own."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.env = dict(
            os.environ,
            LTB_DATABASE_URL=database_url,
            LTB_REDIS_URL=os.environ.get("LTB_TEST_REDIS_URL", "redis://127.0.0.1:6379/10"),
            LTB_QUEUE=f"ltb-bench-{uuid.uuid4().hex[:6]}",
            LTB_JOBS_DIR=str(workdir / "runs"),
        )
        self.log = open(workdir / "worker.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobs", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, lab: str, task: str, **fields: Any) -> None:
        """Submit a task through the job layer and wait until it succeeded."""
        code = (
            "import json, sys; from jobs.queue import submit; "
            "print(submit(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3])))"
        )
        job_id = subprocess.run(
            [sys.executable, "-c", code, lab, task, json.dumps(fields)],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        sessions = session_factory(self.env["LTB_DATABASE_URL"])
        deadline = time.monotonic() + DEPLOY_SECONDS
        while time.monotonic() < deadline:
            with sessions() as session:
                job = session.get(Job, job_id)
                if job.status not in ("queued", "started"):
                    if job.status != "successful":
                        raise RuntimeError(f"{task} of {lab}: {job.status} {job.result}")
                    return
            time.sleep(1)
        raise RuntimeError(f"{task} of {lab} did not end in {DEPLOY_SECONDS} s")

    def close(self) -> None:
        for _ in range(2):  # rq: the second SIGTERM stops a running job
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    continue
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


class Portal(bench_portal.Portal):
    """gunicorn serving the portal (bench.portal.Portal), with bench terminal limits."""

    def __init__(self, database_url: str, workdir: Path, per_worker: int) -> None:
        super().__init__(
            database_url,
            workdir,
            workers=2,
            threads=4,
            LTB_TERMINALS_PER_WORKER=str(per_worker),
            LTB_TERMINALS_PER_USER="1000",
        )

    def usage(self) -> dict[str, Any]:
        """RSS and PSS (MiB) and threads of gunicorn's master and workers, summed; and the
        same of the workers' `ssh` children (one per open terminal, portal.terminal.SshSession):
        their memory is not in gunicorn's RSS."""
        workers = children(self.process.pid)
        portal = [self.process.pid, *workers]
        ssh = [pid for worker in workers for pid in children(worker) if is_ssh(pid)]
        return {
            "processes": len(portal),
            **memory(portal),
            "ssh": {"processes": len(ssh), **memory(ssh)},
        }


def memory(pids: list[int]) -> dict[str, float]:
    """Summed RSS and PSS (MiB, PSS: shared pages divided among the processes sharing them)
    and threads of processes; one that ended meanwhile counts as nothing."""
    rss = pss = threads = 0
    for pid in pids:
        stat = _read_stat(str(pid))
        if stat is None:
            continue
        rss += stat.rss
        threads += _threads(pid)
        pss += _read_pss(pid)
    return {"rss_mib": round(rss / MIB, 1), "pss_mib": round(pss / MIB, 1), "threads": threads}


def is_ssh(pid: int) -> bool:
    stat = _read_stat(str(pid))
    return stat is not None and stat.comm == b"ssh"


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except (FileNotFoundError, ProcessLookupError):
        return 0


def children(pid: int) -> list[int]:
    """The child processes of a process: /proc lists them per thread that started them (the
    workers start ssh from their request and terminal threads), so all its threads are read."""
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(child) for child in path.read_text().split()]
    return found


def make_user(database_url: str, prefix: str = "ws-bench-") -> tuple[int, str]:
    """A student with the bench's password, named PREFIX<random>; its id and name."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    with session_factory(database_url)() as session:
        user = User(
            username=name,
            password_hash=hash_password(PASSWORD),
            role=Role.STUDENT.value,
            disabled=False,
            session_epoch=0,
            created_at=utcnow(),
        )
        session.add(user)
        session.commit()
        return user.id, name


class Terminal:
    """One raw WebSocket terminal, typing one character at a time and timing its echo."""

    def __init__(self, url: str, cookie: str, origin: str) -> None:
        started = time.perf_counter()
        self.client = Client.connect(url, headers={"Cookie": cookie, "Origin": origin})
        self.seen = b""
        # bash's readline is ready (it turns bracketed paste on as it prints the prompt):
        # "#" alone also matches the motd's kernel version ("#1 SMP"), and keys typed before
        # the prompt may be lost.
        self.wait_for(b"\x1b[?2004h", 60)
        self.open_ms = (time.perf_counter() - started) * 1000
        self.opening = self.seen  # what the node said until its prompt
        self.lost: list[str] = []  # keys not echoed within KEY_SECONDS, with what came

    def wait_for(self, wanted: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {wanted!r} in {self.seen[-200:]!r}")
            data = self.client.receive(timeout=1)
            if data:
                self.seen += data if isinstance(data, bytes) else data.encode()

    def echo_ms(self, keys: int, pause: float) -> list[float]:
        times = []
        letters = string.ascii_letters
        for index in range(keys):
            key = letters[index % len(letters)].encode()
            self.seen = b""
            sent = time.perf_counter()
            self.client.send(key)
            try:
                self.wait_for(key, KEY_SECONDS)
            except TimeoutError:
                self.lost.append(f"{key!r} after {self.seen[-120:]!r}")
                continue
            times.append((time.perf_counter() - sent) * 1000)
            time.sleep(pause)
        self.client.send(b"\x15")  # Ctrl-U: the typed line is dropped
        return times

    def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.client.close()


def api_latency(base: str, cookie: str, stop: threading.Event) -> list[float]:
    times = []
    with requests.Session() as session:
        while not stop.is_set():
            started = time.perf_counter()
            answer = session.get(f"{base}/api/auth/me", headers={"Cookie": cookie}, timeout=30)
            answer.raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.2)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=50)
    parser.add_argument("--keys", type=int, default=20, help="keystrokes per terminal")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between keys")
    parser.add_argument("--opening", type=int, default=8, help="terminals opening at once")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    # Connections are not shared evenly by the two workers: either may get all of them.
    per_worker = args.terminals

    workdir = Path(tempfile.mkdtemp(prefix="ltb-bench-terminals-"))
    database = Database()
    worker = Worker(database.url, workdir)
    lab = f"ws-bench-{uuid.uuid4().hex[:6]}"
    deployed = False
    try:
        user_id, username = make_user(database.url)
        worker.run(lab, "deploy", topology=TOPOLOGY.format(name=lab), owner_id=user_id)
        deployed = True
        with session_factory(database.url)() as session:
            lab_id = session.query(Lab).filter_by(name=lab).one().id
        portal = Portal(database.url, workdir, per_worker)
        try:
            result = measure(portal, lab_id, username, args)
        finally:
            portal.close()
    finally:
        try:
            if deployed:
                worker.run(lab, "remove")
        finally:
            worker.close()
            database.close()
            shutil.rmtree(workdir, ignore_errors=True)
    result |= {
        "label": args.label,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "terminals": args.terminals,
        "keys_per_terminal": args.keys,
        "opening_at_once": args.opening,
        "gunicorn": {"workers": 2, "request_threads": 4, "terminal_threads": per_worker},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"terminals-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(portal: Portal, lab_id: int, username: str, args) -> dict[str, Any]:
    login = requests.post(
        f"{portal.base}/api/auth/login",
        json={"username": username, "password": PASSWORD},
        timeout=30,
    )
    login.raise_for_status()
    cookie = f"session={login.cookies['session']}"
    url = f"ws://127.0.0.1:{portal.port}/labs/{lab_id}/nodes/n1/terminal/socket"
    # simple-websocket's client sends the Host header without the port.
    origin = "http://127.0.0.1"
    before = portal.usage()
    with ThreadPoolExecutor(args.terminals) as pool:
        # Opened --opening at a time: the node's sshd drops unauthenticated connections past
        # its MaxStartups (10), as a node would for 50 people pressing "Terminal" at once.
        with ThreadPoolExecutor(args.opening) as openers:
            terminals = list(
                openers.map(lambda _: Terminal(url, cookie, origin), range(args.terminals))
            )
        stop = threading.Event()
        try:
            opened = portal.usage()
            api = pool.submit(api_latency, portal.base, cookie, stop)
            echoes = list(pool.map(lambda t: t.echo_ms(args.keys, args.pause), terminals))
            during = portal.usage()
            stop.set()
            api_ms = api.result()
        finally:
            stop.set()  # also when typing failed: the pool's exit waits for this client
            for terminal in terminals:
                terminal.close()
    time.sleep(5)
    after = portal.usage()
    if after["ssh"]["processes"]:
        print(f"{after['ssh']['processes']} ssh processes left after the terminals closed")
    echoed = [ms for one in echoes for ms in one]
    return {
        "echo_ms": percentiles(echoed) if echoed else {"count": 0},
        "open_ms": percentiles([t.open_ms for t in terminals]),
        "api_me_ms_while_typing": percentiles(api_ms),
        "portal_before": before,
        "portal_open": opened,
        "portal_typing": during,
        "portal_after": after,
        "ssh_left_after_close": after["ssh"]["processes"],
        "keys_lost": sum(len(t.lost) for t in terminals),
        "lost": [
            {"opening": t.opening[-300:].decode(errors="replace"), "keys": t.lost}
            for t in terminals
            if t.lost
        ][:5],
    }


if __name__ == "__main__":
    main()
