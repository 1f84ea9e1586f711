"""The portal's rules for SSH access to lab nodes: a user's public keys, what the bastion lets
a key reach, and how a user reaches a node (the one-liner and a lab's ssh_config).

The bastion (roles/platform_bastion) is an sshd whose AuthorizedKeysCommand asks
`/api/bastion/authorized-keys` with the key's fingerprint and the bastion's secret. The
answer names the key and the management addresses of the nodes its user may reach now: the
nodes of the user's running labs (a teacher: also the labs of the courses they teach; an
admin: only their own). A disabled user, an unknown key or a lab that is not running gives
nothing, so sshd refuses the next connection at once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from apiflask import HTTPError
from flask import current_app, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.access import LARGEST_ID, taught_course_ids
from store.db import db
from store.models import Lab, LabState, SshKey, User, utcnow
from store.sshkeys import KeyProblem, parse_public_key

MAX_KEYS_PER_USER = 20
KEY_NAME = re.compile(r"[A-Za-z0-9 ._@+-]{1,64}\Z")
KEY_NAME_RULE = "1-64 letters, digits, spaces and ._@+-"
BASTION_USER = "ltb"
# sshd's %f: "SHA256:" and 43 characters of unpadded base64.
FINGERPRINT_CHARS = 50


def user_keys(user: User) -> list[SshKey]:
    return list(
        db.session.scalars(select(SshKey).where(SshKey.user_id == user.id).order_by(SshKey.id))
    )


def add_key(user: User, name: str, text: str) -> SshKey:
    """Register a public key of the user; 422 naming the field, 409 if it is registered."""
    if not isinstance(name, str) or KEY_NAME.fullmatch(name) is None:
        raise HTTPError(422, f"name: use {KEY_NAME_RULE}", {"name": [KEY_NAME_RULE]})
    try:
        key = parse_public_key(text)
    except KeyProblem as problem:
        raise HTTPError(422, f"public_key: {problem}", {"public_key": [str(problem)]}) from None
    if len(user_keys(user)) >= MAX_KEYS_PER_USER:
        raise HTTPError(409, f"a user may register at most {MAX_KEYS_PER_USER} keys")
    taken = db.session.scalar(select(SshKey.id).where(SshKey.fingerprint == key.fingerprint))
    if taken is not None:
        # The same answer whoever holds it: a key says who its user is, so it is one user's.
        raise HTTPError(409, "this key is registered already", {"public_key": [key.fingerprint]})
    row = SshKey(
        user_id=user.id,
        name=name,
        public_key=key.line,
        fingerprint=key.fingerprint,
        created_at=utcnow(),
    )
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:  # the same key added at the same moment
        db.session.rollback()
        raise HTTPError(409, "this key is registered already") from None
    return row


def key_or_404(user: User, key_id: int) -> SshKey:
    row = db.session.get(SshKey, key_id) if 1 <= key_id <= LARGEST_ID else None
    if row is None or row.user_id != user.id:
        raise HTTPError(404, "No such key")
    return row


def delete_key(user: User, key_id: int) -> None:
    db.session.delete(key_or_404(user, key_id))
    db.session.commit()


# The bastion's side.


def _secret_hash_file() -> Path:
    return Path(current_app.config["LTB_BASTION_SECRET_HASH_FILE"])


def bastion_secret_matches(given: str | None) -> bool:
    """The bastion's secret, compared by its SHA-256 (the portal keeps only that) in constant
    time. No hash file (no bastion set up): every caller is refused."""
    if not given:
        return False
    try:
        expected = _secret_hash_file().read_text().strip()
    except OSError:
        return False
    if not expected:
        return False
    return secrets.compare_digest(hashlib.sha256(given.encode()).hexdigest(), expected)


def reachable_labs(user: User) -> list[Lab]:
    """The running labs whose nodes the user may reach through the bastion."""
    mine = Lab.owner_id == user.id
    taught = taught_course_ids(user)
    seen = mine | Lab.course_id.in_(taught) if taught else mine
    return list(
        db.session.scalars(
            select(Lab).where(seen, Lab.state == LabState.RUNNING.value).order_by(Lab.id)
        )
    )


def bastion_permissions(fingerprint: str) -> dict[str, Any]:
    """What the bastion lets the key of `fingerprint` reach: {"keys": [...]} with the key and
    its nodes' addresses; no keys when it may reach nothing."""
    if len(fingerprint) > FINGERPRINT_CHARS or not fingerprint.startswith("SHA256:"):
        return {"keys": []}
    row = db.session.scalar(select(SshKey).where(SshKey.fingerprint == fingerprint))
    if row is None or row.user.disabled:
        return {"keys": []}
    try:
        key = parse_public_key(row.public_key)
    except KeyProblem:
        return {"keys": []}
    addresses = sorted(
        {node.mgmt_ipv4.split("/")[0] for lab in reachable_labs(row.user) for node in lab.nodes},
        key=lambda address: tuple(int(part) for part in address.split(".")),
    )
    if not addresses:
        return {"keys": []}
    return {"keys": [{"key": key.key, "user": row.user.username, "permit_open": addresses}]}


# How users reach nodes.


def bastion_address() -> tuple[str, int]:
    """The bastion's host name and port as users reach it: the settings, or the host name
    the user reached the portal by."""
    host = current_app.config.get("LTB_BASTION_HOST") or urlsplit("//" + request.host).hostname
    host = host or "localhost"
    return (f"[{host}]" if ":" in host else host), int(current_app.config["LTB_BASTION_PORT"])


def _jump(host: str, port: int) -> str:
    return f"{BASTION_USER}@{host}" + (f":{port}" if port != 22 else "")


def ssh_one_liner(mgmt_ipv4: str) -> str:
    """`ssh -J ltb@<bastion>:<port> root@<node>`: a node from the user's own machine."""
    host, port = bastion_address()
    return f"ssh -J {_jump(host, port)} root@{mgmt_ipv4.split('/')[0]}"


def ssh_host_alias(lab: Lab, node_name: str) -> str:
    return f"{lab.name}-{node_name}"


def ssh_config(lab: Lab) -> str:
    """An ssh_config with a Host entry per node of the lab (`ssh -F file <lab>-<node>`).
    Nodes get new host keys at every deploy: their keys are not kept."""
    host, port = bastion_address()
    lines = [
        f"# ssh_config of LTB lab {lab.name}: ssh -F this-file {lab.name}-<node>",
        "",
    ]
    for node in lab.nodes:
        lines += [
            f"Host {ssh_host_alias(lab, node.name)}",
            f"    HostName {node.mgmt_ipv4.split('/')[0]}",
            "    User root",
            f"    ProxyJump {_jump(host, port)}",
            "    StrictHostKeyChecking no",
            "    UserKnownHostsFile /dev/null",
            "    LogLevel ERROR",
            "",
        ]
    return "\n".join(lines)
