"""Render the lab model as Ansible inventory data: hosts with variables, and groups.

Pure functions over `ltb.model.Lab`, so the inventory plugin, the jobs (which write an
ansible-runner inventory) and the tests all render the same inventory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ltb import kinds
from ltb.links import port_specs
from ltb.model import MGMT_INTERFACE, MGMT_VLAN, Lab, Node

ALL_NODES_GROUP = "ltb_nodes"


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


def render_inventory(
    lab: Lab, hypervisor: str = "localhost", topology_file: str = "", allocations: str = ""
) -> InventoryData:
    data = InventoryData()
    network = lab_network_vars(lab, hypervisor, topology_file, allocations)
    for node in lab.nodes:
        kind = kinds.get(node.kind)
        host_vars: dict[str, Any] = {
            "ltb_lab": lab.name,
            "ltb_hypervisor": hypervisor,
            "ltb_lab_network": network,
            "ltb_node": node_vars(lab, node),
        }
        host_vars.update(kind.connection_vars(lab, node))
        data.hosts[node.name] = host_vars
        for group in (ALL_NODES_GROUP, lab_group(lab.name), kind.group):
            data.groups.setdefault(group, []).append(node.name)
        for group in node.groups:
            data.groups.setdefault(safe_group_name(group), []).append(node.name)
    return data
