"""The API of courses (to be built)."""

from apiflask import APIBlueprint

bp = APIBlueprint("courses", __name__, url_prefix="/api")
