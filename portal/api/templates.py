"""The API of templates (to be built)."""

from apiflask import APIBlueprint

bp = APIBlueprint("templates", __name__, url_prefix="/api")
