"""The one model of a lab, resolved and valid.

Everything after the topology file works from these objects: the inventory plugin, the
playbooks (through the inventory), the jobs and the portal. Names of the things a lab creates
on a hypervisor are derived here and nowhere else, so every part of LTB finds the same ones.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field, replace
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
    hypervisor: str | None = None  # None: the lab's hypervisor (ltb.inventory)

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
class Allocation:
    """What a lab holds apart from every other lab of its controller: the tag in its
    hypervisor-side names (15 characters at most) and its management subnet."""

    tag: str
    mgmt_subnet: IPv4Network


@dataclass(frozen=True)
class Lab:
    name: str
    description: str | None
    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    mgmt_subnet: IPv4Network
    # Allocated (ltb.allocation); a lab parsed without an allocation has its preferred tag.
    tag: str
    # Allowed but often a mistake (e.g. a subnet on two links); not part of the lab's identity.
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def allocation(self) -> Allocation:
        return Allocation(self.tag, self.mgmt_subnet)

    @property
    def bridge(self) -> str:
        return f"ltb-{self.tag}"

    @property
    def mgmt_port(self) -> str:
        """Internal port through which the hypervisor reaches the management network."""
        return f"ltm-{self.tag}"

    @property
    def tunnel_device(self) -> str:
        """Kernel VXLAN device that carries the lab's links to its other hypervisors (one per
        lab and hypervisor, flooding to each of them: see docs/architecture.md)."""
        return f"ltt-{self.tag}"

    @property
    def tunnel_vni(self) -> int:
        """The VXLAN network identifier of the lab's tunnels: its tag (24 bits, as a VNI)."""
        return int(self.tag, 16)

    @property
    def mgmt_gateway(self) -> IPv4Interface:
        return IPv4Interface(f"{next(self.mgmt_subnet.hosts())}/{self.mgmt_subnet.prefixlen}")

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"lab {self.name!r} has no node {name!r}")

    def with_allocation(self, allocation: Allocation) -> Lab:
        """This lab under `allocation`: its hypervisor-side names and management addresses."""
        addresses = mgmt_addresses(allocation.mgmt_subnet, len(self.nodes))
        nodes = tuple(
            replace(
                node,
                mgmt_ipv4=address,
                mgmt_host_name=mgmt_host_interface_name(allocation.tag, node.name),
                interfaces=tuple(
                    replace(i, host_name=host_interface_name(allocation.tag, node.name, i.name))
                    for i in node.interfaces
                ),
            )
            for node, address in zip(self.nodes, addresses, strict=True)
        )
        return replace(self, nodes=nodes, mgmt_subnet=allocation.mgmt_subnet, tag=allocation.tag)

    def container_name(self, node: str) -> str:
        return container_name(self.name, node)

    @property
    def node_name_prefix(self) -> str:
        """What every container and VM domain name of the lab starts with (remove sweeps it)."""
        return container_name(self.name, "")

    def vm_names(self, node: str) -> VmNames:
        """The names a VM node makes on its hypervisor; paths relative to the state dir."""
        directory = f"labs/{self.name}/vms/{node}"
        # The management interface is on the lab bridge too.
        interfaces = (MGMT_INTERFACE, *(i.name for i in self.node(node).interfaces))
        return VmNames(
            domain=container_name(self.name, node),
            uuid=_ltb_uuid("ltb", self.name, node),
            dir=directory,
            disk=f"{directory}/disk.qcow2",
            config_drive=f"{directory}/config.tar",
            console_log=f"{directory}/console.log",
            interface_ids={name: _ltb_uuid("ltb", self.name, node, name) for name in interfaces},
        )


@dataclass(frozen=True)
class VmNames:
    """Where a VM node lives on its hypervisor: libvirt names and files (relative to the state
    directory). The UUIDs are those Ansible's `to_uuid` gave before, so domains defined and
    snapshots taken by earlier versions keep theirs (a saved VM resumes only into its UUID)."""

    domain: str
    uuid: str
    dir: str
    disk: str
    config_drive: str
    console_log: str
    interface_ids: dict[str, str]  # interface name -> Open vSwitch interface id


# Ansible's `to_uuid` namespace.
LTB_UUID_NAMESPACE = uuid.UUID("361e6d51-faec-444a-9079-341386da8e2e")


def _ltb_uuid(*parts: str) -> str:
    return str(uuid.uuid5(LTB_UUID_NAMESPACE, ":".join(parts)))


def vm_mac_address(host_name: str) -> str:
    """The MAC of a VM interface, from its hypervisor-side name: the domain XML and the
    guest's config drive agree on it."""
    digest = hashlib.sha256(host_name.encode()).hexdigest()
    return "52:54:00:" + ":".join(digest[i : i + 2] for i in (0, 2, 4))


# A tag is 6 hex digits (24 bits): 'v' + tag + 8 hex digits fills a Linux interface name.
TAG_DIGITS = 6
TAG_SPACE = 16**TAG_DIGITS


def lab_tag(lab: str) -> str:
    """The lab's preferred tag, from its name; the allocated one (`Lab.tag`) may differ."""
    return _digest(lab)[:TAG_DIGITS]


def tag_text(number: int) -> str:
    return f"{number % TAG_SPACE:0{TAG_DIGITS}x}"


def container_name(lab: str, node: str) -> str:
    return f"ltb-{lab}.{node}"


def host_interface_name(tag: str, node: str, interface: str) -> str:
    """Hypervisor-side name of a node interface: 'v' + lab tag + 8 hex digits = 15 chars."""
    return f"v{tag}{_digest(node, interface)[:8]}"


def mgmt_host_interface_name(tag: str, node: str) -> str:
    return f"m{tag}{_digest(node)[:8]}"


# Default management subnets: one /24 of this pool per lab. A lab prefers the slot its name
# hashes to (so its subnet stays the same); ltb.allocation gives it another when that one is
# taken. A topology may set its own subnet.
MGMT_POOL = IPv4Network("172.20.0.0/14")
MGMT_SLOT_PREFIX = 24
MGMT_SLOTS = MGMT_POOL.num_addresses // 2 ** (32 - MGMT_SLOT_PREFIX)


def mgmt_slot_subnet(slot: int) -> IPv4Network:
    size = 2 ** (32 - MGMT_SLOT_PREFIX)
    return IPv4Network(
        (int(MGMT_POOL.network_address) + (slot % MGMT_SLOTS) * size, MGMT_SLOT_PREFIX)
    )


def preferred_mgmt_slot(lab: str) -> int:
    return int(_digest(lab), 16) % MGMT_SLOTS


def default_mgmt_subnet(lab: str) -> IPv4Network:
    """The lab's preferred default management subnet; the allocated one may differ."""
    return mgmt_slot_subnet(preferred_mgmt_slot(lab))


def preferred_allocation(lab: str, mgmt_subnet: IPv4Network | None = None) -> Allocation:
    """What a lab gets when nothing else holds it: its name's tag and default slot (or the
    subnet its topology gives)."""
    return Allocation(lab_tag(lab), mgmt_subnet or default_mgmt_subnet(lab))


def mgmt_addresses(subnet: IPv4Network, count: int) -> list[IPv4Interface]:
    """Addresses of `count` nodes: the first host address is the hypervisor's (gateway)."""
    hosts = subnet.hosts()
    next(hosts)
    return [IPv4Interface(f"{IPv4Address(next(hosts))}/{subnet.prefixlen}") for _ in range(count)]
