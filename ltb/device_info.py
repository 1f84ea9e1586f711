"""What a running lab node says about itself, read on request: its OS release, and FRR's
version and running configuration where FRR runs, else its addresses and routes.

Container nodes are read through the Docker API (exec), VM nodes over SSH with the platform
key (ltb.ssh). A node on another hypervisor is read through that hypervisor (an
ltb.capture.SshHypervisor from the inventory): a container with `docker exec` over SSH to it
(its sshd's environment gives DOCKER_HOST), a VM over SSH jumping through it (only the lab's
hypervisor reaches the management network). Every read is bounded in time and in output
size, and a node that is down or does not answer gives a message saying so, never an
exception: a user asking about a broken node must learn that it is broken.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from ltb.runtime import FRR_DAEMON
from ltb.ssh import ssh_argv

if TYPE_CHECKING:
    from ltb.capture import SshHypervisor

# A command's output is cut to this many bytes; a running config of a big router fits.
MAX_OUTPUT_BYTES = 64 * 1024
# Seconds a single read of a node may take (a Docker exec or an SSH command).
READ_TIMEOUT = 10

OS_RELEASE = ("cat", "/etc/os-release")
FRR_RUNNING = ("pgrep", "-x", FRR_DAEMON)
FRR_VERSION = ("vtysh", "-c", "show version")
FRR_CONFIG = ("vtysh", "-c", "show running-config")
IP_ADDRESSES = ("ip", "-br", "addr")
IP_ROUTES = ("ip", "route")
# Exit statuses of ssh itself (it could not connect) and of coreutils' timeout (time is up).
SSH_FAILED = 255
TIMED_OUT = 124


class NodeUnreachable(Exception):
    """The node cannot be asked anything (down, gone, or not answering in time)."""


@dataclass
class DeviceInfo:
    """The live part of a node's device information; `error` says why something is missing."""

    reachable: bool = True
    os_release: str | None = None
    frr_running: bool = False
    frr_version: str | None = None
    running_config: str | None = None
    addresses: str | None = None
    routes: str | None = None
    error: str | None = None
    truncated: list[str] = field(default_factory=list)


def _text(output: bytes) -> tuple[str, bool]:
    cut = len(output) > MAX_OUTPUT_BYTES
    return output[:MAX_OUTPUT_BYTES].decode(errors="replace"), cut


def pretty_os_name(os_release: str) -> str | None:
    """PRETTY_NAME of an /etc/os-release text."""
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PRETTY_NAME":
            return value.strip().strip('"') or None
    return None


class ContainerReader:
    """Runs commands in a container node through the Docker API, each bounded in time."""

    def __init__(self, container: str, timeout: float = READ_TIMEOUT):
        self.name = container
        # The client's socket timeout bounds every call, an exec that hangs included.
        self.client = docker.DockerClient.from_env(timeout=int(timeout))

    def check(self) -> None:
        try:
            container = self.client.containers.get(self.name)
        except DockerException as error:
            raise NodeUnreachable(f"its container {self.name} is not there ({error})") from None
        except RequestException:
            raise NodeUnreachable("Docker did not answer in time") from None
        if container.status != "running":
            raise NodeUnreachable(f"its container {self.name} is {container.status}")

    def run(self, argv: tuple[str, ...]) -> tuple[int, bytes]:
        try:
            code, output = self.client.containers.get(self.name).exec_run(list(argv))
        except RequestException:
            raise NodeUnreachable(f"{' '.join(argv)} did not answer in time") from None
        except DockerException as error:
            raise NodeUnreachable(f"{' '.join(argv)} could not run: {error}") from None
        return code, output or b""

    def close(self) -> None:
        self.client.close()


