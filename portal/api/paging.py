"""The API's lists a page at a time: one query (?page=&per_page=), one bound, one answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apiflask import Schema
from apiflask.fields import Integer
from apiflask.validators import Range
from sqlalchemy import Select

from store.db import db

MAX_PER_PAGE = 100


class PageQuery(Schema):
    """?page=&per_page= of a list; a list with filters of its own extends it."""

    page = Integer(load_default=1, validate=Range(min=1, max=1_000_000))
    per_page = Integer(load_default=20, validate=Range(min=1, max=MAX_PER_PAGE))


class PageOut(Schema):
    """Where a page stands; a list's answer extends it with its items."""

    page = Integer()
    per_page = Integer()
    total = Integer()


def page_of(
    statement: Select, query: dict[str, Any], view: Callable[[Any], Any], key: str = "items"
) -> dict[str, Any]:
    """The page `query` asks for of the rows `statement` selects, each as `view` shows it,
    under `key`, with the page's number and size and the total."""
    page = db.paginate(
        statement,
        page=query["page"],
        per_page=query["per_page"],
        max_per_page=MAX_PER_PAGE,
        error_out=False,
    )
    return {
        key: [view(row) for row in page.items],
        "page": page.page,
        "per_page": page.per_page,
        "total": page.total,
    }
