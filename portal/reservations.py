"""The portal's rules for reservations: book a template for a time, move and cancel a booking.

A booking is refused before anything is recorded when its times are wrong (422, naming the
field: an end not after the start, a start in the past, longer than LTB_MAX_RESERVATION_HOURS)
or when it does not fit (409, naming the conflict: the hypervisors' CPUs or memory at some
moment of it, portal.capacity; the user's quotas, portal.quotas). Bookings are serialised
(store.capacity.lock_bookings), so two requests cannot both take the last room.

Each reservation gets its own lab name (store.labs.unique_lab_name) and the template
version's topology renamed to it; rq-scheduler then holds its edges (jobs.reservations),
and when Redis is away the scheduler's reconcile schedules them from PostgreSQL later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from apiflask import HTTPError
from flask import current_app
from redis.exceptions import RedisError

from jobs import reservations as edges
from jobs.settings import load as job_settings
from ltb.topology import TopologyError, parse_lab
from portal import quotas
from portal.capacity import place, place_reservation
from portal.templates import usable_version
from store.capacity import lab_needs, lock_bookings, reservation_needs
from store.db import db
from store.labs import renamed_topology, unique_lab_name
from store.models import Reservation, ReservationState, TemplateVersion, User, utcnow

log = logging.getLogger(__name__)

# A start this far in the past is still "now" (the request took a moment to arrive).
PAST_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class Slot:
    start_at: datetime
    end_at: datetime


def template_version(user: User, template_id: int, version: int | None) -> TemplateVersion:
    """The template version a reservation books (portal.templates.usable_version)."""
    return usable_version(user, template_id, version)


def check_slot(start_at: datetime, end_at: datetime, *, started: bool = False) -> None:
    """Refuse (422, naming the field) times that cannot be booked. `started`: the
    reservation already runs, so only its end may still move (and not into the past)."""
    now = utcnow()
    if end_at <= start_at:
        raise HTTPError(
            422,
            f"end_at {end_at.isoformat()} is not after start_at {start_at.isoformat()}",
            {"end_at": ["must be after start_at"]},
        )
    if started and end_at < now - PAST_TOLERANCE:
        raise HTTPError(422, "end_at is in the past", {"end_at": ["must not be in the past"]})
    if not started and start_at < now - PAST_TOLERANCE:
        raise HTTPError(
            422,
            f"start_at {start_at.isoformat()} is in the past (now is {now.isoformat()})",
            {"start_at": ['must not be in the past; use "now" to start now']},
        )
    hours = float(current_app.config["LTB_MAX_RESERVATION_HOURS"])
    if end_at - start_at > timedelta(hours=hours):
        raise HTTPError(
            422,
            f"the reservation lasts {(end_at - start_at).total_seconds() / 3600:g} h, longer "
            f"than the maximum of {hours:g} h",
            {"end_at": [f"at most {hours:g} h after start_at"]},
        )


def book(
    user: User,
    version: TemplateVersion,
    slot: Slot,
    *,
    owner: User | None = None,
    course_id: int | None = None,
) -> Reservation:
    """Record a reservation of the template version for `owner` (the user by default) in
    the caller's transaction, after every check; the caller commits, then `schedule`s it."""
    owner = owner or user
    check_slot(slot.start_at, slot.end_at)
    template = version.template
    lock_bookings(db.session)
    name = unique_lab_name(db.session, template.name)
    topology = renamed_topology(version.topology, name)
    try:
        lab_model = parse_lab(topology, f"template {template.name} v{version.number}")
        needs = lab_needs(lab_model)
    except TopologyError as error:
        raise HTTPError(
            422,
            f"template {template.name} version {version.number} is not a valid lab",
            {"problems": [{"place": p.place, "message": p.message} for p in error.problems]},
        ) from None
    placed = place(lab_model, slot.start_at, slot.end_at)
    quotas.check_reservation(owner, needs, slot.start_at, slot.end_at)
    try:
        return edges.create_reservation(
            db.session,
            topology,
            slot.start_at,
            slot.end_at,
            owner=owner.username,
            owner_id=owner.id,
            template_version_id=version.id,
            course_id=course_id,
            hypervisor=placed.hypervisor,
            placement=placed.nodes,
        )
    except edges.ReservationConflict as error:
        raise HTTPError(409, str(error)) from None
    except edges.ReservationError as error:
        raise HTTPError(422, str(error)) from None


