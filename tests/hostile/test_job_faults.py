"""Faults under the job layer, each a real run: a work horse killed, processes an earlier task
left, the sweep's job gone from Redis, Redis flushed under a running scheduler and workers,
PostgreSQL restarted in the middle of a deploy.

Redis is flushed with FLUSHDB of the test's own database (LTB_TEST_REDIS_URL), not
FLUSHALL, so that parallel test runs on the same Redis server keep their data; for one
database of LTB the two are the same fault.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from rq.job import Job as RqJob
from sqlalchemy import select

from jobs import processes as cgroups
from jobs.health import fail_orphaned_jobs
from jobs.queue import cancel, submit
from jobs.reservations import create_reservation, schedule, scheduled_edges, scheduler
from jobs.scheduler import SWEEP_JOB_ID
from ltb.resources import find_lab_resources
from store.models import Job, JobEvent, JobStatus, Lab, utcnow
from tests.integration.conftest import assert_no_leftovers
from tests.jobs.conftest import (
    TASK_WAIT,
    job_ended,
    job_row,
    lab_row,
    reservation_runs_its_course,
    run_to_end,
    slow_pair,
    wait_for,
)

pytestmark = pytest.mark.integration

PG_CLUSTER = ("15", "main")


def processes_of_job(job_id: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose cgroup or command line names the job (not
    zombies: they have ended, their new parent just has not collected them yet)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if cgroups.process_start_time(int(proc.name)) is None:
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cgroup = (proc / "cgroup").read_text()
        except OSError:
            continue
        if job_id in cmdline or f"/job-{job_id}." in cgroup:
            found.append((int(proc.name), cmdline))
    return found


def started_in_group(lab: str, owner_pid: int, owner_started: str, job_id: str):
    """A `sleep` moved into a job group of the lab named after `owner_pid`."""
    group = cgroups.lab_group(lab) / cgroups.job_group_name(job_id, owner_pid, owner_started)
    group.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "600"])
    (group / "cgroup.procs").write_text(str(sleeper.pid))
    return group, sleeper


def test_sigkill_of_only_the_work_horse_ends_every_process_of_its_job(
    store, processes, topology, cleanup, job_settings
):
    lab = "a2-horse"
    cleanup[lab] = text = topology("pair.lab.yml", lab)
    worker = processes.start("worker")
    processes.start("scheduler")
    job_id = submit(lab, "deploy", topology=text)
    wait_for(
        # Any play of the deploy: its ansible-playbook runs. A pair's whole deploy takes ~3 s,
        # its network's and containers' plays a second, too short to be sure to see them.
        lambda: (job_row(store, job_id).progress.get("play") or "").startswith(
            (
                "Check that every node of each lab",
                "Build the network of each lab",
                "Deploy the container nodes of each lab",
            )
        ),
        TASK_WAIT,
        "a play of the deploy",
        processes,
    )
    horse = job_row(store, job_id).pid
    assert horse != worker.pid
    running = processes_of_job(job_id)
    assert any("ansible-playbook" in cmd for _, cmd in running), running
    group = cgroups.lab_group(lab)
    in_group = {pid for g in group.glob(f"job-{job_id}.*") for pid in cgroups.members(g)}
    assert {pid for pid, _ in running} <= in_group, "a process of the job is outside its cgroup"

    os.kill(horse, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = wait_for(
        lambda: job_ended(store, job_id),
        job_settings.sweep_interval + 15,
        "the sweep to fail the job",
        processes,
    )
    assert failed.status == JobStatus.FAILED and "orphaned" in failed.result["error"]
    assert lab_row(store, lab).state == "failed"
    assert processes_of_job(job_id) == [], "a process of the killed job still runs"
    assert not list(group.glob(f"job-{job_id}.*"))
    assert time.monotonic() - killed_at < job_settings.sweep_interval + 15
    assert worker.poll() is None, "the worker died with its horse"

    removal = run_to_end(store, processes, submit(lab, "remove"))
    assert removal.status == JobStatus.SUCCESSFUL, removal.result
    assert lab_row(store, lab).state == "removed"
    assert_no_leftovers(lab)


def test_next_task_of_a_lab_kills_processes_left_by_a_dead_work_horse(store, processes, topology):
    lab = "a2-leftover"
    job_id = submit(lab, "remove", topology=topology("pair.lab.yml", lab))
    dead = subprocess.Popen(["true"])
    dead.wait()
    group, sleeper = started_in_group(lab, dead.pid, "1", str(uuid.uuid4()))
    try:
        processes.start("worker")
        job = run_to_end(store, processes, job_id)
        assert job.status == JobStatus.SUCCESSFUL, job.result
        assert sleeper.wait(5) == -signal.SIGKILL
        assert not group.exists()
    finally:
        cgroups.kill(group)


def test_next_task_of_a_lab_is_refused_while_a_work_horse_of_an_earlier_one_lives(
    store, processes, topology
):
    lab = "a2-owner-alive"
    job_id = submit(lab, "remove", topology=topology("pair.lab.yml", lab))
    owner = subprocess.Popen(["sleep", "600"])
    started = cgroups.process_start_time(owner.pid)
    earlier = str(uuid.uuid4())
    group, sleeper = started_in_group(lab, owner.pid, started, earlier)
    try:
        processes.start("worker")
        job = run_to_end(store, processes, job_id)
        assert job.status == JobStatus.FAILED and job.started_at is None
        assert f"of job {earlier} of this lab still run" in job.result["error"]
        assert lab_row(store, lab).state == "removed", "the refusal changed the lab's state"
        kept = lab_row(store, lab)
        assert kept.tag is None and kept.mgmt_subnet is None, "a removed lab kept its subnet"
        assert sleeper.poll() is None and owner.poll() is None, "a live task's process was killed"
    finally:
        cgroups.kill(group)
        owner.kill()
        owner.wait()


def test_sweep_scheduled_again_after_its_job_expired_from_redis(store, processes, redis_db):
    processes.start("scheduler")
    sched = scheduler()
    wait_for(lambda: SWEEP_JOB_ID in sched, 30, "the sweep to be scheduled", processes)
    processes.start("worker")
    # Once a worker ran it, its hash is kept: an expiring hash made rq-scheduler drop it.
    wait_for(lambda: redis_db.hget(f"rq:job:{SWEEP_JOB_ID}", "ended_at"), 30, "a run", processes)
    assert redis_db.ttl(f"rq:job:{SWEEP_JOB_ID}") == -1

    redis_db.delete(f"rq:job:{SWEEP_JOB_ID}")
    redis_db.zrem("rq:scheduler:scheduled_jobs", SWEEP_JOB_ID)
    wait_for(lambda: SWEEP_JOB_ID in sched, 30, "the sweep to come back", processes)


def test_a_queued_task_that_redis_lost_is_queued_again_and_runs(
    store, processes, redis_db, topology
):
    lab = "a2-requeue"
    job_id = submit(lab, "remove", topology=topology("pair.lab.yml", lab))
    redis_db.flushdb()
    with store.begin() as session:  # past the grace a fresh row gets to reach Redis
        session.get(Job, job_id).enqueued_at = utcnow() - timedelta(minutes=5)

    assert fail_orphaned_jobs() == [], "a job PostgreSQL still holds as queued was failed"
    assert RqJob.fetch(job_id, connection=redis_db).get_status() == "queued"
    processes.start("worker")
    job = run_to_end(store, processes, job_id)
    assert job.status == JobStatus.SUCCESSFUL, job.result


def forge_orphan(store, lab: str, text: str) -> str:
    """A started job of `lab` whose work horse is gone (a process that has ended)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    job_id = str(uuid.uuid4())
    now = utcnow()
    with store.begin() as session:
        row = Lab(
            name=lab,
            topology=text,
            state="deploying",
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        session.add(
            Job(
                id=job_id,
                lab_id=row.id,
                task="deploy",
                params={},
                status="started",
                lab_state_before="removed",
                enqueued_at=now,
                started_at=now,
                host=socket.gethostname(),
                pid=gone.pid,
                pid_started="1",
                progress={},
                result={},
            )
        )
    return job_id


def test_redis_flushed_under_running_scheduler_and_workers_loses_no_reservation_sweep_or_cancel(
    store, processes, topology, cleanup, redis_db, job_settings
):
    reserved, cancelled = "a2-flush-resv", "a2-flush-cancel"
    cleanup[reserved] = reserved_text = topology("pair.lab.yml", reserved)
    cleanup[cancelled] = cancelled_text = topology("pair.lab.yml", cancelled)
    running = [processes.start("scheduler"), processes.start("worker"), processes.start("worker")]
    now = utcnow()
    with store.begin() as session:
        reservation = create_reservation(
            session, reserved_text, now + timedelta(seconds=20), now + timedelta(seconds=30)
        )
    sched = scheduler()
    schedule(sched, reservation)
    deploy = submit(cancelled, "deploy", topology=cancelled_text)
    wait_for(
        lambda: job_row(store, deploy).progress.get("tasks_done"), TASK_WAIT, "a task", processes
    )
    wait_for(lambda: SWEEP_JOB_ID in sched, 30, "the sweep to be scheduled", processes)

    redis_db.flushdb()
    assert scheduled_edges(sched) == set() and SWEEP_JOB_ID not in sched

    # A cancel still reaches the running deploy.
    cancel(deploy)
    stopped = run_to_end(store, processes, deploy)
    assert stopped.status == JobStatus.CANCELED, stopped.result
    assert lab_row(store, cancelled).state == "failed"

    # The reservation's edges and the sweep come back, without restarting anything.
    edges = {(reservation.id, "begin"), (reservation.id, "end")}
    wait_for(lambda: scheduled_edges(sched) == edges, 30, "the edges to come back", processes)
    wait_for(lambda: SWEEP_JOB_ID in sched, 30, "the sweep to come back", processes)
    orphan = forge_orphan(store, "a2-flush-orphan", topology("pair.lab.yml", "a2-flush-orphan"))
    swept = wait_for(lambda: job_ended(store, orphan), 30, "the sweep to run", processes)
    assert swept.status == JobStatus.FAILED and "orphaned" in swept.result["error"]

    reservation_runs_its_course(store, processes, reservation.id, reserved)

    assert run_to_end(store, processes, submit(cancelled, "remove")).status == "successful"
    assert_no_leftovers(cancelled)
    assert all(process.poll() is None for process in running), "a process did not survive"


def pg_ctlcluster(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["pg_ctlcluster", *PG_CLUSTER, action, *(["-m", "fast"] if action != "status" else [])],
        capture_output=True,
        text=True,
    )


def test_postgresql_restarted_mid_deploy_the_job_ends_recorded_and_the_lab_consistent(
    store, processes, topology, cleanup
):
    lab = "a2-pg-restart"
    # Still deploying when PostgreSQL is back.
    cleanup[lab] = text = slow_pair(topology, lab, 15)
    processes.start("worker")
    processes.start("scheduler")
    job_id = submit(lab, "deploy", topology=text)
    # As soon as the worker has started the job: a pair's whole deploy now takes a few
    # seconds, so waiting for its first task left too little of it for the restart.
    wait_for(
        lambda: job_row(store, job_id).status == "started", TASK_WAIT, "the job's start", processes
    )
    try:
        restarted = pg_ctlcluster("restart")
        assert restarted.returncode == 0, restarted.stderr
    finally:
        if pg_ctlcluster("status").returncode != 0:
            pg_ctlcluster("start")
    assert job_row(store, job_id).status == "started", "the deploy ended before the restart"

    job = run_to_end(store, processes, job_id)
    assert job.status in (JobStatus.SUCCESSFUL, JobStatus.FAILED), job.result
    state = lab_row(store, lab).state
    if job.status == JobStatus.SUCCESSFUL:
        assert state == "running" and not find_lab_resources(lab).empty()
        with store() as session:
            events = session.scalars(select(JobEvent.event).where(JobEvent.job_id == job_id)).all()
        # Events of the seconds the database was away were kept and written later.
        assert "playbook_on_stats" in events
    else:
        assert state == "failed", state

    removal = run_to_end(store, processes, submit(lab, "remove"))
    assert removal.status == JobStatus.SUCCESSFUL, removal.result
    assert_no_leftovers(lab)
    assert processes_of_job(job_id) == []
