"""Hostile topologies: each is refused with its exact error by `python -m ltb validate` and by
the inventory plugin (so by every ansible-playbook run) before anything is allocated or made.
And a lab whose tenants share one address plan deploys, with warnings, each tenant on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltb.snapshot import image_name
from ltb.spec import MAX_TOPOLOGY_BYTES
from tests.integration.conftest import assert_no_leftovers, deploy, remove

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
PLAIN_PATH = (
    "startup file path must be a plain path to a file inside the node "
    "(no '.' or '..' part, no '//', no trailing '/', no control characters)"
)
VM_IMAGE = (
    "is not a VM image name: name a VM image of the hypervisor "
    "(1-64 lower-case letters, digits and '._-'; no '/', '..' or ':')"
)
SNAPSHOT_IMAGE = (
    "is a snapshot image: it serves only the restore of its own lab (playbooks/restore.yml), "
    "never a topology"
)


def alias_bomb() -> str:
    files = "".join(f"  /f/{i}: x\n" for i in range(3000))
    nodes = "".join(f"  n{i}: {{files: *f}}\n" for i in range(600))
    return f"name: b-bomb\nx-f: &f\n{files}nodes:\n{nodes}"


CASES = {
    "names-ending-in-newline": (
        'name: "b-lab\\n"\nnodes:\n  "r1\\n": {groups: ["core\\n"], image: "ltb/node\\n"}\n'
        '  r2: {interfaces: {"eth1\\n": {}}}\n  v1: {kind: vm, image: "ltb-vm\\n"}\n',
        [
            "name: lab name 'b-lab\\n' is not allowed: use 1-32 lower-case letters, digits and "
            "'-', starting with a letter",
            "nodes.'r1\\n': node name 'r1\\n' is not allowed: use 1-32 lower-case letters, "
            "digits and '-', starting with a letter",
            "nodes.'r1\\n'.image: 'ltb/node\\n' is not an image name like ltb/node:latest",
            "nodes.'r1\\n'.groups[0]: group name 'core\\n' is not allowed: use lower-case "
            "letters, digits, '_' and '-', starting with a letter",
            "nodes.r2.interfaces.'eth1\\n': interface name 'eth1\\n' is not allowed: use 1-15 "
            "lower-case letters, digits and '_.-', starting with a letter",
            f"nodes.v1.image: 'ltb-vm\\n' {VM_IMAGE}",
        ],
    ),
    "runtime-files-in-other-spellings": (
        "name: b-paths\nnodes:\n  r1:\n    files:\n      //etc/hosts: x\n      /etc//hostname: x\n"
        "      /etc/./resolv.conf: x\n      /etc/../etc/hosts: x\n      /proc/sysrq-trigger: x\n",
        [
            f"nodes.r1.files.//etc/hosts: {PLAIN_PATH}",
            f"nodes.r1.files./etc//hostname: {PLAIN_PATH}",
            f"nodes.r1.files./etc/./resolv.conf: {PLAIN_PATH}",
            f"nodes.r1.files./etc/../etc/hosts: {PLAIN_PATH}",
            "nodes.r1.files./proc/sysrq-trigger: /proc is a kernel file system: a startup file "
            "cannot be there",
        ],
    ),
    "vm-images-that-are-paths": (
        "name: b-vmpaths\nnodes:\n  v1: {kind: vm, image: ../../labs/b-other/vms/r1}\n"
        "  v2: {kind: vm, image: /var/lib/ltb/images/vm/ltb-vm}\n"
        "  v3: {kind: vm, image: '..'}\n  v4: {kind: vm, image: 'ltb-vm:1'}\n",
        [
            f"nodes.v1.image: '../../labs/b-other/vms/r1' {VM_IMAGE}",
            f"nodes.v2.image: '/var/lib/ltb/images/vm/ltb-vm' {VM_IMAGE}",
            f"nodes.v3.image: '..' {VM_IMAGE}",
            f"nodes.v4.image: 'ltb-vm:1' {VM_IMAGE}",
        ],
    ),
    "another-labs-snapshot-image": (
        f"name: b-thief\nnodes:\n  r1: {{image: '{image_name('b-other', 'r1', 's1')}'}}\n"
        f"  r2: {{image: 'docker.io/{image_name('b-other', 'r1', 's1')}'}}\n"
        "  r3: {image: ltb/tools}\n",
        [
            f"nodes.r1.image: 'ltb-snapshot/b-other/r1:s1' {SNAPSHOT_IMAGE}",
            f"nodes.r2.image: 'docker.io/ltb-snapshot/b-other/r1:s1' {SNAPSHOT_IMAGE}",
            "nodes.r3.image: image 'ltb/tools' is reserved: images under ltb/ are LTB's own "
            "(its node image is ltb/node:latest)",
        ],
    ),
    "alias-bomb": (
        alias_bomb(),
        [
            "line 3004: the topology has more than 100000 values once its aliases are expanded: "
            "at most 100000 are allowed (each use of an alias counts)"
        ],
    ),
    "too-many-nodes": (
        "name: b-many\nnodes:\n" + "".join(f"  n{i}: {{}}\n" for i in range(251)),
        ["nodes: the lab has 251 nodes: a lab has at most 250"],
    ),
    "file-over-1-mib": (
        "name: b-huge\nnodes: {a: {}}\n# " + "x" * MAX_TOPOLOGY_BYTES + "\n",
        ["the file is larger than 1048576 bytes (1 MiB), the most a topology may have"],
    ),
    "node-resources-beyond-bounds": (
        "name: b-greedy\nnodes:\n  a: {resources: {memory: 1TiB}}\n"
        "  b: {resources: {memory: 128GiB, cpus: 1000}}\n",
        [
            "nodes.a.resources.memory: '1TiB' is not a memory size (e.g. 256MiB, 1GiB)",
            "nodes.b.resources.cpus: input should be less than or equal to 64",
            "nodes.b.resources.memory: '128GiB' is more than the 64GiB a node may have",
        ],
    ),
    "public-management-subnet": (
        "name: b-public\nmgmt: {ipv4_subnet: 8.8.8.0/24}\nnodes: {a: {}}\n",
        [
            "mgmt.ipv4_subnet: 8.8.8.0/24 is not a private subnet: use one inside 10.0.0.0/8, "
            "172.16.0.0/12, 192.168.0.0/16 (RFC 1918)"
        ],
    ),
}


@pytest.fixture(params=sorted(CASES), ids=str)
def hostile(request, tmp_path) -> tuple[Path, list[str]]:
    text, errors = CASES[request.param]
    path = tmp_path / f"b-{request.param}.lab.yml"
    path.write_text(text)
    return path, errors


def one_line(text: str) -> str:
    return " ".join(text.split())  # Ansible may wrap long messages


def test_validate_refuses_hostile_topology_with_every_error(hostile):
    path, errors = hostile
    done = subprocess.run(
        [sys.executable, "-m", "ltb", "validate", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{path}: {len(errors)} error(s) in topology:",
        *(f"  {error}" for error in errors),
    ]


def test_inventory_plugin_fails_the_run_before_anything_is_allocated(hostile, tmp_path):
    path, errors = hostile
    state = tmp_path / "state"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), LTB_STATE_DIR=str(state))
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    done = subprocess.run(
        [BIN / "ansible-inventory", "-i", "inventory/", "-i", str(path), "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode != 0
    for error in errors:
        assert one_line(error) in one_line(done.stderr)
    assert not state.exists(), "the plugin allocated for a topology with errors"


# A real lab: tenants with one address plan -------------------------------------------------

TENANTS = """
# Two tenants, one address plan: equal addresses and subnets on different links are warnings.
name: b-tenants
nodes:
  a1: {interfaces: {eth1: {ipv4: 192.168.1.1/24}}}
  a2: {interfaces: {eth1: {ipv4: 192.168.1.2/24}}}
  b1: {interfaces: {eth1: {ipv4: 192.168.1.1/24}}}
  b2: {interfaces: {eth1: {ipv4: 192.168.1.2/24}}}
