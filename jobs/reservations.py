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
from store.capacity import lab_needs
from store.labs import LabBusy
from store.models import Lab, LabState, Reservation, ReservationState, utcnow

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
    session: Session,
    topology: str,
    start_at: datetime,
    end_at: datetime,
    owner: str | None = None,
    *,
    owner_id: int | None = None,
    template_version_id: int | None = None,
    course_id: int | None = None,
    hypervisor: str | None = None,
    placement: dict[str, str] | None = None,
) -> Reservation:
    """Record a reservation (the caller commits, then calls `schedule`); refuse one whose time
    overlaps another reservation of the same lab that has not ended. The reservation records
    what its lab needs (store.capacity.lab_needs), the hypervisor its placement chose and
    the portal's fields, which `begin` gives the lab it deploys; `placement`: where each node
    of a spread lab runs (store.capacity.spread), given to its lab the same way."""
    lab = parse_lab(topology, "reservation")
    check_times(session, lab.name, start_at, end_at)
    needs = lab_needs(lab)
    reservation = Reservation(
        lab_name=lab.name,
        owner=owner,
        owner_id=owner_id,
        template_version_id=template_version_id,
        course_id=course_id,
        cpus=needs.cpus,
        memory_bytes=needs.memory_bytes,
        nodes=needs.nodes,
        hypervisor=hypervisor,
        placement=placement if hypervisor else None,
        topology=topology,
        start_at=start_at,
        end_at=end_at,
        state=ReservationState.SCHEDULED.value,
        late=False,
    )
    session.add(reservation)
    session.flush()
    return reservation


def check_times(
    session: Session,
    lab_name: str,
    start_at: datetime,
    end_at: datetime,
    except_reservation: int | None = None,
) -> None:
    """Refuse times without a zone, an end not after the start, and a time that overlaps
    another reservation of the same lab that has not ended."""
    if start_at.tzinfo is None or end_at.tzinfo is None:
        raise ReservationError("reservation times must carry a time zone (UTC)")
    if end_at <= start_at:
        raise ReservationError("a reservation must end after it starts")
    # Held until the caller commits: two overlapping requests cannot both see no conflict.
    session.execute(
        select(func.pg_advisory_xact_lock(RESERVATION_LOCK_SPACE, func.hashtext(lab_name)))
    )
    query = select(Reservation).where(
        Reservation.lab_name == lab_name,
        Reservation.state.in_([ReservationState.SCHEDULED, ReservationState.STARTED]),
        Reservation.start_at < end_at,
        Reservation.end_at > start_at,
    )
    if except_reservation is not None:
        query = query.where(Reservation.id != except_reservation)
    clash = session.scalars(query.order_by(Reservation.start_at).limit(1)).first()
    if clash is not None:
        raise ReservationConflict(
            f"lab {lab_name!r} is already reserved from {clash.start_at.isoformat()} to "
            f"{clash.end_at.isoformat()} (reservation {clash.id}); pick a time outside it"
        )


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
    if reservation.state == ReservationState.SCHEDULED:
        schedule_edge(sched, reservation.id, "begin", reservation.start_at)
    schedule_edge(sched, reservation.id, "end", reservation.end_at)


def unschedule(sched: Scheduler, reservation_id: int) -> int:
    """Take the reservation's edges off rq-scheduler (before it is moved or cancelled);
    return how many were there. An edge already on the queue finds the reservation changed:
    `begin` and `end` act only on the state they expect."""
    found = 0
    for job in sched.get_jobs():
        mark = job.meta.get(META_KEY)
        if mark and mark[0] == reservation_id and mark[1] in ("begin", "end"):
            sched.cancel(job)
            found += 1
    return found


def submit_deploy(reservation: Reservation, settings: Settings) -> str:
    """Request the deploy of the reservation's lab as it was booked (at its start and again
    at a reset); return the job id. Raises LabBusy while another job holds the lab."""
    from jobs.queue import submit

    return submit(
        reservation.lab_name,
        "deploy",
        topology=reservation.topology,
        owner=reservation.owner,
        settings=settings,
        # Where it was placed when booked, even if that hypervisor drains since.
        hypervisor=reservation.hypervisor,
        placement=reservation.placement,
        owner_id=reservation.owner_id,
        template_version_id=reservation.template_version_id,
        course_id=reservation.course_id,
    )


def begin(reservation_id: int) -> str:
    """At the reservation's start: request its lab's deploy."""
    settings = load()
    with sessions(settings).begin() as session:
        reservation = session.get(Reservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.state != ReservationState.SCHEDULED:
            return f"nothing to do ({reservation.state if reservation else 'no reservation'})"
        if reservation.start_at - utcnow() > IN_FLIGHT:
            return "nothing to do (moved to a later start)"
        try:
            job_id = submit_deploy(reservation, settings)
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
        if reservation.end_at - utcnow() > IN_FLIGHT:
            return "nothing to do (moved to a later end)"
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


def schedule_reset(
    sched: Scheduler, reservation_id: int, phase: str = "remove", delay: timedelta = BUSY_RETRY
) -> None:
    """Restore a started reservation's lab to its start: `reset` removes it, then deploys
    it again from the reservation's topology (its template version), each when the lab is
    free. Run on the control queue, so the request returns at once."""
    sched.enqueue_in(
        delay,
        reset,
        reservation_id,
        phase,
        meta={META_KEY: [reservation_id, "reset"]},
        job_description=f"reservation {reservation_id} reset ({phase})",
        job_result_ttl=24 * 3600,
    )


def reset(reservation_id: int, phase: str = "remove") -> str:
    """One step of a reset (schedule_reset): `remove` the lab, then `deploy` it once it is
    removed. A step that finds the lab busy tries again; a remove that failed ends the reset
    (the lab is failed, as after any failed remove)."""
    from jobs.queue import submit

    settings = load()
    with sessions(settings).begin() as session:
        reservation = session.get(Reservation, reservation_id, with_for_update=True)
        if reservation is None or reservation.state != ReservationState.STARTED:
            return f"nothing to do ({reservation.state if reservation else 'no reservation'})"
        lab = session.scalars(select(Lab).where(Lab.name == reservation.lab_name)).one_or_none()
        try:
            if phase == "remove":
                if lab is not None and lab.state != LabState.REMOVED:
                    submit(reservation.lab_name, "remove", settings=settings)
                schedule_reset(scheduler(settings), reservation_id, "deploy")
                return "removing"
            if lab is not None and lab.state == LabState.REMOVING:
                raise LabBusy(lab.name, "", "remove")  # its remove is still to end
            if lab is not None and lab.state != LabState.REMOVED:
                log.warning("reservation %s: reset stops, its lab is %s", reservation_id, lab.state)
                return f"stopped: lab is {lab.state}"
            reservation.deploy_job_id = submit_deploy(reservation, settings)
            return reservation.deploy_job_id
        except LabBusy as busy:
            log.info("reservation %s reset: %s; trying again", reservation_id, busy)
            schedule_reset(scheduler(settings), reservation_id, phase)
            return "lab busy: retry scheduled"


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
