"""The API of topology templates: upload, validate, list, show, edit (new versions), share,
delete, and their pictures. The rules are in portal/templates.py; who may see a template is
portal.access's (others get 404), who may change it its owner's and admins' (403 for a user
who may see it, e.g. a public one)."""

from __future__ import annotations

from apiflask import APIBlueprint, HTTPError, Schema
from apiflask.fields import Boolean, DateTime, Integer, List, Nested, String
from apiflask.validators import Length, OneOf, Range
from flask import Response

from ltb.picture import topology_svg
from ltb.topology import TopologyError, parse_lab
from portal import templates as rules
from portal.access import may_change_template, template_or_404
from portal.api.paging import PageOut, PageQuery, page_of
from portal.auth import current_user, login_required
from store.models import Template, Visibility

bp = APIBlueprint("templates", __name__, url_prefix="/api")

VISIBILITIES = [v.value for v in Visibility]


def topology_field(**options) -> String:
    # Its bound (1 MiB, ltb.spec) is checked by the rules in bytes and answered with 413.
    return String(
        validate=Length(min=1),
        metadata={"description": "the topology file (YAML), at most 1 MiB"},
        **options,
    )


class TopologyIn(Schema):
    topology = topology_field(required=True)


class TopologyProblemOut(Schema):
    place = String(metadata={"description": "path in the file, e.g. nodes.r1.interfaces"})
    line = Integer(allow_none=True, metadata={"description": "1-based; none: the whole file"})
    message = String()


class TopologyValidationOut(Schema):
    valid = Boolean()
    problems = List(Nested(TopologyProblemOut))
    warnings = List(Nested(TopologyProblemOut))


class TemplateIn(Schema):
    name = String(required=True, validate=Length(1, 64))
    description = String(load_default=None, allow_none=True, validate=Length(max=4000))
    topology = topology_field(required=True)
    visibility = String(load_default=Visibility.PRIVATE.value, validate=OneOf(VISIBILITIES))
    course_id = Integer(load_default=None, allow_none=True, validate=Range(min=1))


class TemplateChangeIn(Schema):
    name = String(validate=Length(1, 64))
    description = String(allow_none=True, validate=Length(max=4000))
    topology = topology_field()
    visibility = String(validate=OneOf(VISIBILITIES))
    course_id = Integer(allow_none=True, validate=Range(min=1))


class PageIn(PageQuery):
    mine = Boolean(load_default=False, metadata={"description": "only the caller's own"})


class PictureIn(Schema):
    version = Integer(load_default=None, validate=Range(min=1))


class TemplateOwnerOut(Schema):
    id = Integer()
    username = String()


class TemplateVersionOut(Schema):
    number = Integer()
    created_at = DateTime()
    created_by_id = Integer(allow_none=True)


class TemplateVersionDetailOut(TemplateVersionOut):
    template_id = Integer()
    topology = String()


class TemplateOut(Schema):
    id = Integer()
    name = String()
    description = String(allow_none=True)
    visibility = String()
    course_id = Integer(allow_none=True)
    owner = Nested(TemplateOwnerOut)
    created_at = DateTime()
    updated_at = DateTime()
    latest_version = Integer()
    may_change = Boolean(metadata={"description": "whether the caller may edit or delete it"})


class TemplateDetailOut(TemplateOut):
    topology = String(metadata={"description": "the newest version's topology"})
    versions = List(Nested(TemplateVersionOut))
    warnings = List(Nested(TopologyProblemOut))


class TemplateListOut(PageOut):
    templates = List(Nested(TemplateOut))


def template_view(template: Template, warnings: list | None = None, detail: bool = False):
    latest = rules.latest_version(template)
    view = {
        "id": template.id,
        "name": template.name,
        "description": template.description,
        "visibility": template.visibility,
        "course_id": template.course_id,
        "owner": {"id": template.owner.id, "username": template.owner.username},
        "created_at": template.created_at,
        "updated_at": template.updated_at,
        "latest_version": latest.number,
        "may_change": may_change_template(current_user(), template),
    }
    if detail:
        view |= {"topology": latest.topology, "versions": template.versions}
        view["warnings"] = warnings or []
    return view


