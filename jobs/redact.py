"""Keep secrets out of stored job events: values under secret-sounding keys, and values that
look like keys or tokens wherever they are."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "********"
SECRET_KEY = re.compile(r"password|passwd|secret|token|key|private|credential", re.IGNORECASE)
SECRET_VALUES = (
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S
    ),
    re.compile(r"\b(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+) AAAA[0-9A-Za-z+/=]+"),
    re.compile(r"\beyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]*"),  # JWT
    re.compile(r"\b(gh[pousr]_[0-9A-Za-z]{20,}|xox[abpr]-[0-9A-Za-z-]{10,}|AKIA[0-9A-Z]{16})\b"),
)
# A long run of base64 characters mixing upper case, lower case and digits: a token or key.
# Ids in LTB (uuids, hex digests, interface names) are lower case and stay readable.
HIGH_ENTROPY = re.compile(r"[0-9A-Za-z+/_=-]{32,}")


def _looks_secret(word: str) -> bool:
    return (
        any(c.isupper() for c in word)
        and any(c.islower() for c in word)
        and sum(c.isdigit() for c in word) >= 2
    )


def redact_text(text: str) -> str:
    for pattern in SECRET_VALUES:
        text = pattern.sub(REDACTED, text)
    return HIGH_ENTROPY.sub(lambda m: REDACTED if _looks_secret(m.group()) else m.group(), text)


def redact(value: Any) -> Any:
    """A copy of `value` (JSON-like data) with every secret replaced by REDACTED."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and SECRET_KEY.search(k) and value[k] else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
