"""Pages of topology templates: the list with an upload form, a template's editor (problems
shown at their lines, checked on "Check" without saving), its picture, versions, sharing,
deletion, and starting a lab from it (now, directly, or as a reservation from now).

The rules are portal/templates.py's, portal/labs.py's and portal/reservations.py's, like the
API's; their refusals (HTTPError) are shown next to the form or button the user used.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apiflask import HTTPError
from flask import current_app, redirect, render_template, request, url_for
from sqlalchemy import select

from ltb.spec import MAX_TOPOLOGY_BYTES
from portal import labs as lab_rules
from portal import reservations as reservation_rules
from portal import templates as rules
from portal.access import (
    is_admin,
    may_change_template,
    reservation_or_404,
    template_or_404,
)
from portal.auth import current_user
from portal.ui import bp, page_login_required
from store.db import db
from store.models import Course, Lab, Template, Visibility, utcnow

PER_PAGE = 50
VISIBILITIES = [v.value for v in Visibility]
# "Start now" books this many hours unless the user asks for another length.
DEFAULT_HOURS = 2


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def message_fragment(message: str, status: int = 200, error: bool = True):
    """What an htmx action shows next to its button (htmx swaps only 2xx answers)."""
    return render_template("lab_message.html", message=message, error=error), status


def go_to(url: str):
    """Leave the page: htmx follows HX-Redirect, a plain form follows the redirect."""
    if is_htmx():
        return "", 204, {"HX-Redirect": url}
    return redirect(url)


def changeable_or_404(template_id: int) -> Template:
    template = template_or_404(current_user(), template_id)
    if not may_change_template(current_user(), template):
        raise HTTPError(403, "Only the template's owner or an admin may change it")
    return template


def taught_courses() -> list[Course]:
    """Courses a template may be shared with: those the user teaches (an admin: all)."""
    user = current_user()
    query = select(Course).order_by(Course.name)
    if not is_admin(user):
        query = query.where(Course.teacher_id == user.id)
    return list(db.session.scalars(query))


def field_errors(error: HTTPError) -> dict[str, str]:
    """A refusal's detail as one message per form field (problems are shown at lines)."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    return {
        key: ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        for key, value in detail.items()
        if key not in ("problems", "warnings")
    }


def metadata_errors(form: dict[str, str]) -> dict[str, str]:
    """The bounds of the API's TemplateIn schema, for the form's own fields."""
    errors = {}
    if not 1 <= len(form["name"]) <= 64:
        errors["name"] = "A name has 1 to 64 characters"
    if len(form["description"]) > 4000:
        errors["description"] = "A description has at most 4000 characters"
    if not form["topology"].strip():
        errors["topology"] = "The topology is empty: paste it or choose a file"
    return errors


def topology_from_form() -> tuple[str, str | None]:
    """The topology of the form: the chosen file if any, else the textarea."""
    upload = request.files.get("file")
    if upload is not None and upload.filename:
        try:
            return upload.read(MAX_TOPOLOGY_BYTES + 1).decode("utf-8"), None
        except UnicodeDecodeError:
            return "", f"{upload.filename} is not a UTF-8 text file"
    return request.form.get("topology", "").replace("\r\n", "\n"), None


def bad_lines(problems: list[dict[str, Any]]) -> list[int]:
    return sorted({p["line"] for p in problems if p.get("line")})


def refused(error: HTTPError) -> dict[str, Any]:
    """The page's view of a refusal: its message, its field errors, the topology's problems
    and warnings (each with its line)."""
    detail = error.detail if isinstance(error.detail, dict) else {}
    return {
        "message": error.message,
        "errors": field_errors(error),
        "problems": detail.get("problems", []),
        "warnings": detail.get("warnings", []),
    }


# The list and upload ---------------------------------------------------------------------------


