"""Jobs whose worker is gone: their labs become failed (and remove then cleans them up).

A started job records the host, pid and start time of the process that runs it. When that
process is gone (the worker died, was killed or its machine rebooted), nothing will finish
the job: it is marked failed, and the lab with it, and whatever its playbook left running on
this host is killed in the same step (jobs.processes), so the lab's next task finds nothing
of it. A queued job that Redis lost is queued again: PostgreSQL holds it, Redis held only a
copy. Run when a worker starts and periodically by the scheduler (`sweep`).
"""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus as RqStatus
from rq.worker import Worker
from sqlalchemy import select

from jobs import processes
from jobs.connections import redis, sessions
from jobs.processes import process_start_time
from jobs.queue import enqueue
from jobs.settings import Settings, load
from store.labs import finish_job
from store.models import ACTIVE_JOB_STATUSES, Job, JobStatus, utcnow

log = logging.getLogger(__name__)

# A queued job gets this long to reach Redis after its row was committed.
ENQUEUE_GRACE = timedelta(seconds=60)


def orphan_reason(job: Job, connection: Redis) -> str | None:
    """Why nothing will ever finish this active job, or None if something still may."""
    if job.status == JobStatus.STARTED:
        if job.host == socket.gethostname():
            if job.pid is None or process_start_time(job.pid) != job.pid_started:
                return f"its worker process {job.pid} on {job.host} is gone"
            return None
        worker_key = Worker.redis_worker_namespace_prefix + (job.worker or "")
        if not job.worker or not connection.exists(worker_key):
            return f"its worker {job.worker} on {job.host} is gone"
        return None
    if utcnow() - job.enqueued_at < ENQUEUE_GRACE:
        return None
    try:
        rq_status = RqJob.fetch(job.id, connection=connection).get_status()
    except NoSuchJobError:
        return None  # lost_by_queue: queued again, not failed
    if rq_status in (RqStatus.FAILED, RqStatus.STOPPED, RqStatus.CANCELED):
        return f"rq reports it {rq_status.value}"
    return None


def lost_by_queue(job: Job, connection: Redis) -> bool:
    """A queued job that Redis no longer holds (flushed, or restarted without its data)."""
    if job.status != JobStatus.QUEUED or utcnow() - job.enqueued_at < ENQUEUE_GRACE:
        return False
    try:
        RqJob.fetch(job.id, connection=connection)
    except NoSuchJobError:
        return True
    return False


def fail_orphaned_jobs(settings: Settings | None = None) -> list[str]:
    """Mark active jobs that nothing will finish as failed (their labs too); return their ids."""
    settings = settings or load()
    connection = redis(settings)
    failed = []
    with sessions(settings).begin() as session:
        jobs = session.scalars(
            select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES)).with_for_update(skip_locked=True)
        ).all()
        for job in jobs:
            if lost_by_queue(job, connection):
                # PostgreSQL says it is still to run: Redis only held a copy.
                log.warning(
                    "job %s (%s of lab %s): the queue lost it; queued again",
                    job.id,
                    job.task,
                    job.lab.name,
                )
                enqueue(settings, job.id, job.task, job.lab.name)
                continue
            reason = orphan_reason(job, connection)
            if reason is None:
                continue
            log.warning("job %s (%s of lab %s) failed: %s", job.id, job.task, job.lab.name, reason)
            if job.host == socket.gethostname():
                for group in processes.kill_job(job.id):
                    log.warning("job %s: killed the processes it left (%s)", job.id, group)
            finish_job(session, job, JobStatus.FAILED, {"error": f"orphaned: {reason}"})
            failed.append(job.id)
    return failed


def sweep() -> list[str]:
    """The periodic job the scheduler runs."""
    return fail_orphaned_jobs()
