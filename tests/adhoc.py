"""One module run by Ansible on this machine, as an operator's `ansible localhost -m ...`
runs it: its task result, read from the JSON callback. For tests of what a module answers
(seconds each), not of what it does to a lab."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, args: str, *extra: str) -> dict:
    """`module` with `args` (key=value ...) on localhost over a local connection; `extra`:
    more options of `ansible` (e.g. --become)."""
    done = subprocess.run(
        ["ansible", "localhost", "-c", "local", *extra, "-m", module, "-a", args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        },
    )
    return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
