"""`python -m jobs worker`: an rq worker of LTB's queues (control first, then lab tasks).

Before it takes jobs it fails the jobs whose worker is gone (jobs.health), so a lab left
half-deployed by a dead worker shows as failed as soon as any worker is back. When a work
horse dies under it (rq's timeout, the OOM killer, SIGKILL), it kills the processes the
horse's task left (jobs.processes) at once, rather than at the next sweep.
"""

from __future__ import annotations

import logging
import os
import socket

from rq import Worker

from jobs import processes
from jobs.connections import queues, redis
from jobs.health import fail_orphaned_jobs
from jobs.settings import load

log = logging.getLogger("jobs.worker")


class LabWorker(Worker):
    def handle_work_horse_killed(self, job, retpid, ret_val, rusage) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        for group in processes.kill_job(job.id):
            log.warning("job %s: its work horse died; killed what it left (%s)", job.id, group)


def main(burst: bool = False) -> None:
    settings = load()
    orphans = fail_orphaned_jobs(settings)
    if orphans:
        log.warning("failed %d job(s) whose worker is gone: %s", len(orphans), ", ".join(orphans))
    connection = redis(settings)
    worker = LabWorker(
        list(queues(settings, connection)),
        connection=connection,
        name=f"ltb.{socket.gethostname()}.{os.getpid()}",
    )
    worker.work(burst=burst, logging_level="INFO", with_scheduler=False)
