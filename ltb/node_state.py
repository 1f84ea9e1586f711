"""Each node's state now, read on the hypervisor: a container's from Docker, a VM's from libvirt.

The store keeps a lab's state (what its last task made of it); a node can differ (a container
stopped by hand, a VM that crashed). This reads what runs, for every lab at once: one Docker
API call lists every LTB container (label `ltb.lab`) with its status and health, and one
`virsh list --all` every domain with its state, only when a VM node is asked about. The
answers are kept a few seconds (CACHE_SECONDS), so a page of browsers polling every few
seconds costs one Docker call per interval, not one per node and poll.

A node's state is one of STATES: running, starting (its health check has not passed yet),
unhealthy, paused, restarting, stopping, stopped (exited, created, shut off, crashed),
missing (the lab's container or domain does not exist) or unknown (Docker or libvirt could
not be asked; the error is logged, never shown).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

import docker
import docker.errors
import requests.exceptions

from ltb.deployed import DEFAULT_LIBVIRT_URI
from ltb.kinds import DOCKER, LIBVIRT
from ltb.kinds import get as node_kind
from ltb.model import container_name

STATES = (
    "running",
    "starting",
    "unhealthy",
    "paused",
    "restarting",
    "stopping",
    "stopped",
    "missing",
    "unknown",
)
CACHE_SECONDS = 3.0
VIRSH_TIMEOUT = 10

log = logging.getLogger(__name__)

# Docker's container State (and the health in its Status text) -> a node state.
DOCKER_STATES = {
    "running": "running",
    "paused": "paused",
    "restarting": "restarting",
    "removing": "stopping",
    "created": "stopped",
    "exited": "stopped",
    "dead": "stopped",
}
# virsh's domain states (virDomainState in words) -> a node state.
LIBVIRT_STATES = {
    "running": "running",
    "idle": "running",
    "blocked": "running",  # running, waiting for I/O
    "paused": "paused",
    "pmsuspended": "paused",
    "in shutdown": "stopping",
    "shut off": "stopped",
    "crashed": "stopped",
    "dying": "stopping",
}


def container_state(state: str, status: str) -> str:
    """A node state from Docker's list answer: State ("running") and Status ("Up 5 minutes
    (healthy)"), where the health is only in words."""
    found = DOCKER_STATES.get(state, "unknown")
    if found == "running":
        if "(unhealthy)" in status:
            return "unhealthy"
        if "(health: starting)" in status:
            return "starting"
    return found


def parse_virsh_list(text: str) -> dict[str, str]:
    """Domain name -> node state, from `virsh list --all`:

     Id   Name          State
    ------------------------------
     1    ltb-lab.vm    running
     -    ltb-lab.vm2   shut off
    """
    states = {}
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) < 3 or fields[0] == "Id" or set(line.strip()) == {"-"}:
            continue
        states[fields[1]] = LIBVIRT_STATES.get(fields[2].strip(), "unknown")
    return states


def read_containers() -> dict[str, str] | None:
    """Container name -> node state of every LTB container; None if Docker cannot be asked."""
    try:
        client = docker.from_env(timeout=10)
        try:
            found = client.containers.list(all=True, sparse=True, filters={"label": "ltb.lab"})
        finally:
            client.close()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        log.warning("node states: Docker cannot be asked: %s", error)
        return None
    states = {}
    for container in found:
        attrs = container.attrs
        state = container_state(str(attrs.get("State", "")), str(attrs.get("Status", "")))
        for name in attrs.get("Names") or []:
            states[name.lstrip("/")] = state
    return states


def read_domains(libvirt_uri: str = DEFAULT_LIBVIRT_URI) -> dict[str, str] | None:
    """Domain name -> node state of every libvirt domain; None if libvirt cannot be asked."""
    if shutil.which("virsh") is None:
        log.warning("node states: virsh is not installed")
        return None
    try:
        out = subprocess.run(
            ["virsh", "-c", libvirt_uri, "list", "--all"],
            check=True,
            capture_output=True,
            text=True,
            timeout=VIRSH_TIMEOUT,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("node states: libvirt cannot be asked: %s", error)
        return None
    return parse_virsh_list(out)


class Cached:
    """A reading kept for `seconds`, then read again in a thread of its own while callers get
    the last one: no request waits for Docker or libvirt (bench/portal.py: a read takes
    20 ms on an idle machine, and every lab answer of the process used to wait behind it).
    With no reading yet, or after forget(), the caller reads (threads asking at once share
    that reading)."""

    def __init__(self, read: Callable[[], dict[str, str] | None], seconds: float) -> None:
        self.read = read
        self.seconds = seconds
        self.lock = threading.Lock()
        self.value: dict[str, str] | None = None
        self.at = float("-inf")
        self.refreshing = False
        self.generation = 0  # forget() counts up: a reading begun before it is not kept

    def get(self) -> dict[str, str] | None:
        with self.lock:
            if time.monotonic() - self.at < self.seconds:
                return self.value
            if self.at != float("-inf"):
                if not self.refreshing:
                    self.refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(self.generation,), daemon=True
                    ).start()
                return self.value
            self.value = self.read()
            self.at = time.monotonic()
            return self.value

    def _refresh(self, generation: int) -> None:
        value = None
        try:
            value = self.read()
        finally:
            with self.lock:
                self.refreshing = False
                if generation == self.generation and self.at != float("-inf"):
                    self.value, self.at = value, time.monotonic()

    def forget(self) -> None:
        with self.lock:
            self.at = float("-inf")
            self.generation += 1


CONTAINERS = Cached(read_containers, CACHE_SECONDS)
DOMAINS = Cached(read_domains, CACHE_SECONDS)


def reading(runtime: str) -> Cached:
    """Where the nodes of a runtime (ltb.kinds) are read."""
    return {DOCKER: CONTAINERS, LIBVIRT: DOMAINS}[runtime]


def node_states(lab: str, kinds: Mapping[str, str]) -> dict[str, str]:
    """The state of each node of the lab (node name -> its kind's name) on this hypervisor,
    read from its kind's runtime (only the runtimes asked about are read): "missing" where
    its container or domain does not exist, "unknown" where the runtime cannot be asked."""
    runtimes = {node: node_kind(kind).runtime for node, kind in kinds.items()}
    found = {runtime: reading(runtime).get() for runtime in set(runtimes.values())}
    states = {}
    for node, runtime in runtimes.items():
        names = found[runtime]
        if names is None:
            states[node] = "unknown"
        else:
            states[node] = names.get(container_name(lab, node), "missing")
    return states
