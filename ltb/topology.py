"""Read a topology file into the lab model, reporting every error of the file at once.

The pipeline has named stages, each of which collects problems instead of stopping at the
first one:

1. `read_yaml`: YAML syntax and duplicate keys (with line numbers).
2. `check_shapes`: each part against its spec (`ltb.spec`): unknown keys, wrong types.
3. `resolve`: names, kinds, links, addresses and files related to each other, giving `Lab`.

`load_lab(path)` runs them all and raises `TopologyError` listing every problem found, each
with its place in the file (`links[2].endpoints[1]: node 'r9' is not defined`).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    ip_interface,
    ip_network,
)
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ltb import kinds
from ltb.model import (
    FIRST_LINK_VLAN,
    MGMT_INTERFACE,
    Endpoint,
    Interface,
    Lab,
    Link,
    Node,
    default_mgmt_subnet,
    host_interface_name,
    mgmt_addresses,
    mgmt_host_interface_name,
)
from ltb.spec import TOP_LEVEL_KEYS, LinkSpec, ManagementSpec, NodeSpec, memory_bytes

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
NODE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
INTERFACE_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,14}$")
GROUP_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$")
RESERVED_INTERFACES = {MGMT_INTERFACE: "management interface", "lo": "loopback"}
# Groups that LTB itself puts nodes or hypervisors in.
RESERVED_GROUPS = {"all", "ungrouped", "hypervisors", "ltb_nodes", "containers", "vms"}
# Host and group names of the inventory besides lab nodes.
RESERVED_NODE_NAMES = RESERVED_GROUPS | {"localhost"}
# Files the container runtime mounts over: a startup file there would be lost or refused.
RUNTIME_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
MAX_VLAN = 4094
# Top-level keys with this prefix are the author's own (e.g. YAML anchors) and are ignored.
EXTENSION_PREFIX = "x-"


@dataclass(frozen=True)
class Problem:
    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}" if self.place else self.message


class TopologyError(ValueError):
    """A topology file that cannot become a lab; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} error(s) in topology:\n{lines}")


@dataclass
class _Problems:
    found: list[Problem] = field(default_factory=list)

    def add(self, place: str, message: str) -> None:
        self.found.append(Problem(place, message))


