"""Line numbers of the places that problems of a topology name.

`ltb.topology` names where a problem is as a path into the file (`nodes.r1.interfaces.eth1.ipv4`,
`links[2].endpoints[1]`, or `line 7` for YAML errors). An editor needs the line: `problem_lines`
finds it by walking the composed YAML node tree (nodes keep their marks) along that path.
Keys may contain dots (`eth1.100`, `/etc/frr/frr.conf`), so a path is matched key by key
against the keys the file really has, never split on dots.
"""

from __future__ import annotations

import re

import yaml

from ltb.model import Problem
from ltb.spec import MAX_TOPOLOGY_BYTES

MERGE_TAG = "tag:yaml.org,2002:merge"
LINE_PLACE = re.compile(r"line (\d+)")
INDEX = re.compile(r"\[(\d+)\]")


def compose(text: str) -> yaml.Node | None:
    """The file's node tree (aliases share nodes, nothing is expanded), or None when it is
    not YAML or too large to be a topology."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPOLOGY_BYTES:
        return None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return None


def problem_lines(text: str, problems: list[Problem]) -> list[int | None]:
    """The 1-based line of each problem's place in `text` (None: the whole file)."""
    root = compose(text) if any(not LINE_PLACE.fullmatch(p.place) for p in problems) else None
    return [line_of(root, problem.place) for problem in problems]


def line_of(root: yaml.Node | None, place: str) -> int | None:
    """The line of the deepest part of `place` that the file has: a key's line for a mapping
    entry, an item's line for a list item; a missing key is reported at its parent."""
    given = LINE_PLACE.fullmatch(place)
    if given:
        return int(given.group(1))
    if root is None or not place:
        return None
    node, line, rest = root, None, place
    while rest:
        step = _step(node, rest)
        if step is None:
            break
        node, line, rest = step
    return line


def _step(node: yaml.Node, rest: str) -> tuple[yaml.Node, int, str] | None:
    """Follow the first part of `rest` from `node`: (child, its line, what remains)."""
    rest = rest.removeprefix(".")
    index = INDEX.match(rest)
    if index:
        if not isinstance(node, yaml.SequenceNode) or int(index.group(1)) >= len(node.value):
            return None
        item = node.value[int(index.group(1))]
        return item, item.start_mark.line + 1, rest[index.end() :]
    if not isinstance(node, yaml.MappingNode):
        return None
    # The longest key that the place starts with wins: `eth1.100` before `eth1`.
    best: tuple[int, yaml.Node, yaml.Node] | None = None
    for key, value in _entries(node):
        for spelling in (key.value, repr(key.value)):
            if _starts_part(rest, spelling) and (best is None or len(spelling) > best[0]):
                best = (len(spelling), key, value)
    if best is None:
        return None
    length, key, value = best
    return value, key.start_mark.line + 1, rest[length:]


def _starts_part(rest: str, key: str) -> bool:
    return rest.startswith(key) and (len(rest) == len(key) or rest[len(key)] in ".[")


def _entries(node: yaml.MappingNode, depth: int = 0) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
    """The scalar-keyed entries of a mapping, its own first, then those merged in (`<<:`)."""
    own, merged = [], []
    for key, value in node.value:
        if key.tag == MERGE_TAG and depth < 10:
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:
                if isinstance(source, yaml.MappingNode):
                    merged.extend(_entries(source, depth + 1))
        elif isinstance(key, yaml.ScalarNode):
            own.append((key, value))
    return own + merged
