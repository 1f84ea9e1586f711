"""What job events, results and worker logs keep out of the store and the logs."""

import logging

import pytest

from jobs.redact import REDACTED, redact, redact_logs, redact_text
from jobs.runner import playbook_environment


def test_values_under_secret_keys_are_redacted():
    data = {"db_password": "hunter2", "api_token": "x", "nested": [{"private_key": "k"}]}
    assert redact(data) == {
        "db_password": REDACTED,
        "api_token": REDACTED,
        "nested": [{"private_key": REDACTED}],
    }


def test_values_that_look_like_keys_are_redacted_wherever_they_are():
    pem = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    ssh = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1 ltb@host"
    token = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # noqa: S105 - a made-up token
    out = redact({"content": pem, "msg": f"key {ssh}", "items": [token]})
    assert out == {"content": REDACTED, "msg": f"key {REDACTED} ltb@host", "items": [REDACTED]}


def test_ordinary_values_stay_readable():
    data = {
        "task": "Node runs, with its interfaces",
        "id": "c22cd681-c492-47ea-a38c-f8280efc1011",
        "image": "sha256:2e548884f153b9029e0f91f7f3eee093e6da96bc73597c205a57b8efe24b046d",
        "interface": "v3a57f501e03aa5",
        "monkey": "",
    }
    assert redact(data) == data


def test_passwords_in_urls_are_redacted_and_the_rest_of_the_url_stays():
    text = (
        "could not connect to postgresql://ltb:s3cret@db.example:5432/ltb "
        "nor redis://:pw@127.0.0.1:6379/0 (see https://docs.example/x and ssh://root@hv1)"
    )
    assert redact_text(text) == (
        f"could not connect to postgresql://ltb:{REDACTED}@db.example:5432/ltb "
        f"nor redis://:{REDACTED}@127.0.0.1:6379/0 (see https://docs.example/x and ssh://root@hv1)"
    )
    assert (
        redact_text("postgresql+psycopg://u:p%40ss@h/db")
        == f"postgresql+psycopg://u:{REDACTED}@h/db"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2", f"password={REDACTED}"),
        ("login failed: token: abc", f"login failed: token: {REDACTED}"),
        ("run --password hunter2 --user ltb", f"run --password {REDACTED} --user ltb"),
        ("PGPASSWORD='x y' psql", f"PGPASSWORD='{REDACTED}' psql"),
        (
            '{"db_password": "hunter2", "user": "ltb"}',
            f'{{"db_password": "{REDACTED}", "user": "ltb"}}',
        ),
        ("{'api_key': 'k1', 'n': 2}", f"{{'api_key': '{REDACTED}', 'n': 2}}"),
        ("client_secret = abc;next", f"client_secret = {REDACTED};next"),
        ("Authorization: Bearer abc.def", f"Authorization: Bearer {REDACTED}"),
    ],
)
def test_low_entropy_secrets_after_secret_sounding_words_are_redacted(text, expected):
    assert redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'FATAL:  password authentication failed for user "ltb"',
        "Permission denied (publickey,password).",
        "password: ",
        "the node's token bucket filter is set",
        "mirror endpoint 'r1:eth1' is not allowed",
    ],
)
def test_texts_that_only_mention_secrets_stay_readable(text):
    assert redact_text(text) == text


def test_error_texts_in_nested_results_are_redacted():
    result = {
        "error": "OperationalError: connection to postgresql://ltb:s3cret@db/ltb failed",
        "failures": [{"host": "r1", "msg": "curl -u x --password hunter2 failed"}],
    }
    out = redact(result)
    assert "s3cret" not in str(out) and "hunter2" not in str(out)
    assert out["failures"][0]["host"] == "r1"


def test_log_records_and_their_tracebacks_are_redacted(caplog):
    log = logging.getLogger("tests.redact")
    previous = logging.getLogRecordFactory()
    redact_logs()
    redact_logs()  # twice: still one layer
    try:
        try:
            raise RuntimeError("cannot reach redis://:pw-in-traceback@host:6379/0")
        except RuntimeError:
            with caplog.at_level(logging.INFO, logger="tests.redact"):
                log.exception("job %s failed with password=%s", "j1", "hunter2")
    finally:
        logging.setLogRecordFactory(previous)
    text = caplog.text
    assert "job j1 failed with password=" + REDACTED in text
    assert "RuntimeError: cannot reach redis://:" + REDACTED + "@host:6379/0" in text
    assert "hunter2" not in text and "pw-in-traceback" not in text


def test_the_playbook_run_gets_only_what_it_needs_of_the_workers_environment():
    worker_env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": "/srv/ltb/ansible.cfg",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PRIVATE_KEY_FILE": "/var/lib/ltb/ssh/id_ed25519",
        "LTB_HYPERVISOR": "localhost",
        "LTB_STATE_DIR": "/var/lib/ltb",
        "LTB_DATABASE_URL": "postgresql://ltb:s3cret@db/ltb",
        "LTB_REDIS_URL": "redis://127.0.0.1:6379/0",
        "LTB_API_TOKEN": "abc",
        "LTB_VM_MIRROR": "https://user:pw@mirror.example/debian",
        "PGPASSWORD": "hunter2",
        "AWS_SECRET_ACCESS_KEY": "x",
        "OPENAI_API_KEY": "x",
        "SSH_AUTH_SOCK": "/run/user/0/agent",
        "DOCKER_AUTH_CONFIG": "{}",
        "EDITOR": "vi",
    }
    assert playbook_environment(worker_env) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": "/srv/ltb/ansible.cfg",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PRIVATE_KEY_FILE": "/var/lib/ltb/ssh/id_ed25519",
        "LTB_HYPERVISOR": "localhost",
        "LTB_STATE_DIR": "/var/lib/ltb",
    }