class RemoteContainerReader:
    """Runs commands in a container node on another hypervisor: `docker` over SSH to it, each
    bounded in time there (coreutils' `timeout`, so nothing stays behind) and here."""

    def __init__(self, container: str, via: SshHypervisor, timeout: float = READ_TIMEOUT):
        self.name, self.via, self.timeout = container, via, timeout

    def _docker(self, *argv: str) -> tuple[int, bytes]:
        # Fixed words and the container's name (a model name): quoted for the remote shell.
        command = ("timeout", str(int(self.timeout)), "docker", *argv)
        try:
            done = subprocess.run(
                self.via.argv(*(shlex.quote(word) for word in command)),
                capture_output=True,
                timeout=self.timeout + 5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NodeUnreachable(f"hypervisor {self.via.name} did not answer in time") from None
        output = done.stdout + done.stderr
        if done.returncode == SSH_FAILED and not done.stdout:
            said = _text(done.stderr)[0].strip()
            raise NodeUnreachable(f"hypervisor {self.via.name} cannot be reached: {said}")
        if done.returncode == TIMED_OUT:
            raise NodeUnreachable(
                f"docker {argv[0]} on hypervisor {self.via.name} did not answer in "
                f"{self.timeout:.0f} s"
            )
        return done.returncode, output

    def check(self) -> None:
        code, output = self._docker("inspect", "--format", "{{.State.Status}}", self.name)
        status = _text(output)[0].strip()
        if code != 0:
            raise NodeUnreachable(
                f"its container {self.name} is not there on hypervisor {self.via.name} ({status})"
            )
        if status != "running":
            raise NodeUnreachable(f"its container {self.name} is {status}")

    def run(self, argv: tuple[str, ...]) -> tuple[int, bytes]:
        return self._docker("exec", self.name, *argv)

    def close(self) -> None:
        pass


class SshReader:
    """Runs commands on a VM node over SSH with the platform key, each bounded in time; `via`:
    through the node's hypervisor (ProxyCommand), when that is another machine."""

    def __init__(
        self,
        address: str,
        key: Path,
        timeout: float = READ_TIMEOUT,
        via: SshHypervisor | None = None,
    ):
        self.address, self.key, self.timeout, self.via = address, key, timeout, via

    def argv(self, command: str) -> list[str]:
        argv = ssh_argv(self.address, command, key=self.key, connect_timeout=int(self.timeout))
        if self.via is None:
            return argv
        return [argv[0], "-o", f"ProxyCommand={proxy_command(self.via)}", *argv[1:]]

    def check(self) -> None:
        code, output = self.run(("true",))
        if code != 0:
            raise NodeUnreachable(f"SSH to {self.address} fails: {_text(output)[0].strip()}")

    def run(self, argv: tuple[str, ...]) -> tuple[int, bytes]:
        # One argument per word, quoted for the remote shell: the words are ours, but stay safe.
        command = " ".join(f"'{word}'" for word in argv)
        try:
            done = subprocess.run(
                self.argv(command),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise NodeUnreachable(
                f"{self.address} did not answer in {self.timeout:.0f} s"
            ) from None
        return done.returncode, done.stdout + done.stderr

    def close(self) -> None:
        pass


def proxy_command(via: SshHypervisor) -> str:
    """An ssh ProxyCommand that connects through hypervisor `via` with its own SSH settings
    (command-line options of the outer ssh would not reach a ProxyJump's connection)."""
    # The outer ssh expands %-tokens of the whole line: the hypervisor's own (its shared
    # connection's ControlPath=.../%C) are kept for the inner ssh as %%.
    argv = [word.replace("%", "%%") for word in via.argv()]
    return shlex.join([*argv[:-1], "-W", "%h:%p", argv[-1]])


def read_device_info(reader: ContainerReader | RemoteContainerReader | SshReader) -> DeviceInfo:
    """Ask the node through `reader`; a node that cannot be asked gives reachable False."""
    info = DeviceInfo()
    try:
        reader.check()
        _, output = reader.run(OS_RELEASE)
        info.os_release = pretty_os_name(_text(output)[0])
        info.frr_running = reader.run(FRR_RUNNING)[0] == 0
        if info.frr_running:
            reads = (("frr_version", FRR_VERSION), ("running_config", FRR_CONFIG))
        else:
            reads = (("addresses", IP_ADDRESSES), ("routes", IP_ROUTES))
        for attribute, argv in reads:
            code, output = reader.run(argv)
            text, cut = _text(output)
            if code != 0:
                text = f"{' '.join(argv)} failed (exit {code}): {text.strip()}"
            setattr(info, attribute, text)
            if cut:
                info.truncated.append(attribute)
    except NodeUnreachable as error:
        info.reachable = False
        info.error = f"the node cannot be read: {error}"
    finally:
        reader.close()
    return info
