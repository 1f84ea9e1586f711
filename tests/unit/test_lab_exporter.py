"""The lab exporter's reading of its sources (roles/platform_metrics/files): virsh domstats,
LTB's libvirt metadata, /proc/<pid>/cgroup and net/dev, and the text it serves. The live path
(a real container scraped by a real Prometheus) is tests/ui/test_usage.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "roles/platform_metrics/files/ltb-lab-exporter.py"
_spec = importlib.util.spec_from_file_location("ltb_lab_exporter", SCRIPT)
exporter = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = exporter  # dataclasses look their module up there
_spec.loader.exec_module(exporter)

DOMSTATS = """\
Domain: 'ltb-vrf.pe'
  state.state=1
  cpu.time=15382001000
  balloon.current=524288
  balloon.rss=521364
  net.count=2
  net.0.name=m8c5ca75bce98f7
  net.0.rx.bytes=7831
  net.0.tx.bytes=7528
  net.1.name=v8c5ca77c95626b
  net.1.rx.bytes=656
  net.1.tx.bytes=826

Domain: 'someone-else'
  cpu.time=1
"""


def test_a_vms_cpu_memory_and_interfaces_come_from_its_domstats():
    domains = exporter.parse_domstats(DOMSTATS)
    assert set(domains) == {"ltb-vrf.pe", "someone-else"}
    cpu, memory, network = exporter.vm_usage_of(domains["ltb-vrf.pe"])
    assert cpu == 15.382001
    assert memory == 521364 * 1024
    assert network == {"m8c5ca75bce98f7": (7831, 7528), "v8c5ca77c95626b": (656, 826)}


def test_a_domain_without_ltbs_metadata_is_nobodys_lab():
    element = '<node xmlns="https://ltb.invalid/libvirt/1" lab="vrf" node="pe"/>'
    assert exporter.parse_ltb_metadata(element) == ("vrf", "pe")
    assert exporter.parse_ltb_metadata('<node lab="vrf"/>') is None
    assert exporter.parse_ltb_metadata("error: no metadata") is None


def test_cgroup_paths_of_v1_and_v2_lines():
    text = "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/x\n"
    assert exporter.parse_proc_cgroup(text) == {
        "memory": "/docker/abc",
        "cpu": "/docker/abc",
        "cpuacct": "/docker/abc",
        "systemd": "/docker/abc",
        "": "/x",
    }


def test_network_bytes_of_a_node_leave_out_loopback():
    text = (
        "Inter-|   Receive  |  Transmit\n face |bytes packets|bytes\n"
        "    lo:     100       1    0    0    0     0          0         0      100 1 0 0 0 0 0 0\n"
        "  eth1:    1386      15    0    0    0     0          0         0      746 9 0 0 0 0 0 0\n"
    )
    assert exporter.parse_net_dev(text) == {"eth1": (1386, 746)}


def test_the_exposition_labels_each_node_and_escapes_label_values():
    node = exporter.NodeUsage('la"b', "n1", "container", 1.5, 2048, {"eth1": (10, 20)})
    text = exporter.exposition([node], {"docker": 0}, 0.01)
    assert 'ltb_node_cpu_seconds_total{lab="la\\"b",node="n1",kind="container"} 1.500000' in text
    assert 'ltb_node_memory_bytes{lab="la\\"b",node="n1",kind="container"} 2048' in text
    assert (
        'ltb_node_network_transmit_bytes_total{lab="la\\"b",node="n1",kind="container",'
        'interface="eth1"} 20' in text
    )
    assert "# TYPE ltb_node_cpu_seconds_total counter" in text


def test_the_exporter_finds_containers_by_the_labels_the_container_role_gives_them():
    module = (SCRIPT.parents[3] / "plugins/module_utils/ltb_containers.py").read_text()
    assert '"Labels": {"ltb.lab": params["lab"], "ltb.node": node["name"]}' in module
    assert '"label":["ltb.lab","ltb.node"]' in SCRIPT.read_text()
