"""Fixtures of the access tests: the real job layer and portal pieces, shared from their
conftest files (PostgreSQL of this run, the roomy hypervisor inventory)."""

from tests.jobs.conftest import job_settings, store  # noqa: F401
from tests.portal.conftest import roomy_inventory  # noqa: F401
