"""Each node's state now, read on the hypervisor: a container's from Docker, a VM's from libvirt.

The store keeps a lab's state (what its last task made of it); a node can differ (a container
stopped by hand, a VM that crashed). This reads what runs, for every lab at once: one Docker
API call lists every LTB container (label `ltb.lab`) with its status and health, and one
`virsh list --all` every domain with its state, only when a VM node is asked about. The
answers are kept a few seconds (CACHE_SECONDS), so a page of browsers polling every few
seconds costs one Docker call per interval, not one per node and poll.

A hypervisor that is not this machine is read the same way over SSH (an
ltb.capture.SshHypervisor from the inventory): one SSH call per hypervisor and CACHE_SECONDS
runs `docker ps` with the same label filter and `virsh list --all` there (read_remote).

A node's state is one of STATES: running, starting (its health check has not passed yet),
unhealthy, paused, restarting, stopping, stopped (exited, created, shut off, crashed),
missing (the lab's container or domain does not exist) or unknown (Docker or libvirt could
not be asked; the error is logged, never shown).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

import docker
import docker.errors
import requests.exceptions

from ltb.deployed import DEFAULT_LIBVIRT_URI
from ltb.kinds import DOCKER, LIBVIRT
from ltb.kinds import get as node_kind
from ltb.model import container_name

if TYPE_CHECKING:
    from ltb.capture import SshHypervisor

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
# Seconds one SSH call to a hypervisor may take for both of its reads.
REMOTE_TIMEOUT = 15
# Lines the remote reading prints between and after its parts (ours, never a container's name).
SECTION = "--ltb-section--"
FAILED = "--ltb-failed--"
# A libvirt URI that may go into the remote command (it is quoted there too).
_URI = re.compile(r"[A-Za-z0-9_.:@/+?=&-]+")

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


def read_remote(
    via: SshHypervisor, libvirt_uri: str = DEFAULT_LIBVIRT_URI
) -> dict[str, dict[str, str] | None] | None:
    """The runtimes' readings of hypervisor `via` (DOCKER and LIBVIRT -> name -> node state,
    None where that runtime could not be asked) from one SSH call; None if SSH fails."""
    if not _URI.fullmatch(libvirt_uri):
        log.warning("node states: libvirt URI %r of %s cannot be used", libvirt_uri, via.name)
        libvirt_uri = DEFAULT_LIBVIRT_URI
    docker_ps = "docker ps --all --filter label=ltb.lab --format '{{json .}}'"
    virsh = f"timeout {VIRSH_TIMEOUT} virsh -c {shlex.quote(libvirt_uri)} list --all"
    script = f"{docker_ps} || echo {FAILED}; echo {SECTION}; {virsh} || echo {FAILED}"
    try:
        done = subprocess.run(
            via.argv(script), capture_output=True, text=True, timeout=REMOTE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        log.warning("node states: hypervisor %s did not answer in %s s", via.name, REMOTE_TIMEOUT)
        return None
    if SECTION not in done.stdout:
        log.warning("node states: hypervisor %s: %s", via.name, done.stderr.strip()[:500])
        return None
    containers, _, domains = done.stdout.partition(f"{SECTION}\n")
    return {DOCKER: parse_docker_ps(containers), LIBVIRT: parse_remote_virsh(domains)}


def parse_docker_ps(text: str) -> dict[str, str] | None:
    """Container name -> node state from `docker ps --format '{{json .}}'` lines; None when
    the command failed."""
    if FAILED in text.splitlines():
        return None
    states = {}
    for line in text.splitlines():
        try:
            found = json.loads(line)
        except ValueError:
            continue
        if isinstance(found, dict):
            state = container_state(str(found.get("State", "")), str(found.get("Status", "")))
            for name in str(found.get("Names", "")).split(","):
                states[name] = state
    return states


def parse_remote_virsh(text: str) -> dict[str, str] | None:
    return None if FAILED in text.splitlines() else parse_virsh_list(text)


T = TypeVar("T")


class Cached(Generic[T]):
    """A reading kept for `seconds`, then read again in a thread of its own while callers get
    the last one: no request waits for Docker or libvirt (bench/portal.py: a read takes
    20 ms on an idle machine, and every lab answer of the process used to wait behind it).
    With no reading yet, after forget(), or when the caller knows of a change after the
    reading began (`changed_after`: a lab deployed since), the caller reads (threads asking at
    once share that reading): a lab's first answer after its deploy never shows the nodes of
    the reading before it."""

    def __init__(self, read: Callable[[], T | None], seconds: float) -> None:
        self.read = read
        self.seconds = seconds
        self.lock = threading.Lock()
        self.value: T | None = None
        self.at = float("-inf")
        self.began = float("-inf")  # wall clock (time.time()) when the kept reading began
        self.refreshing = False
        self.generation = 0  # forget() counts up: a reading begun before it is not kept

    def get(self, changed_after: float | None = None) -> T | None:
        """The reading; `changed_after` (wall clock, seconds since the epoch): what is read
        changed then, so a reading begun before it is not given."""
        with self.lock:
            outdated = changed_after is not None and self.began < changed_after
            if time.monotonic() - self.at < self.seconds and not outdated:
                return self.value
            if self.at != float("-inf") and not outdated:
                if not self.refreshing:
                    self.refreshing = True
                    threading.Thread(
                        target=self._refresh, args=(self.generation,), daemon=True
                    ).start()
                return self.value
            began = time.time()
            self.value = self.read()
            self.at, self.began = time.monotonic(), began
            self.generation += 1  # a refresh begun before this reading is not kept
            return self.value

    def _refresh(self, generation: int) -> None:
        value = None
        began = time.time()
        try:
            value = self.read()
        finally:
            with self.lock:
                self.refreshing = False
                if generation == self.generation and self.at != float("-inf"):
                    self.value, self.at, self.began = value, time.monotonic(), began

    def forget(self) -> None:
        with self.lock:
            self.at = float("-inf")
            self.generation += 1


CONTAINERS: Cached[dict[str, str]] = Cached(read_containers, CACHE_SECONDS)
DOMAINS: Cached[dict[str, str]] = Cached(read_domains, CACHE_SECONDS)
# Other hypervisors' readings, one per hypervisor (and libvirt URI), made when first asked.
REMOTE: dict[tuple[SshHypervisor, str], Cached[dict[str, dict[str, str] | None]]] = {}
_REMOTE_LOCK = threading.Lock()


def reading(runtime: str) -> Cached:
    """Where the nodes of a runtime (ltb.kinds) are read."""
    return {DOCKER: CONTAINERS, LIBVIRT: DOMAINS}[runtime]


def remote_reading(via: SshHypervisor, libvirt_uri: str) -> Cached:
    with _REMOTE_LOCK:
        key = (via, libvirt_uri)
        if key not in REMOTE:
            REMOTE[key] = Cached(lambda: read_remote(via, libvirt_uri), CACHE_SECONDS)
        return REMOTE[key]


def node_states(
    lab: str,
    kinds: Mapping[str, str],
    via: SshHypervisor | None = None,
    libvirt_uri: str = DEFAULT_LIBVIRT_URI,
    changed_after: float | None = None,
) -> dict[str, str]:
    """The state of each node of the lab (node name -> its kind's name) on this hypervisor,
    or (`via`) on that other one, read from its kind's runtime (here only the runtimes asked
    about are read): "missing" where its container or domain does not exist, "unknown" where
    the runtime cannot be asked. `changed_after`: when the lab last changed (its last job
    ended), so that no reading from before it is given (Cached.get)."""
    runtimes = {node: node_kind(kind).runtime for node, kind in kinds.items()}
    if via is None:
        found = {runtime: reading(runtime).get(changed_after) for runtime in set(runtimes.values())}
    else:
        found = remote_reading(via, libvirt_uri).get(changed_after) or {}
    states = {}
    for node, runtime in runtimes.items():
        names = found.get(runtime)
        if names is None:
            states[node] = "unknown"
        else:
            states[node] = names.get(container_name(lab, node), "missing")
    return states
