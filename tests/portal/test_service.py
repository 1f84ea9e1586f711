"""Running the portal: the first admin from the command line, /metrics, the OpenAPI document."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from store.models import Job, Lab, utcnow
from tests.daemons import forget_daemon
from tests.portal.conftest import bearer

ROOT = Path(__file__).parents[2]


def flask(job_settings, *args, from_env=None, input=None):
    """Run `flask --app portal ARGS`; from_env: the password in LTB_ADMIN_PASSWORD."""
    env = {**os.environ, "LTB_DATABASE_URL": job_settings.database_url}
    env.pop("LTB_ADMIN_PASSWORD", None)
    if from_env is not None:
        env["LTB_ADMIN_PASSWORD"] = from_env
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "portal", *args],
        cwd=ROOT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_admin_makes_an_admin_who_logs_in_and_refuses_a_second_time(job_settings, client):
    made = flask(job_settings, "users", "create-admin", "p1-root", from_env="first admin pass")
    assert made.returncode == 0, made.stderr
    assert "created" in made.stdout
    assert "first admin pass" not in made.stdout + made.stderr
    login = client.post(
        "/api/auth/login", json={"username": "p1-root", "password": "first admin pass"}
    )
    assert login.status_code == 200
    assert login.get_json()["user"]["role"] == "admin"

    again = flask(job_settings, "users", "create-admin", "p1-root", from_env="another password")
    assert again.returncode == 1
    assert "exists already" in again.stderr
    ok = flask(job_settings, "users", "create-admin", "p1-root", "--exists-ok")
    assert ok.returncode == 0 and "nothing changed" in ok.stdout


def test_create_admin_reads_the_password_from_a_prompt_and_checks_it(job_settings):
    typed = flask(
        job_settings,
        "users",
        "create-admin",
        "p1-prompted",
        input="typed password 1\ntyped password 1\n",
    )
    assert typed.returncode == 0, typed.stderr
    short = flask(job_settings, "users", "create-admin", "p1-short", from_env="short")
    assert short.returncode == 1
    assert "at least 10 characters" in short.stderr
    bad = flask(job_settings, "users", "create-admin", "Bad Name", from_env="long enough pass")
    assert bad.returncode == 1
    assert "Usernames are" in bad.stderr


def test_metrics_count_requests_and_read_jobs_and_labs_from_the_store(client, store):
    now = utcnow()
    with store() as session:
        lab = Lab(
            name="p1-metrics",
            state="running",
            topology="",
            hypervisor="localhost",
            created_at=now,
            updated_at=now,
        )
        session.add(lab)
        session.flush()
        session.add(
            Job(
                id="p1-metrics-job",
                lab_id=lab.id,
                task="deploy",
                status="succeeded",
                lab_state_before="removed",
                enqueued_at=now,
                started_at=now,
                ended_at=now + timedelta(seconds=42),
            )
        )
        session.commit()
    client.get("/api/auth/me")
    client.get("/api/users/12345")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.mimetype == "text/plain"
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }

    def value(name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))))

    assert (
        value("ltb_portal_requests_total", endpoint="/api/auth/me", method="GET", status="401") >= 1
    )
    assert (
        value(
            "ltb_portal_requests_total",
            endpoint="/api/users/<int:user_id>",
            method="GET",
            status="401",
        )
        >= 1
    )
    assert value("ltb_jobs", task="deploy", status="succeeded") >= 1
    assert value("ltb_labs", state="running") >= 1
    assert value("ltb_job_duration_seconds_count", task="deploy") >= 1
    assert value("ltb_job_duration_seconds_sum", task="deploy") >= 42
    assert any(name == "ltb_portal_request_duration_seconds_bucket" for name, _ in samples)


def test_the_openapi_document_is_valid_and_names_security_of_protected_endpoints(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.get_json()
    validate(document)
    paths = document["paths"]
    assert paths["/api/auth/me"]["get"]["security"]
    assert paths["/api/users"]["post"]["security"]
    assert paths["/api/users/{user_id}"]["patch"]["security"]
    assert "security" not in paths["/api/auth/login"]["post"]
    assert "/metrics" not in paths


def test_an_expired_admin_token_gets_401_not_the_users(client, make_user, token_for, store):
    from sqlalchemy import text

    token = token_for(make_user("admin"), days=1)
    with store() as session:
        session.execute(text("UPDATE api_tokens SET expires_at = now() - interval '1 second'"))
        session.commit()
    assert client.get("/api/users", headers=bearer(token)).status_code == 401


@pytest.mark.integration
def test_the_role_runs_gunicorn_that_answers_converges_and_restarts_on_code_change(
    job_settings, tmp_path
):
    """roles/platform_portal alone, on its own port, pid file and state directory."""
    port = 18000 + os.getpid() % 1000
    settings = {
        "platform_portal_bind": f"127.0.0.1:{port}",
        "platform_portal_workers": 1,
        "platform_portal_threads": 2,
        "platform_portal_database_url": job_settings.database_url,
        "platform_portal_state_dir": str(tmp_path / "state"),
        "platform_portal_run_dir": str(tmp_path / "run"),
        "platform_portal_log_dir": str(tmp_path / "log"),
        "platform_portal_name": "p1-portal",
        "platform_portal_admin": "p1-admin",
        "platform_portal_root": str(ROOT),
        "platform_portal_python": sys.executable,
    }
    playbook = tmp_path / "portal.yml"
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  roles: [platform_portal]\n")

    def run_role(*extra):
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "ansible-playbook"),
                "-i",
                "inventory/hosts.yaml",
                str(playbook),
                "-e",
                json.dumps(settings),
                *extra,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        return done.stdout

    pid_file = tmp_path / "run" / "p1-portal.pid"
    try:
        run_role()
        me = requests.get(f"http://127.0.0.1:{port}/api/auth/me", timeout=10)
        assert me.status_code == 401
        assert me.json()["error"]["status"] == 401
        secret = tmp_path / "state" / "secret_key"
        password_file = tmp_path / "state" / "admin_password"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert password_file.stat().st_mode & 0o777 == 0o600
        admin_password = password_file.read_text().strip()
        login = requests.post(
            f"http://127.0.0.1:{port}/api/auth/login",
            json={"username": "p1-admin", "password": admin_password},
            timeout=10,
        )
        assert login.status_code == 200 and login.json()["user"]["role"] == "admin"
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'ltb_portal_requests_total{endpoint="/api/auth/login"' in metrics

        second = run_role()
        assert re.search(r"changed=0\b", second), second[-1500:]
        first_pid = pid_file.read_text().strip()

        # A changed fingerprint of the code (as after a pull) restarts it.
        (tmp_path / "run" / "p1-portal.code").write_text("old code\n")
        run_role()
        assert pid_file.read_text().strip() != first_pid
        assert requests.get(f"http://127.0.0.1:{port}/api/auth/me", timeout=10).status_code == 401
        log = (tmp_path / "log" / "p1-portal.log").read_text()
        assert admin_password not in log and secret.read_text().strip() not in log
    finally:
        subprocess.run(
            [
                "start-stop-daemon",
                "--stop",
                "--pidfile",
                str(pid_file),
                "--remove-pidfile",
                "--retry",
                "TERM/20/KILL/5",
            ],
            check=False,
        )
        forget_daemon("p1-portal")
