"""Node kinds: what differs between a container node and a VM node, in one registry.

A kind says which Ansible group its nodes join and how Ansible reaches a node of the kind.
Kinds are registered explicitly; an unknown kind is an error that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ltb.model import Lab, Node


@dataclass(frozen=True)
class NodeKind:
    name: str
    group: str  # Ansible group of all nodes of this kind
    connection_vars: Callable[[Lab, Node], dict[str, str]]


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


register(NodeKind(name="container", group="containers", connection_vars=_container_connection))


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


register(NodeKind(name="vm", group="vms", connection_vars=_vm_connection))
