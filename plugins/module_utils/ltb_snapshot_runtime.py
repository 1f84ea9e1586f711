# LTB module_utils: a node's runtime state that lives in no file (routes added by hand, FRR's
# running config), read for a snapshot and replayed after a restore. Standard library only.
#
# A snapshot keeps a node's files (container layer, VM disk); this keeps what is only in the
# kernel or in a daemon, so that a route configured in a node before a snapshot is there after
# restore:
# - FRR's running configuration is written to /etc/frr/frr.conf (`vtysh -c 'write memory'`)
#   before the node's files are saved, when FRR's zebra runs in the node; FRR starts with it
#   again after restore, and re-installs its own routes.
# - Routes set outside any routing daemon (protocol `boot`, what `ip route add` gives, or
#   `static`) in every table are read as `ip route` commands and replayed after restore, once
#   the node's interfaces have their addresses again. Connected, local and daemon routes are
#   not kept: the addresses and FRR make them again.
# Containers are reached in their network namespace with the hypervisor's own `ip` (nothing is
# needed in the image); VMs over SSH on the management network (they need `ip`).
from __future__ import annotations

import json
import shlex
import subprocess

from ansible.module_utils.ltb_ssh import ssh_argv

# Numeric route attributes (`ip -N`): names depend on the /etc/iproute2 of whoever runs `ip`.
KEPT_PROTOCOLS = {"3", "4"}  # boot (`ip route add`), static (`proto static`)
TYPES = {"1": "unicast", "6": "blackhole", "7": "unreachable", "8": "prohibit", "9": "throw"}
LOCAL_TABLE = "255"
FRR_DAEMON = "zebra"
ROUTE_FAMILIES = ("4", "6")
ROUTES_SHOW = ("-N", "-j", "route", "show", "table", "all")
# Starts the lines that separate the answers of one SSH session to a VM.
MARKER = "@@ltb-runtime:"


class RuntimeStateError(RuntimeError):
    """Runtime state that cannot be read or replayed; the message names the node."""


def route_commands(routes):
    """`ip route replace` arguments (for `ip -batch`) for the routes worth keeping, from the
    output of `ip -N -j route show table all`."""
    commands = []
    for route in routes:
        protocol = route.get("protocol", "3")  # `ip` leaves out the default, boot
        kind = TYPES.get(route.get("type", "1"))
        if protocol not in KEPT_PROTOCOLS or kind is None:
            continue
        if route.get("table") == LOCAL_TABLE:
            continue
        words = ["route", "replace", kind, route["dst"]]
        words += _next_hop(route)
        for key, word in (("table", "table"), ("metric", "metric"), ("prefsrc", "src")):
            if key in route:
                words += [word, str(route[key])]
        if "scope" in route:
            words += ["scope", str(route["scope"])]
        words += ["proto", protocol]
        for hop in route.get("nexthops", []):
            words += ["nexthop", *_next_hop(hop)]
            if "weight" in hop:
                words += ["weight", str(hop["weight"])]
        commands.append(" ".join(words))
    return commands


def _next_hop(hop):
    words = []
    if "gateway" in hop:
        words += ["via", hop["gateway"]]
    if "dev" in hop:
        words += ["dev", hop["dev"]]
    if "onlink" in hop.get("flags", []):
        words.append("onlink")
    return words


def run(argv, what, stdin=None, timeout=60):
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeStateError(f"{what}: no answer in {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeStateError(f"{what}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


class ContainerNode:
    """A container node, reached from the hypervisor through Docker and its netns."""

    def __init__(self, name, container, docker):
        self.name = name
        self.container = container
        self.docker = docker

    def ip(self, *args, stdin=None):
        found = self.docker.container(self.container)
        if found is None:
            raise RuntimeStateError(f"node {self.name}: container {self.container} is gone")
        netns = ["nsenter", f"--net=/proc/{found['State']['Pid']}/ns/net", "ip"]
        return run([*netns, *args], f"node {self.name}: ip {' '.join(args)}", stdin)

    def save_frr(self):
        if not any(FRR_DAEMON in row[-1] for row in self.docker.processes(self.container)):
            return False
        # `docker exec` (the CLI): the one call here whose output is a stream.
        run(
            ["docker", "exec", self.container, "vtysh", "-c", "write memory"],
            f"node {self.name}: FRR's running config cannot be written",
        )
        return True

    def save_state(self):
        frr = self.save_frr()
        return _state(
            frr, {family: self.ip(f"-{family}", *ROUTES_SHOW) for family in ROUTE_FAMILIES}
        )


class VmNode:
    """A VM node, reached over SSH on the lab's management network."""

    def __init__(self, name, address, ssh_key):
        self.name = name
        self.address = address
        self.ssh_key = ssh_key

    def _ssh(self, command, stdin=None):
        return run(
            ssh_argv(self.address, command, key=self.ssh_key), f"node {self.name}: {command}", stdin
        )

    def ip(self, *args, stdin=None):
        return self._ssh(shlex.join(["ip", *args]), stdin)

    def save_state(self):
        # One SSH session for all of it: each connection to a TCG guest costs a second or more.
        # Markers on lines of their own separate the answers; the session fails (set -e) when
        # a route cannot be read.
        show = shlex.join(ROUTES_SHOW)
        answer = self._ssh(
            "set -e; "
            f"if pgrep -x {FRR_DAEMON} >/dev/null && vtysh -c 'write memory' >&2;"
            f" then echo {MARKER}frr-saved; fi; "
            + " ".join(f"echo {MARKER}{family}; ip -{family} {show};" for family in ROUTE_FAMILIES)
        )
        parts, current = {}, None
        for line in answer.splitlines():
            if line.startswith(MARKER):
                current = line[len(MARKER) :]
                parts[current] = ""
            elif current is not None:
                parts[current] += line + "\n"
        missing = [family for family in ROUTE_FAMILIES if family not in parts]
        if missing:
            raise RuntimeStateError(
                f"node {self.name}: no routes of IPv{', IPv'.join(missing)} in its answer"
            )
        return _state("frr-saved" in parts, {family: parts[family] for family in ROUTE_FAMILIES})


def _state(frr_saved, routes_json):
    """The saved state: whether FRR's config was written, and the routes to replay per family
    (from `ip -N -j route show table all` per family)."""
    return {
        "frr_config_saved": frr_saved,
        "routes": {
            family: route_commands(json.loads(answer.strip() or "[]"))
            for family, answer in routes_json.items()
        },
    }


def save(node):
    """Write FRR's running config into the node's files and read its kept routes; the result
    goes into the snapshot's manifest and is what `replay` takes."""
    return node.save_state()


def replay(node, state, check_mode=False):
    """Add the saved routes to a node that runs again; the number of routes replayed (or that
    would be, in check mode)."""
    count = 0
    for family, commands in state.get("routes", {}).items():
        if commands:
            if not check_mode:
                node.ip(f"-{family}", "-batch", "-", stdin="\n".join(commands) + "\n")
            count += len(commands)
    return count
