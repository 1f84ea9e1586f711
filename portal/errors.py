"""One error envelope for every error of the API, from validation to 404:

    {"error": {"status": 422, "message": "Validation error", "detail": {...}}}

`detail` names the fields and places that are wrong (e.g. the errors of a topology with their
lines). Nothing else leaves the API on an error: no stack trace, no HTML page.
"""

from __future__ import annotations

import logging

from apiflask import APIFlask, HTTPError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def error_body(status: int, message: str, detail: object = None) -> dict:
    return {"error": {"status": status, "message": message, "detail": detail or {}}}


def register_error_handlers(app: APIFlask) -> None:
    @app.error_processor
    def api_error(error: HTTPError):
        body = error_body(error.status_code, error.message, error.detail)
        return body, error.status_code, error.headers

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        detail = {"reason": error.description} if error.description else None
        return error_body(status, error.name, detail), status

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return error_body(500, "Internal server error"), 500
