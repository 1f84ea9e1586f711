"""The rq job function of every lab task of the registry (store.tasks): take the lab's name,
run the task's playbook on the lab's topology from the store with the job's parameters from
the store, record progress, events and the result.

A task runs only while it holds its lab's PostgreSQL advisory lock, so two tasks of one lab
never run alongside, even if both were put on the queue. The lock belongs to the worker's
database session: a worker that dies releases it with its connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from rq import get_current_job
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from jobs import processes
from jobs.connections import sessions
from jobs.processes import process_start_time
from jobs.runner import RunObserver, run_playbook
from jobs.settings import load
from ltb.allocation import allocation_text
from ltb.topology import TopologyError
from store import allocations
from store.db import engine
from store.labs import finish_job, placed_topology
from store.models import Job, JobEvent, JobStatus, utcnow
from store.sshkeys import lab_authorized_keys
from store.tasks import TASKS, TaskError, lab_task

log = logging.getLogger(__name__)

# First key of the two-key advisory locks LTB takes; the second is the lab's id.
LAB_LOCK_SPACE = 0x17B
RUNNER_STATUSES = {
    "successful": JobStatus.SUCCESSFUL,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELED,
    "timeout": JobStatus.TIMEOUT,
}
# Seconds between writes of progress and events while a playbook runs.
FLUSH_INTERVAL = 1.0
# Tasks that (re)write nodes' authorized_keys: they get the lab owner's (and the course
# teacher's) SSH keys as `ltb_user_authorized_keys` (store.sshkeys.lab_authorized_keys).
TASKS_WITH_USER_KEYS = ("deploy", "restore")
# How long a job tries to record its end while the database is away (e.g. restarting); the
# sweep (jobs.health) fails the job if this never gets through.
FINAL_RECORD_TIMEOUT = 120.0


@dataclass(frozen=True)
class Where:
    """Where a job's playbook acts: the lab's hypervisor, and its allocation
    (ltb.allocation.allocation_text) that the run's inventory gives the lab."""

    hypervisor: str
    allocation: str


def _queued_by_name(task: str) -> Callable[..., dict[str, Any]]:
    def run(lab: str, **_params: Any) -> dict[str, Any]:
        return run_task(task, lab)

    run.__name__ = run.__qualname__ = task
    run.__module__ = __name__
    run.__doc__ = lab_task(task).summary
    return run


# An rq function named after each task (`jobs.tasks.deploy`...), for jobs queued by name, as
# before the registry: they too run with the parameters of the job's row, never rq's.
for _task in TASKS:
    globals()[_task] = _queued_by_name(_task)


def run_task(task: str, lab: str) -> dict[str, Any]:
    """The rq function of a lab task (queued by jobs.queue.submit): run `task` on `lab` with
    the parameters recorded for the job, checked again against the task's rules."""
    settings = load()
    rq_job = get_current_job()
    if rq_job is None:
        raise RuntimeError("lab tasks run as rq jobs (jobs.queue.submit)")
    job_id = rq_job.id
    Session = sessions(settings)
    with Session.begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise LookupError(f"job {job_id} is not in the running-lab store")
        if job.status != JobStatus.QUEUED:
            return {"skipped": f"job is {job.status}"}
        if job.lab.name != lab or job.task != task:
            raise ValueError(f"job {job_id} is {job.task} of lab {job.lab.name}")
        try:
            extravars = lab_task(task).extra_vars(job.params or {})
        except TaskError as error:  # a row written around request_task
            finish_job(session, job, JobStatus.FAILED, {"error": f"not run: {error}"})
            log.warning("job %s (%s of lab %s) not run: %s", job_id, task, lab, error)
            return {"status": "refused", "error": str(error)}
        if task in TASKS_WITH_USER_KEYS:
            # Read now, not when the task was requested: the keys the owner has at deploy.
            keys = lab_authorized_keys(session, job.lab)
            extravars = {**extravars, "ltb_user_authorized_keys": keys}
        try:
            # Held since the request (store.allocations); taken now by a lab that holds none.
            allocation = allocation_text(allocations.ensure(session, job.lab))
        except (TopologyError, allocations.LabAllocationError) as error:
            finish_job(session, job, JobStatus.FAILED, {"error": f"not run: {error}"})
            log.warning("job %s (%s of lab %s) not run: %s", job_id, task, lab, error)
            return {"status": "refused", "error": str(error)}
        lab_id, hypervisor = job.lab_id, job.lab.hypervisor
        # A spread lab's nodes pinned where its placement put them (the inventory's way).
        topology = placed_topology(job.lab.topology, job.lab.placement)
        where = Where(hypervisor, allocation)
        previous = session.scalars(
            select(Job)
            .where(Job.lab_id == lab_id, Job.task == task, Job.status == JobStatus.SUCCESSFUL)
            .order_by(Job.ended_at.desc())
            .limit(1)
        ).first()
        tasks_expected = previous.result.get("tasks") if previous is not None else None

    with engine(settings.database_url).connect() as lock:
        if not lock.scalar(select(func.pg_try_advisory_lock(LAB_LOCK_SPACE, lab_id))):
            with Session.begin() as session:
                # Never started: finish_job gives the lab back the state it had before.
                error = f"another task of lab {lab} is running; not run"
                job = session.get(Job, job_id, with_for_update=True)
                finish_job(session, job, JobStatus.FAILED, {"error": error})
            log.warning("job %s: another task of lab %s is running", job_id, lab)
            return {"status": "refused"}
        lock.commit()  # the advisory lock is the session's, not the transaction's
        try:
            return _run_locked(
                settings, rq_job, task, lab, topology, where, extravars, tasks_expected
            )
        finally:
            try:
                lock.scalar(select(func.pg_advisory_unlock(LAB_LOCK_SPACE, lab_id)))
                lock.commit()
            except DBAPIError as error:
                log.warning("job %s: the lab lock went with its connection (%s)", job_id, error)


