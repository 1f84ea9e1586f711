"""How LTB reaches a lab node (or a hypervisor) over SSH: the client options live once, in
plugins/module_utils/ltb_ssh.py, which the hypervisor's snapshot code uses too.

The controller's connections to a hypervisor are shared the OpenSSH way (`shared_connection`):
the first command opens a master connection that later commands to the same hypervisor reuse
for a minute, so a portal read of several commands costs one SSH handshake, not one each.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ltb.deployed import DEFAULT_STATE_DIR
from ltb.module_utils import load

ssh_argv = load("ltb_ssh").ssh_argv

# The masters' sockets: whoever may open one may run commands on the hypervisor as the
# platform, so the directory is the controller's own and private (0700, owned by us).
CONTROL_DIR = DEFAULT_STATE_DIR / "ssh" / "control"
# How long a master outlives its last command: long enough for a page's reads and the next
# poll of node states, short enough that a hypervisor's changed sshd settings soon apply.
CONTROL_PERSIST_SECONDS = 60


def shared_connection(control_dir: Path = CONTROL_DIR) -> list[str]:
    """ssh options that share one connection per destination (ControlMaster=auto, a socket
    per connection in `control_dir`, ControlPersist); none (one connection per command) when
    the directory cannot be made, or is not ours and private."""
    try:
        control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = control_dir.lstat()
    except OSError:
        return []
    if (
        not stat.S_ISDIR(found.st_mode)
        or found.st_uid != os.geteuid()
        or found.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        return []
    # %C: a hash of this host, the destination, its port and user: short, as a socket path
    # must be (about 100 bytes).
    return [
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={control_dir}/%C",
        "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}",
    ]  # fmt: skip


__all__ = ["CONTROL_DIR", "shared_connection", "ssh_argv"]
