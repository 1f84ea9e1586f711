"""The question the SSH bastion's AuthorizedKeysCommand asks: what may this key reach now?
The rules are in portal/keys.py.

Every endpoint here is for the bastion only: it needs the bastion's secret in
`X-LTB-Bastion-Secret` (the portal keeps its SHA-256 only), checked before anything else;
any other caller gets 401, whatever it sends.
"""

from __future__ import annotations

from apiflask import APIBlueprint, HTTPError, Schema
from apiflask.fields import List, Nested, String
from apiflask.validators import Length
from flask import request

from portal import keys as rules

bp = APIBlueprint("bastion", __name__, url_prefix="/api")

SECRET_HEADER = "X-LTB-Bastion-Secret"  # noqa: S105 - a header's name, not a secret


@bp.before_request
def bastion_only() -> None:
    if not rules.bastion_secret_matches(request.headers.get(SECRET_HEADER)):
        raise HTTPError(401, f"the bastion's secret is missing or wrong ({SECRET_HEADER})")


class FingerprintQuery(Schema):
    fingerprint = String(required=True, validate=Length(1, rules.FINGERPRINT_CHARS))


class BastionKeyOut(Schema):
    key = String(metadata={"description": "type and base64 of the key"})
    user = String()
    permit_open = List(String(), metadata={"description": "management addresses (port 22)"})


class BastionKeysOut(Schema):
    keys = List(Nested(BastionKeyOut))


@bp.get("/bastion/authorized-keys")
@bp.input(FingerprintQuery, location="query", arg_name="query")
@bp.output(BastionKeysOut)
@bp.doc(summary="What a key may reach through the bastion (the bastion's own call)")
def authorized_keys(query):
    return rules.bastion_permissions(query["fingerprint"])
