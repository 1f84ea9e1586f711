"""Port mirrors of a lab, from its model: the controller side of module_utils/ltb_mirror.py.

A mirror copies the traffic of one node interface, or of a whole link (every port in the
link's VLAN), to a mirror port of the lab: a veth pair whose OVS end (`x...`) is the
mirror's output and whose other end (`c...`) stays on the hypervisor for tcpdump. What a
mirror selects, its names and making it exist on Open vSwitch are the module_utils' (one
implementation, shipped to the hypervisor with the module `ltb_mirror`); here the model's
lab is checked (its errors name the topology's own nodes and interfaces) and turned into
the ports the module_utils select from (ltb.links.port_specs, the same list the inventory
gives the hypervisor). The capture command calls `ensure_mirror` and `remove_mirror`.
"""

from __future__ import annotations

from ltb.links import port_specs
from ltb.model import Lab
from ltb.module_utils import load

_mirrors = load("ltb_mirror")
MIRROR_NAME = _mirrors.MIRROR_NAME
SCOPES = _mirrors.SCOPES
HOST_END_SYSCTLS = _mirrors.HOST_END_SYSCTLS
MirrorError = _mirrors.MirrorError
MirrorSpec = _mirrors.MirrorSpec
ensure_mirror = _mirrors.ensure_mirror
remove_mirror = _mirrors.remove_mirror


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
    return _mirrors.mirror_spec(
        lab.name, lab.tag, lab.bridge, port_specs(lab), scope, endpoint, name
    )


def remove_abandoned_mirrors(lab: Lab) -> list[str]:
    """Remove the mirrors of captures that were killed before they could clean up."""
    return _mirrors.remove_abandoned_mirrors(lab.name, lab.tag, lab.bridge)
