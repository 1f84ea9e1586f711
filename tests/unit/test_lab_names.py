"""Portal labs get platform-unique names; the topology carries the new name, nothing else
changes."""

from pathlib import Path

from ltb.topology import parse_lab
from store.labs import renamed_topology

EXAMPLE = (Path(__file__).parents[2] / "examples" / "ospf-triangle.lab.yml").read_text()


def test_renamed_topology_changes_only_the_name_line():
    renamed = renamed_topology(EXAMPLE, "ospf-triangle-0a1b2c")
    assert parse_lab(renamed).name == "ospf-triangle-0a1b2c"
    changed = [
        (a, b) for a, b in zip(EXAMPLE.splitlines(), renamed.splitlines(), strict=True) if a != b
    ]
    assert changed == [("name: ospf-triangle", "name: ospf-triangle-0a1b2c")]


def test_renamed_topology_of_a_flow_style_file():
    assert parse_lab(renamed_topology("{name: a, nodes: {r1: {}}}", "b-1")).name == "b-1"


def test_a_nested_name_key_is_not_the_labs_name():
    text = "name: lab\nnodes:\n  r1:\n    files: {/etc/x: 'name: keep'}\n"
    assert "name: keep" in renamed_topology(text, "other")
