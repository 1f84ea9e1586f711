"""The one model of a lab, resolved and valid.

Everything after the topology file works from these objects: the inventory plugin, the
playbooks (through the inventory), the jobs and the portal. Names of the things a lab creates
on a hypervisor are derived here and nowhere else, so every part of LTB finds the same ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

# The management network is VLAN 1 of the lab bridge; link segments follow from VLAN 2.
MGMT_VLAN = 1
FIRST_LINK_VLAN = 2
MGMT_INTERFACE = "eth0"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """What is wrong (an error) or doubtful (a warning) in a topology, and where."""

    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


@dataclass(frozen=True)
class Interface:
    """A lab interface of a node; `host_name` is its peer on the hypervisor (15 chars max)."""

    name: str
    host_name: str
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    vlan: int | None = None  # None: the interface is on no link


@dataclass(frozen=True)
class Node:
    name: str
    kind: str
    image: str | None  # None: the platform's default image of the kind
    groups: tuple[str, ...]
    cpus: float | None
    memory_bytes: int | None
    interfaces: tuple[Interface, ...]
    files: tuple[tuple[str, str], ...]  # (absolute path, content), in file order
    mgmt_ipv4: IPv4Interface
    mgmt_host_name: str

    def interface(self, name: str) -> Interface:
        for interface in self.interfaces:
            if interface.name == name:
                return interface
        raise KeyError(f"node {self.name!r} has no interface {name!r}")


@dataclass(frozen=True)
class Endpoint:
    node: str
    interface: str

    def __str__(self) -> str:
        return f"{self.node}:{self.interface}"


@dataclass(frozen=True)
class Link:
    """A segment: two endpoints make a point-to-point link, more a shared segment."""

    index: int
    vlan: int
    endpoints: tuple[Endpoint, ...]

    @property
    def name(self) -> str:
        return "--".join(str(e) for e in self.endpoints)


@dataclass(frozen=True)
class Lab:
    name: str
    description: str | None
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    mgmt_subnet: IPv4Network
    # Allowed but often a mistake (e.g. a subnet on two links); not part of the lab's identity.
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def tag(self) -> str:
        """Short, stable identity of the lab in names limited to 15 characters."""
        return lab_tag(self.name)

    @property
    def bridge(self) -> str:
        return f"ltb-{self.tag}"

    @property
    def mgmt_port(self) -> str:
        """Internal port through which the hypervisor reaches the management network."""
        return f"ltm-{self.tag}"

    @property
    def mgmt_gateway(self) -> IPv4Interface:
        return IPv4Interface(f"{next(self.mgmt_subnet.hosts())}/{self.mgmt_subnet.prefixlen}")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"lab {self.name!r} has no node {name!r}")

    def container_name(self, node: str) -> str:
        return container_name(self.name, node)


def lab_tag(lab: str) -> str:
    return _digest(lab)[:6]


def container_name(lab: str, node: str) -> str:
    return f"ltb-{lab}.{node}"


def host_interface_name(lab: str, node: str, interface: str) -> str:
    """Hypervisor-side name of a node interface: 'v' + lab tag + 8 hex digits = 15 chars."""
    return f"v{lab_tag(lab)}{_digest(node, interface)[:8]}"


def mgmt_host_interface_name(lab: str, node: str) -> str:
    return f"m{lab_tag(lab)}{_digest(node)[:8]}"


# Default management subnets: one /24 of this pool per lab, chosen by the lab's name, so the
# same lab always gets the same subnet. A topology may set its own.
MGMT_POOL = IPv4Network("172.20.0.0/14")


def default_mgmt_subnet(lab: str) -> IPv4Network:
    slots = MGMT_POOL.num_addresses // 256
    slot = int(_digest(lab), 16) % slots
    return IPv4Network((int(MGMT_POOL.network_address) + slot * 256, 24))


def mgmt_addresses(subnet: IPv4Network, count: int) -> list[IPv4Interface]:
    """Addresses of `count` nodes: the first host address is the hypervisor's (gateway)."""
    hosts = subnet.hosts()
    next(hosts)
    return [IPv4Interface(f"{IPv4Address(next(hosts))}/{subnet.prefixlen}") for _ in range(count)]
