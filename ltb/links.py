"""A lab's links on its bridge: every node interface is an access port of its link's VLAN
(the management interface of VLAN 1), with the lab's identity in `external_ids`.

One `ovs-vsctl` read of the bridge's ports and one transaction for every port that is
missing or differs, per lab: wiring costs the same one or two commands for 3 nodes or 300
(a module run per interface cost 0.15 CPU-s each). Ports whose hypervisor interface does not
exist (a node that failed to deploy) are left out and reported.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ltb.inventory import node_vars
from ltb.model import Lab


class LinkError(RuntimeError):
    """OVS refused to wire the lab; the message has its words."""


@dataclass(frozen=True)
class PortSpec:
    """What the OVS port of one node interface must be."""

    name: str  # the interface's hypervisor-side name (veth end or VM tap)
    vlan: int
    node: str
    interface: str

    def external_ids(self, lab: str) -> dict[str, str]:
        return {"ltb-lab": lab, "ltb-node": self.node, "ltb-interface": self.interface}


def port_specs(lab: Lab) -> list[PortSpec]:
    """The port of every node interface on a link (and every management interface)."""
    return [
        PortSpec(interface["host_name"], interface["vlan"], node.name, interface["name"])
        for node in lab.nodes
        for interface in node_vars(lab, node)["interfaces"]
        if interface["vlan"] is not None
    ]


Current = dict[str, tuple[int | None, dict[str, str]]]  # port -> (tag, external_ids)


def ports_to_change(lab: str, specs: Iterable[PortSpec], current: Current) -> list[PortSpec]:
    """The specs whose port is missing from the bridge, in another VLAN, or without the
    lab's identity (other external_ids, e.g. libvirt's, are left alone)."""
    todo = []
    for spec in specs:
        tag, ids = current.get(spec.name, (None, {}))
        wanted = spec.external_ids(lab)
        if (
            spec.name not in current
            or tag != spec.vlan
            or any(ids.get(key) != value for key, value in wanted.items())
        ):
            todo.append(spec)
    return todo


def transaction(bridge: str, lab: str, specs: Iterable[PortSpec]) -> list[str]:
    """ovs-vsctl arguments that make every port of `specs` as it says, in one transaction."""
    args: list[str] = []
    for spec in specs:
        ids = [f"external_ids:{key}={value}" for key, value in spec.external_ids(lab).items()]
        args += ["--", "--may-exist", "add-port", bridge, spec.name]
        args += ["--", "set", "Port", spec.name, f"tag={spec.vlan}", *ids]
    return args


def _vsctl(*args: str) -> str:
    done = subprocess.run(
        ["ovs-vsctl", "--timeout=30", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise LinkError(f"ovs-vsctl {' '.join(args[:6])}...: {done.stderr.strip()}")
    return done.stdout


def _value(cell):
    """An OVSDB JSON cell: ["set", []] is empty, ["map", [[k, v]...]] a dict."""
    if isinstance(cell, list) and cell[0] == "set":
        return None if not cell[1] else cell[1]
    if isinstance(cell, list) and cell[0] == "map":
        return dict(cell[1])
    return cell


def current_ports(bridge: str) -> Current:
    names = _vsctl("list-ports", bridge).split()
    if not names:
        return {}
    table = json.loads(
        _vsctl("--format=json", "--columns=name,tag,external_ids", "list", "Port", *names)
    )
    return {row[0]: (_value(row[1]), _value(row[2]) or {}) for row in table["data"]}


def _interface_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def wire_lab(lab: Lab) -> dict[str, list[str]]:
    """Make every existing node interface a port of the lab bridge in its VLAN; return the
    ports changed and the interfaces missing on this hypervisor."""
    specs = port_specs(lab)
    present = [spec for spec in specs if _interface_exists(spec.name)]
    todo = ports_to_change(lab.name, present, current_ports(lab.bridge))
    if todo:
        _vsctl(*transaction(lab.bridge, lab.name, todo))
    return {
        "changed": [spec.name for spec in todo],
        "missing": [f"{s.node}:{s.interface} ({s.name})" for s in specs if s not in present],
    }
