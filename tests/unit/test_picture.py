"""The topology picture (ltb.picture): Graphviz SVG of the lab model, labels as data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

from ltb.model import Endpoint
from ltb.picture import topology_svg
from ltb.topology import parse_lab

SVG = "{http://www.w3.org/2000/svg}"
TOPOLOGY = """\
name: picture
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.0.12.1/24, ipv6: "2001:db8:12::1/64"}
  r2:
    kind: container
    interfaces:
      eth1: {ipv4: 10.0.12.2/24}
  r3: {}
links:
  - endpoints: [r1:eth1, r2:eth1]
  - endpoints: [r1:eth2, r2:eth2, r3:eth2]
"""


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # noqa: S314 - our own Graphviz's output, parsed to check it


def texts(svg: str) -> list[str]:
    return [t.text or "" for t in parse(svg).iter(f"{SVG}text")]


def test_picture_is_svg_with_nodes_interfaces_and_addresses():
    svg = topology_svg(parse_lab(TOPOLOGY))
    shown = texts(svg)
    assert parse(svg).tag == f"{SVG}svg"
    for name in ("picture", "r1", "r2", "r3", "container", "eth1", "eth2"):
        assert name in shown
    assert "10.0.12.1/24" in shown
    assert "2001:db8:12::1/64" in shown
    assert "10.0.12.2/24" in shown


def test_a_shared_segment_is_a_point_joined_to_each_of_its_interfaces():
    root = parse(topology_svg(parse_lab(TOPOLOGY)))
    titles = [t.text for t in root.iter(f"{SVG}title")]
    # Graphviz titles each node with its id and each edge with "tail--head".
    assert "s1" in titles
    assert {"n0--s1", "n1--s1", "n2--s1"} <= set(titles)
    assert "n0--n1" in titles


def test_management_addresses_are_shown_only_when_asked():
    lab = parse_lab(TOPOLOGY)
    address = str(lab.node("r1").mgmt_ipv4.ip)
    assert address not in texts(topology_svg(lab))
    assert address in texts(topology_svg(lab, with_mgmt=True))


def test_hostile_names_are_drawn_as_text_never_as_markup_or_dot():
    lab = parse_lab(TOPOLOGY)
    hostile = '<script>alert("x")</script>\\N\\G&amp;"; a -- b ['
    html = "<b>bold</b>"
    nodes = (replace(lab.nodes[0], name=hostile), replace(lab.nodes[1], name=html), lab.nodes[2])
    links = (
        replace(lab.links[0], endpoints=(Endpoint(hostile, "eth1"), Endpoint(html, "eth1"))),
        lab.links[1],
    )
    svg = topology_svg(replace(lab, name=hostile, nodes=nodes, links=links))
    root = parse(svg)  # still well-formed XML
    shown = texts(svg)
    assert hostile in shown
    assert html in shown
    assert not list(root.iter(f"{SVG}script"))
    assert "<script>" not in svg
    assert "<b>" not in svg
