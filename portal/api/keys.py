"""A user's SSH public keys, for reaching lab nodes through the bastion: list, add, delete
(each user their own; another user's key is 404), and a lab's ssh_config with a Host entry
per node. The rules are in portal/keys.py."""

from __future__ import annotations

from apiflask import APIBlueprint, Schema
from apiflask.fields import DateTime, Integer, List, Nested, String
from apiflask.validators import Length, Regexp
from flask import Response

from portal import keys as rules
from portal.access import lab_or_404
from portal.auth import current_user, login_required
from store.sshkeys import COMMENT_RULE, KEY_TYPES, MAX_KEY_CHARS

bp = APIBlueprint("keys", __name__, url_prefix="/api")


class KeyIn(Schema):
    name = String(
        required=True,
        validate=[Length(1, 64), Regexp(rules.KEY_NAME, error=rules.KEY_NAME_RULE)],
        metadata={"description": rules.KEY_NAME_RULE},
    )
    public_key = String(
        required=True,
        validate=Length(1, MAX_KEY_CHARS + 2),
        metadata={
            "description": "one line of a .pub file: type, base64, optional comment "
            f"({COMMENT_RULE}); types: {', '.join(KEY_TYPES)} (ssh-rsa: 2048 bits or more)"
        },
    )


class KeyOut(Schema):
    id = Integer()
    name = String()
    public_key = String()
    fingerprint = String(metadata={"description": "SHA256, as ssh-keygen -l prints it"})
    created_at = DateTime()


class KeyListOut(Schema):
    keys = List(Nested(KeyOut))


@bp.get("/users/me/keys")
@login_required()
@bp.output(KeyListOut)
@bp.doc(summary="List my SSH public keys")
def list_keys():
    return {"keys": rules.user_keys(current_user())}


@bp.post("/users/me/keys")
@login_required()
@bp.input(KeyIn, arg_name="body")
@bp.output(KeyOut, status_code=201)
@bp.doc(
    summary="Add an SSH public key (it reaches my labs' nodes through the bastion)",
    responses={409: "The key is registered already, or too many keys"},
)
def add_key(body):
    return rules.add_key(current_user(), body["name"], body["public_key"])


@bp.delete("/users/me/keys/<int:key_id>")
@login_required()
@bp.output({}, status_code=204)
@bp.doc(summary="Delete one of my SSH public keys (new connections with it are refused)")
def delete_key(key_id: int):
    rules.delete_key(current_user(), key_id)
    return ""


@bp.get("/labs/<int:lab_id>/ssh_config")
@login_required()
@bp.doc(
    summary="An ssh_config with a Host <lab>-<node> entry per node, through the bastion",
    responses={200: {"description": "ssh_config", "content": {"text/plain": {}}}},
)
def lab_ssh_config(lab_id: int):
    lab = lab_or_404(current_user(), lab_id)
    return Response(
        rules.ssh_config(lab),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{lab.name}.ssh_config"'},
    )
