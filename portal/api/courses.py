"""The API of courses: teachers (and admins) create a course with students or a join code,
a template and a time slot, and every student gets their own reservation of it; students
join with the code; the teacher sees each student's reservation and lab and resets one or
all. Teachers edit a course (name, template,
time slot: the students' reservations move with it) and add and remove students. The rules
are in portal/courses.py.

A student sees their course and, in it, only their own entry; a user outside the course
gets 404 for it, as for a course that does not exist.
"""

from __future__ import annotations

from datetime import UTC

from apiflask import APIBlueprint, HTTPError, Schema
from apiflask.fields import Boolean, Integer, List, Nested, String
from apiflask.validators import Length, Range
from sqlalchemy import or_, select

from portal import courses as rules
from portal.access import course_or_404, is_admin, not_found, taken_course_ids
from portal.api.paging import PageOut, PageQuery, page_of
from portal.api.reservations import ReservationOut, StartTime, Time, reservation_out
from portal.auth import current_user, login_required
from portal.reservations import Slot, schedule
from store.db import db
from store.models import Course, Role

bp = APIBlueprint("courses", __name__, url_prefix="/api")

MAX_STUDENTS = 500


class CourseIn(Schema):
    name = String(required=True, validate=Length(min=1, max=128))
    template_id = Integer(required=True, validate=Range(min=1))
    version = Integer(load_default=None, validate=Range(min=1))
    start_at = StartTime(required=True, metadata={"description": 'ISO 8601 with zone, or "now"'})
    end_at = Time(required=True)
    students = List(
        String(validate=Length(min=1, max=32)),
        load_default=list,
        validate=Length(max=MAX_STUDENTS),
    )
    join_code = Boolean(load_default=False, metadata={"description": "make a join code"})


class CourseChangeIn(Schema):
    name = String(validate=Length(min=1, max=128))
    template_id = Integer(validate=Range(min=1))
    version = Integer(load_default=None, validate=Range(min=1))
    start_at = StartTime(metadata={"description": 'ISO 8601 with zone, or "now"'})
    end_at = Time()


class StudentsIn(Schema):
    students = List(
        String(validate=Length(min=1, max=32)),
        required=True,
        validate=Length(min=1, max=MAX_STUDENTS),
    )


class JoinIn(Schema):
    code = String(required=True, validate=Length(min=1, max=32))


class CourseListQuery(PageQuery):
    pass


class LabStateOut(Schema):
    id = Integer()
    name = String()
    state = String()


class StudentOut(Schema):
    user_id = Integer()
    username = String()
    reservation = Nested(ReservationOut, allow_none=True)
    lab = Nested(LabStateOut, allow_none=True)


class CourseOut(Schema):
    id = Integer()
    name = String()
    teacher_id = Integer()
    template_version_id = Integer(allow_none=True)
    start_at = String(allow_none=True)
    end_at = String(allow_none=True)
    join_code = String(allow_none=True, metadata={"description": "teachers and admins only"})
    students = List(Nested(StudentOut))


class CourseSummaryOut(Schema):
    id = Integer()
    name = String()
    teacher_id = Integer()
    start_at = String(allow_none=True)
    end_at = String(allow_none=True)


class CoursePageOut(PageOut):
    items = List(Nested(CourseSummaryOut))


class ResetOut(Schema):
    reset = List(Integer(), metadata={"description": "students whose lab reset was queued"})
    not_running = List(Integer(), metadata={"description": "students whose lab has not started"})


def _time(value):
    return value.isoformat() if value is not None else None


def course_summary(course: Course) -> dict:
    return {
        "id": course.id,
        "name": course.name,
        "teacher_id": course.teacher_id,
        "start_at": _time(course.start_at),
        "end_at": _time(course.end_at),
    }


def course_out(course: Course) -> dict:
    user = current_user()
    students = [
        {
            "user_id": entry["user_id"],
            "username": entry["username"],
            "reservation": reservation_out(entry["reservation"]) if entry["reservation"] else None,
            "lab": (
                {"id": entry["lab"].id, "name": entry["lab"].name, "state": entry["lab"].state}
                if entry["lab"]
                else None
            ),
        }
        for entry in rules.students_view(user, course)
    ]
    teaches = rules.may_teach(user, course)
    return course_summary(course) | {
        "template_version_id": course.template_version_id,
        "join_code": course.join_code if teaches else None,
        "students": students,
    }


def taught_course_or_404(course_id: int) -> Course:
    """A course the caller teaches (or any, for admins); 404 if they may not see it, 403 if
    they take it as a student."""
    user = current_user()
    course = course_or_404(user, course_id)
    if not rules.may_teach(user, course):
        raise HTTPError(403, "Only the course's teacher or an admin may do this")
    return course


