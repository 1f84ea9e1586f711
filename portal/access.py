"""Which objects a user may see and act on; one function per kind of object.

Admins see everything. A student sees their own labs, templates and reservations, templates
shared with everyone or with a course they take, and their courses. A teacher also sees the
labs, reservations and students of the courses they teach. A user who may not see an object
gets 404 from `*_or_404`, never 403: the answer must not tell that it exists.
"""

from __future__ import annotations

from apiflask import HTTPError
from sqlalchemy import select

from store.db import db
from store.models import Course, CourseMember, Lab, Reservation, Role, Template, User, Visibility


def is_admin(user: User) -> bool:
    return user.role == Role.ADMIN


def taught_course_ids(user: User) -> set[int]:
    return set(db.session.scalars(select(Course.id).where(Course.teacher_id == user.id)))


def taken_course_ids(user: User) -> set[int]:
    return set(
        db.session.scalars(select(CourseMember.course_id).where(CourseMember.user_id == user.id))
    )


def may_see_lab(user: User, lab: Lab) -> bool:
    if is_admin(user) or lab.owner_id == user.id:
        return True
    return lab.course_id is not None and lab.course_id in taught_course_ids(user)


def may_see_reservation(user: User, reservation: Reservation) -> bool:
    if is_admin(user) or reservation.owner_id == user.id:
        return True
    return reservation.course_id is not None and reservation.course_id in taught_course_ids(user)


def may_see_template(user: User, template: Template) -> bool:
    if is_admin(user) or template.owner_id == user.id:
        return True
    if template.visibility == Visibility.PUBLIC:
        return True
    if template.visibility == Visibility.COURSE and template.course_id is not None:
        return template.course_id in taken_course_ids(user) | taught_course_ids(user)
    return False


def may_change_template(user: User, template: Template) -> bool:
    return is_admin(user) or template.owner_id == user.id


def may_see_course(user: User, course: Course) -> bool:
    if is_admin(user) or course.teacher_id == user.id:
        return True
    return course.id in taken_course_ids(user)


def not_found(what: str) -> HTTPError:
    return HTTPError(404, f"No such {what}")


# Ids are PostgreSQL integers: a larger number (from a URL or a body) names no object.
LARGEST_ID = 2**31 - 1


def _by_id(model, object_id: int):
    return db.session.get(model, object_id) if 1 <= object_id <= LARGEST_ID else None


def lab_or_404(user: User, lab_id: int) -> Lab:
    lab = _by_id(Lab, lab_id)
    if lab is None or not may_see_lab(user, lab):
        raise not_found("lab")
    return lab


def reservation_or_404(user: User, reservation_id: int) -> Reservation:
    reservation = _by_id(Reservation, reservation_id)
    if reservation is None or not may_see_reservation(user, reservation):
        raise not_found("reservation")
    return reservation


def template_or_404(user: User, template_id: int) -> Template:
    template = _by_id(Template, template_id)
    if template is None or not may_see_template(user, template):
        raise not_found("template")
    return template


def course_or_404(user: User, course_id: int) -> Course:
    course = _by_id(Course, course_id)
    if course is None or not may_see_course(user, course):
        raise not_found("course")
    return course
