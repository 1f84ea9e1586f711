# LTB module_utils: the veth pairs that join a container node to its lab bridge.
#
# Calls `ip` (and `nsenter` for a node's network namespace) with argument lists, never through
# a shell; the commands of one node go in one `ip -batch` per namespace, so a node with three
# interfaces costs a handful of processes, not twenty. Safe to use from threads (one node each).
from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess

ALIAS_PREFIX = "ltb:"
# Host ends of a lab's veths: node interfaces (v), management (m), the temporary peer before
# it moves into the node (t, made by earlier versions), mirror output and capture ends (x, c);
# see ltb.model, ltb.mirror.
HOST_END_KINDS = "vmtxc"

# The hypervisor end of a veth is only a switch port. With the userspace (netdev) datapath the
# host's IP stack also sees every frame on it and, by default, would answer ARP for the host's
# own addresses and accept packets to them: a lab node could reach the hypervisor through a
# lab link. These settings make the host ignore the port: no ARP replies, strict reverse-path
# filtering (no route points back through the port, so every IPv4 packet is dropped), no IPv6.
HOST_END_SYSCTLS = (
    ("ipv4", "arp_ignore", "8"),
    ("ipv4", "rp_filter", "1"),
    ("ipv6", "disable_ipv6", "1"),
)

_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class VethError(Exception):
    pass


def _binary(name):
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        raise VethError(f"{name} is not installed on the hypervisor")
    return path


class Netlink:
    """The `ip` command, on the hypervisor or inside the network namespace of process `pid`."""

    def __init__(self, pid=None):
        self.ip = _binary("ip")
        self.prefix = []
        if pid is not None:
            self.prefix = [_binary("nsenter"), f"--target={pid}", "--net", "--"]

    def run(self, *args):
        done = subprocess.run([*self.prefix, self.ip, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise VethError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def batch(self, commands):
        """Runs `ip` commands (argument lists) in one process, stopping at the first failure."""
        if not commands:
            return
        for command in commands:
            if any(not arg or any(c.isspace() or c in "\"'\\#" for c in arg) for arg in command):
                raise VethError(f"ip argument not allowed in a batch: {command!r}")
        script = "".join(" ".join(command) + "\n" for command in commands)
        done = subprocess.run(
            [*self.prefix, self.ip, "-batch", "-"], input=script, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise VethError(f"ip -batch failed: {done.stderr.strip()} (commands: {script!r})")

    def links(self):
        """name -> link record (with addr_info) of every interface."""
        records = json.loads(self.run("-j", "-d", "addr", "show") or "[]")
        return {record["ifname"]: record for record in records}


def global_addresses(record):
    return {
        f"{a['local']}/{a['prefixlen']}"
        for a in record.get("addr_info", [])
        if a.get("scope") == "global"
    }


def canonical(address):
    # "2001:DB8::0001/64" and "2001:db8::1/64" are the same address.
    return str(ipaddress.ip_interface(address))


def ensure_present(lab, node, pid, interfaces, check_mode, host_links=None, created=None):
    """Makes every interface (name, host_name, addresses) exist in the network namespace of
    `pid` with exactly its addresses and up, its peer `host_name` on the hypervisor up, cut off
    from the hypervisor's IP stack and labelled `ltb:<lab>:<node>:<name>`. Returns the actions
    (done, or in check mode to do). `host_links`: the hypervisor's links if already read;
    `created`: a list the names of host ends made anew are appended to."""
    if not (pid and os.path.exists(f"/proc/{pid}/ns/net")):
        # The node's process is gone: its container stopped (e.g. its entry point crashed).
        raise VethError(
            f"node {node} of lab {lab}: its container stopped right after it started "
            f"(process {pid} is gone); see its `docker logs`"
        )
    host, node_ns = Netlink(), Netlink(pid)
    inside = node_ns.links()
    outside = host.links() if host_links is None else host_links
    actions, host_commands, node_commands, host_ends, stale_ends = [], [], [], [], []
    for interface in interfaces:
        name, host_name = interface["name"], interface["host_name"]
        wanted = {canonical(a) for a in interface.get("addresses") or []}
        if name not in inside:
            actions.append(f"create {host_name} <-> {node}:{name}")
            # A peer left behind by an earlier container of this node would block the name.
            stale_ends += [s for s in (host_name, "t" + host_name[1:]) if s in outside]
            host_commands += [
                ["link", "add", host_name, "type", "veth", "peer", "name", name, "netns", str(pid)],
                ["link", "set", host_name, "alias", f"{ALIAS_PREFIX}{lab}:{node}:{name}"],
                ["link", "set", host_name, "up"],
            ]
            if created is not None:
                created.append(host_name)
            have = set()
        else:
            have = global_addresses(inside[name])
            if "UP" not in outside.get(host_name, {}).get("flags", []):
                if host_name in outside:
                    actions.append(f"bring {host_name} up")
                host_commands.append(["link", "set", host_name, "up"])
        for address in sorted(wanted - have):
            actions.append(f"add {address} to {node}:{name}")
            extra = ["nodad"] if ":" in address else []
            node_commands.append(["addr", "add", address, "dev", name, *extra])
        for address in sorted(have - wanted):
            actions.append(f"remove {address} from {node}:{name}")
            node_commands.append(["addr", "del", address, "dev", name])
        if "UP" not in inside.get(name, {}).get("flags", []):
            if name in inside:
                actions.append(f"bring {name} up")
            node_commands.append(["link", "set", name, "up"])
        host_ends.append(host_name)
    if check_mode:
        return actions
    # One by one: the kernel may delete such a peer itself meanwhile (the container it was
    # paired with was just removed, e.g. by a restore).
    for stale in stale_ends:
        delete_link(host, stale)
    host.batch(host_commands)
    node_ns.batch(node_commands)
    for host_name in host_ends:
        actions.extend(isolate_from_host(host_name))
    return actions


def isolate_from_host(host_name):
    actions = []
    for family, key, value in HOST_END_SYSCTLS:
        path = f"/proc/sys/net/{family}/conf/{host_name}/{key}"
        with open(path) as current:
            if current.read().strip() == value:
                continue
        with open(path, "w") as setting:
            setting.write(value)
        actions.append(f"set {family}.conf.{host_name}.{key}={value}")
    return actions


def host_end_name(tag):
    """The names the lab's host ends get, or None without a tag."""
    if not tag:
        return None
    return re.compile(rf"[{HOST_END_KINDS}]{re.escape(tag)}[0-9a-f]{{8}}")


def ensure_absent(lab, tag, check_mode):
    """Deletes every hypervisor interface labelled with the lab (and so its peer), and every
    unlabelled one named like a host end of the lab's tag. Returns the actions."""
    host = Netlink()
    prefix = f"{ALIAS_PREFIX}{lab}:"
    unlabelled = host_end_name(tag)
    actions = []
    for name, record in host.links().items():
        alias = record.get("ifalias", "")
        if alias.startswith(prefix) or (
            not alias and unlabelled is not None and unlabelled.fullmatch(name)
        ):
            actions.append(f"delete {name}")
            if not check_mode:
                delete_link(host, name)
    return actions


def delete_link(host, name):
    # The kernel removes a container's veths some time after the container is gone (seconds
    # on a busy host): an interface listed a moment ago may have vanished on its own.
    try:
        host.run("link", "del", name)
    except VethError:
        if os.path.exists(f"/sys/class/net/{name}"):
            raise
