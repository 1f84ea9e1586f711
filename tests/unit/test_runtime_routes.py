"""Which routes a snapshot keeps, and the `ip -batch` commands that replay them."""

from __future__ import annotations

from ltb.runtime import route_commands

# `ip -N -j route show table all` in a node (iproute2 6.1), trimmed to one of each kind.
SHOWN = [
    {
        "dst": "10.98.0.0/16",
        "gateway": "10.9.0.2",
        "dev": "d0",
        "table": "100",
        "protocol": "4",
        "metric": 5,
        "flags": [],
    },
    {
        "dst": "10.9.0.0/24",
        "dev": "d0",
        "protocol": "2",
        "scope": "253",
        "prefsrc": "10.9.0.1",
        "flags": [],
    },
    {"type": "6", "dst": "10.97.0.0/16", "flags": []},
    {"dst": "10.99.0.0/16", "gateway": "10.9.0.2", "dev": "d0", "flags": []},
    {
        "type": "2",
        "dst": "10.9.0.1",
        "dev": "d0",
        "table": "255",
        "protocol": "2",
        "scope": "254",
        "prefsrc": "10.9.0.1",
        "flags": [],
    },
    {
        "dst": "10.255.0.2",
        "gateway": "10.0.12.2",
        "dev": "eth1",
        "protocol": "188",
        "metric": 20,
        "flags": [],
    },
    {"dst": "default", "gateway": "10.9.0.254", "dev": "d0", "flags": ["onlink"]},
    {
        "dst": "10.50.0.0/16",
        "flags": [],
        "nexthops": [
            {"gateway": "10.9.0.2", "dev": "d0", "weight": 1, "flags": []},
            {"gateway": "10.9.0.3", "dev": "d0", "weight": 2, "flags": []},
        ],
    },
]


def test_routes_set_by_hand_are_kept_and_replayed_as_they_were():
    assert route_commands(SHOWN) == [
        "route replace unicast 10.98.0.0/16 via 10.9.0.2 dev d0 table 100 metric 5 proto 4",
        "route replace blackhole 10.97.0.0/16 proto 3",
        "route replace unicast 10.99.0.0/16 via 10.9.0.2 dev d0 proto 3",
        "route replace unicast default via 10.9.0.254 dev d0 onlink proto 3",
        "route replace unicast 10.50.0.0/16 proto 3 nexthop via 10.9.0.2 dev d0 weight 1 "
        "nexthop via 10.9.0.3 dev d0 weight 2",
    ]


def test_connected_local_and_daemon_routes_are_left_to_addresses_and_frr():
    kept = " ".join(route_commands(SHOWN))
    assert "10.9.0.0/24" not in kept  # connected: made again by the address
    assert "10.9.0.1 " not in kept  # local table
    assert "10.255.0.2" not in kept  # OSPF: FRR installs it again
