"""What job events keep out of the store."""

from jobs.redact import REDACTED, redact


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
