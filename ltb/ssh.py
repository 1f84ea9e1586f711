"""How LTB reaches a lab node (or a hypervisor) over SSH: one place for the client options.

Nodes get new host keys at every deploy, so their keys are not recorded; the platform key
authenticates, and nothing may prompt.
"""

from __future__ import annotations

from pathlib import Path


def ssh_argv(
    address: str,
    *command: str,
    key: str | Path,
    port: int | None = None,
    connect_timeout: int = 10,
) -> list[str]:
    """The `ssh` command line that runs `command` as root on `address`."""
    argv = ["ssh", "-i", str(key)]
    if port is not None:
        argv += ["-p", str(port)]
    for option in (
        "StrictHostKeyChecking=no",
        "UserKnownHostsFile=/dev/null",
        "BatchMode=yes",
        f"ConnectTimeout={connect_timeout}",
        "LogLevel=ERROR",
    ):
        argv += ["-o", option]
    return [*argv, f"root@{address}", *command]
