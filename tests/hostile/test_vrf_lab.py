"""A VRF-lite lab as users write it (../shared/labs/vrf-lite.lab.yml): two customers with the
same address plan behind one provider edge. Their subnets and even addresses repeat across
links, which the topology allows (warnings). The provider edge is a VM node, whose own
kernel has the VRF module (a container shares the hypervisor's, which may lack it).

Should hold: ce-a1 reaches ce-a2 and ce-b1 reaches ce-b2 through pe; customer A never
reaches customer B although both use 192.168.1.0/24 and 192.168.2.0/24."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ltb.topology import load_lab
from tests.integration.conftest import (
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    wait_until,
)

pytestmark = pytest.mark.integration

SHARED_LAB = Path(__file__).parents[2].parent / "shared" / "labs" / "vrf-lite.lab.yml"
# The VM image of the provider edge; the platform's default unless a test run names another.
PE_IMAGE = os.environ.get("LTB_TEST_VRF_IMAGE")


def vrf_lab_text() -> str:
    text = SHARED_LAB.read_text().replace("name: vrf-lite", "name: h-vrf-lite")
    image = f"\n    image: {PE_IMAGE}" if PE_IMAGE else ""
    return text.replace("  pe:\n", f"  pe:\n    kind: vm{image}\n", 1)


def echoes_answered(lab: RunningLab, node: str) -> int:
    """ICMP echo requests the node has received (/proc/net/snmp, Icmp InEchos)."""
    code, output = lab.exec(node, "cat", "/proc/net/snmp")
    assert code == 0, output
    names, values = (line.split()[1:] for line in output.splitlines() if line.startswith("Icmp:"))
    return int(values[names.index("InEchos")])


@pytest.fixture(scope="module")
def vrf_lab(tmp_path_factory, docker_client):
    if not SHARED_LAB.exists():
        pytest.fail(f"{SHARED_LAB} is missing: CI lays ../shared beside the checkout")
    path = tmp_path_factory.mktemp("vrf") / "h-vrf-lite.lab.yml"
    path.write_text(vrf_lab_text())
    try:
        deploy(path)
        yield RunningLab(path, docker_client)
    finally:
        remove(path)
        assert_no_leftovers("h-vrf-lite")


def test_the_vrf_lab_validates_with_warnings_for_its_repeated_plan(tmp_path):
    path = tmp_path / "h-vrf-lite.lab.yml"
    path.write_text(vrf_lab_text())
    warnings = [str(w) for w in load_lab(path).warnings]
    assert any("192.168.1.1" in w for w in warnings), warnings


def test_each_customer_reaches_its_own_site_and_never_the_other_customers(vrf_lab):
    for source, own, other in (("ce-a1", "ce-a2", "ce-b2"), ("ce-b1", "ce-b2", "ce-a2")):
        before = {node: echoes_answered(vrf_lab, node) for node in (own, other)}
        # The VM's startup script makes the VRFs once it has booted.
        assert wait_until(lambda s=source: vrf_lab.ping(s, "192.168.2.10"), timeout=120), (
            f"{source} does not reach 192.168.2.10 through pe"
        )
        assert echoes_answered(vrf_lab, own) > before[own], f"{own} was not the one answering"
        assert echoes_answered(vrf_lab, other) == before[other], f"{source} reached {other}"
