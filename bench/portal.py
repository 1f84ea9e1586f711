"""Portal benchmark: latency of the lab API under 50 concurrent clients.

1. A scratch PostgreSQL database (made and dropped here) is filled with users, 1,000 labs of
   3 nodes (2 interfaces each, 3 links) and 10,000 jobs (10 per lab), by bulk inserts.
2. The portal runs under gunicorn as roles/platform_portal runs it (portal/gunicorn.conf.py:
   gthread workers, 2 processes of 4 threads unless --workers/--threads) on a free port.
3. Client processes (--client-processes, 5 unless told; each requests in a thread pool) run
   --clients concurrent clients between them, each alternating GET /api/labs (first page of
   20) and GET /api/labs/<random id>, with an admin API token, until --requests requests are
   done (after a short warm-up).

Reported per endpoint: p50, p90, p99 and max of the latency seen by the client, and of the
time gunicorn spent on the request (its access log, in ms: the client's latency minus this is
mostly waiting for a free worker thread); requests per second; and the SQL statements one
request of each endpoint makes (counted in-process with the same app).

    .venv/bin/python bench/portal.py [--requests 4000] [--clients 50] [--think-ms 0] [--revalidate]
        [--workers 2 --threads 4] [--client-processes 5] [--label TEXT]
        [--variant NAME[:KEY=VALUE,...] ... [--rounds 3]]

With --variant (twice or more), the same database serves every variant and each round runs
them one after the other (A B A B ...: side by side in the same minutes, as the machine's
load moves); each run starts its own gunicorn with the variant's environment (KEY=VALUE, e.g.
LTB_PORTAL_THREADS=2), from the tree given as tree=DIR if any (an older checkout, for a
before/after of code). The medians over the rounds of each variant's percentiles are printed.

Results: a table on stdout and bench/results/portal-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.engine import make_url
from urllib3.util.retry import Retry

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from portal.auth import new_token, token_hash  # noqa: E402
from store.db import DEFAULT_DATABASE_URL, session_factory, upgrade_database  # noqa: E402
from store.models import (  # noqa: E402
    ApiToken,
    Connection,
    Interface,
    Job,
    Lab,
    Node,
    Role,
    User,
)

RESULTS = ROOT / "bench" / "results"
GUNICORN = [sys.executable, "-m", "gunicorn"]
LABS = 1000
NODES_PER_LAB = 3
JOBS_PER_LAB = 10
USERS = 50
TOPOLOGY = "name: {name}\nnodes:\n  r1: {{}}\n  r2: {{}}\n  r3: {{}}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "count": len(ordered),
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.fmean(ordered), 2),
    }


class Database:
    """A scratch database with the store's schema, dropped by close()."""

    def __init__(self) -> None:
        admin_url = os.environ.get("LTB_DATABASE_URL", DEFAULT_DATABASE_URL)
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.name = f"ltb_bench_portal_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        url = make_url(admin_url).set(database=self.name)
        self.url = url.render_as_string(hide_password=False)
        try:
            upgrade_database(self.url)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    def fill(self) -> str:
        """Users, labs with nodes, interfaces and links, jobs; return the admin's API token.
        Ids are given here (so rows can refer to each other in bulk); sequences are moved
        past them afterwards."""
        now = datetime.now(UTC)
        users = [
            {
                "id": 1,
                "username": "p6-admin",
                "password_hash": "-",
                "role": Role.ADMIN.value,
                "created_at": now,
            }
        ] + [
            {
                "id": i + 2,
                "username": f"p6-user{i}",
                "password_hash": "-",
                "role": Role.STUDENT.value,
                "created_at": now,
            }
            for i in range(USERS)
        ]
        labs, nodes, interfaces, connections, jobs = [], [], [], [], []
        states = ["running", "running", "removed", "failed", "deploying"]
        for lab_id in range(1, LABS + 1):
            name = f"p6-lab-{lab_id}"
            created = now - timedelta(minutes=LABS - lab_id)
            labs.append(
                {
                    "id": lab_id,
                    "name": name,
                    "owner_id": 2 + lab_id % USERS,
                    "title": f"Lab {lab_id}",
                    "topology": TOPOLOGY.format(name=name),
                    "state": states[lab_id % len(states)],
                    "hypervisor": "localhost",
                    "created_at": created,
                    "updated_at": created,
                }
            )
            link_ids = []
            for k in range(NODES_PER_LAB):
                link_id = (lab_id - 1) * NODES_PER_LAB + k + 1
                link_ids.append(link_id)
                connections.append(
                    {
                        "id": link_id,
                        "lab_id": lab_id,
                        "index": k,
                        "vlan": 10 + k,
                        "name": f"r{k + 1}:eth1--r{(k + 1) % NODES_PER_LAB + 1}:eth2",
                    }
                )
            for k in range(NODES_PER_LAB):
                node_id = (lab_id - 1) * NODES_PER_LAB + k + 1
                nodes.append(
                    {
                        "id": node_id,
                        "lab_id": lab_id,
                        "name": f"r{k + 1}",
                        "kind": "container",
                        "image": "ltb/node:latest",
                        "mgmt_ipv4": f"10.{lab_id // 250}.{lab_id % 250}.{k + 2}/24",
                    }
                )
                for j, link in enumerate((link_ids[k], link_ids[k - 1])):
                    interfaces.append(
                        {
                            "id": (node_id - 1) * 2 + j + 1,
                            "node_id": node_id,
                            "connection_id": link,
                            "name": f"eth{j + 1}",
                            "host_name": f"p6{node_id}e{j + 1}",
                            "ipv4": f"172.16.{k}.{j + 1}/30",
                        }
                    )
            for j in range(JOBS_PER_LAB):
                at = created + timedelta(seconds=10 * j)
                jobs.append(
                    {
                        "id": f"p6-{lab_id}-{j}",
                        "lab_id": lab_id,
                        "task": "deploy" if j % 2 == 0 else "remove",
                        "params": {},
                        "status": "successful",
                        "lab_state_before": "removed",
                        "enqueued_at": at,
                        "started_at": at,
                        "ended_at": at + timedelta(seconds=5),
                        "progress": {"tasks": 20, "done": 20},
                        "result": {"rc": 0, "tasks": 20},
                    }
                )
        token = new_token()
        sessions = session_factory(self.url)
        with sessions() as session:
            for model, rows in (
                (User, users),
                (Lab, labs),
                (Connection, connections),
                (Node, nodes),
                (Interface, interfaces),
                (Job, jobs),
            ):
                session.execute(insert(model), rows)
            session.add(
                ApiToken(
                    user_id=1,
                    name="bench",
                    token_hash=token_hash(token),
                    prefix=token[:12],
                    created_at=now,
                    expires_at=now + timedelta(days=1),
                    last_used_at=now,
                )
            )
            for table in ("users", "labs", "connections", "nodes", "interfaces"):
                # Table names of this list, not input.
                move = f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))"  # noqa: S608
                session.execute(text(move))
            session.commit()
            session.execute(text("ANALYZE"))
        return token


