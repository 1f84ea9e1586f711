"""`python -m jobs scheduler`: rq-scheduler for LTB, reconciled with PostgreSQL first.

It moves due reservation edges (jobs.reservations) and the periodic sweep for jobs whose
worker is gone (jobs.health.sweep) onto the control queue, where workers run them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from jobs.health import sweep
from jobs.reservations import reconcile, scheduler
from jobs.settings import load
from portal.models import utcnow

SWEEP_JOB_ID = "ltb-sweep"


def main() -> None:
    settings = load()
    log = logging.getLogger("jobs.scheduler")
    sched = scheduler(settings)
    done = reconcile(sched, settings)
    log.info("reconciled reservations with PostgreSQL: %s", done)
    if SWEEP_JOB_ID not in sched:
        sched.schedule(
            utcnow() + timedelta(seconds=settings.sweep_interval),
            sweep,
            interval=settings.sweep_interval,
            repeat=None,
            id=SWEEP_JOB_ID,
            result_ttl=settings.sweep_interval * 4,
        )
    sched.run()
