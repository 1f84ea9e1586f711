"""Bounds of a topology (ltb.spec): each is refused with its place and its limit, the lab at
the bound passes, and no file, however small or hostile, makes the validator build more."""

import os
import tracemalloc
from pathlib import Path

import pytest

from ltb.spec import (
    MAX_FILE_BYTES,
    MAX_FILES_PER_NODE,
    MAX_INTERFACES_PER_NODE,
    MAX_LAB_FILE_BYTES,
    MAX_LINKS,
    MAX_NODES,
    MAX_TOPOLOGY_BYTES,
    MAX_YAML_VALUES,
)
from ltb.topology import TopologyError, load_lab, parse_lab, problems_of

TOO_LARGE = "the file is larger than 1048576 bytes (1 MiB), the most a topology may have"


def bytes_read() -> int:
    """Bytes this process has read through read() calls, as the kernel counts them."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def nodes_text(count: int, body: str = "{}") -> str:
    return "".join(f"  n{i}: {body}\n" for i in range(count))


def test_a_lab_at_every_bound_validates():
    files = ", ".join(f"/etc/f{i}: x" for i in range(MAX_FILES_PER_NODE))
    interfaces = ", ".join(f"e{i}: {{}}" for i in range(MAX_INTERFACES_PER_NODE))
    big = "x" * (MAX_FILE_BYTES - 1) + "\n"
    text = (
        f"name: t\nnodes:\n  big: {{files: {{/etc/big: '{big}'}}}}\n"
        f"  wide: {{files: {{{files}}}, interfaces: {{{interfaces}}},"
        " resources: {cpus: 64, memory: 64GiB}}\n"
        + nodes_text(MAX_NODES - 2)
        + "links:\n"
        + "".join(f"  - endpoints: [n{i}:eth1, n{i + 1}:eth1]\n" for i in range(0, 240, 2))
    )
    lab = parse_lab(text)
    assert len(lab.nodes) == MAX_NODES
    assert lab.node("wide").memory_bytes == 64 * 1024**3


def test_more_nodes_than_the_bound_are_refused_before_any_node_is_checked():
    text = f"name: t\nnodes:\n{nodes_text(MAX_NODES + 1, '{kind: router}')}"
    assert problems_of(text) == [f"nodes: the lab has {MAX_NODES + 1} nodes: a lab has at most 250"]


def test_more_links_than_the_bound_are_refused():
    links = "".join(f"  - endpoints: [a:e{i}, b:e{i}]\n" for i in range(MAX_LINKS + 1))
    assert problems_of(f"name: t\nnodes: {{a: {{}}, b: {{}}}}\nlinks:\n{links}") == [
        f"links: the lab has {MAX_LINKS + 1} links: a lab has at most 1000"
    ]


def test_interfaces_per_node_count_those_named_only_in_links():
    declared = ", ".join(f"e{i}: {{}}" for i in range(MAX_INTERFACES_PER_NODE + 1))
    linked = "".join(f"  - endpoints: [a:x{i}, b:x{i}]\n" for i in range(40))
    declared_40 = ", ".join(f"e{i}: {{}}" for i in range(40))
    assert problems_of(f"name: t\nnodes: {{a: {{interfaces: {{{declared}}}}}}}\n") == [
        "nodes.a.interfaces: the node has 65 interfaces: a node has at most 64"
    ]
    assert problems_of(
        f"name: t\nnodes: {{a: {{interfaces: {{{declared_40}}}}}, b: {{}}}}\nlinks:\n{linked}"
    ) == [
        "nodes.a.interfaces: the node has 80 interfaces with those named in links: "
        "a node has at most 64"
    ]


def test_files_per_node_and_bytes_per_file_are_bounded():
    files = ", ".join(f"/etc/f{i}: x" for i in range(MAX_FILES_PER_NODE + 1))
    assert problems_of(f"name: t\nnodes: {{a: {{files: {{{files}}}}}}}\n") == [
        "nodes.a.files: the node has 65 startup files: a node has at most 64"
    ]
    big = "é" * (MAX_FILE_BYTES // 2) + "x"  # characters are not bytes
    assert problems_of(f"name: t\nnodes: {{a: {{files: {{/etc/big: '{big}'}}}}}}\n") == [
        f"nodes.a.files./etc/big: startup file has {MAX_FILE_BYTES + 1} bytes: "
        "a startup file has at most 262144 (256 KiB)"
    ]


def test_startup_files_of_a_whole_lab_are_bounded_also_through_aliases():
    content = "x" * (200 * 1024)
    uses = MAX_LAB_FILE_BYTES // len(content) + 1
    text = f"name: t\nx-big: &big '{content}'\nnodes:\n" + nodes_text(
        uses, "{files: {/etc/big: *big}}"
    )
    assert problems_of(text) == [
        f"nodes: the startup files of all nodes have {uses * len(content)} bytes together: "
        "a lab has at most 4194304 (4 MiB)"
    ]


def test_startup_file_content_must_be_text():
    assert problems_of('name: t\nnodes: {a: {files: {/etc/x: "\\ud800"}}}\n') == [
        "nodes.a.files./etc/x: startup file content is not valid Unicode text"
    ]


@pytest.mark.parametrize(
    ("resources", "error"),
    [
        (
            "{memory: 65GiB}",
            "nodes.a.resources.memory: '65GiB' is more than the 64GiB a node may have",
        ),
        (
            "{memory: 70000MB}",
            "nodes.a.resources.memory: '70000MB' is more than the 64GiB a node may have",
        ),
        ("{cpus: 65}", "nodes.a.resources.cpus: input should be less than or equal to 64"),
    ],
)
def test_memory_and_cpus_of_a_node_are_bounded(resources, error):
    assert problems_of(f"name: t\nnodes: {{a: {{resources: {resources}}}}}\n") == [error]


def test_a_file_over_the_size_bound_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "huge.lab.yml"
    with path.open("wb") as file:
        file.truncate(64 * 1024**3)  # sparse: 64 GiB that take no space
    read_before = bytes_read()
    with pytest.raises(TopologyError) as error:
        load_lab(path)
    # Counted by the kernel (not timed): the bound and one byte more are read, not 64 GiB.
    assert bytes_read() - read_before < 2 * 1024**2
    assert [str(p) for p in error.value.problems] == [TOO_LARGE]


def test_a_file_that_never_ends_is_refused():
    with pytest.raises(TopologyError) as error:
        load_lab(os.devnull.replace("null", "zero"))
    assert [str(p) for p in error.value.problems] == [TOO_LARGE]


def test_text_over_the_size_bound_is_refused():
    text = "name: t\nnodes: {a: {}}\n# " + "x" * MAX_TOPOLOGY_BYTES
    assert problems_of(text) == [TOO_LARGE]


def alias_bomb() -> str:
    """About 50 KB that would be 600 nodes with 1.8 million startup files."""
    files = "".join(f"  /f/{i}: x\n" for i in range(3000))
    return f"name: bomb\nx-f: &f\n{files}nodes:\n{nodes_text(600, '{files: *f}')}"


def test_an_alias_bomb_is_refused_in_little_memory():
    text = alias_bomb()
    assert len(text) < 100_000
    tracemalloc.start()
    try:
        problems = problems_of(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert problems == [
        f"line 3004: the topology has more than {MAX_YAML_VALUES} values once its aliases are "
        f"expanded: at most {MAX_YAML_VALUES} are allowed (each use of an alias counts)"
    ]
    assert peak < 64 * 1024**2


def test_nested_aliases_doubling_at_each_level_are_refused():
    levels = ["x-l0: &l0 [a, b]"] + [f"x-l{i}: &l{i} [*l{i - 1}, *l{i - 1}]" for i in range(1, 40)]
    text = "name: t\n" + "\n".join(levels) + "\nnodes: {a: {}}\n"
    # Expanded, it would be 2**40 values: an answer at all shows the count stops early.
    assert "values once its aliases are expanded" in problems_of(text)[0]


def test_merges_that_repeat_an_anchor_count_each_time():
    levels = ["x-l0: &l0 {a: 1}"] + [
        f"x-l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}]}}" for i in range(1, 40)
    ]
    text = "name: t\n" + "\n".join(levels) + "\nnodes: {a: {}}\n"
    assert "values once its aliases are expanded" in problems_of(text)[0]


def test_anchors_and_merges_of_an_ordinary_lab_still_work():
    text = (
        "name: t\nx-router: &router {groups: [routers], resources: {cpus: 1, memory: 256MiB},"
        ' files: {/etc/frr/daemons: "ospfd=yes\\n", /etc/motd: hi}}\nnodes:\n'
        + nodes_text(MAX_NODES, "{<<: *router, groups: [routers, core]}")
    )
    lab = parse_lab(text)
    assert len(lab.nodes) == MAX_NODES
    assert lab.node("n7").groups == ("routers", "core")
    assert dict(lab.node("n7").files)["/etc/frr/daemons"] == "ospfd=yes\n"


def test_an_alias_that_holds_itself_is_refused():
    assert problems_of("name: t\nx-a: &a [1, *a]\nnodes: {a: {}}\n") == [
        "line 2: a YAML alias refers to a value that holds it"
    ]


def test_yaml_nested_too_deeply_is_refused():
    text = "name: t\nx-a: " + "[" * 5000 + "]" * 5000 + "\nnodes: {a: {}}\n"
    assert problems_of(text) == ["not valid YAML here: it is nested too deeply"]


@pytest.mark.parametrize(
    "subnet",
    [
        "8.8.8.0/24",
        "127.0.0.0/24",
        "169.254.1.0/24",
        "224.0.0.0/24",
        "100.64.0.0/24",
        "0.0.0.0/0",
        "172.32.0.0/24",
        "192.169.0.0/24",
        "8.0.0.0/7",
    ],
)
def test_a_management_subnet_that_is_not_private_is_refused(subnet):
    assert problems_of(f"name: t\nmgmt: {{ipv4_subnet: {subnet}}}\nnodes: {{a: {{}}}}\n") == [
        f"mgmt.ipv4_subnet: {subnet} is not a private subnet: use one inside 10.0.0.0/8, "
        "172.16.0.0/12, 192.168.0.0/16 (RFC 1918)"
    ]


@pytest.mark.parametrize("subnet", ["10.255.0.0/24", "172.31.9.0/24", "192.168.0.0/16"])
def test_a_private_management_subnet_is_taken(subnet):
    lab = parse_lab(f"name: t\nmgmt: {{ipv4_subnet: {subnet}}}\nnodes: {{a: {{}}}}\n")
    assert str(lab.mgmt_subnet) == subnet
