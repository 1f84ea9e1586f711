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


def _course_page(course: Course, status=200, **forms):
    """The course's page; `forms`: edit_error/edit_form and add_error/add_form, a refused
    form shown again with its words next to it."""
    user = current_user()
    version = (
        db.session.get(TemplateVersion, course.template_version_id)
        if course.template_version_id
        else None
    )
    teaches = rules.may_teach(user, course)
    current = {
        "name": course.name,
        "template_id": str(version.template_id) if version else "",
        "version": str(version.number) if version else "",
        "start_at": form_time(course.start_at),
        "end_at": form_time(course.end_at),
    }
    page = render_template(
        "course.html",
        course=course,
        version=version,
        teaches=teaches,
        students=rules.students_view(user, course),
        templates=templates_for(user) if teaches else [],
        form_time=form_time,
        now=utcnow(),
        edit_form=forms.get("edit_form") or current,
        edit_error=forms.get("edit_error"),
        add_form=forms.get("add_form") or {},
        add_error=forms.get("add_error"),
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


def _form_time_or(value: str | None, field: str, label: str, kept) -> object:
    """The form's time, or the course's own where the form shows it unchanged (the form
    has minutes; the course may have seconds)."""
    if kept is not None and (value or "").strip() == form_time(kept):
        return kept
    return parse_time(field, label, value)


@bp.post("/courses/<int:course_id>/edit")
@page_login_required(*TEACHERS)
def course_edit(course_id: int):
    """Change the course's name, template or time slot: every student's reservation moves
    with it, or the refusal is shown next to the form."""
    found = taught_course_or_404(course_id)
    form = request.form.to_dict()
    try:
        name = form.get("name", "").strip()
        if not name or len(name) > 128:
            raise HTTPError(422, "Name must be 1 to 128 characters", {"name": ["length"]})
        slot = Slot(
            _form_time_or(form.get("start_at"), "start_at", "Start", found.start_at),
            _form_time_or(form.get("end_at"), "end_at", "End", found.end_at),
        )
        moved = rules.edit_course(
            current_user(),
            found,
            name=name,
            template_id=parse_id("template_id", "Template", form.get("template_id")),
            version=parse_id("version", "Version", form.get("version"), optional=True),
            slot=slot,
        )
        db.session.commit()
    except HTTPError as error:
        db.session.rollback()
        found = taught_course_or_404(course_id)
        return _course_page(found, error.status_code, edit_error=error, edit_form=form)
    rules.reschedule(moved)
    flash(f"Course changed; {len(moved)} student reservations follow it.")
    return redirect(url_for("ui.course", course_id=course_id))


@bp.post("/courses/<int:course_id>/students")
@page_login_required(*TEACHERS)
def course_add_students(course_id: int):
    """Add students by name: each gets their own reservation of the rest of the slot."""
    found = taught_course_or_404(course_id)
    form = request.form.to_dict()
    try:
        names = student_names(form.get("students", ""))
        if not names:
            raise HTTPError(422, "Name at least one student", {"students": ["missing"]})
        booked = rules.add_students(current_user(), found, names)
        db.session.commit()
    except HTTPError as error:
        db.session.rollback()
        found = taught_course_or_404(course_id)
        return _course_page(found, error.status_code, add_error=error, add_form=form)
    schedule(booked)
    flash(f"Added: {', '.join(names)}.")
    return redirect(url_for("ui.course", course_id=course_id))


def _member_or_404(course: Course, user_id: int) -> User:
    if user_id not in {member.user_id for member in course.members}:
        raise not_found("student")
    return db.session.get(User, user_id)


@bp.get("/courses/<int:course_id>/students/<int:user_id>/remove")
@page_login_required(*TEACHERS)
def course_remove_student_confirm(course_id: int, user_id: int):
    found = taught_course_or_404(course_id)
    return render_template(
        "course_remove_student.html", course=found, student=_member_or_404(found, user_id)
    )


@bp.post("/courses/<int:course_id>/students/<int:user_id>/remove")
@page_login_required(*TEACHERS)
def course_remove_student(course_id: int, user_id: int):
    """Take a student out: their reservation is cancelled (ended now if it runs) and their
    labs of the course are removed."""
    found = taught_course_or_404(course_id)
    student = _member_or_404(found, user_id)
    try:
        done = rules.remove_student(found, user_id)
    except HTTPError as error:
        db.session.rollback()
        flash(f"{student.username} was not removed: {error.message}")
        return redirect(url_for("ui.course", course_id=course_id))
    labs = f" Labs being removed: {', '.join(done['labs'])}." if done["labs"] else ""
    flash(f"{student.username} is no longer a student of the course.{labs}")
    return redirect(url_for("ui.course", course_id=course_id))
