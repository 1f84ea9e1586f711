"""A VM node's state read from the real libvirt (ltb.node_state): a domain named like a lab's
VM node, defined and started paused (no guest runs, so it costs nothing), is `stopped`, then
`paused`; a node without a domain is `missing`. Containers are read in
tests/ui/test_node_states_and_hypervisors.py on a deployed lab."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from ltb import node_state
from ltb.deployed import DEFAULT_LIBVIRT_URI
from ltb.model import container_name

pytestmark = pytest.mark.integration

DOMAIN = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
<os><type arch='x86_64'>hvm</type></os></domain>"""


def virsh(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["virsh", "-c", DEFAULT_LIBVIRT_URI, *args],
        check=True,
        capture_output=True,
        text=True,
        **kwargs,
    )


def test_a_vm_nodes_state_is_its_domains_and_a_node_without_one_is_missing(tmp_path):
    lab = f"ue-{uuid.uuid4().hex[:6]}"
    domain = container_name(lab, "vm")
    xml = tmp_path / "domain.xml"
    xml.write_text(DOMAIN.format(name=domain))
    virsh("define", str(xml))
    try:
        node_state.DOMAINS.forget()
        kinds = {"vm": "vm", "gone": "vm"}
        assert node_state.node_states(lab, kinds) == {"vm": "stopped", "gone": "missing"}
        virsh("start", "--paused", domain)
        node_state.DOMAINS.forget()
        assert node_state.node_states(lab, kinds)["vm"] == "paused"
    finally:
        subprocess.run(["virsh", "-c", DEFAULT_LIBVIRT_URI, "destroy", domain], capture_output=True)
        virsh("undefine", domain)
