"""Tests that set up a second instance of a platform daemon (a bastion, a portal) through its
role leave no unit or supervised program behind: the role's own `absent` entry point
(roles/platform_daemon/tasks/absent.yml) stops it and removes what supervises it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: The test's daemon is stopped and no longer supervised
      ansible.builtin.include_role:
        name: platform_daemon
        tasks_from: absent.yml
"""


def forget_daemon(name: str) -> None:
    """Stop the daemon `name` and remove its unit or supervisord program (a no-op when there
    is none). Raises when the role fails, so a leftover is seen."""
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "forget.yml"
        playbook.write_text(PLAY)
        done = _run(playbook, name)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _run(playbook: Path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            str(playbook),
            "-e",
            json.dumps({"platform_daemon_service": {"name": name}}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
