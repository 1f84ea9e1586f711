"""Adding a hypervisor is an inventory entry and one run of site.yml (issue 14), on a host of its
own: a Debian 12 container with nothing but sshd and python3 (tests/separate_host/host.py).
One site.yml run installs Docker, Open vSwitch, libvirt, the exporters and the lab images
there; a lab spread over this machine and that host pings across the tunnel, and its removal
leaves nothing on either; a second site.yml run changes nothing.

Slow (the host downloads its packages and builds the lab images): run only when asked,
LTB_TEST_SEPARATE_HOST=1. The tests of this module run in order on one host. Timings are
printed (pytest -s) and collected in TIMES.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR
from ltb.resources import find_lab_resources
from tests.multihost.conftest import BIN, ROOT, Run, run_playbook
from tests.separate_host.host import GATEWAY, SeparateHost

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("LTB_TEST_SEPARATE_HOST") != "1",
        reason="separate host: slow (packages download, images build); LTB_TEST_SEPARATE_HOST=1",
    ),
]

HOST = SeparateHost("sh1", 2)
LAB = "sh-sep"
TIMES: dict[str, float] = {}
# c1 runs here, c2 (a container) and v3 (a VM, in the host's own libvirtd) on the separate
# host: every link crosses the tunnel.
TOPOLOGY = f"""\
name: {LAB}
nodes:
  c1:
    interfaces:
      eth1: {{ipv4: 10.213.1.1/24}}
      eth2: {{ipv4: 10.213.2.1/24}}
  c2:
    hypervisor: {HOST.name}
    interfaces:
      eth1: {{ipv4: 10.213.1.2/24}}
  v3:
    kind: vm
    hypervisor: {HOST.name}
    resources: {{cpus: 1, memory: 256MiB}}
    interfaces:
      eth1: {{ipv4: 10.213.2.3/24}}
links:
  - endpoints: [c1:eth1, c2:eth1]
  - endpoints: [c1:eth2, v3:eth1]
