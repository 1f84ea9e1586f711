#!/usr/bin/python
# LTB module: the veth pairs that join a container node to its lab bridge.
from __future__ import annotations

DOCUMENTATION = r"""
module: ltb_veth
short_description: Veth pairs between the hypervisor and a node's network namespace
description:
  - With O(state=present), makes every listed interface exist inside the network namespace
    of process O(pid) under its lab name, with exactly the listed addresses and up, its peer
    on the hypervisor named O(interfaces[].host_name), up and labelled with the interface
    alias C(ltb:<lab>:<node>:<interface>). One call handles all interfaces of a node.
  - With O(state=absent), deletes every hypervisor interface labelled with lab O(lab)
    (and so its peer), whatever node it belonged to, and every unlabelled one whose name is
    a host-end name of the lab's tag O(tag) (a run killed between creating a veth and
    labelling it leaves one, as the kernel ignores an alias given at creation). Used by remove
    to leave nothing behind.
  - The hypervisor end is cut off from the hypervisor's own IP stack (no ARP replies, no IPv4
    or IPv6 accepted), so lab nodes cannot reach the hypervisor through a lab link.
  - Converges; check mode is supported. Calls C(ip) and C(nsenter) with argument lists,
    never through a shell.
options:
  lab:
    description: Lab name, recorded in the alias of each hypervisor-side interface.
    type: str
    required: true
  node:
    description: Node name (required with O(state=present)).
    type: str
  pid:
    description: A process in the node's network namespace (the container's PID 1).
    type: int
  interfaces:
    description: Interfaces of the node.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name inside the node.
        type: str
        required: true
      host_name:
        description: Name of the peer on the hypervisor (at most 15 characters).
        type: str
        required: true
      addresses:
        description: IPv4 and IPv6 addresses with prefix length.
        type: list
        elements: str
        default: []
  tag:
    description:
      - The lab's tag (C(Lab.tag), unique among the labs of the hypervisor). With
        O(state=absent), unlabelled interfaces named C(<v|m|t|x|c><tag><8 hex digits>) (the
        names C(ltb.model) and C(ltb.mirror) give host ends) are deleted too.
    type: str
  state:
    description: Whether the interfaces exist.
    type: str
    choices: [present, absent]
    default: present
"""

RETURN = r"""
actions:
  description: What was changed, one line per change.
  type: list
  elements: str
  returned: always
"""

import ipaddress
import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

ALIAS_PREFIX = "ltb:"
# Host ends of a lab's veths: node interfaces (v), management (m), the temporary peer before
# it moves into the node (t), mirror output and capture ends (x, c); see ltb.model, ltb.mirror.
HOST_END_KINDS = "vmtxc"


class Netlink:
    """The `ip` command, on the hypervisor or inside one network namespace."""

    def __init__(self, module, pid=None):
        self.module = module
        self.ip = module.get_bin_path("ip", required=True)
        self.prefix = []
        if pid is not None:
            nsenter = module.get_bin_path("nsenter", required=True)
            self.prefix = [nsenter, f"--target={pid}", "--net", "--"]

    def run(self, *args):
        rc, out, err = self.module.run_command([*self.prefix, self.ip, *args])
        if rc != 0:
            self.module.fail_json(msg=f"ip {' '.join(args)} failed: {err.strip()}")
        return out

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


def ensure_present(module, host, node_ns):
    lab, node = module.params["lab"], module.params["node"]
    actions = []
    inside = node_ns.links()
    outside = host.links()
    for interface in module.params["interfaces"]:
        name, host_name = interface["name"], interface["host_name"]
        wanted = {canonical(a) for a in interface["addresses"]}
        if name not in inside:
            actions.append(f"create {host_name} <-> {node}:{name}")
            if not module.check_mode:
                create_pair(host, node_ns, module.params["pid"], host_name, name, outside)
                host.run("link", "set", host_name, "alias", f"{ALIAS_PREFIX}{lab}:{node}:{name}")
            have = set()
        else:
            have = global_addresses(inside[name])
        for address in sorted(wanted - have):
            actions.append(f"add {address} to {node}:{name}")
            if not module.check_mode:
                extra = ["nodad"] if ":" in address else []
                node_ns.run("addr", "add", address, "dev", name, *extra)
        for address in sorted(have - wanted):
            actions.append(f"remove {address} from {node}:{name}")
            if not module.check_mode:
                node_ns.run("addr", "del", address, "dev", name)
        if not module.check_mode:
            actions.extend(isolate_from_host(host_name))
        for netlink, ifname, records in ((node_ns, name, inside), (host, host_name, outside)):
            if "UP" not in records.get(ifname, {}).get("flags", []):
                if ifname in records:
                    actions.append(f"bring {ifname} up")
                if not module.check_mode:
                    netlink.run("link", "set", ifname, "up")
    return actions


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


def create_pair(host, node_ns, pid, host_name, name, outside):
    # A peer left behind by an earlier container of this node would block the name.
    temporary = "t" + host_name[1:]
    for stale in (host_name, temporary):
        if stale in outside:
            host.run("link", "del", stale)
    host.run("link", "add", host_name, "type", "veth", "peer", "name", temporary)
    host.run("link", "set", temporary, "netns", str(pid))
    node_ns.run("link", "set", temporary, "name", name)


def canonical(address):
    # "2001:DB8::0001/64" and "2001:db8::1/64" are the same address.
    return str(ipaddress.ip_interface(address))


def host_end_name(tag):
    """The names the lab's host ends get, or None without a tag."""
    if not tag:
        return None
    return re.compile(rf"[{HOST_END_KINDS}]{re.escape(tag)}[0-9a-f]{{8}}")


def ensure_absent(module, host):
    prefix = f"{ALIAS_PREFIX}{module.params['lab']}:"
    unlabelled = host_end_name(module.params["tag"])
    actions = []
    for name, record in host.links().items():
        alias = record.get("ifalias", "")
        if alias.startswith(prefix) or (
            not alias and unlabelled is not None and unlabelled.fullmatch(name)
        ):
            actions.append(f"delete {name}")
            if not module.check_mode:
                delete_link(module, host, name)
    return actions


def delete_link(module, host, name):
    # The kernel removes a container's veths some time after the container is gone (seconds
    # on a busy host): an interface listed a moment ago may have vanished on its own.
    rc, _, err = module.run_command([*host.prefix, host.ip, "link", "del", name])
    if rc != 0 and os.path.exists(f"/sys/class/net/{name}"):
        module.fail_json(msg=f"ip link del {name} failed: {err.strip()}")


def main():
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "node": {"type": "str"},
            "pid": {"type": "int"},
            "interfaces": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "host_name": {"type": "str", "required": True},
                    "addresses": {"type": "list", "elements": "str", "default": []},
                },
            },
            "tag": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        },
        required_if=[("state", "present", ("node", "pid"))],
        supports_check_mode=True,
    )
    host = Netlink(module)
    pid = module.params["pid"]
    if module.params["state"] == "present" and not (pid and os.path.exists(f"/proc/{pid}/ns/net")):
        # The node's process is gone: its container stopped (e.g. its entry point crashed)
        # after the role saw it start.
        module.fail_json(
            msg=f"node {module.params['node']} of lab {module.params['lab']}: its container "
            f"stopped right after it started (process {pid} is gone); see its `docker logs`"
        )
    if module.params["state"] == "present":
        actions = ensure_present(module, host, Netlink(module, module.params["pid"]))
    else:
        actions = ensure_absent(module, host)
    module.exit_json(changed=bool(actions), actions=actions)


if __name__ == "__main__":
    main()
