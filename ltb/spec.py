"""The topology file as written (format v1): shapes and types only.

These pydantic models check what each part of a file looks like; they do not relate parts to
each other. `ltb.topology` validates each part with them, then resolves the parts into the one
lab model (`ltb.model`). The JSON Schema for editors is generated from `TopologySpec`.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

MEMORY_PATTERN = r"^([0-9]+)(B|K|KB|KiB|M|MB|MiB|G|GB|GiB)$"
MEMORY_UNITS = {
    "B": 1,
    "K": 1024,
    "KiB": 1024,
    "KB": 1000,
    "M": 1024**2,
    "MiB": 1024**2,
    "MB": 1000**2,
    "G": 1024**3,
    "GiB": 1024**3,
    "GB": 1000**3,
}
MIN_MEMORY = 6 * 1024**2  # Docker refuses less

# Bounds of one lab, so that no topology can make the platform build more than a lab needs.
# docs/topology.md#bounds lists them; ltb.topology reports each with its place.
MAX_TOPOLOGY_BYTES = 1024**2  # the topology file as written
# YAML values once aliases and merges are expanded: a small file must not become a huge lab.
MAX_YAML_VALUES = 100_000
MAX_NODES = 250  # a default management /24 has room for 253
MAX_LINKS = 1000
MAX_INTERFACES_PER_NODE = 64  # lab interfaces, with those named only in links
MAX_GROUPS_PER_NODE = 32
MAX_FILES_PER_NODE = 64
MAX_FILE_BYTES = 256 * 1024  # one startup file, UTF-8
MAX_LAB_FILE_BYTES = 4 * 1024**2  # every startup file of every node together
MAX_CPUS = 64
MAX_MEMORY = 64 * 1024**3


def memory_bytes(text: str) -> int:
    """'256MiB' -> 268435456; the text must match MEMORY_PATTERN."""
    match = re.fullmatch(MEMORY_PATTERN, text)
    if match is None:
        raise ValueError(f"{text!r} is not a memory size (e.g. 256MiB, 1GiB)")
    return int(match.group(1)) * MEMORY_UNITS[match.group(2)]


class _Strict(BaseModel):
    # A typo in a key must not pass silently; and "1" is not a number of CPUs.
    model_config = ConfigDict(extra="forbid", strict=True)


class InterfaceSpec(_Strict):
    ipv4: str | None = Field(None, description="IPv4 address with prefix, e.g. 10.0.12.1/24")
    ipv6: str | None = Field(None, description="IPv6 address with prefix, e.g. 2001:db8::1/64")


class ResourcesSpec(_Strict):
    cpus: float | None = Field(None, gt=0, le=MAX_CPUS, description="CPU share, e.g. 0.5 or 2")
    memory: str | None = Field(
        None, pattern=MEMORY_PATTERN, description="Memory limit with a unit, e.g. 256MiB, 1GiB"
    )

    @field_validator("memory")
    @classmethod
    def _within_bounds(cls, memory: str | None) -> str | None:
        if memory is not None and memory_bytes(memory) < MIN_MEMORY:
            raise ValueError(f"{memory!r} is less than the 6MiB a container needs")
        if memory is not None and memory_bytes(memory) > MAX_MEMORY:
            raise ValueError(
                f"{memory!r} is more than the {MAX_MEMORY // 1024**3}GiB a node may have"
            )
        return memory


class NodeSpec(_Strict):
    kind: str = Field("container", description="Node kind: container or vm")
    hypervisor: str | None = Field(
        None,
        description="Hypervisor (an inventory host of group hypervisors) that runs the node; "
        "the lab's hypervisor if unset",
    )
    image: str | None = Field(None, description="Image; the platform's default node image if unset")
    groups: list[str] = Field(
        default_factory=list,
        max_length=MAX_GROUPS_PER_NODE,
        description="Ansible groups of the node",
    )
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    interfaces: dict[str, InterfaceSpec | None] = Field(
        default_factory=dict,
        max_length=MAX_INTERFACES_PER_NODE,
        description="Lab interfaces by name (eth0 is management)",
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        max_length=MAX_FILES_PER_NODE,
        description="Startup files: absolute path in the node -> content, in place before start",
    )


class LinkSpec(_Strict):
    endpoints: list[str] = Field(
        min_length=2,
        description="node:interface pairs; two make a point-to-point link, more a shared segment",
    )


class ManagementSpec(_Strict):
    ipv4_subnet: str | None = Field(
        None, description="Management subnet of the lab, e.g. 172.20.5.0/24 (default: derived)"
    )


class TopologySpec(_Strict):
    """A whole topology file. Used for the JSON Schema; `ltb.topology` validates part by part."""

    model_config = ConfigDict(title="LTB lab topology (v1)")

    name: str = Field(description="Lab name: lower-case letters, digits and '-', at most 32")
    description: str | None = None
    mgmt: ManagementSpec = Field(default_factory=ManagementSpec)
    nodes: dict[str, NodeSpec] = Field(min_length=1, max_length=MAX_NODES)
    links: list[LinkSpec] = Field(default_factory=list, max_length=MAX_LINKS)


TOP_LEVEL_KEYS = tuple(TopologySpec.model_fields)
