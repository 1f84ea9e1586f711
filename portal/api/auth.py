"""The API of auth (to be built)."""

from apiflask import APIBlueprint

bp = APIBlueprint("auth", __name__, url_prefix="/api")