class Portal:
    """gunicorn serving portal:create_app() on 127.0.0.1:PORT, with its access log."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        workers: int,
        threads: int,
        tree: Path = ROOT,
        **settings: str,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "gunicorn.log"
        env = dict(
            os.environ,
            LTB_DATABASE_URL=database_url,
            LTB_SECRET_KEY=uuid.uuid4().hex,
            LTB_SECURE_COOKIES="0",
            LTB_PORTAL_BIND=f"127.0.0.1:{self.port}",
            LTB_PORTAL_WORKERS=str(workers),
            LTB_PORTAL_THREADS=str(threads),
            PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        )
        env.update(settings)  # a variant's settings win (LTB_PORTAL_WORKERS=3, ...)
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*GUNICORN, "--config", "portal/gunicorn.conf.py", "portal:create_app()"],
            cwd=tree,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_it_answers()
        except BaseException:
            self.close()  # also on Ctrl-C: no gunicorn is left behind
            raise

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/api/auth/me", timeout=10).status_code == 401:
                    return
            except requests.RequestException:  # not listening yet, or still loading the app
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the portal did not start; its log:\n{self.log_path.read_text()}"
                )
            time.sleep(0.2)

    def server_ms(self) -> dict[str, list[float]]:
        """Milliseconds gunicorn spent per request, by endpoint, from its access log
        (format of portal/gunicorn.conf.py: `host "METHOD PATH" status bytes Mms`)."""
        found: dict[str, list[float]] = {"list": [], "show": []}
        for line in self.log_path.read_text().splitlines():
            match = re.search(r'"GET /api/labs(/\d+)?" (?:200|304) (?:\d+|-) (\d+)ms', line)
            if match:
                found["show" if match.group(1) else "list"].append(float(match.group(2)))
        return found

    def workers_cpu_s(self) -> float:
        """CPU seconds (user and system) the gunicorn workers have used so far: what the
        portal's requests cost, much less moved by the machine's load than their latency."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # after "pid (comm)": state ppid ... utime (14th field) stime (15th)
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # gone since listed
                continue
            if int(fields[1]) == self.process.pid:
                total += int(fields[11]) + int(fields[12])
        return total / ticks

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def count_queries(database_url: str, token: str) -> dict[str, int]:
    """SQL statements of one request of each endpoint, with the same app in this process."""
    from portal import create_app

    app = create_app(
        {"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": database_url}
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    counts = {}
    with app.app_context():
        from store.db import db

        engine = db.engine
    for endpoint, path in (("list", "/api/labs"), ("show", "/api/labs/500")):
        client.get(path, headers=headers)  # warm: the token's last use, caches
        statements = []

        def note(*args: Any, statements: list = statements) -> None:
            statements.append(args[2])

        event.listen(engine, "before_cursor_execute", note)
        try:
            assert client.get(path, headers=headers).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", note)
        counts[endpoint] = len(statements)
    return counts


def load(
    base: str,
    token: str,
    total: int,
    clients: int,
    think_ms: float = 0,
    revalidate: bool = False,
    processes: int = 1,
) -> dict[str, Any]:
    """`clients` clients, each with its own connection, alternating the two endpoints until
    `total` requests are done; latency per request in ms, as seen by the client. With
    `think_ms`, each client waits a random time of that mean between its requests (a browser
    polling a lab); without, each asks again at once (the server saturated). With
    `revalidate`, each client polls one lab of its own and sends back the ETags it was given
    (If-None-Match), as a browser's fetch does: a 304 counts as an answer. The clients are
    threads of `processes` processes: in one process, 50 client threads wait for its GIL,
    and the latency they note is partly their own."""
    processes = max(1, min(processes, clients))
    shares = [
        (base, token, total // processes + (k < total % processes), range(k, clients, processes))
        for k in range(processes)
    ]
    started = time.perf_counter()
    if processes == 1:
        parts = [_clients(*shares[0], think_ms, revalidate)]
    else:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(processes, mp_context=context) as pool:
            futures = [pool.submit(_clients, *share, think_ms, revalidate) for share in shares]
            parts = [future.result() for future in futures]
    wall = time.perf_counter() - started
    latencies = {k: [v for part in parts for v in part["latencies"][k]] for k in ("list", "show")}
    errors = [e for part in parts for e in part["errors"]]
    done = sum(len(v) for v in latencies.values())
    return {
        "wall_s": round(wall, 2),
        "requests_per_s": round(done / wall, 1),
        "client_processes": processes,
        "errors": errors[:20],
        "error_count": len(errors),
        "not_modified": sum(part["not_modified"] for part in parts),
        "latency_ms": {k: percentiles(v) for k, v in latencies.items() if v},
    }


def _clients(
    base: str, token: str, total: int, seeds: range, think_ms: float, revalidate: bool
) -> dict[str, Any]:
    """The client threads of one process (load): their latencies, by endpoint."""
    latencies: dict[str, list[float]] = {"list": [], "show": []}
    not_modified = [0]
    errors: list[str] = []
    lock = threading.Lock()
    left = [total]

    def client(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - which lab to ask for, not a secret
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        # gunicorn closes a connection idle for its keepalive (2 s); a client that paused
        # longer may send on a connection being closed and see it reset. A browser sends such
        # a GET again on a new connection: so does this client (never more than once).
        session.mount(base, requests.adapters.HTTPAdapter(max_retries=Retry(total=1, read=1)))
        turn = seed % 2
        own_lab = rng.randint(1, LABS)
        etags: dict[str, str] = {}
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            endpoint = "list" if turn == 0 else "show"
            turn ^= 1
            lab = own_lab if revalidate else rng.randint(1, LABS)
            path = "/api/labs" if endpoint == "list" else f"/api/labs/{lab}"
            headers = {"If-None-Match": etags[path]} if path in etags else {}
            if think_ms:
                time.sleep(rng.expovariate(1000 / think_ms))
            started = time.perf_counter()
            response = session.get(base + path, headers=headers, timeout=30)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status_code in (200, 304):
                    latencies[endpoint].append(elapsed)
                    not_modified[0] += response.status_code == 304
                    if revalidate and "ETag" in response.headers:
                        etags[path] = response.headers["ETag"]
                else:
                    errors.append(f"{path}: {response.status_code}")

    with ThreadPoolExecutor(len(seeds)) as pool:
        for future in [pool.submit(client, seed) for seed in seeds]:
            future.result()
    return {"latencies": latencies, "errors": errors, "not_modified": not_modified[0]}


def parse_variant(spec: str) -> tuple[str, Path, dict[str, str]]:
    """`NAME[:KEY=VALUE,...]`: the variant's name, tree (tree=DIR, else this one) and the
    environment its gunicorn gets."""
    name, _, rest = spec.partition(":")
    settings = dict(item.split("=", 1) for item in rest.split(",") if item)
    tree = Path(settings.pop("tree", ROOT)).resolve()
    if not (tree / "portal" / "gunicorn.conf.py").is_file():
        raise SystemExit(f"--variant {spec}: {tree} has no portal/gunicorn.conf.py")
    return name, tree, settings


def run_once(
    database_url: str, token: str, args: argparse.Namespace, tree: Path, settings: dict
) -> dict[str, Any]:
    """One gunicorn, warmed up, then the measured load: the clients' and the server's times."""
    with tempfile.TemporaryDirectory(prefix="ltb-bench-portal-") as workdir:
        portal = Portal(database_url, Path(workdir), args.workers, args.threads, tree, **settings)
        try:
            # warm-up, not counted
            load(portal.base, token, 200, args.clients, processes=args.client_processes)
            warm = {k: len(v) for k, v in portal.server_ms().items()}
            load_avg = os.getloadavg()
            cpu_before = portal.workers_cpu_s()
            run = load(
                portal.base,
                token,
                args.requests,
                args.clients,
                args.think_ms,
                args.revalidate,
                args.client_processes,
            )
            cpu_ms = (portal.workers_cpu_s() - cpu_before) * 1000 / args.requests
            server = {k: percentiles(v[warm[k] :]) for k, v in portal.server_ms().items() if v}
        finally:
            portal.close()
    return {
        "load_average_before": load_avg,
        **run,
        "server_ms": server,
        "portal_cpu_ms_per_request": round(cpu_ms, 2),
    }


def print_rows(queries: dict[str, int], client: dict, server: dict) -> None:
    print("  endpoint              queries   p50    p90    p99    max   (ms)")
    names = {"list": "GET /api/labs", "show": "GET /api/labs/<id>"}
    for key, name in names.items():
        for what, table in (("client", client), ("server", server)):
            row = table.get(key)
            if row:
                print(
                    f"  {name:<18} {what:<6} {queries[key]:>3}  {row['p50']:6.1f} "
                    f"{row['p90']:6.1f} {row['p99']:6.1f} {row['max']:6.1f}"
                )


def medians(runs: list[dict[str, Any]], table: str) -> dict[str, dict[str, float]]:
    """Per endpoint, the median over `runs` of each percentile of `table`."""
    return {
        key: {
            stat: round(statistics.median(run[table][key][stat] for run in runs), 1)
            for stat in ("p50", "p90", "p99", "max")
        }
        for key in ("list", "show")
        if all(key in run[table] for run in runs)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--client-processes",
        type=int,
        default=5,
        help="processes the clients' threads are spread over (1: all in this process)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0,
        help="mean pause of each client between its requests (0: none, the server saturated)",
    )
    parser.add_argument(
        "--revalidate",
        action="store_true",
        help="each client polls one lab and sends its ETags back (If-None-Match)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[:KEY=VALUE,...]",
        help="a gunicorn environment (tree=DIR: run that tree's portal) to compare; repeat",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the variants")
    args = parser.parse_args()
    variants = [parse_variant(spec) for spec in args.variant] or [("", ROOT, {})]
    rounds = args.rounds if args.variant else 1

    database = Database()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    try:
        filled = time.monotonic()
        token = database.fill()
        fill_s = round(time.monotonic() - filled, 2)
        queries = count_queries(database.url, token)
        for round_ in range(rounds):
            for name, tree, settings in variants:
                run = run_once(database.url, token, args, tree, settings)
                runs[name].append(run)
                if args.variant:
                    print(
                        f"round {round_ + 1} {name}: load {run['load_average_before'][0]:.2f}, "
                        f"{run['requests_per_s']} requests/s, {run['error_count']} errors, "
                        f"portal CPU {run['portal_cpu_ms_per_request']} ms/request"
                    )
                    print_rows(queries, run["latency_ms"], run["server_ms"])
    finally:
        database.close()

    report = {
        "label": args.label,
        "time": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "data": {"labs": LABS, "nodes_per_lab": NODES_PER_LAB, "jobs": LABS * JOBS_PER_LAB},
        "fill_s": fill_s,
        "gunicorn": {"workers": args.workers, "threads": args.threads},
        "clients": args.clients,
        "think_ms": args.think_ms,
        "revalidate": args.revalidate,
        "queries_per_request": queries,
    }
    if args.variant:
        report["variants"] = {
            name: {
                "tree": str(tree),
                "environment": settings,
                "runs": runs[name],
                "median_latency_ms": medians(runs[name], "latency_ms"),
                "median_server_ms": medians(runs[name], "server_ms"),
                "median_portal_cpu_ms_per_request": statistics.median(
                    run["portal_cpu_ms_per_request"] for run in runs[name]
                ),
            }
            for name, tree, settings in variants
        }
    else:
        run = runs[""][0]
        report |= run
        report["machine"]["load_average_before"] = run["load_average_before"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"portal-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))

    print(
        f"portal: {args.requests} requests, {args.clients} clients, gunicorn "
        f"{args.workers}x{args.threads} gthread; {args.client_processes} client processes; "
        f"think {args.think_ms:g} ms; fill {fill_s} s"
    )
    if args.variant:
        for name, _, _ in variants:
            loads = ", ".join(f"{r['load_average_before'][0]:.1f}" for r in runs[name])
            cpu = statistics.median(r["portal_cpu_ms_per_request"] for r in runs[name])
            print(
                f"{name}: median of {rounds} runs (load before each: {loads}); "
                f"portal CPU {cpu} ms/request"
            )
            print_rows(queries, medians(runs[name], "latency_ms"), medians(runs[name], "server_ms"))
    else:
        run = runs[""][0]
        print(
            f"  load before {run['load_average_before'][0]:.2f}; "
            f"{run['requests_per_s']} requests/s, {run['error_count']} errors, "
            f"{run['not_modified']} answered 304{' (revalidating)' if args.revalidate else ''}, "
            f"portal CPU {run['portal_cpu_ms_per_request']} ms/request"
        )
        print_rows(queries, run["latency_ms"], run["server_ms"])
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
