"""Reservations: a lab deployed at the reservation's start and removed at its end.

rq-scheduler holds one scheduled job per edge (`begin` at start, `end` at end) on the control
queue; PostgreSQL holds the reservation and what happened to it. `reconcile` makes the two
agree, when the scheduler starts and periodically while it runs (jobs.scheduler): edges still
ahead are scheduled again if Redis lost them, a start that passed while nothing ran is
deployed late, an end that passed is removed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from rq import Queue
from rq.registry import StartedJobRegistry
from rq_scheduler import Scheduler
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs.connections import redis, sessions
from jobs.settings import Settings, load
from ltb.topology import parse_lab
from store.labs import LabBusy
from store.models import Reservation, ReservationState, utcnow

log = logging.getLogger(__name__)

# A begin or end that finds the lab busy (e.g. the end while the deploy still runs) tries
# again after this long.
BUSY_RETRY = timedelta(seconds=5)
# An edge due this recently may be on its way from the scheduler to a worker: not yet lost.
IN_FLIGHT = timedelta(seconds=15)
META_KEY = "ltb_reservation"


# First key of the advisory lock that serialises reservations of one lab name.
RESERVATION_LOCK_SPACE = 0x17C


class ReservationError(ValueError):
    pass


class ReservationConflict(ReservationError):
    """The lab is already reserved for part of the time asked for."""


def scheduler(settings: Settings | None = None) -> Scheduler:
    settings = settings or load()
    return Scheduler(
        queue_name=settings.control_queue,
        connection=redis(settings),
        interval=settings.scheduler_interval,
    )


def create_reservation(
    session: Session, topology: str, start_at: datetime, end_at: datetime, owner: str | None = None
) -> Reservation:
    """Record a reservation (the caller commits, then calls `schedule`); refuse one whose time
    overlaps another reservation of the same lab that has not ended."""
    if start_at.tzinfo is None or end_at.tzinfo is None:
        raise ReservationError("reservation times must carry a time zone (UTC)")
    if end_at <= start_at:
        raise ReservationError("a reservation must end after it starts")
    lab = parse_lab(topology, "reservation")
    # Held until the caller commits: two overlapping requests cannot both see no conflict.
    session.execute(
        select(func.pg_advisory_xact_lock(RESERVATION_LOCK_SPACE, func.hashtext(lab.name)))
    )
    clash = session.scalars(
        select(Reservation)
        .where(
            Reservation.lab_name == lab.name,
            Reservation.state.in_([ReservationState.SCHEDULED, ReservationState.STARTED]),
            Reservation.start_at < end_at,
            Reservation.end_at > start_at,
        )
        .order_by(Reservation.start_at)
        .limit(1)
    ).first()
    if clash is not None:
        raise ReservationConflict(
            f"lab {lab.name!r} is already reserved from {clash.start_at.isoformat()} to "
            f"{clash.end_at.isoformat()} (reservation {clash.id}); pick a time outside it"
        )
    reservation = Reservation(
        lab_name=lab.name,
        owner=owner,
        topology=topology,
        start_at=start_at,
        end_at=end_at,
        state=ReservationState.SCHEDULED.value,
        late=False,
    )
    session.add(reservation)
    session.flush()
    return reservation


def scheduled_edges(sched: Scheduler) -> set[tuple[int, str]]:
    """(reservation id, 'begin' or 'end') of every edge rq-scheduler holds."""
    edges = set()
    for job in sched.get_jobs():
        mark = job.meta.get(META_KEY)
        if mark:
            edges.add((mark[0], mark[1]))
    return edges


def held_edges(sched: Scheduler) -> set[tuple[int, str]]:
    """Edges rq holds anywhere: scheduled, on the control queue, or being run by a worker."""
    queue = Queue(sched.queue_name, connection=sched.connection)
    edges = scheduled_edges(sched)
    running = StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    for job_id in [*queue.get_job_ids(), *running]:
        job = queue.fetch_job(job_id)
        mark = job.meta.get(META_KEY) if job is not None else None
        if mark:
            edges.add((mark[0], mark[1]))
    return edges


def schedule_edge(sched: Scheduler, reservation_id: int, edge: str, at: datetime) -> None:
    func = begin if edge == "begin" else end
    sched.enqueue_at(
        at,
        func,
        reservation_id,
        meta={META_KEY: [reservation_id, edge]},
        job_description=f"reservation {reservation_id} {edge}",
        job_result_ttl=24 * 3600,
    )


def schedule(sched: Scheduler, reservation: Reservation) -> None:
    schedule_edge(sched, reservation.id, "begin", reservation.start_at)
    schedule_edge(sched, reservation.id, "end", reservation.end_at)


def begin(reservation_id: int) -> str:
    """At the reservation's start: request its lab's deploy."""
    from jobs.queue import submit

    settings = load()
    with sessions(settings).begin() as session:
        reservation = session.get(Reservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.state != ReservationState.SCHEDULED:
            return f"nothing to do ({reservation.state if reservation else 'no reservation'})"
        try:
            job_id = submit(
                reservation.lab_name,
                "deploy",
                topology=reservation.topology,
                owner=reservation.owner,
                settings=settings,
            )
        except LabBusy as busy:
            log.info("reservation %s: %s; trying again", reservation_id, busy)
            schedule_edge(scheduler(settings), reservation_id, "begin", utcnow() + BUSY_RETRY)
            return "lab busy: retry scheduled"
        reservation.state = ReservationState.STARTED.value
        reservation.started_at = utcnow()
        reservation.deploy_job_id = job_id
    return job_id


def end(reservation_id: int) -> str:
    """At the reservation's end: request its lab's remove (after a running deploy ends)."""
    from jobs.queue import submit

    settings = load()
    with sessions(settings).begin() as session:
        reservation = session.get(Reservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.state not in (
            ReservationState.SCHEDULED,
            ReservationState.STARTED,
        ):
            return f"nothing to do ({reservation.state if reservation else 'no reservation'})"
        if reservation.state == ReservationState.SCHEDULED:
            reservation.state = ReservationState.MISSED.value
            reservation.ended_at = utcnow()
            log.warning("reservation %s ended before its lab was deployed", reservation_id)
            return "missed"
        try:
            job_id = submit(reservation.lab_name, "remove", settings=settings)
        except LabBusy as busy:
            log.info("reservation %s: %s; trying again", reservation_id, busy)
            schedule_edge(scheduler(settings), reservation_id, "end", utcnow() + BUSY_RETRY)
            return "lab busy: retry scheduled"
        reservation.state = ReservationState.ENDED.value
        reservation.ended_at = utcnow()
        reservation.remove_job_id = job_id
    return job_id


def reconcile(sched: Scheduler, settings: Settings | None = None) -> dict[str, list[int]]:
    """Make rq-scheduler hold what PostgreSQL says is still to happen; act on what is due."""
    settings = settings or load()
    now = utcnow()
    held = held_edges(sched)
    done: dict[str, list[int]] = {"rescheduled": [], "late": [], "ended": []}
    with sessions(settings).begin() as session:
        reservations = session.scalars(
            select(Reservation)
            .where(
                Reservation.state.in_(
                    [ReservationState.SCHEDULED.value, ReservationState.STARTED.value]
                )
            )
            .order_by(Reservation.start_at)
        ).all()
        for r in reservations:
            for edge, at in (("begin", r.start_at), ("end", r.end_at)):
                if edge == "begin" and r.state != ReservationState.SCHEDULED:
                    continue
                if (r.id, edge) in held:
                    continue
                if at > now:
                    schedule_edge(sched, r.id, edge, at)
                    done["rescheduled"].append(r.id)
                    continue
                if now - at < IN_FLIGHT:
                    continue
                if edge == "begin" and r.end_at > now:
                    log.warning(
                        "reservation %s (lab %s) starts late: its start %s passed while "
                        "nothing ran",
                        r.id,
                        r.lab_name,
                        r.start_at.isoformat(),
                    )
                    r.late = True
                    done["late"].append(r.id)
                elif edge == "end":
                    done["ended"].append(r.id)
                else:
                    continue  # its end passed too: `end` marks it missed
                schedule_edge(sched, r.id, edge, now)
    return done
