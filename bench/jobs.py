"""Job-layer benchmark: what running lab tasks as rq jobs through ansible-runner costs.

1. Latency: submit a deploy to an idle worker -> the worker starts it (rq pickup and fork)
   -> the playbook's first task starts (private data directory, ansible-runner, inventory).
2. A whole deploy (and remove) of a two-node lab through a job, against the same playbook
   run by hand (`ansible-playbook -i inventory/ -i LAB playbooks/deploy.yml`).
3. Throughput: K labs of two nodes submitted at once, deployed by 1, 2 and 4 workers
   (makespan from the first submit to the last job's end), then removed the same way.

Times come from the running-lab store (enqueued_at, started_at, first task, ended_at). CPU
time and peak memory come from bench/measure.py, as in every bench: of the workers' process
trees (worker, work horse, ansible-runner, ansible-playbook and its forks) while a job runs,
and of the playbook run by hand.
It uses a database and a Redis database of its own (dropped / flushed afterwards) and its own
workers; only labs named job-bench-* are created.

    .venv/bin/python bench/jobs.py [--repeat 2] [--labs 4] [--workers 1 2 4]

Results: a table on stdout and bench/results/jobs-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import Measurement, Usage, Watch, measure  # noqa: E402
from jobs.queue import submit  # noqa: E402
from ltb.resources import find_lab_resources  # noqa: E402
from store.db import DEFAULT_DATABASE_URL, session_factory, upgrade_database  # noqa: E402
from store.models import Job  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PAIR = ROOT / "tests" / "integration" / "topologies" / "pair.lab.yml"
REDIS_URL = os.environ.get("LTB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def topology(name: str) -> str:
    return PAIR.read_text().replace("name: NAME", f"name: {name}")


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        admin_url = os.environ.get("LTB_DATABASE_URL", DEFAULT_DATABASE_URL)
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.db_name = f"ltb_bench_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.workers: list[subprocess.Popen] = []
        self.redis = Redis.from_url(REDIS_URL)
        url = make_url(admin_url).set(database=self.db_name)
        self.url = url.render_as_string(hide_password=False)
        try:
            upgrade_database(self.url)
        except Exception:
            self.close()
            raise
        os.environ.update(
            LTB_DATABASE_URL=self.url,
            LTB_REDIS_URL=REDIS_URL,
            LTB_QUEUE="ltb-bench",
            LTB_JOBS_DIR=str(workdir / "runs"),
        )
        self.redis.flushdb()
        self.sessions = session_factory(self.url)

    def close(self) -> None:
        self.stop_workers()
        self.redis.flushdb()
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))

    def start_workers(self, count: int) -> None:
        for i in range(count):
            log = open(self.workdir / f"worker-{len(self.workers)}-{i}.log", "w")  # noqa: SIM115
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "jobs", "worker"],
                    cwd=ROOT,
                    env=dict(os.environ),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        # Workers are ready when they have registered in Redis.
        deadline = time.monotonic() + 30
        while len(self.redis.smembers("rq:workers")) < len(self.workers):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not start")
            time.sleep(0.1)

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.wait(60)
        self.workers = []
        self.redis.delete("rq:workers")

    def wait(self, job_ids: list[str], timeout: float = 900) -> list[Job]:
        deadline = time.monotonic() + timeout
        while True:
            with self.sessions() as session:
                jobs = [session.get(Job, job_id) for job_id in job_ids]
                if all(job.status not in ("queued", "started") for job in jobs):
                    for job in jobs:
                        session.expunge(job)
                    failed = [j for j in jobs if j.status != "successful"]
                    if failed:
                        raise RuntimeError(f"job failed: {failed[0].id} {failed[0].result}")
                    return jobs
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {job_ids} did not end")
            time.sleep(0.2)


def seconds(a: datetime, b: datetime) -> float:
    return round((b - a).total_seconds(), 3)


def by_hand(playbook: str, path: Path) -> tuple[Measurement, float]:
    """The playbook run by hand, measured, and the seconds from its start to its first task
    (read from the JSON callback's task start time)."""
    started_at = datetime.now(UTC)
    output, errors = path.with_suffix(".out"), path.with_suffix(".err")
    run = measure(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventory/", "-i", str(path), playbook],
        dict(
            os.environ,
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ),
        output,
        ROOT,
        stderr_log=errors,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{playbook} failed: {errors.read_text()[-2000:]}")
    first = json.loads(output.read_text())["plays"][0]["tasks"][0]["task"]["duration"]["start"]
    first_task = datetime.fromisoformat(first.replace("Z", "+00:00"))
    return run, seconds(started_at, first_task)


def run_jobs(bench: Bench, task: str, labs: list[str]) -> tuple[list[Job], Usage]:
    """Submit a task of each lab at once and wait for them all, watching the workers' process
    trees meanwhile."""
    with Watch([worker.pid for worker in bench.workers]) as watch:
        jobs = bench.wait(
            [
                submit(lab, task, topology=topology(lab) if task == "deploy" else None)
                for lab in labs
            ]
        )
    assert watch.usage is not None
    return jobs, watch.usage


def latency_and_overhead(bench: Bench, repeat: int) -> dict[str, Any]:
    bench.start_workers(1)
    rows = []
    for i in range(repeat):
        lab = f"job-bench-{i}"
        [deploy], deploy_usage = run_jobs(bench, "deploy", [lab])
        [remove], remove_usage = run_jobs(bench, "remove", [lab])
        first_task = datetime.fromisoformat(deploy.progress["first_task_at"])
        path = bench.workdir / f"{lab}.lab.yml"
        path.write_text(topology(lab))
        hand_deploy, hand_first_task = by_hand("playbooks/deploy.yml", path)
        hand_remove, _ = by_hand("playbooks/remove.yml", path)
        assert find_lab_resources(lab).empty()
        rows.append(
            {
                "enqueue_to_start": seconds(deploy.enqueued_at, deploy.started_at),
                "start_to_first_task": seconds(deploy.started_at, first_task),
                "enqueue_to_first_task": seconds(deploy.enqueued_at, first_task),
                "by_hand_start_to_first_task": hand_first_task,
                "deploy_job": seconds(deploy.enqueued_at, deploy.ended_at),
                "deploy_by_hand": hand_deploy.wall_s,
                "remove_job": seconds(remove.enqueued_at, remove.ended_at),
                "remove_by_hand": hand_remove.wall_s,
                "deploy_job_cpu_s": deploy_usage.cpu_s,
                "deploy_by_hand_cpu_s": hand_deploy.cpu_s,
                "remove_job_cpu_s": remove_usage.cpu_s,
                "remove_by_hand_cpu_s": hand_remove.cpu_s,
                "deploy_job_peak_mib": deploy_usage.peak_mib,
                "deploy_by_hand_peak_mib": hand_deploy.peak_mib,
                "events_stored": deploy.result["tasks"],
            }
        )
    bench.stop_workers()
    return {"runs": rows, "median": {k: statistics.median(r[k] for r in rows) for k in rows[0]}}


def throughput(bench: Bench, labs: int, workers: int) -> dict[str, Any]:
    bench.start_workers(workers)
    names = [f"job-bench-w{workers}-{i}" for i in range(labs)]
    result: dict[str, Any] = {"workers": workers, "labs": labs}
    for task in ("deploy", "remove"):
        jobs, usage = run_jobs(bench, task, names)
        result[task] = {
            "makespan": usage.wall_s,
            "labs_per_minute": round(labs * 60 / usage.wall_s, 2),
            "job_seconds": [seconds(j.started_at, j.ended_at) for j in jobs],
            "cpu_s": usage.cpu_s,
            "peak_mib": usage.peak_mib,
        }
    for name in names:
        assert find_lab_resources(name).empty(), name
    bench.stop_workers()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--labs", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ltb-bench-jobs-") as workdir:
        bench = Bench(Path(workdir))
        try:
            overhead = latency_and_overhead(bench, args.repeat)
            scaling = [throughput(bench, args.labs, w) for w in args.workers]
        finally:
            bench.close()

    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "overhead": overhead,
        "throughput": scaling,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"jobs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))

    m = overhead["median"]
    print(f"job layer, median of {args.repeat} (seconds)")
    print(f"  enqueue -> worker starts job      {m['enqueue_to_start']:8.3f}")
    print(f"  job start -> first playbook task  {m['start_to_first_task']:8.3f}")
    print(f"  enqueue -> first playbook task    {m['enqueue_to_first_task']:8.3f}")
    print(f"  by hand: start -> first task      {m['by_hand_start_to_first_task']:8.3f}")
    print(f"  deploy: job {m['deploy_job']:7.2f}   by hand {m['deploy_by_hand']:7.2f}")
    print(f"  remove: job {m['remove_job']:7.2f}   by hand {m['remove_by_hand']:7.2f}")
    for what, unit in (("deploy", "cpu_s"), ("remove", "cpu_s"), ("deploy", "peak_mib")):
        job, hand = m[f"{what}_job_{unit}"], m[f"{what}_by_hand_{unit}"]
        print(f"  {what} {unit}: job {job:7.2f}   by hand {hand:7.2f}")
    print(f"throughput, {args.labs} labs of 2 nodes at once")
    for row in scaling:
        print(
            f"  {row['workers']} worker(s): deploy {row['deploy']['makespan']:7.2f} s "
            f"({row['deploy']['labs_per_minute']} labs/min), "
            f"remove {row['remove']['makespan']:7.2f} s; CPU deploy {row['deploy']['cpu_s']} s, "
            f"remove {row['remove']['cpu_s']} s; peak {row['deploy']['peak_mib']} MiB"
        )
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
