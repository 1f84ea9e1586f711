"""Port mirrors on a lab bridge: what a mirror selects, and making it exist on Open vSwitch.

A mirror copies the traffic of one node interface, or of a whole link (every port in the
link's VLAN), to a mirror port of the lab: a veth pair whose OVS end (`x...`) is the
mirror's output and whose other end (`c...`) stays on the hypervisor for tcpdump. The
Ansible module `ltb_mirror` and the capture command both call `ensure_mirror` and
`remove_mirror`, so there is one implementation of a mirror.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ltb.model import Lab

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


@dataclass(frozen=True)
class MirrorSpec:
    lab: str
    tag: str  # the lab's tag (`Lab.tag`), as in every hypervisor-side name of the lab
    bridge: str
    name: str
    ports: tuple[str, ...]  # OVS ports whose traffic is copied (both directions)
    vlan: int  # VLAN of the mirrored link: the output port is in it, so copies carry no tag
    description: str  # what is mirrored, for people: "link r1:eth1--r2:eth1"

    @property
    def ovs_name(self) -> str:
        """Mirror names are global in OVS. Neither lab nor mirror names can hold '/', so
        `ltb/a/b-c` and `ltb/a-b/c` stay apart (with '-' between them they were one name).
        (Not ':': ovs-vsctl takes it for a delimiter in unquoted values.)"""
        return f"ltb/{self.lab}/{self.name}"

    @property
    def output_port(self) -> str:
        return f"x{self.tag}{_digest(self.name)}"

    @property
    def capture_interface(self) -> str:
        return f"c{self.tag}{_digest(self.name)}"

    @property
    def alias(self) -> str:
        # The lab's alias prefix: removing the lab sweeps the mirror's veth with the others.
        return f"ltb:{self.lab}:mirror:{self.name}"

    @property
    def external_ids(self) -> dict[str, str]:
        """The identity the mirror and its output port carry in OVS (`ltb resources`)."""
        return {"ltb-lab": self.lab, "ltb-mirror": self.name}


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def mirror_spec(lab: Lab, scope: str, endpoint: str, name: str | None = None) -> MirrorSpec:
    """The mirror of the interface `endpoint` ('r1:eth1') or of the link it is on."""
    if scope not in SCOPES:
        raise MirrorError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    node_name, _, if_name = endpoint.partition(":")
    try:
        node = lab.node(node_name)
    except KeyError:
        nodes = ", ".join(n.name for n in lab.nodes)
        raise MirrorError(f"lab {lab.name!r} has no node {node_name!r} (nodes: {nodes})") from None
    try:
        interface = node.interface(if_name)
    except KeyError:
        names = ", ".join(i.name for i in node.interfaces) or "none"
        raise MirrorError(
            f"node {node_name!r} of lab {lab.name!r} has no lab interface {if_name!r} "
            f"(its interfaces: {names})"
        ) from None
    if interface.vlan is None:
        raise MirrorError(f"interface {endpoint} is on no link")
    if scope == "interface":
        ports = (interface.host_name,)
        description = f"interface {endpoint}"
    else:
        link = next(link for link in lab.links if link.vlan == interface.vlan)
        ports = tuple(lab.node(e.node).interface(e.interface).host_name for e in link.endpoints)
        description = f"link {link.name}"
    name = name or f"{scope}-{node_name}-{if_name}".replace("_", "-").replace(".", "-")
    if not MIRROR_NAME.fullmatch(name):
        raise MirrorError(
            f"mirror name {name!r} is not allowed: use 1-32 lower-case letters, digits and '-'"
        )
    return MirrorSpec(lab.name, lab.tag, lab.bridge, name, ports, interface.vlan, description)


# Open vSwitch ---------------------------------------------------------------------------------


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise MirrorError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _vsctl(*args: str) -> str:
    return _run("ovs-vsctl", "--timeout=10", *args)


def _mirror_row(spec: MirrorSpec) -> dict | None:
    out = _vsctl(
        "--format=json", "--columns=external_ids", "find", "Mirror", f"name={spec.ovs_name}"
    )
    rows = json.loads(out)["data"]
    if not rows:
        return None
    return dict(rows[0][0][1])


def _fingerprint(spec: MirrorSpec) -> str:
    return ",".join(sorted(spec.ports)) + f">{spec.output_port}.{spec.vlan}"


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _isolate(name: str) -> None:
    for family, key, value in HOST_END_SYSCTLS:
        Path(f"/proc/sys/net/{family}/conf/{name}/{key}").write_text(value)


def ensure_mirror(spec: MirrorSpec, owner_pid: int | None = None) -> list[str]:
    """Make the mirror and its output port exist as `spec` says; return what changed.

    `owner_pid`: the process that the mirror lives for (a capture); once that process is gone
    the mirror is abandoned and `remove_abandoned_mirrors` removes it.
    """
    if _vsctl("--if-exists", "get", "Bridge", spec.bridge, "external_ids:ltb-lab").strip() != (
        spec.lab
    ):
        raise MirrorError(f"lab {spec.lab!r} has no bridge {spec.bridge} on this hypervisor")
    for port in spec.ports:
        if not _vsctl("--if-exists", "get", "Port", port, "name").strip():
            raise MirrorError(f"port {port} of {spec.description} is not on {spec.bridge}")
    actions = []
    if not _link_exists(spec.output_port):
        _run(
            "ip",
            "link",
            "add",
            spec.output_port,
            "type",
            "veth",
            "peer",
            "name",
            spec.capture_interface,
        )
        # Creating and labelling are two steps (the kernel ignores an alias given at creation);
        # a run killed between them leaves an unlabelled pair, which remove still finds by
        # its name (ltb_veth sweeps the lab's tag pattern).
        _run("ip", "link", "set", spec.output_port, "alias", spec.alias)
        actions.append(f"create mirror port {spec.output_port} <-> {spec.capture_interface}")
    for end in (spec.output_port, spec.capture_interface):
        _isolate(end)
        _run("ip", "link", "set", end, "up")
    row = _mirror_row(spec)
    if row is not None and row.get("ltb-ports") == _fingerprint(spec):
        return actions
    ids = {**spec.external_ids, "ltb-ports": _fingerprint(spec)}
    if owner_pid is not None:
        ids["ltb-owner-pid"] = str(owner_pid)
    # One ovs-vsctl transaction: the port, the mirror and its attachment to the bridge.
    args = ["--", "--may-exist", "add-port", spec.bridge, spec.output_port]
    # Without the tag, OVS would add the link's 802.1Q header to every copy.
    args += [
        "--",
        "set",
        "Port",
        spec.output_port,
        f"tag={spec.vlan}",
        *(f"external_ids:{key}={value}" for key, value in spec.external_ids.items()),
    ]
    if row is not None:
        args += [
            "--",
            "--id=@old",
            "get",
            "Mirror",
            spec.ovs_name,
            "--",
            "remove",
            "Bridge",
            spec.bridge,
            "mirrors",
            "@old",
        ]
    for i, port in enumerate(spec.ports):
        args += ["--", f"--id=@p{i}", "get", "Port", port]
    selected = ",".join(f"@p{i}" for i in range(len(spec.ports)))
    args += ["--", "--id=@out", "get", "Port", spec.output_port]
    args += [
        "--",
        "--id=@m",
        "create",
        "Mirror",
        f"name={spec.ovs_name}",
        f"select_src_port={selected}",
        f"select_dst_port={selected}",
        "output_port=@out",
    ]
    args += [f"external_ids:{key}={value}" for key, value in ids.items()]
    args += ["--", "add", "Bridge", spec.bridge, "mirrors", "@m"]
    _vsctl(*args)
    actions.append(f"mirror {spec.description} to {spec.output_port}")
    return actions


def remove_mirror(spec: MirrorSpec) -> list[str]:
    """Make the mirror and its output port not exist; return what changed."""
    actions = []
    if _mirror_row(spec) is not None:
        _vsctl(
            "--",
            "--id=@m",
            "get",
            "Mirror",
            spec.ovs_name,
            "--",
            "remove",
            "Bridge",
            spec.bridge,
            "mirrors",
            "@m",
        )
        actions.append(f"remove mirror {spec.ovs_name}")
    if _vsctl("--if-exists", "get", "Port", spec.output_port, "name").strip():
        _vsctl("--if-exists", "del-port", spec.output_port)
        actions.append(f"remove port {spec.output_port}")
    if _link_exists(spec.output_port):
        _run("ip", "link", "del", spec.output_port)
        actions.append(f"delete {spec.output_port}")
    return actions


def remove_abandoned_mirrors(lab: Lab) -> list[str]:
    """Remove the mirrors of captures that were killed before they could clean up."""
    out = _vsctl(
        "--format=json",
        "--columns=external_ids",
        "find",
        "Mirror",
        f"external_ids:ltb-lab={lab.name}",
    )
    actions = []
    for (ids,) in json.loads(out)["data"]:
        ids = dict(ids[1])
        pid = ids.get("ltb-owner-pid")
        if pid and not Path(f"/proc/{pid}").exists():
            spec = MirrorSpec(
                lab.name, lab.tag, lab.bridge, ids["ltb-mirror"], (), 0, "abandoned mirror"
            )
            actions += remove_mirror(spec)
    return actions
