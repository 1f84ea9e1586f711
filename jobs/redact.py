"""Keep secrets out of what the job layer stores and logs: values under secret-sounding keys,
values that look like keys or tokens wherever they are, credentials in URLs, values after
secret-sounding words in text (`password=hunter2`, `token: abc`, `--password hunter2`), and
the same in error texts and the workers' logs (tracebacks included)."""

from __future__ import annotations

import logging
import re
import traceback
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
# The password of a URL's user info: postgresql://ltb:s3cret@db/ltb, redis://:pw@host.
URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.I)
# Words that name a secret, inside a longer name too (PGPASSWORD, db_password, api-token).
SECRET_WORDS = (
    "passw(?:or)?d",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api[_-]?key",
    "access[_-]?key",
    "private[_-]?key",
    "credentials?",
)
_SENSITIVE_NAME = rf"[\w.-]*?(?:{'|'.join(SECRET_WORDS)})[\w.-]*"
# A value: quoted, or a run up to a space, quote or separator.
_VALUE = r"(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&)}\]]+)"
# password=hunter2, token: abc, "password": "x" (JSON in a message), PGPASSWORD='x'.
SECRET_ASSIGNMENT = re.compile(
    rf"(?P<head>\b{_SENSITIVE_NAME}[\"']?\s*[:=]\s*)(?P<value>{_VALUE})", re.IGNORECASE
)
# --password hunter2, -secret x: an option and its value (a word after a bare secret-sounding
# word is not a value: "password authentication failed").
SECRET_OPTION = re.compile(rf"(?P<head>(?<![\w-])--?{_SENSITIVE_NAME}\s+)(?P<value>{_VALUE})", re.I)
# Authorization: Bearer abc / Basic dXNlcjpwdw==
AUTH_SCHEME = re.compile(r"(?P<head>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE)
# A long run of base64 characters mixing upper case, lower case and digits: a token or key.
# Ids in LTB (uuids, hex digests, interface names) are lower case and stay readable.
HIGH_ENTROPY = re.compile(r"[0-9A-Za-z+/_=-]{32,}")


def _looks_secret(word: str) -> bool:
    return (
        any(c.isupper() for c in word)
        and any(c.islower() for c in word)
        and sum(c.isdigit() for c in word) >= 2
    )


def _hide_value(match: re.Match[str]) -> str:
    value = match.group("value")
    if value == REDACTED or value.strip("\"'") == "":
        return match.group(0)
    quote = value[0] if value[0] in "\"'" and len(value) > 1 else ""
    return f"{match.group('head')}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    for pattern in SECRET_VALUES:
        text = pattern.sub(REDACTED, text)
    text = URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    text = SECRET_ASSIGNMENT.sub(_hide_value, text)
    text = SECRET_OPTION.sub(_hide_value, text)
    text = AUTH_SCHEME.sub(lambda m: m.group("head") + REDACTED, text)
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


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The log record with its message and traceback redacted (in place)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # arguments that do not fit the message: keep both apart
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = redact_text(message), None
    if record.exc_info and record.exc_info[0] is not None:
        # Formatters use exc_text when it is set, instead of formatting exc_info themselves.
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)))
        record.exc_text = record.exc_text.rstrip("\n")
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


def redact_logs() -> None:
    """Redact every log record this process makes, whatever logger or handler it goes to
    (LTB's, rq's, ansible-runner's): done once, where a worker or the scheduler starts."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "redacts", False):
        return

    def make_redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(make_record(*args, **kwargs))

    make_redacted_record.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_redacted_record)
