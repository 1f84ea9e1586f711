"""The API of reservations (to be built)."""

from apiflask import APIBlueprint

bp = APIBlueprint("reservations", __name__, url_prefix="/api")