def schedule(reservations: list[Reservation]) -> None:
    """Give rq-scheduler the edges of committed reservations. If Redis is away they are
    recorded all the same: the scheduler's reconcile schedules them when it is back."""
    try:
        sched = edges.scheduler(job_settings())
        for reservation in reservations:
            edges.schedule(sched, reservation)
    except RedisError as error:
        log.warning("reservation edges left to the scheduler's reconcile: %s", error)


def unschedule(reservation: Reservation) -> None:
    try:
        edges.unschedule(edges.scheduler(job_settings()), reservation.id)
    except RedisError as error:
        # begin and end act only on the state and times they expect: a stale edge is harmless.
        log.warning("reservation %s: its old edges stay in Redis: %s", reservation.id, error)


def _locked(reservation: Reservation) -> Reservation:
    db.session.refresh(reservation, with_for_update=True)
    return reservation


def move(user: User, reservation: Reservation, slot: Slot) -> Reservation:
    """Move a reservation to new times, with the checks of a new one (its own old time does
    not count against it). A started one keeps its start; only its end moves."""
    reservation = _locked(reservation)
    started = reservation.state == ReservationState.STARTED
    if reservation.state not in (ReservationState.SCHEDULED, ReservationState.STARTED):
        raise HTTPError(409, f"reservation {reservation.id} is {reservation.state}; it cannot move")
    if started and slot.start_at != reservation.start_at:
        raise HTTPError(
            409,
            f"reservation {reservation.id} has started; only its end_at can move",
            {"start_at": [f"must stay {reservation.start_at.isoformat()}"]},
        )
    check_slot(slot.start_at, slot.end_at, started=started)
    lock_bookings(db.session)
    needs = reservation_needs(reservation)
    # A booking still to start is placed anew (never on a draining hypervisor); a started
    # one runs where it runs, so its new end must fit there.
    placed = place_reservation(reservation, slot.start_at, slot.end_at, started)
    owner = db.session.get(User, reservation.owner_id) if reservation.owner_id else user
    quotas.check_reservation(
        owner, needs, slot.start_at, slot.end_at, except_reservation=reservation.id
    )
    try:
        edges.check_times(
            db.session, reservation.lab_name, slot.start_at, slot.end_at, reservation.id
        )
    except edges.ReservationError as error:
        raise HTTPError(409, str(error)) from None
    unschedule(reservation)
    reservation.start_at, reservation.end_at = slot.start_at, slot.end_at
    if not started:  # a started one's lab runs where it runs
        reservation.hypervisor, reservation.placement = placed.hypervisor, placed.nodes
    db.session.commit()
    schedule([reservation])
    return reservation


def cancel(reservation: Reservation) -> Reservation:
    """Cancel a reservation: one still to start is cancelled and its edges leave
    rq-scheduler; a started one ends now (its lab is removed)."""
    reservation = _locked(reservation)
    if reservation.state == ReservationState.SCHEDULED:
        unschedule(reservation)
        reservation.state = ReservationState.CANCELLED.value
        reservation.ended_at = utcnow()
        db.session.commit()
        return reservation
    if reservation.state == ReservationState.STARTED:
        unschedule(reservation)
        reservation.end_at = utcnow()
        db.session.commit()
        edges.end(reservation.id)  # requests the remove (or retries while the lab is busy)
        db.session.expire_all()
        return db.session.get(Reservation, reservation.id)
    raise HTTPError(409, f"reservation {reservation.id} is {reservation.state}; nothing to cancel")
