"""`python -m jobs scheduler`: rq-scheduler for LTB, reconciled with PostgreSQL as it runs.

It moves due reservation edges (jobs.reservations) and the periodic sweep for jobs whose
worker is gone (jobs.health.sweep) onto the control queue, where workers run them.

Redis only holds copies: what is to happen is in PostgreSQL. So every `sweep_interval` the
scheduler makes Redis agree again (`reconcile`): the sweep is scheduled again if it is
missing, and reservation edges lost from Redis (a FLUSHALL, a Redis restart without its
data) are scheduled again. Cancel requests need nothing: they are in PostgreSQL.

Why the sweep once stopped for good: it was scheduled once, at start, with a result TTL.
rq sets that TTL on the job's hash after each run; when no worker ran it for that long (all
dead, or all busy with long deploys), the hash expired, and rq-scheduler drops a scheduled
id whose hash is gone. The sweep now keeps its hash (result_ttl -1), and reconcile brings it
back whatever removed it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job as RqJob
from rq.job import JobStatus
from rq_scheduler import Scheduler
from rq_scheduler.utils import to_unix
from sqlalchemy.exc import DBAPIError

from jobs.connections import redis
from jobs.health import sweep
from jobs.reservations import reconcile as reconcile_reservations
from jobs.settings import Settings, load
from store.models import utcnow

SWEEP_JOB_ID = "ltb-sweep"
# Seconds to wait before starting again after Redis went away.
REDIS_RETRY = 2.0

log = logging.getLogger("jobs.scheduler")


class ReconcilingScheduler(Scheduler):
    """rq-scheduler that, while it holds the scheduler lock, also reconciles Redis with
    PostgreSQL every `sweep_interval` seconds."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            queue_name=settings.control_queue,
            connection=redis(settings),
            interval=settings.scheduler_interval,
        )
        self.settings = settings
        self.next_reconcile = 0.0

    def enqueue_jobs(self):
        if time.monotonic() >= self.next_reconcile:
            self.next_reconcile = time.monotonic() + self.settings.sweep_interval
            try:
                self.reconcile()
            except (DBAPIError, RedisError) as error:
                # PostgreSQL or Redis is away for a moment: the next turn tries again.
                log.warning("reconcile failed, trying again next turn: %s", error)
        return super().enqueue_jobs()

    def enqueue_job(self, job):
        # A sweep still waiting on the queue (every worker busy) is not queued once more.
        if job.id == SWEEP_JOB_ID and job.get_status(refresh=False) == JobStatus.QUEUED:
            next_run = to_unix(utcnow()) + self.settings.sweep_interval
            self.connection.zadd(self.scheduled_jobs_key, {job.id: next_run})
            return
        super().enqueue_job(job)

    def reconcile(self) -> None:
        if not self.sweep_scheduled():
            log.warning("the sweep was not scheduled; scheduling it again")
            self.schedule_sweep()
        done = reconcile_reservations(self, self.settings)
        if any(done.values()):
            log.warning("reservation edges reconciled with PostgreSQL: %s", done)

    def sweep_scheduled(self) -> bool:
        if SWEEP_JOB_ID not in self:
            return False
        try:
            RqJob.fetch(SWEEP_JOB_ID, connection=self.connection)
        except NoSuchJobError:
            return False
        return True

    def schedule_sweep(self) -> None:
        self.cancel(SWEEP_JOB_ID)
        self.schedule(
            utcnow() + timedelta(seconds=self.settings.sweep_interval),
            sweep,
            interval=self.settings.sweep_interval,
            repeat=None,
            id=SWEEP_JOB_ID,
            # Kept for good: a periodic job whose hash expires is dropped by rq-scheduler.
            result_ttl=-1,
        )


def main() -> None:
    settings = load()
    while True:
        sched = ReconcilingScheduler(settings)
        try:
            sched.run()
        except RedisConnectionError as error:
            # rq-scheduler's loop ends when Redis is away (restarting): start it again, under
            # a new name (the old one may still be registered as alive).
            log.warning("Redis is away (%s); starting again in %.0fs", error, REDIS_RETRY)
            time.sleep(REDIS_RETRY)
