"""Operators' views of the store on the command line: labs, recent jobs, one job followed live
(`python -m jobs labs | jobs [--lab LAB] | follow JOB_ID`). They read PostgreSQL only."""

from __future__ import annotations

import sys
import time

from sqlalchemy import select

from jobs.connections import sessions
from jobs.settings import load
from store.models import ACTIVE_JOB_STATUSES, Job, JobEvent, Lab

FOLLOW_POLL_SECONDS = 0.5


def _time(value) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


def list_labs() -> int:
    with sessions(load())() as session:
        labs = session.scalars(select(Lab).order_by(Lab.name)).all()
        print(f"{'LAB':<32} {'STATE':<10} {'OWNER':<20} UPDATED")
        for lab in labs:
            print(f"{lab.name:<32} {lab.state:<10} {lab.owner or '-':<20} {_time(lab.updated_at)}")
    return 0


def list_jobs(lab: str | None, limit: int) -> int:
    with sessions(load())() as session:
        query = select(Job).join(Job.lab).order_by(Job.enqueued_at.desc()).limit(limit)
        if lab is not None:
            query = query.where(Lab.name == lab)
        print(f"{'JOB':<36} {'LAB':<32} {'TASK':<9} {'STATUS':<10} QUEUED")
        for job in session.scalars(query):
            print(
                f"{job.id:<36} {job.lab.name:<32} {job.task:<9} {job.status:<10} "
                f"{_time(job.enqueued_at)}"
            )
    return 0


def follow_job(job_id: str) -> int:
    """Print the job's events as the worker stores them; return 0 if it succeeded, 1 if it
    ended otherwise, 2 if there is no such job."""
    Session = sessions(load())
    after = 0
    while True:
        with Session() as session:
            job = session.get(Job, job_id)
            if job is None:
                print(f"python -m jobs follow: no job {job_id}", file=sys.stderr)
                return 2
            # The status first: events stored before the job ended are printed before it.
            status, error = job.status, job.result.get("error")
            events = session.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job_id, JobEvent.seq > after)
                .order_by(JobEvent.seq)
            ).all()
            for event in events:
                where = f" [{event.host}]" if event.host else ""
                task = f" {event.task}" if event.task else ""
                print(
                    f"{_time(event.created_at)} {event.seq:>5} {event.event}{where}{task}",
                    flush=True,
                )
            if events:
                after = events[-1].seq
        if not events and status not in ACTIVE_JOB_STATUSES:
            print(f"job {job_id} {status}" + (f": {error}" if error else ""))
            return 0 if status == "successful" else 1
        if not events:
            time.sleep(FOLLOW_POLL_SECONDS)
