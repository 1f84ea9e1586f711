"""The rules of topology templates: validation with lines, versions, sharing and deletion.

A template's content lives in its versions: an edit of its topology adds a version, and labs
and reservations keep the version they were made from. A topology is validated by the same
model the playbooks use (ltb.topology.parse_lab), every problem at once with its place and
line. Who may see or change a template is portal.access's; this module is what they may do.
"""

from __future__ import annotations

from typing import Any

from apiflask import HTTPError
from sqlalchemy import ColumnElement, false, or_, select, update

from ltb.places import problem_lines
from ltb.spec import MAX_TOPOLOGY_BYTES
from ltb.topology import TopologyError, parse_lab
from portal.access import is_admin, taken_course_ids, taught_course_ids, template_or_404
from store.db import db
from store.models import (
    Course,
    Lab,
    LabState,
    Reservation,
    ReservationState,
    Template,
    TemplateVersion,
    User,
    Visibility,
    utcnow,
)

# Reservations that will deploy, or have deployed, a lab of the template.
ACTIVE_RESERVATION_STATES = (ReservationState.SCHEDULED.value, ReservationState.STARTED.value)


def problem_list(text: str, problems: list[Any]) -> list[dict[str, Any]]:
    lines = problem_lines(text, problems)
    return [
        {"place": p.place, "line": line, "message": p.message}
        for p, line in zip(problems, lines, strict=True)
    ]


