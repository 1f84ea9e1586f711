"""Node kinds: what differs between a container node and a VM node, in one registry.

A kind says which Ansible group its nodes join, which role deploys them, what runs them (the
runtime: Docker or libvirt, which decides where a node's state is read, whether `docker exec`
reaches it and which image names it takes), how Ansible reaches a node of the kind and what a
node takes of a hypervisor when its topology sets no resources. Code elsewhere asks the kind,
never compares kind names. Kinds are registered explicitly; an unknown kind is an error that
lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ltb.model import Lab, Node, vm_mac_address

MIB = 1024 * 1024
# What runs a node. A kind of a new runtime needs its state reading (ltb.node_state), its
# image rule (ltb.topology) and its device reader (portal.labs) too.
DOCKER = "docker"
LIBVIRT = "libvirt"
RUNTIMES = (DOCKER, LIBVIRT)


@dataclass(frozen=True)
class NodeKind:
    name: str
    group: str  # Ansible group of all nodes of this kind
    role: str  # Ansible role that deploys a node (tasks main, preflight, ready)
    runtime: str  # DOCKER or LIBVIRT
    connection_vars: Callable[[Lab, Node], dict[str, str]]
    # What a node takes of a hypervisor when its topology sets no resources (store.capacity).
    default_cpus: float
    default_memory_bytes: int
    whole_cpus: bool = False  # CPUs count whole (a VM gets whole vCPUs)
    # Its nodes are reached one by one, in deploy.yml's per-node plays (group
    # ltb.inventory.PER_NODE_GROUP): its role's ready.yml reaches the node itself (a VM over
    # its own SSH). Every kind's role makes a lab's nodes of the kind in per-lab module runs on
    # their hypervisor (deploy.yml's hypervisor plays include it where ltb_lab_network's
    # node_roles names it); False for a kind whose per-lab run also waits for its nodes
    # (containers).
    per_node_plays: bool = True
    # Names the node makes on its hypervisor, added to its inventory data (ltb_node) for its role.
    hypervisor_vars: Callable[[Lab, Node], dict[str, Any]] = lambda _lab, _node: {}
    # What ltb_snapshot needs to save and restore a node of the kind (ltb_node.snapshot): its
    # `kind` picks the module's save/restore functions (plugins/module_utils/ltb_snapshot.py).
    snapshot_vars: Callable[[Lab, Node], dict[str, Any]] = lambda _lab, _node: {}

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(
                f"node kind {self.name!r}: runtime {self.runtime!r} is not one of {RUNTIMES}"
            )

    def shell(self, lab: Lab, node: Node) -> str | None:
        """A command that opens a shell in the node on its hypervisor, if its runtime has one
        besides SSH (a VM has no docker exec: SSH and its serial console are the way in)."""
        if self.runtime == DOCKER:
            return f"docker exec -it {lab.container_name(node.name)} bash"
        return None


KINDS: dict[str, NodeKind] = {}


def register(kind: NodeKind) -> None:
    if kind.name in KINDS:
        raise ValueError(f"node kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind


def get(name: str) -> NodeKind:
    try:
        return KINDS[name]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise KeyError(f"unknown node kind {name!r} (known kinds: {known})") from None


def _container_connection(lab: Lab, node: Node) -> dict[str, str]:
    # The Docker API connection needs no docker CLI and no SSH inside the node.
    return {
        "ansible_connection": "community.docker.docker_api",
        "ansible_host": lab.container_name(node.name),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _container_snapshot(lab: Lab, node: Node) -> dict[str, Any]:
    return {"name": node.name, "kind": "container", "container": lab.container_name(node.name)}


# A container shares the host's CPUs and takes little.
register(
    NodeKind(
        name="container",
        group="containers",
        role="container_node",
        runtime=DOCKER,
        connection_vars=_container_connection,
        default_cpus=0.25,
        default_memory_bytes=128 * MIB,
        snapshot_vars=_container_snapshot,
        per_node_plays=False,
    )
)


def _vm_connection(lab: Lab, node: Node) -> dict[str, str]:
    # SSH to the management address as root; every deploy gives a VM new host keys, so they
    # are not recorded. The key is the platform's (ltb_ssh_private_key), set for the group in
    # group_vars/vms.yml: inventory plugin values are not templated.
    return {
        "ansible_connection": "ssh",
        "ansible_host": str(node.mgmt_ipv4.ip),
        "ansible_user": "root",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _vm_names(lab: Lab, node: Node) -> dict[str, Any]:
    names = lab.vm_names(node.name)
    return {
        "vm": {
            "domain": names.domain,
            "uuid": names.uuid,
            "dir": names.dir,
            "disk": names.disk,
            "config_drive": names.config_drive,
            "console_log": names.console_log,
            "interface_ids": names.interface_ids,
            # By hypervisor-side name: the management interface's too.
            "macs": {
                name: vm_mac_address(name)
                for name in (node.mgmt_host_name, *(i.host_name for i in node.interfaces))
            },
        }
    }


def _vm_snapshot(lab: Lab, node: Node) -> dict[str, Any]:
    names = lab.vm_names(node.name)
    return {
        "name": node.name,
        "kind": "vm",
        "domain": names.domain,
        "disk": names.disk,
        # Room a saved memory takes (the kind's default when the topology sets none).
        "memory_bytes": node.memory_bytes or KINDS["vm"].default_memory_bytes,
        "address": str(node.mgmt_ipv4.ip),
    }


# A VM gets whole vCPUs and the memory of roles/vm_node's defaults.
register(
    NodeKind(
        name="vm",
        group="vms",
        role="vm_node",
        runtime=LIBVIRT,
        connection_vars=_vm_connection,
        default_cpus=1.0,
        default_memory_bytes=256 * MIB,
        whole_cpus=True,
        hypervisor_vars=_vm_names,
        snapshot_vars=_vm_snapshot,
    )
)
