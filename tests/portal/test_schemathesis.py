"""The portal against its own OpenAPI document: schemathesis generates requests for every
operation of /openapi.json (valid input and invalid input), sends them to the application
in-process (WSGI) with an admin's token, and checks that no answer is a server error and
every answer matches the schema the document gives for it.

Bounded: a few examples per operation and mode, so the whole run takes well under a minute.
Nothing is excluded: with no lab deployed in the test database, lab tasks, captures and
streams answer from the store (404, 409) without starting real work; a stream is cut after
a second (LTB_SSE_MAX_SECONDS). Requests that queue work queue it in the test run's Redis
database, flushed around the test.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from store.models import Role
from tests.app_config import portal_app
from tests.jobs.conftest import redis_db  # noqa: F401
from tests.portal.conftest import bearer

EXAMPLES_PER_OPERATION = 12
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# An admin revoking tokens by id may revoke the one the run uses: it is made anew after.
REVOKE_TOKEN = "/api/auth/tokens/{token_id}"  # noqa: S105 - a path, not a secret


@pytest.fixture
def app(job_settings, tmp_path, redis_db):  # noqa: F811
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    host = {"ansible_connection": "local", "ltb_capacity_cpus": 4096, "ltb_capacity_memory": 2**44}
    (inventory / "hosts.yaml").write_text(
        yaml.safe_dump({"hypervisors": {"hosts": {"localhost": host}}})
    )
    return portal_app(
        job_settings.database_url, inventory, LTB_SSE_MAX_SECONDS=1, LTB_SSE_HEARTBEAT=0.5
    )


def fuzz(operation, mode: GenerationMode, send) -> list[str]:
    """Send up to EXAMPLES_PER_OPERATION generated cases of `operation`; the failures."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response, headers = send(case)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as error:
            failures.append(f"{operation.label} [{mode.value}]: {error}"[:2000])
            raise

    # Schemathesis raises its failures as exception groups; each one is in `failures`.
    with contextlib.suppress(Exception, BaseExceptionGroup):
        run()
    return list(dict.fromkeys(failures))


@pytest.mark.integration
def test_no_generated_request_gets_a_server_error_or_an_answer_off_its_schema(
    app, make_user, token_for
):
    admin = make_user(Role.ADMIN)
    headers = bearer(token_for(admin, days=1))
    sent = 0

    def send(case):
        nonlocal headers, sent
        used = headers
        response = case.call(headers=used)
        sent += 1
        if case.operation.path == REVOKE_TOKEN:
            headers = bearer(token_for(admin, days=1))
        return response, used

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30, "the OpenAPI document lost its operations"
    began = time.monotonic()
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for failure in fuzz(operation, mode, send)
    ]
    elapsed = time.monotonic() - began
    print(f"schemathesis: {len(operations)} operations, {sent} requests, {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)
    assert sent >= len(operations) * 2


BIG = 2**40
END = "2099-01-01T00:00:00+00:00"
# Input that once got a 500 (found by schemathesis and by hand): numbers past PostgreSQL's
# integers, NUL characters PostgreSQL text cannot hold, control characters in YAML, times
# whose zone or a week added overflow.
ODD_INPUT = [
    ("DELETE", f"/api/auth/tokens/{BIG}", None, 404),
    ("GET", f"/api/labs/{BIG}", None, 404),
    ("POST", "/api/labs", {"template_id": BIG}, 404),
    ("POST", "/api/reservations", {"template_id": BIG, "start_at": "now", "end_at": END}, 404),
    (
        "POST",
        "/api/courses",
        {"name": "p5", "template_id": BIG, "start_at": "now", "end_at": END},
        404,
    ),
    ("GET", f"/api/labs?page={2**62}", None, 422),
    ("GET", f"/api/reservations?page={2**62}", None, 422),
    ("GET", f"/api/courses?page={2**62}", None, 422),
    ("GET", "/api/capacity?from=9999-12-31T23:00:00%2B00:00", None, 422),
    ("GET", "/api/capacity?from=0001-01-01T00:00:00%2B05:00", None, 422),
    (
        "POST",
        "/api/reservations",
        {"template_id": 1, "start_at": "9999-12-31T23:00:00-12:00", "end_at": END},
        422,
    ),
    ("POST", "/api/auth/login", {"username": "\x00", "password": "x"}, 422),
    ("GET", "/api/users?q=%00", None, 422),
    ("POST", "/api/courses/join", {"code": "\x00"}, 422),
    ("POST", "/api/templates/validate", {"topology": "name: \x00"}, 422),
    ("POST", "/api/templates/validate", {"topology": "name: a\x01"}, 200),
]


@pytest.mark.integration
@pytest.mark.parametrize(("method", "url", "body", "status"), ODD_INPUT, ids=lambda v: str(v)[:40])
def test_odd_input_is_answered_with_a_client_error_naming_it_not_a_server_error(
    client, make_user, token_for, method, url, body, status
):
    answer = client.open(
        url, method=method, json=body, headers=bearer(token_for(make_user(Role.ADMIN)))
    )
    assert answer.status_code == status, answer.get_json()
    if status == 422:
        assert answer.get_json()["error"]["detail"], "a 422 names the field"
