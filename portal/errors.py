"""One error envelope for every error of the API, from validation to 404:

    {"error": {"status": 422, "message": "Validation error", "detail": {...}}}

`detail` names the fields and places that are wrong (e.g. the errors of a topology with their
lines). Nothing else leaves the API on an error: no stack trace, no HTML page. A browser that
asks for a page no route serves gets the portal's error page (portal.ui) instead.
"""

from __future__ import annotations

import logging

from apiflask import APIFlask, HTTPError
from flask import render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def error_body(status: int, message: str, detail: object = None) -> dict:
    return {"error": {"status": status, "message": message, "detail": detail or {}}}


def wants_a_page() -> bool:
    """A browser asking for a page, not a client of the API (whose paths start with /api)."""
    if request.path.startswith(("/api/", "/openapi", "/docs", "/metrics")):
        return False
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def register_error_handlers(app: APIFlask) -> None:
    @app.error_processor
    def api_error(error: HTTPError):
        body = error_body(error.status_code, error.message, error.detail)
        return body, error.status_code, error.headers

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if wants_a_page():
            # A browser that asked for a page no route serves (e.g. a mistyped URL).
            return render_template("error.html", status=status, message=error.description), status
        detail = {"reason": error.description} if error.description else None
        return error_body(status, error.name, detail), status

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return error_body(500, "Internal server error"), 500
