"""`python -m jobs worker`: an rq worker of LTB's queues (control first, then lab tasks).

Before it takes jobs it fails the jobs whose worker is gone (jobs.health), so a lab left
half-deployed by a dead worker shows as failed as soon as any worker is back.
"""

from __future__ import annotations

import logging
import os
import socket

from rq import Worker

from jobs.connections import queues, redis
from jobs.health import fail_orphaned_jobs
from jobs.settings import load


def main(burst: bool = False) -> None:
    settings = load()
    log = logging.getLogger("jobs.worker")
    orphans = fail_orphaned_jobs(settings)
    if orphans:
        log.warning("failed %d job(s) whose worker is gone: %s", len(orphans), ", ".join(orphans))
    connection = redis(settings)
    worker = Worker(
        list(queues(settings, connection)),
        connection=connection,
        name=f"ltb.{socket.gethostname()}.{os.getpid()}",
    )
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