def place(*parts: str | int) -> str:
    """`place('links', 2, 'endpoints', 1)` -> 'links[2].endpoints[1]'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = part
    return text


# Stage 1: YAML -------------------------------------------------------------------------------


MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys instead of silently keeping the last one."""

    duplicates: list[Problem]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *anchor` may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int) and key in seen:
                line = key_node.start_mark.line + 1
                self.duplicates.append(Problem(f"line {line}", f"duplicate key {key!r}"))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, problems: _Problems) -> Any:
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.add(where, f"not valid YAML: {getattr(error, 'problem', None) or error}")
        return None
    finally:
        loader.dispose()
    problems.found.extend(sorted(loader.duplicates, key=lambda d: int(d.place.split()[1])))
    return data


# Stage 2: shapes -----------------------------------------------------------------------------


def _validate(spec: type[BaseModel], data: Any, where: tuple[str | int, ...], problems: _Problems):
    try:
        return spec.model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            loc = where + tuple(detail["loc"])
            problems.add(place(*loc), _explain(detail))
        return None


def _explain(detail: Any) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return "unknown key (a typo?)"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch" and detail["loc"][-1] == "memory":
        return f"{detail['input']!r} is not a memory size (e.g. 256MiB, 1GiB)"
    message = str(detail["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if kind.endswith("_type"):
        return f"{message}, got {type(detail['input']).__name__}"
    return message


@dataclass
class _Shapes:
    """The parts of a file that have the right shape; parts that do not are left out."""

    name: str | None
    description: str | None
    mgmt: ManagementSpec | None
    nodes: dict[str, NodeSpec | None]  # None: the node is defined but malformed
    links: list[LinkSpec | None]


def check_shapes(data: Any, problems: _Problems) -> _Shapes | None:
    if not isinstance(data, dict):
        problems.add("", "a topology must be a mapping with 'name', 'nodes' and 'links'")
        return None
    for key in data:
        if key not in TOP_LEVEL_KEYS and not str(key).startswith(EXTENSION_PREFIX):
            problems.add(str(key), f"unknown key (known: {', '.join(TOP_LEVEL_KEYS)})")

    name = data.get("name")
    if name is None:
        problems.add("name", "required key is missing")
    elif not isinstance(name, str):
        problems.add("name", "must be a string")
        name = None
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        problems.add("description", "must be a string")

    mgmt = _validate(ManagementSpec, data.get("mgmt") or {}, ("mgmt",), problems)

    raw_nodes = data.get("nodes")
    nodes: dict[str, NodeSpec | None] = {}
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.add("nodes", "must be a mapping of at least one node name to its definition")
    else:
        for node_name, raw in raw_nodes.items():
            key = str(node_name)
            nodes[key] = _validate(
                NodeSpec, raw if raw is not None else {}, ("nodes", key), problems
            )

    raw_links = data.get("links", [])
    links: list[LinkSpec | None] = []
    if raw_links is None:
        raw_links = []
    if not isinstance(raw_links, list):
        problems.add("links", "must be a list of links")
    else:
        links = [
            _validate(LinkSpec, raw, ("links", i), problems) for i, raw in enumerate(raw_links)
        ]

    return _Shapes(name, description, mgmt, nodes, links)


# Stage 3: resolve ----------------------------------------------------------------------------


def _check_name(pattern: re.Pattern[str], value: str, where: str, what: str, p: _Problems) -> bool:
    if pattern.match(value) and not value.endswith("-"):
        return True
    p.add(where, f"{what} {value!r} is not allowed: {_NAME_RULES[what]}")
    return False


_NAME_RULES = {
    "lab name": "use 1-32 lower-case letters, digits and '-', starting with a letter",
    "node name": "use 1-32 lower-case letters, digits and '-', starting with a letter",
    "interface name": "use 1-15 lower-case letters, digits and '_.-', starting with a letter",
    "group name": "use lower-case letters, digits, '_' and '-', starting with a letter",
}


def _parse_address(text: str | None, version: int, where: str, p: _Problems):
    if text is None:
        return None
    try:
        address = ip_interface(text)
    except ValueError:
        p.add(where, f"{text!r} is not an IPv{version} address with prefix length")
        return None
    if address.version != version or "/" not in text:
        p.add(
            where,
            f"{text!r} is not an IPv{version} address with prefix length (like "
            + ("10.0.12.1/24)" if version == 4 else "2001:db8::1/64)"),
        )
        return None
    network = address.network
    if address.ip == network.network_address and network.num_addresses > 2:
        p.add(where, f"{text!r} is the network address of its subnet, not a host address")
        return None
    if version == 4 and address.ip == network.broadcast_address and network.num_addresses > 2:
        p.add(where, f"{text!r} is the broadcast address of its subnet, not a host address")
        return None
    return address


def _check_file_path(path: str, where: str, p: _Problems) -> bool:
    if not path.startswith("/"):
        p.add(where, "startup file path must be absolute (inside the node), e.g. /etc/frr/frr.conf")
        return False
    if posixpath.normpath(path) != path or path == "/" or any(c in path for c in "\0\n\r"):
        p.add(
            where,
            "startup file path must be a plain path to a file inside the node "
            "(no '..', '//', trailing '/' or control characters)",
        )
        return False
    if path in RUNTIME_FILES:
        p.add(where, f"{path} is managed by the container runtime and cannot be a startup file")
        return False
    return True


@dataclass
class _NodeInterfaces:
    """Interfaces of one node while links are resolved: name -> (ipv4, ipv6)."""

    declared: dict[str, tuple[IPv4Interface | None, IPv6Interface | None]]
    places: dict[str, str]


def resolve(shapes: _Shapes, p: _Problems) -> Lab | None:
    name = shapes.name
    if name is not None:
        _check_name(LAB_NAME, name, "name", "lab name", p)

    mgmt_subnet = _resolve_mgmt_subnet(shapes, p)
    node_interfaces: dict[str, _NodeInterfaces] = {}
    for node_name, spec in shapes.nodes.items():
        where = place("nodes", node_name)
        if _check_name(NODE_NAME, node_name, where, "node name", p) and (
            node_name in RESERVED_NODE_NAMES
        ):
            p.add(where, f"node name {node_name!r} is reserved: it names an Ansible host or group")
        if spec is not None:
            node_interfaces[node_name] = _resolve_interfaces(node_name, spec, p)
        _check_node(node_name, spec, shapes.nodes, p)

    vlans = _resolve_links(shapes, node_interfaces, p)
    _check_addresses(shapes, node_interfaces, vlans, mgmt_subnet, p)

    if p.found or name is None or mgmt_subnet is None:
        return None
    return _build_lab(name, shapes, node_interfaces, vlans, mgmt_subnet)


def _resolve_mgmt_subnet(shapes: _Shapes, p: _Problems) -> IPv4Network | None:
    text = shapes.mgmt.ipv4_subnet if shapes.mgmt else None
    where = "mgmt.ipv4_subnet"
    if text is None:
        if shapes.name is None:
            return None
        subnet = default_mgmt_subnet(shapes.name)
        text = f"the default management subnet {subnet}"
    else:
        try:
            subnet = ip_network(text)
        except ValueError:
            p.add(where, f"{text!r} is not an IPv4 subnet like 172.20.5.0/24 (host bits must be 0)")
            return None
        if subnet.version != 4:
            p.add(where, f"{text!r} is not an IPv4 subnet")
            return None
    if subnet.num_addresses - 3 < len(shapes.nodes):  # network, gateway, broadcast
        p.add(
            where,
            f"{text} has room for {max(subnet.num_addresses - 3, 0)} nodes, "
            f"the lab has {len(shapes.nodes)}: set a larger mgmt.ipv4_subnet",
        )
        return None
    return subnet


def _resolve_interfaces(node: str, spec: NodeSpec, p: _Problems) -> _NodeInterfaces:
    result = _NodeInterfaces({}, {})
    for if_name, if_spec in spec.interfaces.items():
        where = place("nodes", node, "interfaces", if_name)
        if not _check_name(INTERFACE_NAME, if_name, where, "interface name", p):
            continue
        if if_name in RESERVED_INTERFACES:
            p.add(where, f"{if_name} is reserved for the {RESERVED_INTERFACES[if_name]}")
            continue
        ipv4 = ipv6 = None
        if if_spec is not None:
            ipv4 = _parse_address(if_spec.ipv4, 4, place(where, "ipv4"), p)
            ipv6 = _parse_address(if_spec.ipv6, 6, place(where, "ipv6"), p)
        result.declared[if_name] = (ipv4, ipv6)
        result.places[if_name] = where
    return result


def _check_node(name: str, spec: NodeSpec | None, nodes: dict[str, Any], p: _Problems) -> None:
    if spec is None:
        return
    where = place("nodes", name)
    try:
        kinds.get(spec.kind)
    except KeyError as error:
        p.add(place(where, "kind"), str(error.args[0]))
    if spec.image is not None and not IMAGE_NAME.match(spec.image):
        p.add(place(where, "image"), f"{spec.image!r} is not an image name like ltb/node:latest")
    for i, group in enumerate(spec.groups):
        gwhere = place(where, "groups", i)
        if not _check_name(GROUP_NAME, group, gwhere, "group name", p):
            continue
        if group in RESERVED_GROUPS or group.startswith(("lab_", "lab-")):
            p.add(gwhere, f"group {group!r} is reserved by LTB (lab_* names the lab's group)")
        elif group in nodes or group.replace("-", "_") in nodes:
            p.add(gwhere, f"group {group!r} has the name of a node")
    for path in spec.files:
        _check_file_path(path, place(where, "files", path), p)


def _resolve_links(
    shapes: _Shapes, interfaces: dict[str, _NodeInterfaces], p: _Problems
) -> dict[tuple[str, str], int]:
    """Give every linked interface its link's VLAN; interfaces named only in links are added."""
    vlans: dict[tuple[str, str], int] = {}
    used_by: dict[tuple[str, str], int] = {}
    for index, link in enumerate(shapes.links):
        if link is None:
            continue
        vlan = FIRST_LINK_VLAN + index
        if vlan > MAX_VLAN:
            p.add(
                place("links", index), f"a lab has at most {MAX_VLAN - FIRST_LINK_VLAN + 1} links"
            )
            continue
        for i, text in enumerate(link.endpoints):
            where = place("links", index, "endpoints", i)
            node, sep, if_name = text.partition(":")
            if not sep or not node or not if_name:
                p.add(where, f"{text!r} is not an endpoint like r1:eth1")
                continue
            if node not in shapes.nodes:
                p.add(where, f"node {node!r} is not defined")
                continue
            if if_name in RESERVED_INTERFACES:
                p.add(where, f"{if_name} is reserved for the {RESERVED_INTERFACES[if_name]}")
                continue
            if not _check_name(INTERFACE_NAME, if_name, where, "interface name", p):
                continue
            key = (node, if_name)
            if key in used_by:
                first = used_by[key]
                other = "this link" if first == index else f"links[{first}]"
                p.add(where, f"interface {text} is already used by {other}")
                continue
            used_by[key] = index
            vlans[key] = vlan
            if node in interfaces and if_name not in interfaces[node].declared:
                interfaces[node].declared[if_name] = (None, None)
                interfaces[node].places[if_name] = where
    return vlans


def _check_addresses(
    shapes: _Shapes,
    interfaces: dict[str, _NodeInterfaces],
    vlans: dict[tuple[str, str], int],
    mgmt_subnet: IPv4Network | None,
    p: _Problems,
) -> None:
    """No address twice; one subnet per segment; no two segments in overlapping subnets."""
    seen_ips: dict[Any, str] = {}
    segments: dict[Any, dict[int, tuple[Any, str]]] = {}  # segment -> version -> (net, place)
    for node, node_ifs in interfaces.items():
        for if_name, addresses in node_ifs.declared.items():
            segment = vlans.get((node, if_name), ("unlinked", node, if_name))
            for address in addresses:
                if address is None:
                    continue
                where = place(node_ifs.places[if_name], f"ipv{address.version}")
                if address.ip in seen_ips:
                    p.add(where, f"address {address.ip} is also used at {seen_ips[address.ip]}")
                    continue
                seen_ips[address.ip] = where
                if mgmt_subnet is not None and address.network.overlaps(mgmt_subnet):
                    p.add(where, f"{address} overlaps the management subnet {mgmt_subnet}")
                    continue
                known = segments.setdefault(segment, {})
                if address.version in known and known[address.version][0] != address.network:
                    network, other = known[address.version]
                    p.add(where, f"{address} is not in the subnet {network} of its link ({other})")
                    continue
                known.setdefault(address.version, (address.network, where))
    _check_segment_overlaps(segments, p)


def _check_segment_overlaps(segments: dict[Any, dict[int, tuple[Any, str]]], p: _Problems):
    networks = [entry for by_version in segments.values() for entry in by_version.values()]
    for i, (net_a, where_a) in enumerate(networks):
        for net_b, where_b in networks[i + 1 :]:
            if net_a.version == net_b.version and net_a.overlaps(net_b):
                p.add(
                    where_b, f"subnet {net_b} overlaps subnet {net_a} of another link ({where_a})"
                )


def _build_lab(
    name: str,
    shapes: _Shapes,
    interfaces: dict[str, _NodeInterfaces],
    vlans: dict[tuple[str, str], int],
    mgmt_subnet: IPv4Network,
) -> Lab:
    nodes = []
    mgmt = mgmt_addresses(mgmt_subnet, len(shapes.nodes))
    for (node_name, spec), mgmt_ipv4 in zip(shapes.nodes.items(), mgmt, strict=True):
        assert spec is not None  # resolve() returns early on any malformed node
        node_ifs = tuple(
            Interface(
                name=if_name,
                host_name=host_interface_name(name, node_name, if_name),
                ipv4=ipv4,
                ipv6=ipv6,
                vlan=vlans.get((node_name, if_name)),
            )
            for if_name, (ipv4, ipv6) in interfaces[node_name].declared.items()
        )
        memory = spec.resources.memory
        nodes.append(
            Node(
                name=node_name,
                kind=spec.kind,
                image=spec.image,
                groups=tuple(spec.groups),
                cpus=float(spec.resources.cpus) if spec.resources.cpus is not None else None,
                memory_bytes=memory_bytes(memory) if memory else None,
                interfaces=node_ifs,
                files=tuple(spec.files.items()),
                mgmt_ipv4=mgmt_ipv4,
                mgmt_host_name=mgmt_host_interface_name(name, node_name),
            )
        )
    links = tuple(
        Link(
            index=i,
            vlan=FIRST_LINK_VLAN + i,
            endpoints=tuple(Endpoint(*e.split(":", 1)) for e in link.endpoints),
        )
        for i, link in enumerate(shapes.links)
        if link is not None
    )
    return Lab(name, shapes.description, tuple(nodes), links, mgmt_subnet)


# The whole pipeline ---------------------------------------------------------------------------


def parse_lab(text: str, source: str = "<topology>") -> Lab:
    """Validate a topology given as YAML text; raise TopologyError with every problem."""
    problems = _Problems()
    data = read_yaml(text, problems)
    shapes = check_shapes(data, problems) if data is not None or not problems.found else None
    lab = resolve(shapes, problems) if shapes is not None else None
    if problems.found or lab is None:
        raise TopologyError(source, problems.found or [Problem("", "empty topology")])
    return lab


def load_lab(path: str | Path) -> Lab:
    """Read and validate a topology file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TopologyError(str(path), [Problem("", f"cannot read the file: {error}")]) from None
    return parse_lab(text, str(path))


def problems_of(text: str) -> list[str]:
    """Every problem of a topology as text, [] when it is valid (for tests and the portal)."""
    try:
        parse_lab(text)
    except TopologyError as error:
        return [str(problem) for problem in error.problems]
    return []
