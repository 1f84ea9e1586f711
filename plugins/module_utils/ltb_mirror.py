# LTB module_utils: port mirrors on a lab bridge (standard library only; shipped to the
# hypervisor with ltb_mirror; ltb.mirror and ltb-capture use the same code).
"""Port mirrors on a lab bridge: what a mirror selects, and making it exist on Open vSwitch.

A mirror copies the traffic of one node interface, or of a whole link (every port in the
link's VLAN), to a mirror port of the lab: a veth pair whose OVS end (`x...`) is the
mirror's output and whose other end (`c...`) stays on the hypervisor for tcpdump.

What a mirror selects is computed from the lab's ports (the controller's
`ltb.links.port_specs`: name, vlan, node, interface, link), so the Ansible module, the
controller (`ltb.mirror.mirror_spec`) and the capture command name the same ports and the
same mirror.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

from ansible.module_utils.ltb_ovs import OvsError, rows, vsctl

MIRROR_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
SCOPES = ("link", "interface")
# The host end of a veth is only a switch port: keep the host's IP stack off it (see ltb_veth).
HOST_END_SYSCTLS = (
    ("ipv4", "arp_ignore", "8"),
    ("ipv4", "rp_filter", "1"),
    ("ipv6", "disable_ipv6", "1"),
)


class MirrorError(ValueError):
    pass


class MirrorSpec:
    """One mirror: lab, tag (as in every hypervisor-side name of the lab), bridge, name,
    ports whose traffic is copied (both directions), vlan of the mirrored link (the output
    port is in it, so copies carry no tag) and a description for people."""

    def __init__(self, lab, tag, bridge, name, ports, vlan, description):
        self.lab, self.tag, self.bridge, self.name = lab, tag, bridge, name
        self.ports, self.vlan, self.description = tuple(ports), vlan, description

    def __eq__(self, other):
        return isinstance(other, MirrorSpec) and vars(self) == vars(other)

    def __hash__(self):
        return hash((self.lab, self.name, self.ports))

    def __repr__(self):
        return f"MirrorSpec({self.lab!r}, {self.name!r}, {self.ports!r}, vlan={self.vlan})"

    @property
    def ovs_name(self):
        """Mirror names are global in OVS. Neither lab nor mirror names can hold '/', so
        `ltb/a/b-c` and `ltb/a-b/c` stay apart (with '-' between them they were one name).
        (Not ':': ovs-vsctl takes it for a delimiter in unquoted values.)"""
        return f"ltb/{self.lab}/{self.name}"

    @property
    def output_port(self):
        return f"x{self.tag}{_digest(self.name)}"

    @property
    def capture_interface(self):
        return f"c{self.tag}{_digest(self.name)}"

    @property
    def alias(self):
        # The lab's alias prefix: removing the lab sweeps the mirror's veth with the others.
        return f"ltb:{self.lab}:mirror:{self.name}"

    @property
    def external_ids(self):
        """The identity the mirror and its output port carry in OVS (`ltb resources`)."""
        return {"ltb-lab": self.lab, "ltb-mirror": self.name}

    @property
    def fingerprint(self):
        return ",".join(sorted(self.ports)) + f">{self.output_port}.{self.vlan}"


def _digest(name):
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def mirror_spec(lab, tag, bridge, ports, scope, endpoint, name=None):
    """The mirror of the interface `endpoint` ('r1:eth1') or of the link it is on; `ports`
    are the lab's ports (dicts with name, vlan, node, interface, link; link is None for a
    management port, which is never mirrored)."""
    if scope not in SCOPES:
        raise MirrorError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    node, _, interface = endpoint.partition(":")
    linked = [port for port in ports if port.get("link")]
    nodes = sorted({port["node"] for port in ports})
    if node not in nodes:
        raise MirrorError(f"lab {lab!r} has no node {node!r} (nodes: {', '.join(nodes)})")
    mine = [port for port in linked if port["node"] == node]
    port = next((p for p in mine if p["interface"] == interface), None)
    if port is None:
        names = ", ".join(p["interface"] for p in mine) or "none"
        raise MirrorError(
            f"node {node!r} of lab {lab!r} has no lab interface {interface!r} on a link "
            f"(its interfaces on links: {names})"
        )
    if scope == "interface":
        selected = (port["name"],)
        description = f"interface {endpoint}"
    else:
        selected = tuple(p["name"] for p in linked if p["vlan"] == port["vlan"])
        description = f"link {port['link']}"
    name = name or f"{scope}-{node}-{interface}".replace("_", "-").replace(".", "-")
    if not MIRROR_NAME.fullmatch(name):
        raise MirrorError(
            f"mirror name {name!r} is not allowed: use 1-32 lower-case letters, digits and '-'"
        )
    return MirrorSpec(lab, tag, bridge, name, selected, port["vlan"], description)


# Open vSwitch ---------------------------------------------------------------------------------


def _run(*argv):
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MirrorError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _ovs(*args):
    try:
        return vsctl(*args, timeout=10)
    except OvsError as error:
        raise MirrorError(str(error)) from None


def mirror_ids(spec):
    """The external_ids of the mirror in OVS, None when it does not exist."""
    try:
        found = rows("Mirror", ("external_ids",), f"name={spec.ovs_name}")
    except OvsError as error:
        raise MirrorError(str(error)) from None
    return (found[0]["external_ids"] or {}) if found else None


def _link_exists(name):
    return os.path.exists(os.path.join("/sys/class/net", name))


def _isolate(name):
    for family, key, value in HOST_END_SYSCTLS:
        with open(f"/proc/sys/net/{family}/conf/{name}/{key}", "w") as setting:
            setting.write(value)


def _port_exists(name):
    return bool(_ovs("--if-exists", "get", "Port", name, "name").strip())


def mirror_changes(spec):
    """What ensure_mirror would change (nothing changed): the actions it would report."""
    if _ovs("--if-exists", "get", "Bridge", spec.bridge, "external_ids:ltb-lab").strip().strip(
        '"'
    ) != (spec.lab):
        raise MirrorError(f"lab {spec.lab!r} has no bridge {spec.bridge} on this hypervisor")
    for port in spec.ports:
        if not _port_exists(port):
            raise MirrorError(f"port {port} of {spec.description} is not on {spec.bridge}")
    actions = []
    if not _link_exists(spec.output_port):
        actions.append(f"create mirror port {spec.output_port} <-> {spec.capture_interface}")
    ids = mirror_ids(spec)
    if ids is None or ids.get("ltb-ports") != spec.fingerprint:
        actions.append(f"mirror {spec.description} to {spec.output_port}")
    return actions


def ensure_mirror(spec, owner_pid=None):
    """Make the mirror and its output port exist as `spec` says; return what changed.

    `owner_pid`: the process that the mirror lives for (a capture); once that process is gone
    the mirror is abandoned and `remove_abandoned_mirrors` removes it.
    """
    mirror_changes(spec)  # the checks: the lab's bridge and the selected ports exist
    actions = []
    if not _link_exists(spec.output_port):
        _run("ip", "link", "add", spec.output_port, "type", "veth", "peer", "name",
             spec.capture_interface)  # fmt: skip
        # Creating and labelling are two steps (the kernel ignores an alias given at creation);
        # a run killed between them leaves an unlabelled pair, which remove still finds by
        # its name (ltb_veth sweeps the lab's tag pattern).
        _run("ip", "link", "set", spec.output_port, "alias", spec.alias)
        actions.append(f"create mirror port {spec.output_port} <-> {spec.capture_interface}")
    for end in (spec.output_port, spec.capture_interface):
        _isolate(end)
        _run("ip", "link", "set", end, "up")
    current = mirror_ids(spec)
    if current is not None and current.get("ltb-ports") == spec.fingerprint:
        return actions
    ids = {**spec.external_ids, "ltb-ports": spec.fingerprint}
    if owner_pid is not None:
        ids["ltb-owner-pid"] = str(owner_pid)
    # One ovs-vsctl transaction: the port, the mirror and its attachment to the bridge.
    args = ["--", "--may-exist", "add-port", spec.bridge, spec.output_port]
    # Without the tag, OVS would add the link's 802.1Q header to every copy.
    args += ["--", "set", "Port", spec.output_port, f"tag={spec.vlan}"]
    args += [f"external_ids:{key}={value}" for key, value in spec.external_ids.items()]
    if current is not None:
        args += ["--", "--id=@old", "get", "Mirror", spec.ovs_name]
        args += ["--", "remove", "Bridge", spec.bridge, "mirrors", "@old"]
    for i, port in enumerate(spec.ports):
        args += ["--", f"--id=@p{i}", "get", "Port", port]
    selected = ",".join(f"@p{i}" for i in range(len(spec.ports)))
    args += ["--", "--id=@out", "get", "Port", spec.output_port]
    args += ["--", "--id=@m", "create", "Mirror", f"name={spec.ovs_name}"]
    args += [f"select_src_port={selected}", f"select_dst_port={selected}", "output_port=@out"]
    args += [f"external_ids:{key}={value}" for key, value in ids.items()]
    args += ["--", "add", "Bridge", spec.bridge, "mirrors", "@m"]
    _ovs(*args)
    actions.append(f"mirror {spec.description} to {spec.output_port}")
    return actions


def removal_changes(spec):
    """What remove_mirror would change (nothing changed)."""
    actions = []
    if mirror_ids(spec) is not None:
        actions.append(f"remove mirror {spec.ovs_name}")
    if _port_exists(spec.output_port):
        actions.append(f"remove port {spec.output_port}")
    if _link_exists(spec.output_port):
        actions.append(f"delete {spec.output_port}")
    return actions


def remove_mirror(spec):
    """Make the mirror and its output port not exist; return what changed."""
    actions = removal_changes(spec)
    if mirror_ids(spec) is not None:
        _ovs("--", "--id=@m", "get", "Mirror", spec.ovs_name,
             "--", "remove", "Bridge", spec.bridge, "mirrors", "@m")  # fmt: skip
    if _port_exists(spec.output_port):
        _ovs("--if-exists", "del-port", spec.output_port)
    if _link_exists(spec.output_port):
        _run("ip", "link", "del", spec.output_port)
    return actions


def remove_abandoned_mirrors(lab, tag, bridge):
    """Remove the mirrors of captures that were killed before they could clean up."""
    try:
        found = rows("Mirror", ("external_ids",), f"external_ids:ltb-lab={lab}")
    except OvsError as error:
        raise MirrorError(str(error)) from None
    actions = []
    for row in found:
        ids = row["external_ids"] or {}
        pid = ids.get("ltb-owner-pid")
        if pid and not os.path.exists(f"/proc/{pid}"):
            spec = MirrorSpec(lab, tag, bridge, ids["ltb-mirror"], (), 0, "abandoned mirror")
            actions += remove_mirror(spec)
    return actions