def list_page(form: dict[str, str] | None = None, result: dict[str, Any] | None = None):
    user = current_user()
    page = db.paginate(
        rules.visible_templates(user),
        page=request.args.get("page", 1, type=int) or 1,
        per_page=PER_PAGE,
        max_per_page=PER_PAGE,
        error_out=False,
    )
    result = result or {"message": None, "errors": {}, "problems": [], "warnings": []}
    return render_template(
        "templates_list.html",
        page=page,
        form=form or {"name": "", "description": "", "topology": ""},
        result=result,
        bad_lines=bad_lines(result["problems"]),
    )


@bp.get("/templates")
@page_login_required()
def templates():
    return list_page()


@bp.post("/templates")
@page_login_required()
def upload_template():
    topology, file_error = topology_from_form()
    form = {
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
        "topology": topology,
    }
    errors = metadata_errors(form)
    if file_error:
        errors["file"] = file_error
    if errors:
        result = {"message": "The template was not saved", "errors": errors}
        return list_page(form, result | {"problems": [], "warnings": []}), 422
    try:
        template, _ = rules.create_template(
            current_user(),
            form["name"],
            form["description"] or None,
            form["topology"],
            Visibility.PRIVATE.value,
            None,
        )
    except HTTPError as error:
        db.session.rollback()
        return list_page(form, refused(error)), error.status_code
    return redirect(url_for("ui.template", template_id=template.id))


@bp.post("/templates/check")
@page_login_required()
def check_topology():
    """The problems and warnings of the posted topology, as the editor's problem list
    (nothing is stored)."""
    topology = request.form.get("topology", "").replace("\r\n", "\n")
    try:
        result = rules.validation(topology)
    except HTTPError as error:  # too large
        result = refused(error) | {"valid": False}
    else:
        result |= {"message": None, "errors": {}}
        if not result["valid"]:
            count = len(result["problems"])
            result["message"] = f"The topology has {count} error{'s' if count != 1 else ''}"
    return render_template(
        "templates_problems.html", result=result, bad_lines=bad_lines(result["problems"])
    )


# One template ----------------------------------------------------------------------------------


def detail_page(
    template: Template,
    form: dict[str, str] | None = None,
    result: dict[str, Any] | None = None,
    action_errors: dict[str, str] | None = None,
):
    latest = rules.latest_version(template)
    if result is None:
        warnings = rules.validation(latest.topology)["warnings"]
        result = {"message": None, "errors": {}, "problems": [], "warnings": warnings}
    form = form or {
        "name": template.name,
        "description": template.description or "",
        "topology": latest.topology,
    }
    return render_template(
        "templates_detail.html",
        template=template,
        latest=latest,
        form=form,
        result=result,
        bad_lines=bad_lines(result["problems"]),
        may_change=may_change_template(current_user(), template),
        courses=taught_courses(),
        visibilities=VISIBILITIES,
        action_errors=action_errors or {},
        default_hours=DEFAULT_HOURS,
        max_hours=current_app.config["LTB_MAX_RESERVATION_HOURS"],
    )


@bp.get("/templates/<int:template_id>")
@page_login_required()
def template(template_id: int):
    return detail_page(template_or_404(current_user(), template_id))


@bp.post("/templates/<int:template_id>")
@page_login_required()
def save_template(template_id: int):
    """Save the editor: metadata, and a new version when the topology changed."""
    template = changeable_or_404(template_id)
    form = {
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
        "topology": request.form.get("topology", "").replace("\r\n", "\n"),
    }
    errors = metadata_errors(form)
    if errors:
        result = {"message": "Not saved", "errors": errors, "problems": [], "warnings": []}
        return detail_page(template, form, result), 422
    changes = {
        "name": form["name"],
        "description": form["description"] or None,
        "topology": form["topology"],
    }
    try:
        template, _ = rules.change_template(current_user(), template, changes)
    except HTTPError as error:
        db.session.rollback()
        return detail_page(template, form, refused(error)), error.status_code
    return redirect(url_for("ui.template", template_id=template.id, saved=1))