links:
  - endpoints: [a1:eth1, a2:eth1]
  - endpoints: [b1:eth1, b2:eth1]
"""


@pytest.mark.integration
def test_tenants_with_one_address_plan_deploy_with_warnings_each_on_its_own_link(
    tmp_path, docker_client
):
    path = tmp_path / "b-tenants.lab.yml"
    path.write_text(TENANTS)
    try:
        result = deploy(path)
        assert "b1.interfaces.eth1.ipv4: address 192.168.1.1 is also used at" in one_line(
            result.stderr
        )

        def container(node: str):
            return docker_client.containers.get(f"ltb-b-tenants.{node}")

        def mac(node: str) -> str:
            code, out = container(node).exec_run(["cat", "/sys/class/net/eth1/address"])
            assert code == 0
            return out.decode().strip()

        for tenant in ("a", "b"):
            code, out = container(f"{tenant}1").exec_run(
                ["ping", "-c", "2", "-W", "2", "192.168.1.2"]
            )
            assert code == 0, out.decode()
            code, out = container(f"{tenant}1").exec_run(
                ["ip", "neigh", "show", "192.168.1.2", "dev", "eth1"]
            )
            # The answer came from the tenant's own peer, never from the other tenant.
            assert mac(f"{tenant}2") in out.decode()
            other = "b" if tenant == "a" else "a"
            assert mac(f"{other}2") not in out.decode()
    finally:
        remove(path)
    assert_no_leftovers("b-tenants")
