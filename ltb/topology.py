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

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
from ltb.allocation import AllocationError
from ltb.model import (
    FIRST_LINK_VLAN,
    MGMT_INTERFACE,
    Allocation,
    Endpoint,
    Interface,
    Lab,
    Link,
    Node,
    Problem,
    default_mgmt_subnet,
    host_interface_name,
    lab_tag,
    mgmt_addresses,
    mgmt_host_interface_name,
)
from ltb.spec import (
    MAX_FILE_BYTES,
    MAX_INTERFACES_PER_NODE,
    MAX_LAB_FILE_BYTES,
    MAX_LINKS,
    MAX_NODES,
    MAX_TOPOLOGY_BYTES,
    MAX_YAML_VALUES,
    TOP_LEVEL_KEYS,
    LinkSpec,
    ManagementSpec,
    NodeSpec,
    memory_bytes,
)

# Names are matched whole (fullmatch): with re.match, '$' also accepts a trailing newline.
LAB_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
NODE_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
INTERFACE_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,14}")
GROUP_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
# An inventory host name; which hosts are hypervisors only the inventory knows.
HYPERVISOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?")
# A VM image is a directory <ltb_state_dir>/images/vm/<name>/: a plain name, never a path.
VM_IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Docker reads a bare hexadecimal name as (a prefix of) an image ID, whatever its repository.
IMAGE_ID = re.compile(r"[0-9a-f]+")
# Docker Hub's names of a repository; Docker resolves `docker.io/x` to the local image `x`.
DOCKER_HUB_PREFIXES = ("docker.io/", "index.docker.io/")
# The platform's images. Of its container images only the default node image may be named in
# a topology: snapshot images (ltb-snapshot/<lab>/<node>:<snapshot>, ltb.snapshot) serve only
# the restore of their own lab, which gives them to its nodes itself (playbooks/restore.yml).
DEFAULT_NODE_IMAGE = "ltb/node:latest"
RESERVED_IMAGE_PREFIXES = ("ltb/", "ltb-snapshot")
DEFAULT_VM_IMAGE = "ltb-vm"
RESERVED_VM_IMAGE_PREFIX = "ltb-"
RESERVED_INTERFACES = {MGMT_INTERFACE: "management interface", "lo": "loopback"}
# Groups that LTB itself puts nodes or hypervisors in.
RESERVED_GROUPS = {
    *("all", "ungrouped", "hypervisors", "ltb_nodes", "containers", "vms"),
    "ltb_node_plays",  # ltb.inventory.PER_NODE_GROUP: nodes reached one by one (ready plays)
}
# Host and group names of the inventory besides lab nodes.
RESERVED_NODE_NAMES = RESERVED_GROUPS | {"localhost"}
# Files the container runtime mounts over: a startup file there would be lost or refused.
RUNTIME_FILES = {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
# Kernel file systems: a startup file there would write to the kernel or a device.
KERNEL_DIRECTORIES = {"proc", "sys", "dev"}
# A management subnet is reached from the hypervisor's own IP stack: never a public,
# loopback, link-local, multicast or carrier-grade NAT one, only RFC 1918.
PRIVATE_SUBNETS = tuple(map(IPv4Network, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")))
# Top-level keys with this prefix are the author's own (e.g. YAML anchors) and are ignored.
EXTENSION_PREFIX = "x-"


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
    # What is allowed but often a mistake (e.g. a subnet on two links); kept on the Lab.
    warnings: list[Problem] = field(default_factory=list)

    def add(self, place: str, message: str) -> None:
        self.found.append(Problem(place, message))

    def warn(self, place: str, message: str) -> None:
        self.warnings.append(Problem(place, message))


def place(*parts: str | int) -> str:
    """`place('links', 2, 'endpoints', 1)` -> 'links[2].endpoints[1]'."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable():  # a key with a newline must not forge a line of output
            text += f".{part!r}" if text else repr(part)
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


TOO_LARGE = Problem(
    "", f"the file is larger than {MAX_TOPOLOGY_BYTES} bytes (1 MiB), the most a topology may have"
)


def read_yaml(text: str, problems: _Problems) -> Any:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPOLOGY_BYTES:
        problems.found.append(TOO_LARGE)
        return None
    try:
        loader = _StrictLoader(text)
    except yaml.YAMLError as error:  # the reader refuses control characters at once
        problems.add("", f"not valid YAML: {error}")
        return None
    loader.duplicates = []
    try:
        # Composed first, constructed only if small enough: aliases share one node here, but
        # each use of an alias becomes a value of its own in the lab.
        root = loader.get_single_node()
        if root is not None and not _within_expanded_bound(root, problems):
            return None
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.add(where, f"not valid YAML: {getattr(error, 'problem', None) or error}")
        return None
    except RecursionError:
        problems.add("", "not valid YAML here: it is nested too deeply")
        return None
    finally:
        loader.dispose()
    problems.found.extend(sorted(loader.duplicates, key=lambda d: int(d.place.split()[1])))
    return data


def _within_expanded_bound(root: yaml.Node, problems: _Problems) -> bool:
    """Whether the document has at most MAX_YAML_VALUES values once every alias (and merge)
    is expanded; counted on the composed nodes, each shared node once, so a small file that
    expands to a huge one is refused before it is built."""
    expanded: dict[int, int] = {}  # id(node) -> values in it, aliases expanded
    open_nodes: set[int] = set()  # nodes whose children are being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        children = _children(node)
        if counted:
            open_nodes.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in children)
            if expanded[id(node)] > MAX_YAML_VALUES:
                problems.add(
                    f"line {node.start_mark.line + 1}",
                    f"the topology has more than {MAX_YAML_VALUES} values once its aliases "
                    f"are expanded: at most {MAX_YAML_VALUES} are allowed (each use of an "
                    "alias counts)",
                )
                return False
        elif id(node) in open_nodes:
            problems.add(
                f"line {node.start_mark.line + 1}", "a YAML alias refers to a value that holds it"
            )
            return False
        elif id(node) not in expanded:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
    return True


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


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
    if kind == "too_long":  # the per-node bounds of ltb.spec
        what = {"files": "startup files"}.get(str(detail["loc"][-1]), str(detail["loc"][-1]))
        bound = detail["ctx"]["max_length"]
        return f"the node has {len(detail['input'])} {what}: a node has at most {bound}"
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
    raw_links = data.get("links", [])
    beyond = [
        _beyond_bound(raw_nodes, MAX_NODES, "nodes", problems),
        _beyond_bound(raw_links, MAX_LINKS, "links", problems),
    ]
    if any(beyond):
        return None  # the lab's parts are not even looked at
    nodes: dict[str, NodeSpec | None] = {}
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.add("nodes", "must be a mapping of at least one node name to its definition")
    else:
        for node_name, raw in raw_nodes.items():
            key = str(node_name)
            nodes[key] = _validate(
                NodeSpec, raw if raw is not None else {}, ("nodes", key), problems
            )

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


def _beyond_bound(parts: Any, bound: int, key: str, problems: _Problems) -> bool:
    if isinstance(parts, dict | list) and len(parts) > bound:
        problems.add(key, f"the lab has {len(parts)} {key}: a lab has at most {bound}")
        return True
    return False


# Stage 3: resolve ----------------------------------------------------------------------------


def _check_name(pattern: re.Pattern[str], value: str, where: str, what: str, p: _Problems) -> bool:
    if pattern.fullmatch(value) and not value.endswith("-"):
        return True
    p.add(where, f"{what} {value!r} is not allowed: {_NAME_RULES[what]}")
    return False


_NAME_RULES = {
    "lab name": "use 1-32 lower-case letters, digits and '-', starting with a letter",
    "node name": "use 1-32 lower-case letters, digits and '-', starting with a letter",
    "interface name": "use 1-15 lower-case letters, digits and '_.-', starting with a letter",
    "group name": "use lower-case letters, digits, '_' and '-', starting with a letter",
    "hypervisor name": "use 1-63 letters, digits and '_.-' (an inventory host name)",
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
    # Only the one spelling of a path passes, so no other spelling reaches RUNTIME_FILES.
    parts = path[1:].split("/")
    if any(part in ("", ".", "..") for part in parts) or any(
        ord(c) < 0x20 or c == "\x7f" for c in path
    ):
        p.add(
            where,
            "startup file path must be a plain path to a file inside the node "
            "(no '.' or '..' part, no '//', no trailing '/', no control characters)",
        )
        return False
    if path in RUNTIME_FILES:
        p.add(where, f"{path} is managed by the container runtime and cannot be a startup file")
        return False
    if parts[0] in KERNEL_DIRECTORIES:
        p.add(where, f"/{parts[0]} is a kernel file system: a startup file cannot be there")
        return False
    return True


def _check_file_content(content: str, where: str, p: _Problems) -> int:
    """The size of a startup file in bytes (UTF-8), checked against its bound."""
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. "\ud800" in double quotes
        p.add(where, "startup file content is not valid Unicode text")
        return 0
    if size > MAX_FILE_BYTES:
        p.add(
            where,
            f"startup file has {size} bytes: a startup file has at most {MAX_FILE_BYTES} "
            f"({MAX_FILE_BYTES // 1024} KiB)",
        )
    return size


def _check_lab_files(shapes: _Shapes, p: _Problems) -> None:
    total = sum(
        len(content.encode("utf-8", "surrogatepass"))
        for spec in shapes.nodes.values()
        if spec is not None
        for content in spec.files.values()
    )
    if total > MAX_LAB_FILE_BYTES:
        p.add(
            "nodes",
            f"the startup files of all nodes have {total} bytes together: a lab has at most "
            f"{MAX_LAB_FILE_BYTES} ({MAX_LAB_FILE_BYTES // 1024**2} MiB)",
        )


def _check_image(runtime: str, image: str, where: str, p: _Problems) -> None:
    # Image names are the runtime's (ltb.kinds): a libvirt image of the hypervisor, else Docker's.
    if runtime == kinds.LIBVIRT:
        if not VM_IMAGE_NAME.fullmatch(image) or ".." in image:
            p.add(
                where,
                f"{image!r} is not a VM image name: name a VM image of the hypervisor "
                "(1-64 lower-case letters, digits and '._-'; no '/', '..' or ':')",
            )
        elif image.startswith(RESERVED_VM_IMAGE_PREFIX) and image != DEFAULT_VM_IMAGE:
            p.add(
                where,
                f"VM image {image!r} is reserved: names starting with "
                f"{RESERVED_VM_IMAGE_PREFIX!r} are LTB's own (its VM image is {DEFAULT_VM_IMAGE})",
            )
        return
    if not IMAGE_NAME.fullmatch(image):
        p.add(where, f"{image!r} is not an image name like ltb/node:latest")
        return
    repository, _, tag = image.partition(":")
    for hub in DOCKER_HUB_PREFIXES:
        repository = repository.removeprefix(hub)
    if repository.count("/") == 1:
        repository = repository.removeprefix("library/")
    if IMAGE_ID.fullmatch(image) or repository == "sha256":
        p.add(where, f"{image!r} is read by Docker as an image ID: name the image instead")
    elif repository.startswith(RESERVED_IMAGE_PREFIXES[1]):
        p.add(
            where,
            f"{image!r} is a snapshot image: it serves only the restore of its own lab "
            "(playbooks/restore.yml), never a topology",
        )
    elif (
        repository.startswith(RESERVED_IMAGE_PREFIXES[0])
        and f"{repository}:{tag or 'latest'}" != DEFAULT_NODE_IMAGE
    ):
        p.add(
            where,
            f"image {image!r} is reserved: images under ltb/ are LTB's own "
            f"(its node image is {DEFAULT_NODE_IMAGE})",
        )


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
    _check_lab_files(shapes, p)

    vlans = _resolve_links(shapes, node_interfaces, p)
    _check_interface_count(node_interfaces, p)
    _check_addresses(shapes, node_interfaces, vlans, mgmt_subnet, p)

    if p.found or name is None or mgmt_subnet is None:
        return None
    lab = _build_lab(name, shapes, node_interfaces, vlans, mgmt_subnet)
    return replace(lab, warnings=tuple(p.warnings))


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
        if not any(subnet.subnet_of(private) for private in PRIVATE_SUBNETS):
            p.add(
                where,
                f"{text} is not a private subnet: use one inside "
                f"{', '.join(map(str, PRIVATE_SUBNETS))} (RFC 1918)",
            )
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
        runtime = kinds.get(spec.kind).runtime
    except KeyError as error:
        p.add(place(where, "kind"), str(error.args[0]))
        runtime = kinds.DOCKER  # its image is still checked, as most nodes' are
    if spec.image is not None:
        _check_image(runtime, spec.image, place(where, "image"), p)
    if spec.hypervisor is not None:
        where_hypervisor = place(where, "hypervisor")
        _check_name(HYPERVISOR_NAME, spec.hypervisor, where_hypervisor, "hypervisor name", p)
    for i, group in enumerate(spec.groups):
        gwhere = place(where, "groups", i)
        if not _check_name(GROUP_NAME, group, gwhere, "group name", p):
            continue
        if group in RESERVED_GROUPS or group.startswith(("lab_", "lab-")):
            p.add(gwhere, f"group {group!r} is reserved by LTB (lab_* names the lab's group)")
        elif group in nodes or group.replace("-", "_") in nodes:
            p.add(gwhere, f"group {group!r} has the name of a node")
    for path, content in spec.files.items():
        if _check_file_path(path, place(where, "files", path), p):
            _check_file_content(content, place(where, "files", path), p)


def _check_interface_count(interfaces: dict[str, _NodeInterfaces], p: _Problems) -> None:
    for node, node_ifs in interfaces.items():
        if len(node_ifs.declared) > MAX_INTERFACES_PER_NODE:
            p.add(
                place("nodes", node, "interfaces"),
                f"the node has {len(node_ifs.declared)} interfaces with those named in links: "
                f"a node has at most {MAX_INTERFACES_PER_NODE}",
            )


def _resolve_links(
    shapes: _Shapes, interfaces: dict[str, _NodeInterfaces], p: _Problems
) -> dict[tuple[str, str], int]:
    """Give every linked interface its link's VLAN; interfaces named only in links are added."""
    vlans: dict[tuple[str, str], int] = {}
    used_by: dict[tuple[str, str], int] = {}
    for index, link in enumerate(shapes.links):
        if link is None:
            continue
        vlan = FIRST_LINK_VLAN + index  # MAX_LINKS keeps it a VLAN (at most 4094)
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
    """Within a segment (link): no address twice, one subnet per IP version. Across segments
    an address used again or an overlapping subnet is a warning: VRFs, NAT and tenants with
    the same address plan need them. Nothing overlaps the management subnet."""
    on_segment: dict[tuple[Any, Any], str] = {}  # (segment, ip) -> place
    first_use: dict[Any, str] = {}  # ip -> place
    segments: dict[Any, dict[int, tuple[Any, str]]] = {}  # segment -> version -> (net, place)
    for node, node_ifs in interfaces.items():
        for if_name, addresses in node_ifs.declared.items():
            segment = vlans.get((node, if_name), ("unlinked", node, if_name))
            for address in addresses:
                if address is None:
                    continue
                where = place(node_ifs.places[if_name], f"ipv{address.version}")
                if (segment, address.ip) in on_segment:
                    other = on_segment[(segment, address.ip)]
                    p.add(where, f"address {address.ip} is also used at {other}")
                    continue
                on_segment[(segment, address.ip)] = where
                if mgmt_subnet is not None and address.network.overlaps(mgmt_subnet):
                    p.add(where, f"{address} overlaps the management subnet {mgmt_subnet}")
                    continue
                known = segments.setdefault(segment, {})
                if address.version in known and known[address.version][0] != address.network:
                    network, other = known[address.version]
                    p.add(where, f"{address} is not in the subnet {network} of its link ({other})")
                    continue
                known.setdefault(address.version, (address.network, where))
                first = first_use.setdefault(address.ip, where)
                if first != where:
                    p.warn(where, f"address {address.ip} is also used at {first}, on another link")
    _check_segment_overlaps(segments, p)


def _check_segment_overlaps(segments: dict[Any, dict[int, tuple[Any, str]]], p: _Problems):
    """Warn at each segment subnet that overlaps one of an earlier segment, naming the first.

    Subnets overlap only when one holds the other, so a sweep over the sorted distinct subnets
    with a stack of those holding the current one finds every pair without comparing all."""
    entries = [entry for by_version in segments.values() for entry in by_version.values()]
    first_of: dict[Any, int] = {}  # subnet -> index of its first entry
    partner: dict[int, int] = {}  # entry index -> the earliest entry it overlaps
    for i, (network, _) in enumerate(entries):
        if first_of.setdefault(network, i) != i:
            partner[i] = first_of[network]
    holding: list[tuple[Any, int]] = []
    for network, i in sorted(
        first_of.items(),
        key=lambda item: (item[0].version, int(item[0].network_address), item[0].prefixlen),
    ):
        while holding and not (
            holding[-1][0].version == network.version and network.subnet_of(holding[-1][0])
        ):
            holding.pop()
        for _, j in holding:
            later, earlier = max(i, j), min(i, j)
            partner[later] = min(partner.get(later, earlier), earlier)
        holding.append((network, i))
    for i in sorted(partner):
        (network, where), (other_network, other) = entries[i], entries[partner[i]]
        p.warn(where, f"subnet {network} overlaps subnet {other_network} of another link ({other})")


def _build_lab(
    name: str,
    shapes: _Shapes,
    interfaces: dict[str, _NodeInterfaces],
    vlans: dict[tuple[str, str], int],
    mgmt_subnet: IPv4Network,
) -> Lab:
    # The preferred tag; parse_lab applies the lab's allocation when it is given one.
    tag = lab_tag(name)
    nodes = []
    mgmt = mgmt_addresses(mgmt_subnet, len(shapes.nodes))
    for (node_name, spec), mgmt_ipv4 in zip(shapes.nodes.items(), mgmt, strict=True):
        assert spec is not None  # resolve() returns early on any malformed node
        node_ifs = tuple(
            Interface(
                name=if_name,
                host_name=host_interface_name(tag, node_name, if_name),
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
                mgmt_host_name=mgmt_host_interface_name(tag, node_name),
                hypervisor=spec.hypervisor,
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
    return Lab(name, shapes.description, tuple(nodes), links, mgmt_subnet, tag)


# The whole pipeline ---------------------------------------------------------------------------


# Gives a valid lab (named as it prefers) its allocation; the subnet is the topology's own
# mgmt.ipv4_subnet, or None for a default one. Raises AllocationError (ltb.allocation).
Allocate = Callable[[Lab, IPv4Network | None], Allocation]


def parse_lab(text: str, source: str = "<topology>", allocate: Allocate | None = None) -> Lab:
    """Validate a topology given as YAML text; raise TopologyError with every problem.

    Without `allocate` the lab has its preferred tag and default subnet (for validation);
    with it, the names and management addresses of the allocation it is given."""
    problems = _Problems()
    data = read_yaml(text, problems)
    shapes = check_shapes(data, problems) if data is not None or not problems.found else None
    lab = resolve(shapes, problems) if shapes is not None else None
    if problems.found or lab is None:
        raise TopologyError(source, problems.found or [Problem("", "empty topology")])
    if allocate is None:
        return lab
    given = shapes is not None and shapes.mgmt is not None and shapes.mgmt.ipv4_subnet is not None
    try:
        allocation = allocate(lab, lab.mgmt_subnet if given else None)
    except AllocationError as error:
        where = "mgmt.ipv4_subnet" if given else "name"
        raise TopologyError(source, [Problem(where, str(error))]) from None
    return lab.with_allocation(allocation)


def load_lab(path: str | Path, allocate: Allocate | None = None) -> Lab:
    """Read and validate a topology file (see parse_lab for `allocate`)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_TOPOLOGY_BYTES + 1)  # never a huge file into memory
        if len(raw) > MAX_TOPOLOGY_BYTES:
            raise TopologyError(str(path), [TOO_LARGE])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TopologyError(str(path), [Problem("", f"cannot read the file: {error}")]) from None
    return parse_lab(text, str(path), allocate)


def problems_of(text: str) -> list[str]:
    """Every problem of a topology as text, [] when it is valid (for tests and the portal)."""
    try:
        parse_lab(text)
    except TopologyError as error:
        return [str(problem) for problem in error.problems]
    return []
