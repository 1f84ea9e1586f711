"""nginx, the platform's one entry point (roles/platform_nginx), as `make up` left it running:
HTTPS with a certificate for this machine, HTTP only redirecting, the portal behind it with
the client's real address, and Prometheus for admins only. That the role converges (a second
run changes nothing) is checked with the whole of playbooks/site.yml by
tests/platform/test_site_from_nothing.py."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import requests

SITE = "https://127.0.0.1"
CERTIFICATE = "/etc/ltb/tls/ltb.crt"
ADMIN_PASSWORD = Path("/var/lib/ltb/portal/admin_password")

pytestmark = pytest.mark.integration


def logged_in(username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the certificate checked
    session.verify = CERTIFICATE
    answer = session.post(
        f"{SITE}/api/auth/login", json={"username": username, "password": password}
    )
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return session


@pytest.fixture(scope="module")
def admin() -> requests.Session:
    return logged_in("admin", ADMIN_PASSWORD.read_text().strip())


@pytest.fixture(scope="module")
def student(admin):
    name, password = f"ng-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    made = admin.post(f"{SITE}/api/users", json={"username": name, "password": password})
    assert made.status_code == 201, made.text
    yield logged_in(name, password)
    admin.delete(f"{SITE}/api/users/{made.json()['id']}")


def test_http_only_redirects_to_https_and_the_certificate_names_this_machine():
    plain = requests.get("http://127.0.0.1/labs?x=1", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == "https://127.0.0.1/labs?x=1"
    # Verified against the platform's own certificate: it names 127.0.0.1 and is valid now.
    page = requests.get(f"{SITE}/login", verify=CERTIFICATE, timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    assert "nginx/" not in page.headers.get("Server", "")


def test_the_session_cookie_is_secure_and_pages_answer_through_nginx(admin):
    cookie = next(c for c in admin.cookies if c.name == "session")
    assert cookie.secure
    # A page sends an anonymous browser to log in, through nginx (the client's address
    # behind it: test_auth.py, test_failed_logins_count_the_client_behind_the_trusted_proxy).
    anonymous = requests.get(
        f"{SITE}/templates", verify=CERTIFICATE, allow_redirects=False, timeout=10
    )
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/login?next=/templates"


def test_prometheus_answers_admins_only(admin, student):
    query = f"{SITE}/prometheus/api/v1/query"
    answer = admin.get(query, params={"query": "up"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["status"] == "success"
    assert student.get(query, params={"query": "up"}, timeout=10).status_code == 403
    anonymous = requests.get(query, verify=CERTIFICATE, allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == f"{SITE}/login?next=/prometheus/api/v1/query"
    # The portal's admin check is no way around: a token of a student is refused too.
    token = student.post(f"{SITE}/api/auth/tokens", json={"name": "ng"}).json()["token"]
    bearer = requests.get(
        query, headers={"Authorization": f"Bearer {token}"}, verify=CERTIFICATE, timeout=10
    )
    assert bearer.status_code == 403