@bp.post("/courses")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.input(CourseIn, arg_name="body")
@bp.output(CourseOut, status_code=201)
@bp.doc(responses={409: "A student's reservation does not fit (capacity, quota)"})
def create_course(body):
    """Create a course: every student gets their own reservation of the template for the
    slot. Nothing is recorded if one of them is refused."""
    course, booked = rules.create_course(
        current_user(),
        body["name"],
        body["template_id"],
        body["version"],
        Slot(body["start_at"], body["end_at"]),
        body["students"],
        body["join_code"],
    )
    db.session.commit()
    schedule(booked)
    return course_out(course)


@bp.patch("/courses/<int:course_id>")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.input(CourseChangeIn, arg_name="body")
@bp.output(CourseOut)
@bp.doc(responses={409: "A student's reservation cannot move (capacity, quota, started)"})
def change_course(course_id: int, body):
    """Change the course's name, template (version) or time slot. A new template or slot
    moves every student's reservation, or none (a refusal names the student); a started
    lab keeps its start and template, only its end moves."""
    course = taught_course_or_404(course_id)
    slot = None
    if body.get("start_at") is not None or body.get("end_at") is not None:
        start_at = body.get("start_at") or course.start_at
        end_at = body.get("end_at") or course.end_at
        if start_at is None or end_at is None:
            raise HTTPError(422, "give start_at and end_at", {"start_at": ["missing"]})
        slot = Slot(start_at.astimezone(UTC), end_at.astimezone(UTC))
    template_id = body.get("template_id")
    if template_id is None and body["version"] is not None:
        template_id = rules.course_template_id(course)  # another version of the same template
    moved = rules.edit_course(
        current_user(),
        course,
        name=body.get("name"),
        template_id=template_id,
        version=body["version"],
        slot=slot,
    )
    db.session.commit()
    rules.reschedule(moved)
    return course_out(course)


@bp.post("/courses/<int:course_id>/students")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.input(StudentsIn, arg_name="body")
@bp.output(CourseOut, status_code=201)
@bp.doc(responses={409: "Already a student, no slot ahead, or a reservation does not fit"})
def add_students(course_id: int, body):
    """Add students by username: each gets their own reservation of the rest of the slot.
    Nothing is recorded if one of them is refused."""
    course = taught_course_or_404(course_id)
    booked = rules.add_students(current_user(), course, body["students"])
    db.session.commit()
    schedule(booked)
    return course_out(course)


@bp.delete("/courses/<int:course_id>/students/<int:user_id>")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.output(CourseOut)
@bp.doc(responses={409: "A lab of the student is busy"})
def remove_student(course_id: int, user_id: int):
    """Remove a student: their reservation of the course is cancelled (ended now if it
    runs, which removes its lab) and their other labs of the course are removed."""
    course = taught_course_or_404(course_id)
    rules.remove_student(course, user_id)
    return course_out(course)


@bp.post("/courses/join")
@login_required()
@bp.input(JoinIn, arg_name="body")
@bp.output(CourseOut, status_code=201)
def join_course(body):
    """Join a course with its code: the caller gets their own reservation of its slot."""
    course, reservation = rules.join_course(current_user(), body["code"])
    db.session.commit()
    schedule([reservation])
    return course_out(course)


@bp.get("/courses")
@login_required()
@bp.input(CourseListQuery, location="query", arg_name="query")
@bp.output(CoursePageOut)
def list_courses(query):
    """The courses the caller teaches or takes (all, for admins)."""
    user = current_user()
    select_ = select(Course).order_by(Course.id)
    if not is_admin(user):
        select_ = select_.where(
            or_(Course.teacher_id == user.id, Course.id.in_(taken_course_ids(user) or {-1}))
        )
    return page_of(select_, query, course_summary)


@bp.get("/courses/<int:course_id>")
@login_required()
@bp.output(CourseOut)
def show_course(course_id: int):
    """The course with each student's reservation and lab state (a student: their own)."""
    return course_out(course_or_404(current_user(), course_id))


@bp.post("/courses/<int:course_id>/students/<int:user_id>/reset")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.output(ResetOut, status_code=202)
def reset_student(course_id: int, user_id: int):
    """Restore a student's lab to its start: removed, then deployed again from the same
    template version."""
    course = taught_course_or_404(course_id)
    if user_id not in {member.user_id for member in course.members}:
        raise not_found("student")
    done = rules.reset_students(course, [user_id])
    if done["not_running"]:
        raise HTTPError(409, f"the lab of student {user_id} is not running; nothing to reset")
    return done


@bp.post("/courses/<int:course_id>/reset")
@login_required(Role.ADMIN, Role.TEACHER)
@bp.output(ResetOut, status_code=202)
def reset_course(course_id: int):
    """Reset the labs of every student whose lab has started."""
    return rules.reset_students(taught_course_or_404(course_id), None)
