"""Fixtures of the hostile-input and fault tests: the same real parts as the integration and
job-layer tests (Docker, Open vSwitch, libvirt, PostgreSQL, Redis, rq workers), shared from
their conftest files so each case is a real run."""

from tests.integration.conftest import docker_client, lab_file  # noqa: F401
from tests.jobs.conftest import (  # noqa: F401
    cleanup,
    job_settings,
    processes,
    redis_db,
    store,
    topology,
)
