"""SSH public keys as data (store.sshkeys): what is accepted, re-encoded and fingerprinted."""

from __future__ import annotations

import base64
import struct
import subprocess

import pytest

from store.sshkeys import KeyProblem, parse_public_key


def keygen(tmp_path, kind: str, bits: int | None = None, comment: str = "ada@laptop") -> str:
    path = tmp_path / f"id_{kind}_{bits}"
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits:
        argv += ["-b", str(bits)]
    subprocess.run(argv, check=True)
    return (tmp_path / f"{path.name}.pub").read_text()


def fingerprint(tmp_path, text: str) -> str:
    path = tmp_path / "probe.pub"
    path.write_text(text)
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)], capture_output=True, text=True
    )
    return out.stdout.split()[1]


def wire(*parts: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(p)) + p for p in parts)).decode()


@pytest.mark.parametrize(
    ("kind", "bits"),
    [("ed25519", None), ("ecdsa", 256), ("ecdsa", 384), ("ecdsa", 521), ("rsa", 2048)],
)
def test_keys_of_ssh_keygen_are_accepted_with_the_fingerprint_ssh_keygen_prints(
    tmp_path, kind, bits
):
    text = keygen(tmp_path, kind, bits)
    key = parse_public_key(text)
    assert key.line == text.strip()
    assert key.fingerprint == fingerprint(tmp_path, text)


def test_an_rsa_key_under_2048_bits_is_refused(tmp_path):
    with pytest.raises(KeyProblem, match="at least 2048 bits"):
        parse_public_key(keygen(tmp_path, "rsa", 1024))


def test_a_key_whose_data_names_another_type_is_refused(tmp_path):
    data = keygen(tmp_path, "ed25519").split()[1]
    with pytest.raises(KeyProblem, match="not a ssh-rsa key"):
        parse_public_key(f"ssh-rsa {data}")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "'<type> <base64>"),
        ("ssh-ed25519", "'<type> <base64>"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "unknown key type"),
        ('command="sh" ssh-ed25519 AAAA', "unknown key type"),
        ("ssh-ed25519 AAAA!!!!", "not base64"),
        ("ssh-ed25519 AAAAC3NzaC1", "not base64"),
        (
            "ssh-ed25519 "
            + base64.b64encode(
                struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + b"abc"
            ).decode(),
            "cut short",
        ),
    ],
)
def test_text_that_is_not_one_known_key_is_refused_with_the_reason(text, why):
    with pytest.raises(KeyProblem, match=why.replace("(", r"\(")):
        parse_public_key(text)


def test_a_second_line_or_a_strange_comment_is_refused(tmp_path):
    text = keygen(tmp_path, "ed25519").strip()
    with pytest.raises(KeyProblem, match="one line"):
        parse_public_key(text + "\nssh-ed25519 AAAA")
    for comment in ("a\x00b", "$(reboot)", "x" * 101, 'a"b'):
        with pytest.raises(KeyProblem, match="comment"):
            parse_public_key(" ".join(text.split()[:2]) + " " + comment)


def test_a_security_key_type_is_accepted_and_whitespace_around_is_dropped():
    blob = wire(b"sk-ssh-ed25519@openssh.com", b"\x01" * 32, b"ssh:")
    key = parse_public_key(f"  sk-ssh-ed25519@openssh.com {blob}  yubi  \n")
    assert key.line == f"sk-ssh-ed25519@openssh.com {blob} yubi"
