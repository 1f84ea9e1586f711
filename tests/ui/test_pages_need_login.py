"""Every page of the browser UI checks its caller: enumerated from the URL map, so a new page
is covered as soon as it exists. An anonymous visitor is sent to the login page (GET) or
refused (POST without the session's CSRF token); nothing of a page is shown."""

from __future__ import annotations

import re

import pytest

from tests.app_config import portal_app

# Pages anyone may open: the login form and the UI's own static files.
PUBLIC = {"ui.login", "ui.login_post", "ui.static"}


def page_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("ui.") and rule.endpoint not in PUBLIC:
            yield rule


def example_path(rule) -> str:
    # Every argument of a page is an id or a name: 1 and "x" reach the view's own checks.
    return re.sub(r"<(?:int:)?(\w+)>", lambda m: "1" if "int:" in m.group(0) else "x", rule.rule)


@pytest.fixture(scope="module")
def client(job_settings, roomy_inventory):
    app = portal_app(job_settings.database_url, roomy_inventory)
    return app, app.test_client()


def test_there_are_pages_to_check(client):
    app, _ = client
    assert len(list(page_rules(app))) >= 10


def test_an_anonymous_visitor_sees_no_page_but_the_login(client):
    app, http = client
    for rule in page_rules(app):
        path = example_path(rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            answer = http.open(path, method=method)
            if rule.websocket:
                # A WebSocket rule serves no page to a plain request; its anonymous handshake
                # is refused with 401 (tests/ui/test_terminal.py).
                assert answer.status_code == 400, (method, path, answer.status_code)
            elif method == "GET":
                assert answer.status_code == 302, (method, path, answer.status_code)
                assert answer.headers["Location"].startswith("/login"), (path, answer.headers)
            else:
                # Refused for its missing CSRF token before any view runs, or sent to log in.
                assert answer.status_code in (302, 403), (method, path, answer.status_code)


def test_a_url_no_route_serves_is_a_page_for_a_browser_and_json_for_the_api(client):
    _, http = client
    page = http.get("/reservations/2147483648", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert b"Not found" in page.data
    api = http.get("/api/nothing-here", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.get_json()["error"]["status"] == 404
