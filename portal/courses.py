"""The portal's rules for courses: a teacher gives students a template and a time slot, and
every student gets their own reservation of it (their own lab, owned by them, with the
course's id); students join by name or by the course's join code. The teacher sees every
student's reservation and lab, and can reset one or all (the lab removed and deployed again
from the same template version, jobs.reservations.schedule_reset).

A course is booked whole or not at all: each student's reservation passes the checks of any
booking (portal.reservations.book: times, capacity, the student's quotas) in one
transaction, and a refusal names the student it failed for.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from apiflask import HTTPError
from sqlalchemy import select

from jobs import reservations as edges
from jobs.settings import load as job_settings
from portal.access import is_admin
from portal.reservations import Slot, book, template_version
from store.db import db
from store.models import (
    Course,
    CourseMember,
    Lab,
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
    wanted = list(dict.fromkeys(students))
    users = db.session.scalars(select(User).where(User.username.in_(wanted))).all()
    found = {user.username: user for user in users if not user.disabled}
    unknown = [username for username in wanted if username not in found]
    if unknown:
        raise HTTPError(
            422, f"no such users: {', '.join(unknown)}", {"students": [f"unknown: {unknown}"]}
        )
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
    for username in wanted:
        student = found[username]
        course.members.append(CourseMember(user_id=student.id))
        booked.append(_book_for(teacher, chosen, slot, student, course))
    return course, booked


def join_course(user: User, code: str) -> tuple[Course, Reservation]:
    """Make the user a student of the course with this join code and book them its slot
    (from now on if it has begun). 404 for an unknown code, 409 if already in or over."""
    course = db.session.scalars(select(Course).where(Course.join_code == code)).first()
    if course is None or not code:
        raise HTTPError(404, "No course has this join code")
    if any(member.user_id == user.id for member in course.members):
        raise HTTPError(409, f"you are already a student of course {course.id}")
    if course.end_at is None or course.start_at is None or course.end_at <= utcnow():
        raise HTTPError(409, f"course {course.id} has no time slot ahead to join")
    version = db.session.get(TemplateVersion, course.template_version_id)
    if version is None:
        raise HTTPError(409, f"course {course.id} has no template")
    course.members.append(CourseMember(user_id=user.id))
    slot = Slot(max(course.start_at, utcnow()), course.end_at)
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
