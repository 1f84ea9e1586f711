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

from ltb.model import Lab, Node

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
    )
)
