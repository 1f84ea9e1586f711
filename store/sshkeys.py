"""SSH public keys of users, as data: parsed strictly, fingerprinted, and the keys a lab's
nodes accept.

A key is one line `<type> <base64> [comment]` (the authorized_keys format without options).
It is accepted only when its type is one LTB knows, its base64 decodes to an SSH wire blob
whose embedded type is the same, an RSA key has at least 2048 bits, and the comment is made of
harmless characters. What is stored and handed on (to the bastion's authorized_keys lines and
to the nodes' authorized_keys) is the re-encoded `<type> <base64> [comment]`, never the text
as given, so nothing else (options, a second line, control characters) can ride along.

The portal (portal/keys.py) and the jobs (which put a lab owner's keys into its nodes at
deploy) both use this module; it needs no Flask application.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Course, Lab, SshKey, User

KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
RSA_MIN_BITS = 2048
# A public key blob is at most a few kilobytes (RSA 16384 bits: about 2 KiB).
MAX_KEY_CHARS = 8192
COMMENT = re.compile(r"[A-Za-z0-9@._+:=,/ -]{0,100}")
COMMENT_RULE = "at most 100 letters, digits, spaces and @._+:=,/-"
BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class KeyProblem(ValueError):
    """A public key LTB does not accept; the message says why."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l -E sha256` and sshd's %f print it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def key(self) -> str:
        """`<type> <base64>`, without comment: what sshd compares."""
        return f"{self.type} {base64.b64encode(self.blob).decode()}"

    @property
    def line(self) -> str:
        return f"{self.key} {self.comment}".rstrip()


def _strings(blob: bytes) -> list[bytes]:
    """The SSH wire strings (uint32 length + bytes) of a key blob, all of it."""
    parts, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise KeyProblem("the key data is cut short")
        (length,) = struct.unpack(">I", blob[offset : offset + 4])
        offset += 4
        if offset + length > len(blob):
            raise KeyProblem("the key data is cut short")
        parts.append(blob[offset : offset + length])
        offset += length
    return parts


def _rsa_bits(parts: list[bytes]) -> int:
    if len(parts) != 3:
        raise KeyProblem("an ssh-rsa key holds an exponent and a modulus")
    return int.from_bytes(parts[2], "big").bit_length()


def parse_public_key(text: str) -> PublicKey:
    """The key of `text` (one line: type, base64, optional comment), or KeyProblem."""
    if not isinstance(text, str):
        raise KeyProblem("the key must be text")
    line = text.strip(" \t\r\n")
    if len(line) > MAX_KEY_CHARS:
        raise KeyProblem(f"the key is longer than {MAX_KEY_CHARS} characters")
    if "\n" in line or "\r" in line:
        raise KeyProblem("the key must be one line")
    fields = line.split(None, 2)
    if len(fields) < 2:
        raise KeyProblem("a key is '<type> <base64> [comment]', as in a .pub file")
    key_type, data = fields[0], fields[1]
    comment = fields[2].strip() if len(fields) == 3 else ""
    if key_type not in KEY_TYPES:
        raise KeyProblem(
            f"unknown key type {key_type[:40]!r}: use one of {', '.join(KEY_TYPES)}"
            " (options before the key are not accepted)"
        )
    if BASE64.fullmatch(data) is None:
        raise KeyProblem("the key data is not base64")
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise KeyProblem("the key data is not base64") from None
    parts = _strings(blob)
    if not parts or parts[0] != key_type.encode():
        raise KeyProblem(f"the key data is not a {key_type} key")
    if key_type == "ssh-rsa" and _rsa_bits(parts) < RSA_MIN_BITS:
        raise KeyProblem(f"an ssh-rsa key needs at least {RSA_MIN_BITS} bits")
    if COMMENT.fullmatch(comment) is None:
        raise KeyProblem(f"the comment may hold {COMMENT_RULE}")
    return PublicKey(key_type, blob, comment)


def lab_key_users(session: Session, lab: Lab) -> list[int]:
    """Ids of the users whose keys a lab's nodes accept: its owner and its course's teacher;
    disabled users are left out."""
    ids = [lab.owner_id] if lab.owner_id is not None else []
    if lab.course_id is not None:
        teacher = session.scalar(select(Course.teacher_id).where(Course.id == lab.course_id))
        if teacher is not None and teacher not in ids:
            ids.append(teacher)
    if not ids:
        return []
    return list(session.scalars(select(User.id).where(User.id.in_(ids), User.disabled.is_(False))))


def lab_authorized_keys(session: Session, lab: Lab) -> list[str]:
    """The key lines (checked again, re-encoded) for root's authorized_keys in a lab's nodes."""
    users = lab_key_users(session, lab)
    if not users:
        return []
    lines = []
    for row in session.scalars(select(SshKey).where(SshKey.user_id.in_(users)).order_by(SshKey.id)):
        try:
            lines.append(parse_public_key(row.public_key).line)
        except KeyProblem:
            continue  # a row not written by the portal: never handed on
    return lines