def changeable_template_or_404(template_id: int) -> Template:
    template = template_or_404(current_user(), template_id)
    if not may_change_template(current_user(), template):
        raise HTTPError(403, "Only the template's owner or an admin may change it")
    return template


@bp.post("/templates/validate")
@login_required()
@bp.input(TopologyIn, arg_name="body")
@bp.output(TopologyValidationOut)
@bp.doc(summary="Validate a topology (nothing is stored)", responses={413: "Over 1 MiB"})
def validate_topology(body):
    return rules.validation(body["topology"])


@bp.post("/templates")
@login_required()
@bp.input(TemplateIn, arg_name="body")
@bp.output(TemplateDetailOut, status_code=201)
@bp.doc(
    summary="Upload a template",
    responses={422: "The topology has errors (each with place and line)", 413: "Over 1 MiB"},
)
def new_template(body):
    template, warnings = rules.create_template(
        current_user(),
        body["name"],
        body["description"],
        body["topology"],
        body["visibility"],
        body["course_id"],
    )
    return template_view(template, warnings, detail=True)


@bp.get("/templates")
@login_required()
@bp.input(PageIn, location="query", arg_name="query")
@bp.output(TemplateListOut)
@bp.doc(summary="List the templates the caller may see")
def list_templates(query):
    visible = rules.visible_templates(current_user(), query["mine"])
    return page_of(visible, query, template_view, key="templates")


@bp.get("/templates/<int:template_id>")
@login_required()
@bp.output(TemplateDetailOut)
@bp.doc(summary="Show a template with its versions", responses={404: "No such template"})
def show_template(template_id):
    return template_view(template_or_404(current_user(), template_id), detail=True)


@bp.put("/templates/<int:template_id>")
@login_required()
@bp.input(TemplateChangeIn, arg_name="body")
@bp.output(TemplateDetailOut)
@bp.doc(
    summary="Change a template; a new topology makes a new version",
    responses={403: "Not the owner", 404: "No such template", 422: "The topology has errors"},
)
def change_template(template_id, body):
    template = changeable_template_or_404(template_id)
    template, warnings = rules.change_template(current_user(), template, body)
    return template_view(template, warnings, detail=True)


@bp.delete("/templates/<int:template_id>")
@login_required()
@bp.output({}, status_code=204)
@bp.doc(
    summary="Delete a template and its versions",
    responses={409: "A lab, reservation or course uses it", 403: "Not the owner"},
)
def delete_template(template_id):
    rules.delete_template(changeable_template_or_404(template_id))
    return ""


@bp.get("/templates/<int:template_id>/versions/<int:number>")
@login_required()
@bp.output(TemplateVersionDetailOut)
@bp.doc(summary="Show one version of a template", responses={404: "No such template or version"})
def show_version(template_id, number):
    version = rules.version_of(template_or_404(current_user(), template_id), number)
    return version


@bp.get("/templates/<int:template_id>/picture.svg")
@login_required()
@bp.input(PictureIn, location="query", arg_name="query")
@bp.output(
    {},
    content_type="image/svg+xml",
    description="The topology picture (Graphviz SVG)",
)
@bp.doc(summary="Picture of a template's topology", responses={404: "No such template or version"})
def template_picture(template_id, query):
    version = rules.version_of(template_or_404(current_user(), template_id), query["version"])
    try:
        lab = parse_lab(version.topology, f"template {template_id} v{version.number}")
    except TopologyError as error:  # stored before a rule of the model changed
        raise HTTPError(
            422,
            f"Version {version.number} is no longer a valid topology",
            {"problems": rules.problem_list(version.topology, error.problems)},
        ) from None
    return svg_response(topology_svg(lab))


def svg_response(svg: str) -> Response:
    """An SVG answer that a browser opening it directly runs nothing of (no script, no
    outside resource), whatever the labels say."""
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
