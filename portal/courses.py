"""The portal's rules for courses: a teacher gives students a template and a time slot, and
every student gets their own reservation of it (their own lab, owned by them, with the
course's id); students join by name or by the course's join code. The teacher sees every
student's reservation and lab, and can reset one or all (the lab removed and deployed again
from the same template version, jobs.reservations.schedule_reset).

A course is booked whole or not at all: each student's reservation passes the checks of any
booking (portal.reservations.book: times, capacity, the student's quotas) in one
transaction, and a refusal names the student it failed for. Editing a course is the same:
a new template or time slot moves every student's reservation with it, or none.

A teacher adds students (each booked like one who joins) and removes them (their
reservation of the course is cancelled, or ended now when it runs, and their other labs of
the course are removed).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from apiflask import HTTPError
from sqlalchemy import select, true

from jobs import reservations as edges
from jobs.settings import load as job_settings
from ltb.topology import TopologyError, parse_lab
from portal import quotas
from portal.access import is_admin, not_found
from portal.capacity import place_reservation
from portal.labs import remove_lab
from portal.reservations import (
    Slot,
    book,
    cancel,
    check_slot,
    schedule,
    template_version,
    unschedule,
)
from store.capacity import lab_needs, lock_bookings, reservation_needs
from store.db import db
from store.labs import renamed_topology
from store.models import (
    ACTIVE_JOB_STATUSES,
    Course,
    CourseMember,
    Job,
    Lab,
    LabState,
    Reservation,
    ReservationState,
    TemplateVersion,
    User,
    utcnow,
)

JOIN_CODE_BYTES = 9


def _book_for(teacher: User, version: TemplateVersion, slot: Slot, student: User, course: Course):
    try:
        return book(teacher, version, slot, owner=student, course_id=course.id)
    except HTTPError as error:
        detail = dict(error.detail or {}) | {"student": student.username}
        raise HTTPError(
            error.status_code, f"student {student.username}: {error.message}", detail
        ) from None


def create_course(
    teacher: User,
    name: str,
    template_id: int,
    version: int | None,
    slot: Slot,
    students: list[str],
    join_code: bool,
) -> tuple[Course, list[Reservation]]:
    """Record a course with its students and a reservation of the slot for each (the caller
    commits, then schedules them)."""
    chosen = template_version(teacher, template_id, version)
    found = _students(students)
    course = Course(
        name=name,
        teacher_id=teacher.id,
        join_code=secrets.token_urlsafe(JOIN_CODE_BYTES) if join_code else None,
        template_version_id=chosen.id,
        start_at=slot.start_at,
        end_at=slot.end_at,
        created_at=utcnow(),
    )
    db.session.add(course)
    db.session.flush()
    booked = []
    for student in found.values():
        course.members.append(CourseMember(user_id=student.id))
        booked.append(_book_for(teacher, chosen, slot, student, course))
    return course, booked


def _students(usernames: list[str]) -> dict[str, User]:
    """The enabled users of these names; 422 naming those that are not."""
    wanted = list(dict.fromkeys(usernames))
    users = db.session.scalars(select(User).where(User.username.in_(wanted))).all()
    found = {user.username: user for user in users if not user.disabled}
    unknown = [username for username in wanted if username not in found]
    if unknown:
        raise HTTPError(
            422, f"no such users: {', '.join(unknown)}", {"students": [f"unknown: {unknown}"]}
        )
    return {username: found[username] for username in wanted}


def _course_version(course: Course) -> TemplateVersion:
    version = (
        db.session.get(TemplateVersion, course.template_version_id)
        if course.template_version_id
        else None
    )
    if version is None:
        raise HTTPError(409, f"course {course.id} has no template")
    return version


def course_template_id(course: Course) -> int:
    """The id of the template the course's version belongs to."""
    return _course_version(course).template_id


def _slot_ahead(course: Course) -> Slot:
    """The part of the course's slot still ahead (from now if it has begun)."""
    if course.end_at is None or course.start_at is None or course.end_at <= utcnow():
        raise HTTPError(409, f"course {course.id} has no time slot ahead to join")
    return Slot(max(course.start_at, utcnow()), course.end_at)


def add_students(teacher: User, course: Course, usernames: list[str]) -> list[Reservation]:
    """Make these users students of the course, each booked the rest of its slot (the
    caller commits, then schedules them). All or none; a refusal names the student."""
    found = _students(usernames)
    members = {member.user_id for member in course.members}
    already = [name for name, user in found.items() if user.id in members]
    if already:
        raise HTTPError(
            409,
            f"already students of course {course.id}: {', '.join(already)}",
            {"students": [f"already in the course: {already}"]},
        )
    version = _course_version(course)
    slot = _slot_ahead(course)
    booked = []
    for student in found.values():
        course.members.append(CourseMember(user_id=student.id))
        booked.append(_book_for(teacher, version, slot, student, course))
    return booked


