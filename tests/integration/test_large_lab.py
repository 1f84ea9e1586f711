"""A lab of 45 container nodes deployed, checked end to end and removed: the shipped OSPF
example (examples/ospf-triangle.lab.yml, as written) beside a ring of ten OSPF routers, each
with three hosts on a shared segment (IPv4 everywhere, IPv6 on the segments). It replaces the
example's own deploy: one lab for both, so CI pays one deploy and one remove.

One deploy and one remove serve every test (tests run in file order; the last ones remove
the lab). The checks run inside each node once, in parallel: every link's ends ping each
other, one path crosses half the ring, every node runs, and remove leaves nothing.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from ltb.allocation import Registry
from ltb.deployed import DEFAULT_STATE_DIR, lab_dir
from ltb.model import Lab
from ltb.ssh import ssh_argv
from tests.integration.conftest import (
    ROOT,
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    remove_if_left,
    run_playbook,
    wait_until,
)

pytestmark = pytest.mark.integration
NAME = "kh-large"
EXAMPLE = ROOT / "examples" / "ospf-triangle.lab.yml"
SSH_KEY = "/var/lib/ltb/ssh/id_ed25519"
RING = 10  # routers c0..c9, c<i>:eth1 -- c<i+1>:eth2
HOSTS = 3  # hosts c<i>h1..c<i>h3 on c<i>'s segment (eth3)
PARALLEL = 8  # docker execs at once

DAEMONS = """\
ospfd=yes
vtysh_enable=yes
zebra_options="  -A 127.0.0.1 -s 90000000"
ospfd_options="  -A 127.0.0.1"
"""


def router(i: int) -> dict:
    # Hellos every second bring adjacencies up at once; a dead interval of 20 s keeps them up
    # through the stalls of a loaded machine (45 nodes on one userspace OVS and 2 cores).
    ospf = " ip ospf network point-to-point\n ip ospf hello-interval 1\n ip ospf dead-interval 20\n"
    frr = (
        f"frr defaults traditional\nhostname c{i}\n"
        f"interface lo\n ip address 10.254.0.{i + 1}/32\n"
        f"interface eth1\n{ospf}interface eth2\n{ospf}"
        f"router ospf\n ospf router-id 10.254.0.{i + 1}\n passive-interface eth3\n"
        " network 10.1.0.0/16 area 0\n network 10.2.0.0/16 area 0\n network 10.254.0.0/24 area 0\n"
    )
    return {
        "groups": ["ring"],
        "interfaces": {
            "eth1": {"ipv4": f"10.1.{i}.1/24"},
            "eth2": {"ipv4": f"10.1.{(i - 1) % RING}.2/24"},
            "eth3": {"ipv4": f"10.2.{i}.1/24", "ipv6": f"2001:db8:2:{i}::1/64"},
        },
        "files": {"/etc/frr/daemons": DAEMONS, "/etc/frr/frr.conf": frr},
    }


def host(i: int, h: int) -> dict:
    return {
        "groups": ["ring-hosts"],
        "interfaces": {
            "eth1": {"ipv4": f"10.2.{i}.1{h}/24", "ipv6": f"2001:db8:2:{i}::1{h}/64"},
        },
        "files": {"/etc/ltb/startup.sh": f"ip route add 10.0.0.0/8 via 10.2.{i}.1\n"},
    }


def large_topology() -> dict:
    """The example as written (its own name aside), with the ring beside it."""
    topology = yaml.safe_load(EXAMPLE.read_text())
    topology["name"] = NAME
    topology["description"] = "the OSPF example beside a ring of ten routers with host segments"
    for i in range(RING):
        topology["nodes"][f"c{i}"] = router(i)
        topology["links"].append({"endpoints": [f"c{i}:eth1", f"c{(i + 1) % RING}:eth2"]})
        hosts = [f"c{i}h{h}" for h in range(1, HOSTS + 1)]
        for h, name in enumerate(hosts, start=1):
            topology["nodes"][name] = host(i, h)
        topology["links"].append({"endpoints": [f"c{i}:eth3", *(f"{n}:eth1" for n in hosts)]})
    return topology


def link_targets(model: Lab) -> dict[str, list[str]]:
    """Node -> the addresses of the other ends of each of its links, v4 and v6."""
    targets: dict[str, list[str]] = {node.name: [] for node in model.nodes}
    for link in model.links:
        for one in link.endpoints:
            for other in link.endpoints:
                if other == one:
                    continue
                interface = model.node(other.node).interface(other.interface)
                for address in (interface.ipv4, interface.ipv6):
                    if address is not None:
                        targets[one.node].append(str(address.ip))
    return targets


def pings_that_fail(container, addresses: list[str]) -> list[str]:
    """Ping every address from a node's container at once, in one docker exec; the addresses
    that did not answer (passed as arguments: data, never part of the script)."""
    script = 'for a in "$@"; do (ping -c 1 -W 3 "$a" >/dev/null 2>&1 || echo "$a") & done; wait'
    code, output = container.exec_run(["sh", "-c", script, "pings", *addresses])
    text = output.decode(errors="replace")
    return text.split() if code == 0 else [f"exec failed ({code}): {text}"]


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("large") / f"{NAME}.lab.yml"
    path.write_text(yaml.safe_dump(large_topology(), sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lab(path, docker_client):
    remove_if_left(path)  # a lab left by an interrupted run must not decide the outcome
    deploy(path)
    yield RunningLab(path, docker_client)
    remove_if_left(path)  # the last tests remove it; only a failed run leaves it


def test_the_lab_has_at_least_forty_nodes_and_every_one_runs(lab, docker_client):
    names = {node.name for node in lab.model.nodes}
    assert len(names) == 5 + RING * (1 + HOSTS) >= 40
    containers = docker_client.containers.list(all=True, filters={"label": f"ltb.lab={NAME}"})
    states = {c.labels["ltb.node"]: c.status for c in containers}
    assert states == dict.fromkeys(names, "running")


def test_every_links_ends_ping_each_other_v4_and_v6(lab, docker_client):
    model = lab.model
    targets = link_targets(model)
    assert sum(len(t) for t in targets.values()) == 12 + RING * (2 + 4 * 3 * 2)

    def ping_from(node: str) -> list[str]:
        container = docker_client.containers.get(model.container_name(node))
        return pings_that_fail(container, targets[node])

    with ThreadPoolExecutor(PARALLEL) as pool:
        failed = dict(zip(targets, pool.map(ping_from, targets), strict=True))
    assert {node: f for node, f in failed.items() if f} == {}


def test_ospf_carries_a_path_across_half_the_ring(lab):
    # c0h1 to c5h2: out through c0, five routers around the ring, into c5's segment.
    assert wait_until(lambda: lab.ping("c0h1", "10.2.5.12"), timeout=60), "no path across"
    code, output = lab.exec("c0", "vtysh", "-c", "show ip route 10.2.5.0/24")
    assert code == 0 and 'Known via "ospf"' in output, output


def test_the_example_converges_and_carries_traffic_across_its_routers(lab):
    wanted = ["10.255.0.2/32", "10.255.0.3/32", "10.0.23.0/24", "10.0.100.0/24"]

    def r1_routes():
        _, output = lab.exec("r1", "vtysh", "-c", "show ip route ospf")
        return all(prefix in output for prefix in wanted)

    assert wait_until(r1_routes, timeout=60), "r1 did not learn the example's routes over OSPF"
    # h1 sits behind r3: reaching r1's loopback crosses a routed hop.
    assert wait_until(lambda: lab.ping("h1", "10.255.0.1"), timeout=20)


def test_management_addresses_answer_from_the_hypervisor(lab):
    def answers(address: str) -> bool:
        ping = ["ping", "-c", "1", "-W", "3", address]
        return subprocess.run(ping, capture_output=True, check=False).returncode == 0

    addresses = {node.name: str(node.mgmt_ipv4.ip) for node in lab.model.nodes}
    with ThreadPoolExecutor(PARALLEL) as pool:
        silent = [
            n
            for n, ok in zip(addresses, pool.map(answers, addresses.values()), strict=True)
            if not ok
        ]
    assert silent == []


def test_ssh_with_the_platform_key_reaches_a_node(lab):
    c7 = lab.model.node("c7")
    result = subprocess.run(
        ssh_argv(str(c7.mgmt_ipv4.ip), "hostname", key=SSH_KEY, connect_timeout=5),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "c7"), result.stderr


def ansible(path: Path, *args: str) -> str:
    argv = [ROOT / ".venv" / "bin" / "ansible", "-i", "inventory/", "-i", str(path), *args]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_nodes_are_ansible_hosts_in_their_groups(lab, path):
    # c3 through its topology group: no host matched would fail.
    output = ansible(
        path, "ring", "--limit", "c3", "-m", "ansible.builtin.command", "-a", "ip -br a show eth3"
    )
    assert "10.2.3.1/24" in output


def test_remove_leaves_no_container_bridge_veth_state_or_allocation(lab, path, docker_client):
    remove(path)
    assert_no_leftovers(NAME)  # containers, bridge, ports, veths, files, domains
    assert docker_client.containers.list(all=True, filters={"label": f"ltb.lab={NAME}"}) == []
    assert not lab_dir(NAME).exists()
    assert NAME not in Registry(DEFAULT_STATE_DIR).held()


def test_remove_of_a_lab_that_is_not_there_changes_nothing(tmp_path):
    # Remove finds a lab's things by its name: one node of it is enough, and is quicker to read.
    small = tmp_path / f"{NAME}.lab.yml"
    small.write_text(f"name: {NAME}\nnodes:\n  c0: {{}}\n")
    result = run_playbook("remove.yml", small)
    assert result.returncode == 0
    assert result.changed() == {}
    assert_no_leftovers(NAME)
