"""Packet capture of a running lab's link or interface, from the controller: a bounded pcap stream.

The capture itself is the hypervisor's command `ltb-capture` (plugins/module_utils/ltb_capture.py,
standard library only, installed by roles/platform_capture): it mirrors the link to a port of
its own, runs tcpdump there and streams pcap. `capture_stream` runs that same code here when
the node's hypervisor is this machine, and runs the command over SSH when it is another one
(`SshHypervisor`, from the hypervisors' inventory: `ssh_hypervisor`), so the portal and the
tests get the same stream either way.

    python -m ltb.capture LAB NODE:INTERFACE [options]     # = ltb-capture on this machine
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ltb.module_utils import load
from ltb.ssh import shared_connection, ssh_argv

_capture = load("ltb_capture")
CaptureError = _capture.CaptureError
CaptureBounds = _capture.CaptureBounds
CaptureSummary = _capture.CaptureSummary
check_filter = _capture.check_filter
_pcap_records = _capture.pcap_records
main = _capture.main

# The platform key (roles/platform_ssh_key): what the inventory's hypervisors accept.
PLATFORM_KEY = Path("/var/lib/ltb/ssh/id_ed25519")
REMOTE_COMMAND = "ltb-capture"
# An inventory value that is still a template cannot be used as data.
_PLAIN = re.compile(r"[A-Za-z0-9_.:@/+-]+")


@dataclass(frozen=True)
class SshHypervisor:
    """How to reach a hypervisor over SSH: its inventory's ansible_host, port, user, key."""

    name: str
    host: str
    port: int | None = None
    user: str = "root"
    key: Path = PLATFORM_KEY

    def argv(self, *command: str) -> list[str]:
        """The ssh command line that runs `command` there, over the connection to the
        hypervisor that the controller's commands share (ltb.ssh.shared_connection)."""
        argv = ssh_argv(self.host, *command, key=self.key, port=self.port)
        # `-l` wins over ssh_argv's root@host (OpenSSH takes the first user it is given).
        return [argv[0], "-l", self.user, *shared_connection(), *argv[1:]]


def ssh_hypervisor(name: str, host_vars: Mapping[str, Any]) -> SshHypervisor | None:
    """The SSH settings of hypervisor `name` from its inventory vars; None when it is driven
    locally (ansible_connection: local, as localhost)."""
    if host_vars.get("ansible_connection") == "local":
        return None
    settings = {
        "host": host_vars.get("ansible_host", name),
        "user": host_vars.get("ansible_user", "root"),
        "key": host_vars.get("ansible_ssh_private_key_file", str(PLATFORM_KEY)),
    }
    for setting, value in settings.items():
        if not _PLAIN.fullmatch(str(value)):
            raise CaptureError(f"hypervisor {name}: its {setting} {value!r} cannot be used")
    port = host_vars.get("ansible_port")
    return SshHypervisor(
        name,
        str(settings["host"]),
        int(port) if port is not None else None,
        str(settings["user"]),
        Path(str(settings["key"])),
    )


def capture_stream(
    lab: str,
    endpoint: str,
    *,
    scope: str = "link",
    expression: str = "",
    bounds: CaptureBounds | None = None,
    summary: CaptureSummary | None = None,
    on_ready: Callable[[str], None] | None = None,
    via: SshHypervisor | None = None,
) -> Iterator[bytes]:
    """Yield a pcap stream (header, then packets) of a lab link or interface, within bounds,
    on this machine or (`via`) on the hypervisor the endpoint's node runs on.

    Everything is checked before the mirror is made; the mirror is removed when the
    generator ends or is closed (e.g. the reader went away).
    """
    bounds = bounds or CaptureBounds()
    summary = summary if summary is not None else CaptureSummary()
    if scope not in ("link", "interface"):
        raise CaptureError(f"scope must be link or interface, not {scope!r}")
    if via is None:
        name = f"capture-{uuid.uuid4().hex[:8]}"
        spec = _capture.lab_mirror_spec(lab, scope, endpoint, name=name)
        return _capture.capture_stream(spec, expression, bounds, summary, on_ready)
    expression = check_filter(expression)
    return _remote_stream(via, lab, endpoint, scope, expression, bounds, summary, on_ready)


def _remote_stream(
    via: SshHypervisor,
    lab: str,
    endpoint: str,
    scope: str,
    expression: str,
    bounds: CaptureBounds,
    summary: CaptureSummary,
    on_ready: Callable[[str], None] | None,
) -> Iterator[bytes]:
    """`ltb-capture` on `via` over SSH. Its arguments are single words checked here or by the
    command (ssh joins them into one remote command line, so each is quoted)."""
    command = [REMOTE_COMMAND, lab, endpoint, "--end-with-stdin"]
    command += ["--duration", str(bounds.seconds), "--packets", str(bounds.packets)]
    command += ["--bytes", str(bounds.bytes)]
    if scope == "interface":
        command.append("--interface-only")
    if expression:
        command.append(f"--filter={expression}")
    process = subprocess.Popen(
        via.argv(*(shlex.quote(word) for word in command)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    said = _wait_until_ready(process)
    if said is not None:
        process.wait(timeout=10)
        raise CaptureError(f"on hypervisor {via.name}: {said}")
    # What the command says after it listens (its summary); read on, so it never blocks.
    rest: list[bytes] = []
    drain = threading.Thread(target=lambda: rest.append(process.stderr.read()), daemon=True)
    drain.start()
    if on_ready is not None:
        on_ready(f"capturing on hypervisor {via.name}")
    return _remote_records(process, bounds, summary, drain, rest)


def _remote_records(
    process: subprocess.Popen,
    bounds: CaptureBounds,
    summary: CaptureSummary,
    drain: threading.Thread,
    rest: list[bytes],
) -> Iterator[bytes]:
    try:
        yield from _capture.bounded(_pcap_records(process.stdout), bounds, summary)
    finally:
        # Closing its stdin ends the remote command, which removes its mirror there.
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drain.join(timeout=5)
        if b"stopped by duration" in b"".join(rest):
            summary.stopped_by = "duration"


def _wait_until_ready(process: subprocess.Popen) -> str | None:
    """None once the remote command captures, else what it (or ssh) said before it ended."""
    said = []
    for raw in iter(process.stderr.readline, b""):
        line = raw.decode(errors="replace").strip()
        if line.startswith(_capture.READY):
            return None
        said.append(line.removeprefix("ltb-capture: "))
    return " ".join(said) or f"ssh ended with status {process.wait()}"


if __name__ == "__main__":
    sys.exit(main())