@bp.post("/templates/<int:template_id>/share")
@page_login_required()
def share_template(template_id: int):
    template = changeable_or_404(template_id)
    visibility = request.form.get("visibility", "")
    course = request.form.get("course_id", "")
    if visibility not in VISIBILITIES:
        errors = {"share": f"Choose one of: {', '.join(VISIBILITIES)}"}
        return detail_page(template, action_errors=errors), 422
    changes: dict[str, Any] = {"visibility": visibility}
    if visibility == Visibility.COURSE.value:
        changes["course_id"] = int(course) if course.isdigit() else None
    try:
        rules.change_template(current_user(), template, changes)
    except HTTPError as error:
        db.session.rollback()
        return detail_page(template, action_errors={"share": error.message}), error.status_code
    return redirect(url_for("ui.template", template_id=template.id))


@bp.post("/templates/<int:template_id>/delete")
@page_login_required()
def delete_template(template_id: int):
    template = changeable_or_404(template_id)
    try:
        rules.delete_template(template)
    except HTTPError as error:
        db.session.rollback()
        if is_htmx():
            return message_fragment(error.message)
        return detail_page(template, action_errors={"delete": error.message}), error.status_code
    return go_to(url_for("ui.templates"))


@bp.get("/templates/<int:template_id>/versions/<int:number>")
@page_login_required()
def template_version(template_id: int, number: int):
    template = template_or_404(current_user(), template_id)
    version = rules.version_of(template, number)
    return render_template("templates_version.html", template=template, version=version)


# Starting a lab --------------------------------------------------------------------------------


def start_refused(template: Template, action: str, error: HTTPError):
    db.session.rollback()
    if is_htmx():
        return message_fragment(error.message)
    return detail_page(template, action_errors={action: error.message}), error.status_code


@bp.post("/templates/<int:template_id>/start")
@page_login_required()
def start_lab(template_id: int):
    """Start a lab of the newest version at once (portal.labs.start_lab), then its page."""
    template = template_or_404(current_user(), template_id)
    title = request.form.get("title", "").strip()[:128] or None
    try:
        job = lab_rules.start_lab(current_user(), template.id, None, title)
    except HTTPError as error:
        return start_refused(template, "start", error)
    return go_to(url_for("ui.lab", lab_id=job.lab_id))


@bp.post("/templates/<int:template_id>/start-now")
@page_login_required()
def start_now(template_id: int):
    """Book the newest version from now for some hours (as the API's start_at "now"), then
    wait on a page for the lab the reservation's start creates."""
    template = template_or_404(current_user(), template_id)
    try:
        hours = float(request.form.get("hours", DEFAULT_HOURS))
    except ValueError:
        hours = 0.0
    if not 0 < hours < 10_000:
        error = HTTPError(422, "Give the number of hours the lab should run, e.g. 2")
        return start_refused(template, "start_now", error)
    user = current_user()
    now = utcnow()
    try:
        version = reservation_rules.template_version(user, template.id, None)
        slot = reservation_rules.Slot(now, now + timedelta(hours=hours))
        reservation = reservation_rules.book(user, version, slot)
        db.session.commit()
    except HTTPError as error:
        return start_refused(template, "start_now", error)
    reservation_rules.schedule([reservation])
    return go_to(url_for("ui.reservation_lab", reservation_id=reservation.id))


@bp.get("/reservations/<int:reservation_id>/lab")
@page_login_required()
def reservation_lab(reservation_id: int):
    """The lab of a reservation once its start made it; until then a page that looks again
    every two seconds (htmx), with where the reservation is."""
    reservation = reservation_or_404(current_user(), reservation_id)
    lab = db.session.scalar(select(Lab).where(Lab.name == reservation.lab_name))
    if lab is not None:
        return go_to(url_for("ui.lab", lab_id=lab.id))
    if is_htmx():
        return render_template("templates_waiting_status.html", reservation=reservation)
    return render_template("templates_waiting.html", reservation=reservation)
