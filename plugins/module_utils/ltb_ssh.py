"""How LTB reaches a lab node (or a hypervisor) over SSH: one place for the client options,
used on the hypervisor (snapshots reach VM nodes) and on the controller (ltb.ssh).

Nodes get new host keys at every deploy, so their keys are not recorded; the platform key
authenticates, and nothing may prompt. Standard library only.
"""

from __future__ import annotations


def ssh_argv(address, *command, key, port=None, connect_timeout=10):
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
