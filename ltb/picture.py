"""A picture of a lab's topology as SVG, laid out and drawn by Graphviz (`dot`).

Nodes show their name and kind (and management address when the lab has one that is real,
i.e. deployed); a point-to-point link is an edge with the interface name and addresses at
each end; a shared segment is a small point joined to each of its interfaces. Every label is
data: it is escaped for DOT (graphviz.escape: no HTML label, no `\\N`-style sequences; '&' as
`&amp;`, since Graphviz reads entities) and Graphviz escapes it for XML, so a hostile name
shows as text and never becomes markup.

Given the nodes' states (ltb.node_state), each node says its state in words on its last line
and is filled with the state's colour (STATE_FILLS: light fills, so the black text keeps its
contrast); the colour only repeats what the words say.
"""

from __future__ import annotations

from collections.abc import Mapping

import graphviz

from ltb.model import Endpoint, Lab, Node


def _label(*lines: str) -> str:
    # Graphviz reads HTML entities (`&amp;`) in any label: '&' itself must be one.
    lines = tuple(line.replace("&", "&amp;") for line in lines if line)
    return graphviz.nohtml("\\n".join(graphviz.escape(line) for line in lines))


# A node state's fill; states not named here (unknown, and any new one) are white.
STATE_FILLS = {
    "running": "#c8ecd0",
    "starting": "#fff2b3",
    "restarting": "#fff2b3",
    "stopping": "#fff2b3",
    "paused": "#fff2b3",
    "unhealthy": "#ffd0cc",
    "stopped": "#ffd0cc",
    "missing": "#e2e2e2",
}


def _node_label(node: Node, with_mgmt: bool, state: str | None) -> str:
    address = str(node.mgmt_ipv4.ip) if with_mgmt else ""
    return _label(node.name, node.kind, address, f"state: {state}" if state else "")


def _end_label(lab: Lab, endpoint: Endpoint) -> str:
    lines = [endpoint.interface]
    try:
        interface = lab.node(endpoint.node).interface(endpoint.interface)
    except KeyError:
        return _label(*lines)
    lines += [str(address) for address in (interface.ipv4, interface.ipv6) if address]
    return _label(*lines)


def topology_graph(
    lab: Lab, with_mgmt: bool = False, states: Mapping[str, str] | None = None
) -> graphviz.Graph:
    """The lab as a Graphviz graph; `with_mgmt` adds the nodes' management addresses,
    `states` (node name -> state) each node's state, in words and as its fill."""
    graph = graphviz.Graph(
        "lab",
        graph_attr={"label": _label(lab.name), "labelloc": "t", "fontname": "Helvetica"},
        node_attr={"shape": "box", "style": "rounded", "fontname": "Helvetica"},
        edge_attr={"fontname": "Helvetica", "fontsize": "10"},
    )
    # Graphviz IDs are made here, never from names, so a name cannot address another object.
    ids = {node.name: f"n{i}" for i, node in enumerate(lab.nodes)}
    for node in lab.nodes:
        state = (states or {}).get(node.name)
        fill = {"style": "rounded,filled", "fillcolor": STATE_FILLS.get(state, "white")}
        graph.node(ids[node.name], _node_label(node, with_mgmt, state), **(fill if state else {}))
    for link in lab.links:
        ends = [e for e in link.endpoints if e.node in ids]
        if len(ends) == 2 and len(link.endpoints) == 2:
            tail, head = ends
            graph.edge(
                ids[tail.node],
                ids[head.node],
                taillabel=_end_label(lab, tail),
                headlabel=_end_label(lab, head),
            )
            continue
        segment = f"s{link.index}"
        graph.node(segment, _label(""), shape="point", width="0.15", xlabel=f"link {link.index}")
        for end in ends:
            graph.edge(ids[end.node], segment, taillabel=_end_label(lab, end))
    return graph


def topology_svg(lab: Lab, with_mgmt: bool = False, states: Mapping[str, str] | None = None) -> str:
    """The SVG document of the lab's topology picture."""
    return topology_graph(lab, with_mgmt, states).pipe(format="svg", encoding="utf-8")