def _run_locked(
    settings, rq_job, task, lab, topology, where, extravars, tasks_expected
) -> dict[str, Any]:
    job_id = rq_job.id
    Session = sessions(settings)
    cgroup = None
    try:
        with Session.begin() as session:
            job = session.get(Job, job_id, with_for_update=True)
            if job.status != JobStatus.QUEUED:  # canceled (or swept) meanwhile
                return {"skipped": f"job is {job.status}"}
            try:
                # The advisory lock keeps other work horses out; processes that outlived theirs
                # (or a horse that lost its lock with its database connection) are seen here.
                processes.claim_lab(lab)
                cgroup = processes.enter(lab, job_id)
            except processes.CgroupError as error:
                finish_job(session, job, JobStatus.FAILED, {"error": f"not run: {error}"})
                log.warning("job %s (%s of lab %s) not run: %s", job_id, task, lab, error)
                return {"status": "refused", "error": str(error)}
            job.status = JobStatus.STARTED.value
            job.started_at = utcnow()
            job.worker = rq_job.worker_name
            job.host = socket.gethostname()
            job.pid = os.getpid()
            job.pid_started = process_start_time(job.pid)
        status, result = _run_recorded(
            settings, rq_job, task, lab, topology, where, extravars, tasks_expected
        )
    finally:
        if cgroup is not None:
            processes.leave(cgroup)
    return result | {"job_status": status.value}


def _run_recorded(
    settings, rq_job, task, lab, topology, where, extravars, tasks_expected
) -> tuple[JobStatus, dict[str, Any]]:
    """Run the playbook, writing progress and events as it goes; record its end."""
    job_id = rq_job.id
    Session = sessions(settings)
    observer = RunObserver(task=task, tasks_expected=tasks_expected)
    last_flush = 0.0
    cancel_seen = False

    def flush(force: bool = False) -> None:
        # Also looks for a cancel request, recorded in PostgreSQL so that it survives Redis.
        # A write that fails (the database restarts) is skipped; its events go with the next.
        nonlocal last_flush, cancel_seen
        now = time.monotonic()
        if not force and now - last_flush < FLUSH_INTERVAL:
            return
        last_flush = now
        progress = observer.progress()
        events = observer.take_events()
        try:
            with Session.begin() as session:
                session.add_all(
                    JobEvent(
                        job_id=job_id,
                        seq=e.seq,
                        event=e.event,
                        host=e.host,
                        task=e.task,
                        created_at=e.created_at,
                        data=e.data,
                    )
                    for e in events
                )
                job = session.get(Job, job_id)
                job.progress = progress
                cancel_seen = cancel_seen or job.cancel_requested_at is not None
        except DBAPIError as error:
            observer.pending[:0] = events
            log.warning("job %s: progress not recorded, will try again: %s", job_id, error)
            return
        rq_job.meta["progress"] = progress
        with contextlib.suppress(RedisError):
            rq_job.save_meta()

    def cancelled() -> bool:
        # ansible-runner asks on every turn of its loop and takes each answer as the current
        # one: once asked to cancel, keep saying so.
        flush()
        return cancel_seen

    try:
        run = run_playbook(
            settings,
            job_id=job_id,
            lab=lab,
            topology=topology,
            hypervisor=where.hypervisor,
            allocation=where.allocation,
            playbook=lab_task(task).playbook,
            extravars=extravars or {},
            observer=observer,
            cancelled=cancelled,
            on_progress=flush,
        )
        status = RUNNER_STATUSES.get(run.status, JobStatus.FAILED)
        result: dict[str, Any] = {
            "status": run.status,
            "rc": run.rc,
            "seconds": round(run.seconds, 2),
            "tasks": observer.tasks_started,
            "stats": observer.stats,
            "failures": observer.failures[:20],
        }
    except Exception as error:
        status, result = JobStatus.FAILED, {"error": f"{type(error).__name__}: {error}"}
        log.exception("job %s (%s of lab %s) failed", job_id, task, lab)
    flush(force=True)
    record_end(Session, job_id, status, result)
    return status, result


def record_end(Session, job_id: str, status: JobStatus, result: dict[str, Any]) -> None:
    """Record the end of the job, trying again with backoff while the database is away."""
    give_up = time.monotonic() + FINAL_RECORD_TIMEOUT
    delay = 0.5
    while True:
        try:
            with Session.begin() as session:
                finish_job(session, session.get(Job, job_id, with_for_update=True), status, result)
            return
        except DBAPIError as error:
            if time.monotonic() + delay > give_up:
                raise
            log.warning("job %s: end not recorded, trying again in %.1fs: %s", job_id, delay, error)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
