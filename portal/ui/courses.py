"""Pages of courses: teachers create a course (a template, a time slot, students by name or
a join code) and see every student's reservation and lab at a glance, and reset one or all;
students join with a code and see only their own entry. The rules are the API's
(portal.courses, portal.access); a refusal is shown next to the form the user sent.
"""

from __future__ import annotations

import re

from apiflask import HTTPError
from flask import flash, redirect, render_template, request, url_for
from redis.exceptions import RedisError
from sqlalchemy import or_, select

from portal import courses as rules
from portal.access import course_or_404, is_admin, not_found, taken_course_ids
from portal.auth import current_user
from portal.reservations import Slot, schedule
from portal.ui import bp, page_login_required
from portal.ui.reservations import form_time, parse_id, parse_time, templates_for
from store.db import db
from store.models import Course, Role, TemplateVersion, User, utcnow

TEACHERS = (Role.ADMIN.value, Role.TEACHER.value)
MAX_STUDENTS = 500


def may_create(user: User) -> bool:
    return user.role in TEACHERS


def my_courses(user: User) -> list[Course]:
    """The courses the user teaches or takes (all, for an admin), newest first."""
    query = select(Course).order_by(Course.id.desc()).limit(100)
    if not is_admin(user):
        query = query.where(
            or_(Course.teacher_id == user.id, Course.id.in_(taken_course_ids(user) or {-1}))
        )
    return list(db.session.scalars(query))


def student_names(text: str) -> list[str]:
    """Usernames from a text box: separated by spaces, commas or new lines."""
    names = [name for name in re.split(r"[\s,;]+", text) if name]
    if len(names) > MAX_STUDENTS:
        raise HTTPError(
            422, f"at most {MAX_STUDENTS} students per course", {"students": ["too many"]}
        )
    too_long = [name for name in names if len(name) > 32]
    if too_long:
        raise HTTPError(
            422, f"not a username (too long): {too_long[0][:40]}", {"students": ["too long"]}
        )
    return names


def _courses_page(error=None, form=None, join_error=None, status=200):
    user = current_user()
    page = render_template(
        "courses.html",
        courses=my_courses(user),
        may_create=may_create(user),
        templates=templates_for(user) if may_create(user) else [],
        form=form or {},
        error=error,
        join_error=join_error,
    )
    return page, status


@bp.get("/courses")
@page_login_required()
def courses():
    return _courses_page()


@bp.post("/courses")
@page_login_required(*TEACHERS)
def course_create():
    user = current_user()
    form = request.form.to_dict()
    try:
        name = form.get("name", "").strip()
        if not name or len(name) > 128:
            raise HTTPError(422, "Name must be 1 to 128 characters", {"name": ["length"]})
        course, booked = rules.create_course(
            user,
            name,
            parse_id("template_id", "Template", form.get("template_id")),
            parse_id("version", "Version", form.get("version"), optional=True),
            Slot(
                parse_time("start_at", "Start", form.get("start_at")),
                parse_time("end_at", "End", form.get("end_at")),
            ),
            student_names(form.get("students", "")),
            "join_code" in request.form,
        )
        db.session.commit()
    except HTTPError as error:
        db.session.rollback()
        return _courses_page(error=error, form=form, status=error.status_code)
    schedule(booked)
    return redirect(url_for("ui.course", course_id=course.id))


@bp.post("/courses/join")
@page_login_required()
def course_join():
    code = request.form.get("code", "").strip()
    try:
        if not code or len(code) > 32:
            raise HTTPError(422, "Enter the course's join code", {"code": ["missing"]})
        course, reservation = rules.join_course(current_user(), code)
        db.session.commit()
    except HTTPError as error:
        db.session.rollback()
        return _courses_page(join_error=error, status=error.status_code)
    schedule([reservation])
    return redirect(url_for("ui.course", course_id=course.id))


def _course_page(course: Course, error=None, status=200):
    user = current_user()
    version = (
        db.session.get(TemplateVersion, course.template_version_id)
        if course.template_version_id
        else None
    )
    page = render_template(
        "course.html",
        course=course,
        version=version,
        teaches=rules.may_teach(user, course),
        students=rules.students_view(user, course),
        form_time=form_time,
        now=utcnow(),
        error=error,
    )
    return page, status


@bp.get("/courses/<int:course_id>")
@page_login_required()
def course(course_id: int):
    return _course_page(course_or_404(current_user(), course_id))


def taught_course_or_404(course_id: int) -> Course:
    """A course the caller teaches (any, for an admin): 404 for one they may not see, 403
    for one they take as a student (as the API)."""
    user = current_user()
    found = course_or_404(user, course_id)
    if not rules.may_teach(user, found):
        raise HTTPError(403, "Only the course's teacher or an admin may do this")
    return found


def _student_or_all(course: Course) -> User | None:
    """The student `?student=` (or the form's) names, or None for every student."""
    value = request.values.get("student", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) not in {m.user_id for m in course.members}:
        raise not_found("student")
    return db.session.get(User, int(value))


@bp.get("/courses/<int:course_id>/reset")
@page_login_required(*TEACHERS)
def course_reset_confirm(course_id: int):
    found = taught_course_or_404(course_id)
    return render_template("course_reset.html", course=found, student=_student_or_all(found))


@bp.post("/courses/<int:course_id>/reset")
@page_login_required(*TEACHERS)
def course_reset(course_id: int):
    """Reset one student's lab (form field `student`) or every started one."""
    found = taught_course_or_404(course_id)
    student = _student_or_all(found)
    try:
        done = rules.reset_students(found, [student.id] if student else None)
    except RedisError:
        # The resets go through rq-scheduler; nothing was queued.
        flash("No reset was queued: the job queue is out of reach. Try again in a minute.")
        return redirect(url_for("ui.course", course_id=course_id))
    names = {m.user_id: m.user.username for m in found.members}
    reset = ", ".join(names[i] for i in done["reset"]) or "nobody"
    message = f"Reset queued for: {reset}."
    if done["not_running"]:
        waiting = ", ".join(names[i] for i in done["not_running"])
        message += f" Not running, so not reset: {waiting}."
    flash(message)
    return redirect(url_for("ui.course", course_id=course_id))
