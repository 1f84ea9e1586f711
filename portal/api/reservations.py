"""The API of reservations: book a template for a time (or from now), list, show, move and
cancel bookings, and the hypervisors' free capacity for the calendar. The rules are in
portal/reservations.py, portal/capacity.py and portal/quotas.py.

A student sees their own reservations; a teacher also those of the courses they teach; an
admin all. Another user's reservation is 404, like one that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apiflask import APIBlueprint, HTTPError, Schema
from apiflask.fields import AwareDateTime, Boolean, Dict, Float, Integer, List, Nested, String
from apiflask.validators import OneOf, Range
from marshmallow import ValidationError
from sqlalchemy import or_, select

from portal import capacity
from portal import reservations as rules
from portal.access import is_admin, reservation_or_404, taught_course_ids
from portal.api.paging import PageOut, PageQuery, page_of
from portal.auth import current_user, login_required
from store.db import db
from store.models import Reservation, ReservationState, User, utcnow

bp = APIBlueprint("reservations", __name__, url_prefix="/api")

# The calendar: at most this long a range.
MAX_CALENDAR_RANGE = timedelta(days=31)


# Times outside these years are refused: a week or a zone added must not overflow (500).
EARLIEST_YEAR, LATEST_YEAR = 1970, 9000


class Time(AwareDateTime):
    """An ISO 8601 time with its zone, from EARLIEST_YEAR to before LATEST_YEAR."""

    def _deserialize(self, value, attr, data, **kwargs):
        time = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_YEAR <= time.year < LATEST_YEAR:
            raise ValidationError(f"must be in the years {EARLIEST_YEAR} to {LATEST_YEAR - 1}")
        return time


class StartTime(Time):
    """An ISO 8601 time with its zone, or "now"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "now":
            return utcnow()
        return super()._deserialize(value, attr, data, **kwargs)


def _times_in_utc(data: dict) -> dict:
    for key in ("start_at", "end_at"):
        if data.get(key) is not None:
            data[key] = data[key].astimezone(UTC)
    return data


class ReservationIn(Schema):
    template_id = Integer(required=True, validate=Range(min=1))
    version = Integer(load_default=None, validate=Range(min=1))
    start_at = StartTime(required=True, metadata={"description": 'ISO 8601 with zone, or "now"'})
    end_at = Time(required=True)


class ReservationMoveIn(Schema):
    start_at = StartTime(load_default=None)
    end_at = Time(load_default=None)


class ReservationListQuery(PageQuery):
    state = String(load_default=None, validate=OneOf([s.value for s in ReservationState]))


class ReservationOut(Schema):
    id = Integer()
    lab_name = String()
    owner_id = Integer(allow_none=True)
    template_version_id = Integer(allow_none=True)
    course_id = Integer(allow_none=True)
    state = String()
    start_at = String()
    end_at = String()
    late = Boolean()
    cpus = Float(allow_none=True)
    memory_bytes = Integer(allow_none=True)
    nodes = Integer(allow_none=True)
    hypervisor = String(
        allow_none=True,
        metadata={"description": "where its placement put it; its lab is deployed there"},
    )
    placement = Dict(
        keys=String(),
        values=String(),
        allow_none=True,
        metadata={
            "description": "a spread lab's nodes and the hypervisor each is deployed on; "
            "null: all on `hypervisor` (but for nodes its topology pins)"
        },
    )
    started_at = String(allow_none=True)
    ended_at = String(allow_none=True)
    deploy_job_id = String(allow_none=True)
    remove_job_id = String(allow_none=True)


class ReservationPageOut(PageOut):
    items = List(Nested(ReservationOut))


class CapacityQuery(Schema):
    # "from" is a Python keyword: the query parameter is mapped to `start`.
    start = Time(data_key="from", load_default=None)
    end = Time(data_key="to", load_default=None)
    step_minutes = Integer(load_default=60, validate=Range(min=15, max=24 * 60))


class CapacitySlotOut(Schema):
    start = String()
    end = String()
    free_cpus = Float(
        metadata={
            "description": "CPUs of the largest lab that fits on one hypervisor (any lab "
            "up to free_cpus and free_memory_bytes fits)"
        }
    )
    free_memory_bytes = Integer(metadata={"description": "its memory (with free_cpus)"})
    spread_cpus = Float(
        metadata={
            "description": "CPUs the hypervisors that take new labs have free together: "
            "a larger lab fits spread over them up to this, if each node fits on one of them"
        }
    )
    spread_memory_bytes = Integer(metadata={"description": "their memory (with spread_cpus)"})
    labs = Integer()


