"""The inventory example of the separate host says what tests/separate_host/host.py makes."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.separate_host.host import GATEWAY, SeparateHost


def test_the_inventory_example_is_the_entry_host_py_gives_for_sh1():
    example = yaml.safe_load((Path(__file__).parent / "hosts.example.yaml").read_text())
    host = SeparateHost("sh1", 2)
    assert example == {
        "hypervisors": {
            "hosts": {
                "localhost": {"ltb_tunnel_address": str(GATEWAY)},
                host.name: host.inventory_host(),
            }
        },
    }