def holding_reservations(course: Course, user_id: int | None = None) -> list[Reservation]:
    """The course's reservations that still hold their time (of one student if given)."""
    query = select(Reservation).where(
        Reservation.course_id == course.id,
        Reservation.state.in_([ReservationState.SCHEDULED, ReservationState.STARTED]),
    )
    if user_id is not None:
        query = query.where(Reservation.owner_id == user_id)
    return list(db.session.scalars(query.order_by(Reservation.id).with_for_update()))


def remove_student(course: Course, user_id: int) -> dict[str, list]:
    """Take a student out of the course: their reservations of it are cancelled (a started
    one ends now, which removes its lab) and their other labs of the course are removed.
    A lab of theirs that is busy refuses the whole removal (409), before anything changes.
    Commits. Returns the reservations cancelled and the labs whose remove was requested."""
    member = next((m for m in course.members if m.user_id == user_id), None)
    if member is None:
        raise not_found("student")
    reservations = holding_reservations(course, user_id)
    held = {r.lab_name for r in reservations}
    labs = db.session.scalars(
        select(Lab).where(
            Lab.course_id == course.id,
            Lab.owner_id == user_id,
            Lab.state != LabState.REMOVED.value,
            Lab.name.not_in(held) if held else true(),
        )
    ).all()
    for lab in labs:
        busy = db.session.scalars(
            select(Job).where(Job.lab_id == lab.id, Job.status.in_(ACTIVE_JOB_STATUSES))
        ).first()
        if busy is not None:
            raise HTTPError(
                409,
                f"lab {lab.name} of the student is busy with its {busy.task}; "
                "try again when it has ended",
                {"job": busy.id, "task": busy.task},
            )
    course.members.remove(member)
    db.session.commit()
    done: dict[str, list] = {"reservations": [], "labs": []}
    for reservation in reservations:
        cancel(reservation)  # commits; a started one ends now and its lab is removed
        done["reservations"].append(reservation.id)
    for lab in labs:
        remove_lab(lab)
        done["labs"].append(lab.name)
    return done


def edit_course(
    teacher: User,
    course: Course,
    *,
    name: str | None = None,
    template_id: int | None = None,
    version: int | None = None,
    slot: Slot | None = None,
) -> list[Reservation]:
    """Change a course's name, template (version) or time slot. A new template or slot moves
    every student's reservation with it, each checked as a new booking (times, capacity,
    the student's quotas) with all of them at their new place, or none moves: a refusal
    names the student. A reservation that has started keeps its start and its lab (and the
    template version it runs); only its end moves, so a new start refuses while one runs.
    The caller commits, then reschedules the returned reservations (`reschedule`)."""
    if name is not None:
        course.name = name
    chosen = course_version = _course_version(course) if course.template_version_id else None
    if template_id is not None:
        chosen = template_version(teacher, template_id, version)
    new_version = chosen is not None and (course_version is None or chosen.id != course_version.id)
    moved_slot = slot is not None and (slot.start_at, slot.end_at) != (
        course.start_at,
        course.end_at,
    )
    if not (new_version or moved_slot):
        return []
    slot = slot if moved_slot else Slot(course.start_at, course.end_at)
    reservations = holding_reservations(course)
    started = [r for r in reservations if r.state == ReservationState.STARTED]
    scheduled = [r for r in reservations if r.state == ReservationState.SCHEDULED]
    if moved_slot:
        if started and slot.start_at != course.start_at:
            raise HTTPError(
                409,
                f"the labs of {_owners(started)} have started at "
                f"{course.start_at.isoformat()}; the course's start cannot move while they run "
                "(move its end only)",
                {"start_at": [f"must stay {course.start_at.isoformat()}"]},
            )
        check_slot(slot.start_at, slot.end_at, started=bool(started))
    lock_bookings(db.session)
    # Every reservation at its new place first, so each is checked against the others where
    # they will be, not where they were.
    for reservation in reservations:
        if reservation in scheduled and new_version:
            topology = renamed_topology(chosen.topology, reservation.lab_name)
            try:
                needs = lab_needs(parse_lab(topology, f"template version {chosen.id}"))
            except TopologyError as error:
                raise HTTPError(
                    422,
                    f"template version {chosen.number} is not a valid lab",
                    {
                        "problems": [
                            {"place": p.place, "message": p.message} for p in error.problems
                        ]
                    },
                ) from None
            reservation.topology = topology
            reservation.template_version_id = chosen.id
            reservation.cpus, reservation.memory_bytes = needs.cpus, needs.memory_bytes
            reservation.nodes = needs.nodes
        if moved_slot:
            if reservation in scheduled:
                reservation.start_at = slot.start_at
            reservation.end_at = slot.end_at
    db.session.flush()
    for reservation in reservations:
        _check_moved(reservation)
    course.template_version_id = chosen.id if chosen is not None else None
    course.start_at, course.end_at = slot.start_at, slot.end_at
    return reservations