class CapacityTotalOut(Schema):
    cpus = Float()
    memory_bytes = Integer()


class CapacityOut(Schema):
    capacity = Nested(CapacityTotalOut)
    step_seconds = Integer()
    slots = List(Nested(CapacitySlotOut))


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def reservation_out(r: Reservation) -> dict:
    return {
        "id": r.id,
        "lab_name": r.lab_name,
        "owner_id": r.owner_id,
        "template_version_id": r.template_version_id,
        "course_id": r.course_id,
        "state": r.state,
        "start_at": _time(r.start_at),
        "end_at": _time(r.end_at),
        "late": r.late,
        "cpus": r.cpus,
        "memory_bytes": r.memory_bytes,
        "nodes": r.nodes,
        "hypervisor": r.hypervisor,
        "placement": r.placement,
        "started_at": _time(r.started_at),
        "ended_at": _time(r.ended_at),
        "deploy_job_id": r.deploy_job_id,
        "remove_job_id": r.remove_job_id,
    }


def visible_reservations(user: User):
    query = select(Reservation)
    if not is_admin(user):
        taught = taught_course_ids(user)
        query = query.where(
            or_(Reservation.owner_id == user.id, Reservation.course_id.in_(taught))
            if taught
            else Reservation.owner_id == user.id
        )
    return query


@bp.post("/reservations")
@login_required()
@bp.input(ReservationIn, arg_name="body")
@bp.output(ReservationOut, status_code=201)
@bp.doc(responses={409: "Over capacity, over quota, or the lab is reserved then"})
def create_reservation(body):
    """Book a template (version) for a time; start_at "now" starts it at once."""
    user = current_user()
    body = _times_in_utc(body)
    version = rules.template_version(user, body["template_id"], body["version"])
    reservation = rules.book(user, version, rules.Slot(body["start_at"], body["end_at"]))
    db.session.commit()
    rules.schedule([reservation])
    return reservation_out(reservation)


@bp.get("/reservations")
@login_required()
@bp.input(ReservationListQuery, location="query", arg_name="query")
@bp.output(ReservationPageOut)
def list_reservations(query):
    """The reservations the caller may see, soonest first."""
    select_ = visible_reservations(current_user())
    if query["state"] is not None:
        select_ = select_.where(Reservation.state == query["state"])
    return page_of(select_.order_by(Reservation.start_at, Reservation.id), query, reservation_out)


@bp.get("/reservations/<int:reservation_id>")
@login_required()
@bp.output(ReservationOut)
def show_reservation(reservation_id: int):
    return reservation_out(reservation_or_404(current_user(), reservation_id))


@bp.patch("/reservations/<int:reservation_id>")
@login_required()
@bp.input(ReservationMoveIn, arg_name="body")
@bp.output(ReservationOut)
@bp.doc(responses={409: "Over capacity, over quota, or it cannot move any more"})
def move_reservation(reservation_id: int, body):
    """Move a reservation: new start_at and/or end_at, checked as a new booking."""
    reservation = reservation_or_404(current_user(), reservation_id)
    body = _times_in_utc(body)
    if body["start_at"] is None and body["end_at"] is None:
        raise HTTPError(422, "give start_at, end_at or both", {"start_at": ["missing"]})
    slot = rules.Slot(
        body["start_at"] or reservation.start_at, body["end_at"] or reservation.end_at
    )
    return reservation_out(rules.move(current_user(), reservation, slot))


@bp.delete("/reservations/<int:reservation_id>")
@login_required()
@bp.output(ReservationOut)
@bp.doc(responses={409: "It has already ended"})
def cancel_reservation(reservation_id: int):
    """Cancel a reservation: one still to come is cancelled, a started one ends now."""
    return reservation_out(rules.cancel(reservation_or_404(current_user(), reservation_id)))


@bp.get("/capacity")
@login_required()
@bp.input(CapacityQuery, location="query", arg_name="query")
@bp.output(CapacityOut)
def free_capacity(query):
    """Free CPUs and memory of the hypervisors in steps (default: hourly over a week from
    the current hour)."""
    start = (query["start"] or utcnow().replace(minute=0, second=0, microsecond=0)).astimezone(UTC)
    end = (query["end"] or start + timedelta(days=7)).astimezone(UTC)
    if end <= start:
        raise HTTPError(422, "to is not after from", {"to": ["must be after from"]})
    if end - start > MAX_CALENDAR_RANGE:
        raise HTTPError(422, "the range is longer than 31 days", {"to": ["at most 31 days"]})
    return capacity.calendar(start, end, timedelta(minutes=query["step_minutes"]))
