"""Submit lab tasks and cancel them: the functions the portal, the scheduler and the CLI call.

`submit` records the job in PostgreSQL (refusing a second task of a busy lab, see
store.labs.request_task), then puts it on the rq queue under the same id.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from redis.exceptions import RedisError
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RqJob

from jobs import tasks
from jobs.connections import queues, redis, sessions
from jobs.settings import Settings, load
from store.labs import finish_job, request_task
from store.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

# rq keeps a job's own record this long after it ended; PostgreSQL keeps the history.
RESULT_TTL = 24 * 3600


def submit(
    lab: str,
    task: str,
    *,
    topology: str | None = None,
    owner: str | None = None,
    params: dict[str, Any] | None = None,
    settings: Settings | None = None,
    hypervisor: str | None = None,
    placement: dict[str, str] | None = None,
    **store_fields: Any,
) -> str:
    """Queue `task` (a task of store.tasks) on `lab` and return the job id. Raises
    store.labs.LabError before anything is queued: LabBusy if the lab has a task queued or
    running, an error naming the parameter if `params` break the task's rules.
    `store_fields` (owner_id, template_version_id, course_id, title) are recorded on a new
    lab (store.labs.request_task). `hypervisor`: where the lab's placement put it, recorded
    before the job is queued, so the job runs there; None: a new lab goes to LTB_HYPERVISOR,
    a known one stays where it is recorded. `placement`: with `hypervisor`, where each node
    of a spread lab runs (store.capacity.spread)."""
    settings = settings or load()
    Session = sessions(settings)
    with Session.begin() as session:
        job = request_task(
            session,
            lab,
            task,
            topology=topology,
            owner=owner,
            hypervisor=hypervisor,
            placement=placement,
            default_hypervisor=settings.hypervisor,
            params=params,
            **store_fields,
        )
        job_id = job.id
    try:
        enqueue(settings, job_id, task, lab)
    except Exception as error:
        with Session.begin() as session:
            finish_job(
                session,
                session.get(Job, job_id, with_for_update=True),
                JobStatus.FAILED,
                {"error": f"could not be queued: {error}"},
            )
        raise
    log.info("queued %s of lab %s as job %s", task, lab, job_id)
    return job_id


def enqueue(settings: Settings, job_id: str, task: str, lab: str) -> None:
    """Put the recorded job `job_id` on the task queue under its own id. Safe to repeat: a
    worker runs a job only while its row is queued, so a second copy finds it ended."""
    # The worker reads the parameters from the job's row, not from the queue.
    queues(settings)[1].enqueue_call(
        tasks.run_task,
        args=(task, lab),
        job_id=job_id,
        # The runner stops the playbook at task_timeout; rq's limit is a backstop.
        timeout=settings.task_timeout + 300,
        result_ttl=RESULT_TTL,
        failure_ttl=RESULT_TTL,
        description=f"{task} {lab}",
    )


def cancel(job_id: str, settings: Settings | None = None) -> str:
    """Cancel a job: a queued one never starts; a running one has its playbook stopped (the
    lab is then failed, and remove cleans it up). Returns the job's status afterwards.

    The request is recorded in PostgreSQL, where the running job looks for it each time it
    writes its progress, so it holds when Redis loses its data."""
    settings = settings or load()
    with sessions(settings).begin() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise LookupError(f"no job {job_id}")
        if job.status == JobStatus.QUEUED:
            finish_job(session, job, JobStatus.CANCELED, {"error": "canceled before it started"})
            # A worker that takes the queue's copy anyway finds the job ended and skips it.
            with contextlib.suppress(NoSuchJobError, InvalidJobOperation, RedisError):
                RqJob.fetch(job_id, connection=redis(settings)).cancel()
        elif job.status == JobStatus.STARTED and job.cancel_requested_at is None:
            job.cancel_requested_at = utcnow()
        return job.status