def _owners(reservations: list[Reservation]) -> str:
    return ", ".join(sorted({r.owner or str(r.owner_id) for r in reservations}))


def _check_moved(reservation: Reservation) -> None:
    """The checks of a booking, for a reservation already at its new place; a refusal names
    its student."""
    student = reservation.owner or str(reservation.owner_id)
    needs = reservation_needs(reservation)
    owner = db.session.get(User, reservation.owner_id) if reservation.owner_id else None
    started = reservation.state == ReservationState.STARTED
    try:
        # Placed anew like a moved booking (portal.reservations.move); a started one stays.
        placed = place_reservation(reservation, reservation.start_at, reservation.end_at, started)
        if not started:
            reservation.hypervisor, reservation.placement = placed.hypervisor, placed.nodes
        if owner is not None:
            quotas.check_reservation(
                owner,
                needs,
                reservation.start_at,
                reservation.end_at,
                except_reservation=reservation.id,
            )
        edges.check_times(
            db.session,
            reservation.lab_name,
            reservation.start_at,
            reservation.end_at,
            reservation.id,
        )
    except edges.ReservationError as error:
        raise HTTPError(409, f"student {student}: {error}", {"student": student}) from None
    except HTTPError as error:
        detail = dict(error.detail or {}) | {"student": student}
        raise HTTPError(error.status_code, f"student {student}: {error.message}", detail) from None


def reschedule(reservations: list[Reservation]) -> None:
    """After the commit of an edit: the moved reservations' edges at their new times."""
    for reservation in reservations:
        unschedule(reservation)
    schedule(reservations)


def join_course(user: User, code: str) -> tuple[Course, Reservation]:
    """Make the user a student of the course with this join code and book them its slot
    (from now on if it has begun). 404 for an unknown code, 409 if already in or over."""
    course = db.session.scalars(select(Course).where(Course.join_code == code)).first()
    if course is None or not code:
        raise HTTPError(404, "No course has this join code")
    if any(member.user_id == user.id for member in course.members):
        raise HTTPError(409, f"you are already a student of course {course.id}")
    slot = _slot_ahead(course)
    version = _course_version(course)
    course.members.append(CourseMember(user_id=user.id))
    reservation = book(user, version, slot, course_id=course.id)
    return course, reservation


def course_reservations(course: Course) -> list[Reservation]:
    """The course's students' reservations, newest first per student."""
    return list(
        db.session.scalars(
            select(Reservation)
            .where(Reservation.course_id == course.id)
            .order_by(Reservation.owner_id, Reservation.id.desc())
        )
    )


def may_teach(user: User, course: Course) -> bool:
    return is_admin(user) or course.teacher_id == user.id


def students_view(user: User, course: Course) -> list[dict]:
    """Each student with their reservation of the course and its lab's state; a student
    sees only their own entry."""
    by_owner: dict[int, Reservation] = {}
    for reservation in course_reservations(course):
        by_owner.setdefault(reservation.owner_id, reservation)
    labs = {
        lab.name: lab
        for lab in db.session.scalars(
            select(Lab).where(Lab.name.in_([r.lab_name for r in by_owner.values()]))
        )
    }
    entries = []
    for member in sorted(course.members, key=lambda m: m.user.username):
        if not may_teach(user, course) and member.user_id != user.id:
            continue
        reservation = by_owner.get(member.user_id)
        lab = labs.get(reservation.lab_name) if reservation else None
        entries.append(
            {
                "user_id": member.user_id,
                "username": member.user.username,
                "reservation": reservation,
                "lab": lab,
            }
        )
    return entries


def reset_students(course: Course, user_ids: list[int] | None) -> dict[str, list[int]]:
    """Reset the labs of the given students (all if None): each started reservation's lab is
    removed and deployed again from its template version. Returns the ids of the students
    whose reset was queued and of those whose lab has not started (or has ended)."""
    members = {member.user_id for member in course.members}
    if user_ids is not None and not set(user_ids) <= members:
        raise HTTPError(404, "No such student in this course")
    wanted = members if user_ids is None else set(user_ids)
    by_owner: dict[int, Reservation] = {}
    for reservation in course_reservations(course):
        by_owner.setdefault(reservation.owner_id, reservation)
    done: dict[str, list[int]] = {"reset": [], "not_running": []}
    sched = edges.scheduler(job_settings())
    for user_id in sorted(wanted):
        reservation = by_owner.get(user_id)
        if reservation is None or reservation.state != ReservationState.STARTED:
            done["not_running"].append(user_id)
            continue
        edges.schedule_reset(sched, reservation.id, "remove", delay=timedelta(0))
        done["reset"].append(user_id)
    return done
