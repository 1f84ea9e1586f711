"""The API of users (to be built)."""

from apiflask import APIBlueprint

bp = APIBlueprint("users", __name__, url_prefix="/api")
