"""The portal application of the tests: one test configuration that every test app starts
from (the API tests' `app`, the browser tests' live server, a test's own app with its own
hypervisors or settings), so a setting every test app needs is added in one place.

    app = portal_app(job_settings.database_url, roomy_inventory)
    app = portal_app(url, tmp_path, LTB_MAX_RESERVATION_HOURS=8)     # a setting more
    app = portal_app(url, inventory, LTB_TEST_PASSWORD_HASHER=None)  # a setting left out
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from flask import Flask

from portal import create_app

# argon2 at its lowest cost for the test applications (their config's LTB_TEST_PASSWORD_HASHER,
# portal.auth.password_hasher) and the test users: with argon2's defaults a hash or a check
# took 0.1-1 s on the test machine, and a run makes and logs in hundreds of users. An
# application without it checks these hashes all the same (a hash holds its parameters).
TEST_PASSWORDS = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def app_config(database_url: str, hypervisors: Path | str, **overrides: Any) -> dict[str, Any]:
    """The test configuration of a portal app over the database at `database_url` with the
    hypervisors' inventory directory `hypervisors` (LTB_HYPERVISORS). Each override sets one
    setting; an override of None leaves the setting out (the app's own default applies)."""
    config = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "SQLALCHEMY_DATABASE_URI": database_url,
        # Tests speak plain HTTP to the app (the portal's default: cookies over HTTPS only).
        "SESSION_COOKIE_SECURE": False,
        "LTB_HYPERVISORS": str(hypervisors),
        "LTB_TEST_PASSWORD_HASHER": TEST_PASSWORDS,
    }
    config.update(overrides)
    return {name: value for name, value in config.items() if value is not None}


def portal_app(database_url: str, hypervisors: Path | str, **overrides: Any) -> Flask:
    """The portal application with app_config(database_url, hypervisors, **overrides)."""
    return create_app(app_config(database_url, hypervisors, **overrides))
