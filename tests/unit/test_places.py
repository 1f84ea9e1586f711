"""Problems of a topology get the line of their place in the file (ltb.places)."""

from __future__ import annotations

import pytest

from ltb.model import Problem
from ltb.places import problem_lines
from ltb.topology import TopologyError, parse_lab

TOPOLOGY = """\
# a comment
name: lines
defaults: &base
  kind: container
nodes:
  r1:
    interfaces:
      eth1: {ipv4: 10.0.12.1/24}
      eth1.100:
        ipv4: 10.0.99.1/33
    files:
      /etc/frr/frr.conf: |
        hostname r1
  r2:
    <<: *base
    interfaces:
      eth1: {ipv4: 10.0.12.2/24}
links:
  - endpoints: [r1:eth1, r2:eth1]
  - endpoints:
      - r1:eth1.100
      - r9:eth1
"""


def lines_of(text: str) -> dict[str, int | None]:
    with pytest.raises(TopologyError) as raised:
        parse_lab(text)
    problems = raised.value.problems
    return dict(zip((p.place for p in problems), problem_lines(text, problems), strict=True))


def test_problems_of_a_file_get_the_lines_of_their_places():
    lines = lines_of(TOPOLOGY)
    assert lines["defaults"] == 3
    assert lines["nodes.r1.interfaces.eth1.100.ipv4"] == 10
    assert lines["links[1].endpoints[1]"] == 22


@pytest.mark.parametrize(
    ("place", "line"),
    [
        ("name", 2),
        ("nodes", 5),
        ("nodes.r1.interfaces.eth1.ipv4", 8),
        ("nodes.r1.interfaces.eth1.100", 9),
        ("nodes.r1.files./etc/frr/frr.conf", 12),
        ("nodes.r2.kind", 4),  # merged in from the anchor: the line where it is written
        ("nodes.r2.image", 14),  # a key that is missing: its parent's line
        ("links[0].endpoints[1]", 19),
        ("links[1].endpoints[0]", 21),
        ("links[7]", 18),
        ("line 6", 6),
        ("", None),
    ],
)
def test_each_kind_of_place_maps_to_its_line(place, line):
    assert problem_lines(TOPOLOGY, [Problem(place, "x")]) == [line]


def test_yaml_syntax_errors_keep_the_line_the_parser_names():
    text = "name: bad\nnodes:\n  r1: {kind: container\nlinks: []\n"
    lines = lines_of(text)
    assert list(lines.values()) == [4]


def test_duplicate_keys_are_reported_at_their_second_line():
    text = "name: dup\nnodes:\n  r1: {}\n  r1: {}\n"
    assert lines_of(text) == {"line 4": 4}


def test_keys_with_newlines_are_found_by_their_quoted_spelling():
    text = 'name: nl\nnodes:\n  "r\\n1": {}\n'
    lines = lines_of(text)
    assert lines == {"nodes.'r\\n1'": 3}


def test_a_file_too_large_to_read_has_no_line():
    text = "name: big\n" + "#" * (1024**2 + 1)
    assert set(lines_of(text).values()) == {None}
