"""Settings of the portal, in one place: environment variables with defaults, read when the
application is made (so tests and each gunicorn worker see their own environment).

    LTB_DATABASE_URL        PostgreSQL of the lab store (store.db)
    LTB_SECRET_KEY          signs session cookies; REQUIRED outside tests (no default)
    LTB_SECRET_KEY_FILE     or a file that holds it (the service's; kept out of the environment)
    LTB_SECURE_COOKIES      1 (default): session cookies only over HTTPS; 0 for plain HTTP
    LTB_TOKEN_DAYS          default lifetime of a personal API token, in days     90
    LTB_QUOTA_RUNNING_LABS  default quotas of a user (admins set their own):       2
    LTB_QUOTA_NODES           nodes over all their running labs                     10
    LTB_QUOTA_MEMORY_BYTES    memory over all their running labs             8 GiB
    LTB_QUOTA_RESERVATION_HOURS_WEEK  hours of reservations per week              20
    LTB_MAX_RESERVATION_HOURS  the longest a reservation may be, in hours          8
    LTB_PROXY_HOPS          proxies in front whose X-Forwarded-* headers are trusted     0
                            (1 behind the platform's nginx)
    LTB_BASTION_HOST        host name of the SSH bastion as users reach it    the portal's host name
    LTB_BASTION_PORT        its port                                                  2222
    LTB_BASTION_SECRET_HASH_FILE  SHA-256 of the bastion's secret (platform_bastion)
                            /etc/ltb/bastion/portal-secret.sha256
    LTB_TERMINAL_IDLE_SECONDS  a web terminal closes after this long without input  1800
    LTB_TERMINALS_PER_USER     web terminals a user may have open at once             4
    LTB_TERMINALS_PER_WORKER   web terminals one gunicorn worker serves (it gets as   16
                               many threads more, portal/gunicorn.conf.py)
    LTB_TERMINALS_DIR          where the workers count open terminals     a directory in /tmp
                               (the service's: /run/ltb/ltb-portal-terminals)
    LTB_PROMETHEUS_URL      Prometheus of the resource pages (portal.usage)   http://127.0.0.1:9090
    LTB_HYPERVISORS         inventory directory of the hypervisors (their capacity)
                            <repo>/inventory, as the job layer's (jobs.settings)
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from store.db import database_url
from store.placement import max_reservation_hours

ROOT = Path(__file__).resolve().parents[1]


def _read_secret(path: str | None) -> str | None:
    return Path(path).read_text().strip() if path else None


def load_settings() -> dict[str, Any]:
    env = os.environ.get
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "SECRET_KEY": env("LTB_SECRET_KEY") or _read_secret(env("LTB_SECRET_KEY_FILE")),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env("LTB_SECURE_COOKIES", "1") == "1",
        "PERMANENT_SESSION_LIFETIME": timedelta(hours=12),
        "LTB_TOKEN_DAYS": int(env("LTB_TOKEN_DAYS", "90")),
        "LTB_QUOTA_RUNNING_LABS": int(env("LTB_QUOTA_RUNNING_LABS", "2")),
        "LTB_QUOTA_NODES": int(env("LTB_QUOTA_NODES", "10")),
        "LTB_QUOTA_MEMORY_BYTES": int(env("LTB_QUOTA_MEMORY_BYTES", str(8 * 1024**3))),
        "LTB_QUOTA_RESERVATION_HOURS_WEEK": int(env("LTB_QUOTA_RESERVATION_HOURS_WEEK", "20")),
        "LTB_MAX_RESERVATION_HOURS": max_reservation_hours(os.environ),
        "LTB_PROXY_HOPS": int(env("LTB_PROXY_HOPS", "0")),
        "LTB_BASTION_HOST": env("LTB_BASTION_HOST", ""),
        "LTB_BASTION_PORT": int(env("LTB_BASTION_PORT", "2222")),
        "LTB_BASTION_SECRET_HASH_FILE": env(
            "LTB_BASTION_SECRET_HASH_FILE", "/etc/ltb/bastion/portal-secret.sha256"
        ),
        "LTB_TERMINAL_IDLE_SECONDS": float(env("LTB_TERMINAL_IDLE_SECONDS", "1800")),
        "LTB_TERMINALS_PER_USER": int(env("LTB_TERMINALS_PER_USER", "4")),
        "LTB_TERMINALS_PER_WORKER": int(env("LTB_TERMINALS_PER_WORKER", "16")),
        "LTB_TERMINALS_DIR": env("LTB_TERMINALS_DIR", ""),
        "LTB_PROMETHEUS_URL": env("LTB_PROMETHEUS_URL", "http://127.0.0.1:9090"),
        "LTB_HYPERVISORS": env("LTB_HYPERVISORS", str(ROOT / "inventory")),
        # Error bodies are JSON with the same envelope for every error (portal.errors).
        "VALIDATION_ERROR_STATUS_CODE": 422,
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    }
