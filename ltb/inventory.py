"""Render the lab model as Ansible inventory data: hosts with variables, and groups.

Pure functions over `ltb.model.Lab`, so the inventory plugin, the jobs (which write an
ansible-runner inventory) and the tests all render the same inventory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ltb import kinds
from ltb.links import port_specs
from ltb.model import MGMT_INTERFACE, MGMT_VLAN, Lab, Node

ALL_NODES_GROUP = "ltb_nodes"
# Nodes whose kind needs per-node plays in deploy.yml (NodeKind.per_node_plays); always made,
# empty when no node needs them, so the plays' host pattern always matches a group.
PER_NODE_GROUP = "ltb_node_plays"


def safe_group_name(name: str) -> str:
    """Ansible group names cannot contain '-'; the one place that maps names to groups."""
    return name.replace("-", "_")


def lab_group(lab: str) -> str:
    return f"lab_{safe_group_name(lab)}"


@dataclass
class InventoryData:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> host names


def lab_network_vars(
    lab: Lab, hypervisor: str, topology_file: str, allocations: str = ""
) -> dict[str, Any]:
    """What a hypervisor needs to build the lab's network (bridge and management port), to
    keep the topology and the allocation the lab was deployed from, and where remove
    releases that allocation (`allocations`: the controller's registry file)."""
    return {
        "lab": lab.name,
        "topology_file": topology_file,
        "hypervisor": hypervisor,
        "allocations": allocations,
        "tag": lab.tag,
        "bridge": lab.bridge,
        "mgmt_port": lab.mgmt_port,
        "mgmt_vlan": MGMT_VLAN,
        "mgmt_subnet": str(lab.mgmt_subnet),
        "mgmt_gateway": str(lab.mgmt_gateway),
        # What every container and VM domain name of the lab starts with (remove sweeps it).
        "node_prefix": lab.node_name_prefix,
        # The bridge's ports as they must be (ltb_lab_links wires them, ltb_mirror selects).
        "ports": port_specs(lab),
    }


def node_vars(lab: Lab, node: Node) -> dict[str, Any]:
    """The node as plain data for playbooks: everything a node role needs, nothing to derive."""
    interfaces = [
        {
            "name": MGMT_INTERFACE,
            "host_name": node.mgmt_host_name,
            "vlan": MGMT_VLAN,
            "addresses": [str(node.mgmt_ipv4)],
            "mgmt": True,
        }
    ]
    for interface in node.interfaces:
        interfaces.append(
            {
                "name": interface.name,
                "host_name": interface.host_name,
                "vlan": interface.vlan,
                "addresses": [str(a) for a in (interface.ipv4, interface.ipv6) if a is not None],
                "mgmt": False,
            }
        )
    return {
        "name": node.name,
        "kind": node.kind,
        "role": kinds.get(node.kind).role,  # the role that deploys it (playbooks/deploy.yml)
        "image": node.image,
        "groups": list(node.groups),
        "cpus": node.cpus,
        "memory_bytes": node.memory_bytes,
        "container_name": lab.container_name(node.name),
        "mgmt_ipv4": str(node.mgmt_ipv4.ip),
        "interfaces": interfaces,
        "files": [{"path": path, "content": content} for path, content in node.files],
        # What ltb_snapshot saves and restores of it, and the names it makes on the hypervisor.
        "snapshot": kinds.get(node.kind).snapshot_vars(lab, node),
        **kinds.get(node.kind).hypervisor_vars(lab, node),
    }


# Tunnels between the hypervisors of a spread lab: VXLAN's IANA port, and the MTU of the VXLAN
# device: node interfaces keep the usual 1500, and a 1500-byte node frame (with the 802.1Q tag
# of its link, which a packet socket allows beyond the MTU) fits unchanged. Its outer packet is
# 1554 bytes: an underlay with a smaller MTU carries it fragmented (the devices do not set DF).
TUNNEL_PORT = 4789
TUNNEL_MTU = 1500


def node_hypervisors(lab: Lab, hypervisor: str) -> dict[str, str]:
    """Where each node runs: the hypervisor its topology names, else the lab's."""
    return {node.name: node.hypervisor or hypervisor for node in lab.nodes}


def tunnel_vars(
    lab: Lab, here: str, placed: Mapping[str, str], tunnel_addresses: Mapping[str, str]
) -> dict[str, Any] | None:
    """The tunnel a hypervisor of a spread lab needs: one VXLAN device, VNI the lab's tag,
    flooding to every hypervisor it shares a link with; it carries the VLANs of the links that
    cross hypervisors (never the management VLAN: each hypervisor keeps its own management
    segment). None where no link crosses to or from `here`."""
    vlans, peers = [], []
    for link in lab.links:
        sides = list(dict.fromkeys(placed[e.node] for e in link.endpoints))
        if here in sides and len(sides) > 1:
            vlans.append(link.vlan)
            peers += [h for h in sides if h != here and h not in peers]
    if not vlans:
        return None
    missing = [h for h in (here, *peers) if not tunnel_addresses.get(h)]
    if missing:
        raise ValueError(
            f"lab {lab.name!r} has links between hypervisors {', '.join((here, *peers))}, but "
            f"{', '.join(missing)} has no tunnel address (host var ltb_tunnel_address or "
            "ansible_host)"
        )
    return {
        "device": lab.tunnel_device,
        "vni": lab.tunnel_vni,
        "port": TUNNEL_PORT,
        "mtu": TUNNEL_MTU,
        "local": tunnel_addresses[here],
        "remotes": [tunnel_addresses[h] for h in peers],
        "vlans": vlans,
    }


def render_inventory(
    lab: Lab,
    hypervisor: str = "localhost",
    topology_file: str = "",
    allocations: str = "",
    tunnel_addresses: Mapping[str, str] | None = None,
) -> InventoryData:
    """The lab's hosts and groups. `hypervisor` runs every node whose topology names none;
    `tunnel_addresses` (hypervisor -> underlay address) is needed only for a spread lab."""
    data = InventoryData()
    placed = node_hypervisors(lab, hypervisor)
    hypervisors = list(dict.fromkeys(placed.values()))
    networks = {}
    for here in hypervisors:
        network = lab_network_vars(lab, here, topology_file, allocations)
        # Each hypervisor wires (and mirrors) only the ports of its own nodes.
        if "ports" in network:
            network["ports"] = [p for p in network["ports"] if placed[p["node"]] == here]
        tunnel = tunnel_vars(lab, here, placed, tunnel_addresses or {})
        if tunnel is not None:  # only a spread lab has one
            network["tunnel"] = tunnel
        # Whether other hypervisors run nodes of the lab too: remove releases a spread lab's
        # allocation only once every one of them is done.
        network["spread"] = len(hypervisors) > 1
        # Whether a node here has per-node plays (its kind's): else deploy.yml does the lab's
        # nodes and links here in one module run.
        network["node_plays"] = any(
            kinds.get(node.kind).per_node_plays for node in lab.nodes if placed[node.name] == here
        )
        # The roles that deploy the nodes here (their kinds'): deploy.yml includes a role for a
        # lab only where it has nodes.
        network["node_roles"] = sorted(
            {kinds.get(node.kind).role for node in lab.nodes if placed[node.name] == here}
        )
        networks[here] = network
    for node in lab.nodes:
        kind = kinds.get(node.kind)
        host_vars: dict[str, Any] = {
            "ltb_lab": lab.name,
            "ltb_hypervisor": placed[node.name],
            "ltb_lab_network": networks[placed[node.name]],
            "ltb_node": node_vars(lab, node),
        }
        host_vars.update(kind.connection_vars(lab, node))
        data.hosts[node.name] = host_vars
        for group in (ALL_NODES_GROUP, lab_group(lab.name), kind.group):
            data.groups.setdefault(group, []).append(node.name)
        if kind.per_node_plays:
            data.groups.setdefault(PER_NODE_GROUP, []).append(node.name)
        for group in node.groups:
            data.groups.setdefault(safe_group_name(group), []).append(node.name)
    data.groups.setdefault(PER_NODE_GROUP, [])
    return data