"""


@pytest.fixture(scope="module")
def host():
    HOST.down()  # what an interrupted run left
    TIMES.update(HOST.up())
    try:
        yield HOST
    finally:
        HOST.down()
        print(f"separate host times (s): {json.dumps({k: round(v, 1) for k, v in TIMES.items()})}")


@pytest.fixture(scope="module")
def inventory(host, tmp_path_factory) -> Path:
    """The default inventory's addition: this machine's tunnel address on the host's network,
    and the host under hypervisors (as tests/separate_host/hosts.example.yaml)."""
    path = tmp_path_factory.mktemp("inventory") / "separate-host.yaml"
    hosts = {"localhost": {"ltb_tunnel_address": str(GATEWAY)}, host.name: host.inventory_host()}
    path.write_text(yaml.safe_dump({"hypervisors": {"hosts": hosts}}))
    return path


def site(inventory: Path) -> Run:
    """site.yml for the new hypervisor only (--limit): the controller and this machine's own
    hypervisor are other tests' business, and other engineers run site.yml on them."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    argv = [BIN / "ansible-playbook", "-i", "inventory/", "-i", inventory, "playbooks/site.yml"]
    start = time.monotonic()
    process = subprocess.run(
        [*map(str, argv), "--limit", HOST.name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return Run(process.returncode, process.stdout, process.stderr, time.monotonic() - start)


def changed_tasks(run: Run, host: str) -> list[str]:
    output = json.loads(run.stdout)
    return [
        task["task"]["name"]
        for play in output["plays"]
        for task in play["tasks"]
        if task["hosts"].get(host, {}).get("changed")
    ]


@pytest.fixture(scope="module")
def first_site_run(host, inventory) -> Run:
    run = site(inventory)
    TIMES["site_first"] = run.seconds
    assert run.returncode == 0, run.failures()
    return run


def test_one_site_run_installs_docker_ovs_libvirt_exporters_and_images_there(first_site_run):
    # Its own daemons, not this machine's: asked inside the host.
    assert HOST.exec("docker", "info", "--format", "{{.Driver}}").strip()
    assert "ltb/node:latest" in HOST.exec(
        "docker", "images", "--format", "{{.Repository}}:{{.Tag}}"
    )
    HOST.exec("ovs-vsctl", "show")
    HOST.exec("virsh", "-c", "qemu:///system", "version")
    HOST.exec("supervisorctl", "status")
    HOST.exec("test", "-e", "/var/lib/ltb/images/vm/ltb-vm/disk.qcow2")
    assert (
        HOST.exec("cat", "/var/lib/ltb/ssh/id_ed25519.pub")
        == Path("/var/lib/ltb/ssh/id_ed25519.pub").read_text()
    )
    # Prometheus on the controller reaches its exporters at its address.
    for port in (9100, 9843):
        with urllib.request.urlopen(f"http://{HOST.address}:{port}/metrics", timeout=10) as answer:
            assert answer.status == 200


@pytest.fixture(scope="module")
def lab_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lab") / f"{LAB}.lab.yml"
    path.write_text(TOPOLOGY)
    return path


def leftovers_on_host(lab: str) -> dict[str, str]:
    """What the lab left on the separate host: its containers, OVS rows, interfaces, domains
    and files, as ltb.resources finds them here (that module needs the ltb package)."""
    found = {
        "containers": HOST.exec("docker", "ps", "-aq", "--filter", f"label=ltb.lab={lab}"),
        "domains": "\n".join(
            name
            for name in HOST.exec(
                "virsh", "-c", "qemu:///system", "list", "--all", "--name"
            ).split()
            if name.startswith(f"ltb-{lab}.")
        ),
        "interfaces": "\n".join(
            link["ifname"]
            for link in json.loads(HOST.exec("ip", "-j", "-d", "link", "show"))
            if link.get("ifalias", "").startswith(f"ltb:{lab}:")
        ),
        "files": HOST.exec("sh", "-c", f"ls -d /var/lib/ltb/labs/{lab} 2>/dev/null || true"),
    }
    for table in ("Bridge", "Port", "Mirror"):
        found[table] = HOST.exec(
            "ovs-vsctl", "--columns=name", "--bare", "find", table, f"external_ids:ltb-lab={lab}"
        )
    return {kind: what.strip() for kind, what in found.items() if what.strip()}


@pytest.fixture(scope="module")
def spread_lab(first_site_run, inventory, lab_file):
    deployed = run_playbook("deploy.yml", inventory, lab_file)
    TIMES["deploy"] = deployed.seconds
    try:
        assert deployed.returncode == 0, deployed.failures()
        yield lab_file
    finally:
        if not find_lab_resources(LAB).empty() or leftovers_on_host(LAB):
            run_playbook("remove.yml", inventory, lab_file)
        Registry(DEFAULT_STATE_DIR).release(LAB)


def ping_from(where: str, node: str, address: str) -> subprocess.CompletedProcess:
    argv = ["docker", "exec", f"ltb-{LAB}.{node}", "ping", "-c", "2", "-W", "2", address]
    if where == "host":
        argv = ["docker", "exec", HOST.container, *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_a_lab_spread_over_this_machine_and_the_host_pings_across_the_tunnel(spread_lab):
    on_host = HOST.exec(
        "docker", "ps", "--filter", f"label=ltb.lab={LAB}", "--format", "{{.Names}}"
    )
    assert on_host.split() == [f"ltb-{LAB}.c2"]
    vms = HOST.exec("virsh", "-c", "qemu:///system", "list", "--name").split()
    assert vms == [f"ltb-{LAB}.v3"]
    for where, node, address in (
        ("here", "c1", "10.213.1.2"),  # container to container
        ("here", "c1", "10.213.2.3"),  # container to VM
        ("host", "c2", "10.213.1.1"),
    ):
        pinged = ping_from(where, node, address)
        assert pinged.returncode == 0, f"{node} ({where}) -> {address}: {pinged.stdout}"


def test_removing_the_spread_lab_leaves_nothing_on_either(spread_lab, inventory):
    removed = run_playbook("remove.yml", inventory, spread_lab)
    TIMES["remove"] = removed.seconds
    assert removed.returncode == 0, removed.failures()
    assert find_lab_resources(LAB).empty(), find_lab_resources(LAB)
    assert leftovers_on_host(LAB) == {}


def test_a_second_site_run_changes_nothing_on_the_host(first_site_run, inventory):
    again = site(inventory)
    TIMES["site_second"] = again.seconds
    assert again.returncode == 0, again.failures()
    assert changed_tasks(again, HOST.name) == []
