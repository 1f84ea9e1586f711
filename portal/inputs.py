"""Input the store cannot hold, refused before any view runs: PostgreSQL text has no NUL
character, so a NUL in a query parameter, a path part or a JSON string is answered 422
naming where it is (instead of failing in the database with a 500)."""

from __future__ import annotations

from typing import Any

from apiflask import HTTPError
from flask import request

NUL = "\x00"


def _nul_place(value: Any, place: str) -> str | None:
    if isinstance(value, str):
        return place if NUL in value else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, str) and NUL in key:
            return f"{place}.{key!r}"
        found = _nul_place(item, f"{place}.{key}")
        if found:
            return found
    return None


def refuse_nul_characters() -> None:
    places = [
        _nul_place(dict(request.args.lists()), "query"),
        _nul_place(request.view_args or {}, "path"),
        _nul_place(request.get_json(silent=True), "json") if request.is_json else None,
    ]
    found = next((place for place in places if place), None)
    if found:
        raise HTTPError(422, "A NUL character is not allowed", {found: ["NUL character"]})