def check_size(text: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TOPOLOGY_BYTES:
        raise HTTPError(
            413,
            "The topology is too large",
            {"topology": f"{size} bytes; a topology has at most {MAX_TOPOLOGY_BYTES} (1 MiB)"},
        )


def validation(text: str) -> dict[str, Any]:
    """Every problem and warning of a topology, each with place, line and message."""
    check_size(text)
    try:
        lab = parse_lab(text, "topology")
    except TopologyError as error:
        return {"valid": False, "problems": problem_list(text, error.problems), "warnings": []}
    return {"valid": True, "problems": [], "warnings": problem_list(text, list(lab.warnings))}


def checked_topology(text: str) -> list[dict[str, Any]]:
    """The warnings of a valid topology; 422 with every problem of one that is not."""
    result = validation(text)
    if not result["valid"]:
        count = len(result["problems"])
        raise HTTPError(
            422,
            f"The topology has {count} error{'s' if count != 1 else ''}",
            {"problems": result["problems"], "warnings": result["warnings"]},
        )
    return result["warnings"]


def visible_templates(user: User, mine: bool = False) -> Any:
    """A select of the templates the user may see (portal.access.may_see_template), by id;
    with `mine`, only the user's own."""
    query = select(Template).order_by(Template.id)
    if mine:
        return query.where(Template.owner_id == user.id)
    if is_admin(user):
        return query
    courses = taken_course_ids(user) | taught_course_ids(user)
    shared_with_course: ColumnElement[bool] = (
        (Template.visibility == Visibility.COURSE.value) & Template.course_id.in_(courses)
        if courses
        else false()
    )
    return query.where(
        or_(
            Template.owner_id == user.id,
            Template.visibility == Visibility.PUBLIC.value,
            shared_with_course,
        )
    )


def _checked_sharing(user: User, visibility: str, course_id: int | None) -> int | None:
    """The course a template is shared with: only with one the user teaches (or any, for an
    admin); no course unless the visibility is 'course'."""
    if visibility != Visibility.COURSE.value:
        if course_id is not None:
            raise HTTPError(
                422, "Only a template shared with a course names one", {"course_id": course_id}
            )
        return None
    if course_id is None:
        raise HTTPError(
            422, "A template shared with a course needs course_id", {"course_id": "missing"}
        )
    course = db.session.get(Course, course_id)
    if course is None or not (is_admin(user) or course.teacher_id == user.id):
        raise HTTPError(422, "No such course among those you teach", {"course_id": course_id})
    return course.id


def latest_version(template: Template) -> TemplateVersion:
    return template.versions[-1]


def version_of(template: Template, number: int | None) -> TemplateVersion:
    """The template's version `number` (the newest if None); 404 if it has none such."""
    if number is None:
        return latest_version(template)
    for version in template.versions:
        if version.number == number:
            return version
    raise HTTPError(404, f"Template {template.id} has no version {number}", {"version": number})


def usable_version(user: User, template_id: int, number: int | None) -> TemplateVersion:
    """The version `number` (the newest if None) of a template the user may see, to start or
    book a lab from: 404 for a template they may not see, 422 naming `version` when the
    template has no such version."""
    template = template_or_404(user, template_id)
    for version in reversed(template.versions):
        if number is None or version.number == number:
            return version
    which = f"version {number}" if number is not None else "a version"
    raise HTTPError(422, f"template {template.id} has no {which}", {"version": number})


def create_template(
    user: User,
    name: str,
    description: str | None,
    topology: str,
    visibility: str,
    course_id: int | None,
) -> tuple[Template, list[dict[str, Any]]]:
    """A new template of `user` with its first version; and the topology's warnings."""
    warnings = checked_topology(topology)
    course = _checked_sharing(user, visibility, course_id)
    now = utcnow()
    template = Template(
        owner_id=user.id,
        name=name,
        description=description,
        visibility=visibility,
        course_id=course,
        created_at=now,
        updated_at=now,
    )
    template.versions.append(
        TemplateVersion(number=1, topology=topology, created_at=now, created_by_id=user.id)
    )
    db.session.add(template)
    db.session.commit()
    return template, warnings


def change_template(
    user: User, template: Template, changes: dict[str, Any]
) -> tuple[Template, list[dict[str, Any]]]:
    """Change metadata; a topology that differs from the newest version's adds a version."""
    warnings: list[dict[str, Any]] = []
    topology = changes.get("topology")
    if topology is not None:
        warnings = checked_topology(topology)
    if "visibility" in changes or "course_id" in changes:
        visibility = changes.get("visibility", template.visibility)
        course_id = changes.get("course_id", template.course_id)
        if visibility != Visibility.COURSE.value and "course_id" not in changes:
            course_id = None  # leaving a course's sharing forgets the course
        template.course_id = _checked_sharing(user, visibility, course_id)
        template.visibility = visibility
    for key in ("name", "description"):
        if key in changes:
            setattr(template, key, changes[key])
    now = utcnow()
    if topology is not None and topology != latest_version(template).topology:
        template.versions.append(
            TemplateVersion(
                number=latest_version(template).number + 1,
                topology=topology,
                created_at=now,
                created_by_id=user.id,
            )
        )
    template.updated_at = now
    db.session.commit()
    return template, warnings


def _users_of(version_ids: list[int]) -> dict[str, list[Any]]:
    """What still uses these versions: labs not removed, reservations not over."""
    labs = db.session.execute(
        select(Lab.id, Lab.name, Lab.state).where(
            Lab.template_version_id.in_(version_ids), Lab.state != LabState.REMOVED.value
        )
    ).all()
    reservations = db.session.execute(
        select(Reservation.id, Reservation.state).where(
            Reservation.template_version_id.in_(version_ids),
            Reservation.state.in_(ACTIVE_RESERVATION_STATES),
        )
    ).all()
    now = utcnow()
    courses = db.session.execute(
        select(Course.id, Course.name).where(
            Course.template_version_id.in_(version_ids),
            or_(Course.end_at.is_(None), Course.end_at > now),
        )
    ).all()
    return {
        "labs": [{"id": i, "name": n, "state": s} for i, n, s in labs],
        "reservations": [{"id": i, "state": s} for i, s in reservations],
        "courses": [{"id": i, "name": n} for i, n in courses],
    }


def delete_template(template: Template) -> None:
    """Delete the template and its versions; 409 naming what still uses one of them. Labs,
    reservations and courses that are over keep their topology but forget the version."""
    version_ids = [version.id for version in template.versions]
    users = _users_of(version_ids)
    if any(users.values()):
        named = [f"lab {lab['name']} ({lab['state']})" for lab in users["labs"]]
        named += [f"reservation {r['id']} ({r['state']})" for r in users["reservations"]]
        named += [f"course {c['name']}" for c in users["courses"]]
        raise HTTPError(409, f"Template {template.id} is in use by {', '.join(named)}", users)
    for model in (Lab, Reservation, Course):
        db.session.execute(
            update(model)
            .where(model.template_version_id.in_(version_ids))
            .values(template_version_id=None)
        )
    db.session.delete(template)
    db.session.commit()
