"""Operators' views of the store on the command line: labs, recent jobs, one job followed live
(`python -m jobs labs | jobs [--lab LAB] | follow JOB_ID`). They read PostgreSQL only.

And the CLI's deploy and reserve, placed and checked against the hypervisors' capacity as the
portal's are (store.placement: the same model, the same drain), unless the operator says
`--ignore-capacity`."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from jobs.connections import sessions
from jobs.settings import Settings, load
from ltb.topology import TopologyError, parse_lab
from store.capacity import NoRoom, lab_needs, lock_bookings
from store.models import ACTIVE_JOB_STATUSES, Job, JobEvent, Lab, LabState, utcnow
from store.placement import (
    PinnedToDraining,
    Placed,
    max_reservation_hours,
    place_lab,
    refusal_text,
)

FOLLOW_POLL_SECONDS = 0.5
IGNORE_FLAG = "--ignore-capacity"


class CapacityRefused(Exception):
    """The lab does not fit the hypervisors, or pins a node to a draining one."""


def _placed(session, settings: Settings, lab, start_at: datetime, end_at: datetime, **kw) -> Placed:
    """Where the lab runs (store.placement.place_lab), or CapacityRefused saying why. The
    operator may see every booking, so a refusal names them all."""
    try:
        chosen = place_lab(session, settings.hypervisors_inventory, lab, start_at, end_at, **kw)
    except PinnedToDraining as error:
        raise CapacityRefused(f"{error} ({IGNORE_FLAG} places it all the same)") from None
    if isinstance(chosen, NoRoom):
        needs = lab_needs(lab)
        held = [booking.what for booking in chosen.holders]
        text = refusal_text(chosen, needs.cpus, needs.memory_bytes, held, one=False)
        raise CapacityRefused(f"{text} ({IGNORE_FLAG} deploys it all the same)")
    return chosen


def running_lab_hours() -> float:
    """How far ahead a lab started now is checked, as the portal does (a lab runs until
    removed; checked to the end of time it would clash with every booking to come): the
    portal's LTB_MAX_RESERVATION_HOURS (store.placement.max_reservation_hours)."""
    return max_reservation_hours(os.environ)


def submit_placed(
    lab: str,
    task: str,
    topology: str | None,
    params: dict[str, Any],
    ignore_capacity: bool = False,
) -> str:
    """`python -m jobs submit`: queue the task (jobs.queue.submit) and return the job id. A
    deploy that starts a lab (new, or removed) is placed first like the portal's start now,
    and refused (CapacityRefused) when it fits nowhere or pins a node to a draining
    hypervisor; `ignore_capacity`: not checked, it goes to LTB_HYPERVISOR and its pins."""
    from jobs.queue import submit

    settings = load()
    if task != "deploy" or ignore_capacity:
        return submit(lab, task, topology=topology, params=params, settings=settings)
    with sessions(settings).begin() as session:
        lock_bookings(session)  # held until the lab is recorded (submit commits first)
        known = session.scalars(select(Lab).where(Lab.name == lab)).one_or_none()
        text = topology if topology is not None else known.topology if known else None
        placed = None
        if text is not None and (known is None or known.state == LabState.REMOVED):
            try:
                model = parse_lab(text, f"lab {lab}")
            except TopologyError:
                model = None  # submit refuses it, naming each problem
            if model is not None:
                now = utcnow()
                placed = _placed(
                    session, settings, model, now, now + timedelta(hours=running_lab_hours())
                )
        return submit(
            lab,
            task,
            topology=topology,
            params=params,
            settings=settings,
            hypervisor=placed.hypervisor if placed else None,
            placement=placed.nodes if placed else None,
        )


def reserve_placed(
    topology: str, start_at: datetime, end_at: datetime, ignore_capacity: bool = False
) -> int:
    """`python -m jobs reserve`: record a reservation placed like the portal's bookings
    (CapacityRefused when it fits nowhere then) and schedule its edges; its id.
    `ignore_capacity`: neither checked nor placed (its begin deploys it to LTB_HYPERVISOR)."""
    from jobs.reservations import create_reservation, schedule, scheduler

    settings = load()
    with sessions(settings).begin() as session:
        if not ignore_capacity:
            lock_bookings(session)
        # Its times and its lab's other reservations are checked first.
        reservation = create_reservation(session, topology, start_at, end_at)
        if not ignore_capacity:
            placed = _placed(
                session,
                settings,
                parse_lab(topology, "reservation"),
                start_at,
                end_at,
                except_reservation=reservation.id,
            )
            reservation.hypervisor, reservation.placement = placed.hypervisor, placed.nodes
    schedule(scheduler(settings), reservation)
    return reservation.id


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
