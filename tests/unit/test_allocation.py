"""Allocation of lab tags and management subnets: unique, stable, released, safe under races."""

import json
import multiprocessing
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterator
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from ltb import model
from ltb.allocation import (
    AllocationError,
    Registry,
    choose,
)
from ltb.deployed import load_deployed_lab
from ltb.module_utils import load
from ltb.topology import TopologyError, parse_lab

subnet_conflicts = load("ltb_routes").subnet_conflicts  # run on the hypervisor
SHM = Path("/dev/shm")  # noqa: S108 - a private directory is made in it (mkdtemp)


def bare_lab(name: str) -> model.Lab:
    """A lab with no nodes: all the registry looks at is its name and its own subnets."""
    return model.Lab(name, None, (), (), model.default_mgmt_subnet(name), model.lab_tag(name))


def names_sharing(key, count: int, prefix: str = "c-") -> list[str]:
    """`count` lab names whose `key` (preferred slot, tag, ...) is the same."""
    seen = defaultdict(list)
    for i in range(2_000_000):
        name = f"{prefix}{i}"
        group = seen[key(name)]
        group.append(name)
        if len(group) == count:
            return group
    raise AssertionError("no names found")


@pytest.fixture
def memory_dir(tmp_path) -> Iterator[Path]:
    """A state directory in memory (tmpfs) where the machine has one: the registry syncs
    each write to disk, and a thousand syncs on a disk took 30 s of a test about allocation."""
    if not SHM.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=SHM, prefix="ltb-test-") as directory:
        yield Path(directory)


def test_a_lab_gets_its_preferred_tag_and_subnet_when_they_are_free(tmp_path):
    allocation = Registry(tmp_path).allocate(bare_lab("c-alone"))
    assert allocation == model.preferred_allocation("c-alone")


def test_a_thousand_labs_get_distinct_tags_and_subnets_all_recorded(memory_dir):
    registry = Registry(memory_dir)
    allocations = [registry.allocate(bare_lab(f"c-lab-{i}")) for i in range(1000)]
    tags = [a.tag for a in allocations]
    subnets = [a.mgmt_subnet for a in allocations]
    assert len(set(tags)) == 1000
    assert len(set(subnets)) == 1000
    assert all(s.subnet_of(model.MGMT_POOL) and s.prefixlen == 24 for s in subnets)
    assert all(len(model.host_interface_name(t, "node", "eth1")) == 15 for t in tags)
    recorded = json.loads(registry.path.read_text())["labs"]
    assert {name: (e["tag"], e["mgmt_subnet"]) for name, e in recorded.items()} == {
        f"c-lab-{i}": (a.tag, str(a.mgmt_subnet)) for i, a in enumerate(allocations)
    }


def test_the_whole_pool_is_handed_out_then_a_clear_error(tmp_path):
    registry = Registry(tmp_path)
    # Every slot but one held already (written as the registry writes it, for speed).
    entries = {
        f"c-full-{slot}": {"tag": model.tag_text(slot), "mgmt_subnet": str(subnet)}
        for slot in range(model.MGMT_SLOTS - 1)
        for subnet in [model.mgmt_slot_subnet(slot)]
    }
    registry.path.write_text(json.dumps({"labs": entries}))
    last = registry.allocate(bare_lab("c-last"))
    assert last.mgmt_subnet == model.mgmt_slot_subnet(model.MGMT_SLOTS - 1)
    with pytest.raises(AllocationError, match=r"no default management subnet is free .*1024"):
        registry.allocate(bare_lab("c-one-too-many"))
    assert len(registry.held()) == model.MGMT_SLOTS


def test_labs_whose_names_collide_get_the_next_free_tag_and_subnet(tmp_path):
    first, second = names_sharing(model.preferred_mgmt_slot, 2)
    registry = Registry(tmp_path)
    a = registry.allocate(bare_lab(first))
    b = registry.allocate(bare_lab(second))
    assert a.mgmt_subnet == model.default_mgmt_subnet(first)
    assert b.mgmt_subnet == model.mgmt_slot_subnet(model.preferred_mgmt_slot(second) + 1)

    one, two = names_sharing(model.lab_tag, 2)
    assert registry.allocate(bare_lab(one)).tag == model.lab_tag(one)
    tag_two = registry.allocate(bare_lab(two)).tag
    assert tag_two == model.tag_text(int(model.lab_tag(two), 16) + 1)


def test_a_lab_allocated_again_keeps_what_it_holds(tmp_path):
    first, second = names_sharing(model.preferred_mgmt_slot, 2)
    registry = Registry(tmp_path)
    b = registry.allocate(bare_lab(second))  # takes the slot that `first` prefers
    a = registry.allocate(bare_lab(first))
    assert a.mgmt_subnet != model.default_mgmt_subnet(first)
    assert registry.allocate(bare_lab(first)) == a
    assert registry.allocate(bare_lab(second)) == b


def test_a_released_allocation_is_free_for_another_lab(tmp_path):
    first, second = names_sharing(model.preferred_mgmt_slot, 2)
    registry = Registry(tmp_path)
    held = registry.allocate(bare_lab(first))
    assert registry.release(first) is True
    assert registry.release(first) is False  # a lab that holds nothing: nothing to do
    assert registry.allocate(bare_lab(second)).mgmt_subnet == held.mgmt_subnet
    assert first not in registry.held()


def test_a_given_subnet_overlapping_another_labs_is_refused_naming_that_lab(tmp_path):
    registry = Registry(tmp_path)
    other = registry.allocate(bare_lab("c-other"))
    inside = IPv4Network((int(other.mgmt_subnet.network_address), 25))
    text = f"name: c-mine\nmgmt: {{ipv4_subnet: {inside}}}\nnodes: {{a: {{}}}}\n"
    with pytest.raises(TopologyError) as refused:
        parse_lab(text, "mine.lab.yml", registry.allocate)
    [problem] = refused.value.problems
    assert problem.place == "mgmt.ipv4_subnet"
    assert "lab 'c-other'" in problem.message and str(other.mgmt_subnet) in problem.message
    assert set(registry.held()) == {"c-other"}


def test_a_given_subnet_is_recorded_and_default_subnets_stay_out_of_it(memory_dir):
    registry = Registry(memory_dir)
    wide = IPv4Network("172.20.0.0/16")  # 256 slots of the pool
    text = f"name: c-wide\nmgmt: {{ipv4_subnet: {wide}}}\nnodes: {{a: {{}}}}\n"
    lab = parse_lab(text, "wide.lab.yml", registry.allocate)
    assert lab.mgmt_subnet == wide
    assert registry.held()["c-wide"].given
    for i in range(300):
        assert not registry.allocate(bare_lab(f"c-narrow-{i}")).mgmt_subnet.overlaps(wide)


def test_a_default_subnet_never_overlaps_the_labs_own_link_subnets():
    name = "c-own"
    preferred = model.preferred_mgmt_slot(name)
    # The preferred slot is taken by another lab; the next one is the lab's own link subnet.
    others = {"c-x": choose("c-x", model.mgmt_slot_subnet(preferred), [], {})}
    link = model.mgmt_slot_subnet(preferred + 1)
    held = choose(name, None, [IPv4Network(f"{link.network_address}/25")], others)
    assert held.mgmt_subnet == model.mgmt_slot_subnet(preferred + 2)


def test_the_allocation_names_everything_the_lab_makes_on_the_hypervisor(tmp_path):
    text = "name: c-names\nnodes: {r1: {interfaces: {eth1: {}}}, r2: {}}\n"
    preferred = parse_lab(text)
    Registry(tmp_path).allocate(bare_lab("c-squatter"), preferred.mgmt_subnet)
    lab = parse_lab(text, "names.lab.yml", Registry(tmp_path).allocate)
    assert lab.tag == preferred.tag  # only the subnet was taken
    assert lab.mgmt_subnet != preferred.mgmt_subnet
    assert lab.node("r1").mgmt_ipv4 == IPv4Interface(f"{lab.mgmt_subnet[2]}/24")
    assert lab.mgmt_gateway == IPv4Interface(f"{lab.mgmt_subnet[1]}/24")

    moved = lab.with_allocation(model.Allocation("abcdef", IPv4Network("10.9.8.0/24")))
    assert moved.bridge == "ltb-abcdef" and moved.mgmt_port == "ltm-abcdef"
    assert moved.node("r1").interface("eth1").host_name.startswith("vabcdef")
    assert moved.node("r2").mgmt_host_name.startswith("mabcdef")
    assert [str(n.mgmt_ipv4) for n in moved.nodes] == ["10.9.8.2/24", "10.9.8.3/24"]


def test_an_unreadable_registry_is_refused_never_started_afresh(tmp_path):
    registry = Registry(tmp_path)
    registry.path.write_text("{not json")
    with pytest.raises(AllocationError, match="cannot be read"):
        registry.allocate(bare_lab("c-any"))
    assert registry.path.read_text() == "{not json"


def _allocate_in_process(state_dir: str, names: list[str], start: multiprocessing.Barrier):
    registry = Registry(state_dir)
    start.wait()
    for name in names:
        registry.allocate(bare_lab(name))


def test_processes_allocating_at_once_never_get_the_same_tag_or_subnet(tmp_path):
    # Every name prefers the same slot: without the lock, racing processes would share it.
    names = names_sharing(model.preferred_mgmt_slot, 48)
    start = multiprocessing.Barrier(6)
    processes = [
        multiprocessing.Process(
            target=_allocate_in_process, args=(str(tmp_path), names[i::6], start)
        )
        for i in range(6)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    held = Registry(tmp_path).held()
    assert set(held) == set(names)
    assert len({h.mgmt_subnet for h in held.values()}) == len(names)
    assert len({h.tag for h in held.values()}) == len(names)


def test_threads_allocating_and_releasing_at_once_leave_a_consistent_registry(tmp_path):
    names = names_sharing(model.preferred_mgmt_slot, 40)
    registry = Registry(tmp_path)
    start = threading.Barrier(8)
    errors = []

    def work(mine):
        try:
            start.wait()
            for name in mine:
                registry.allocate(bare_lab(name))
            for name in mine[::2]:
                registry.release(name)
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(names[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    held = registry.held()
    assert set(held) == {n for i in range(8) for n in names[i::8][1::2]}
    assert len({h.mgmt_subnet for h in held.values()}) == len(held)


def test_a_deployed_lab_is_loaded_with_the_allocation_it_was_deployed_with(tmp_path):
    text = "name: c-kept\nnodes: {r1: {interfaces: {eth1: {}}}}\n"
    directory = tmp_path / "labs" / "c-kept"
    directory.mkdir(parents=True)
    (directory / "topology.lab.yml").write_text(text)
    assert load_deployed_lab("c-kept", tmp_path) == parse_lab(
        text, str(directory / "topology.lab.yml")
    )  # deployed before allocations were kept: the preferred names
    (directory / "allocation.json").write_text(
        json.dumps({"lab": "c-kept", "tag": "00beef", "mgmt_subnet": "172.23.255.0/24"})
    )
    lab = load_deployed_lab("c-kept", tmp_path)
    assert lab.bridge == "ltb-00beef"
    assert lab.node("r1").interface("eth1").host_name.startswith("v00beef")
    assert lab.node("r1").mgmt_ipv4 == IPv4Interface("172.23.255.2/24")


SUBNET = IPv4Network("10.50.0.0/24")


def link(name: str, address: str) -> dict:
    """A link as `ip -4 -j addr show` gives it, with one address."""
    local, prefixlen = address.split("/")
    return {
        "ifname": name,
        "addr_info": [{"family": "inet", "local": local, "prefixlen": int(prefixlen)}],
    }


def test_hypervisor_routes_and_addresses_that_use_the_subnet_are_named():
    routes = [
        {"dst": "default", "gateway": "10.50.0.254", "dev": "eth0"},
        {"dst": "10.0.0.0/8", "gateway": "192.0.2.9", "dev": "eth1"},
        {"dst": "10.50.0.128/25", "dev": "tun0", "table": "100"},
        {"type": "blackhole", "dst": "10.50.0.7"},
        {"dst": "192.0.2.0/24", "dev": "eth1"},
        {"type": "local", "dst": "10.50.0.9", "dev": "eth2", "table": "local"},
    ]
    links = [
        link("eth2", "10.50.0.9/32"),
        link("eth3", "10.50.1.1/16"),
        link("eth4", "10.51.0.1/24"),
    ]
    assert subnet_conflicts(SUBNET, "ltm-aaaaaa", routes, links) == [
        "the default route's gateway 10.50.0.254 dev eth0",
        "route 10.0.0.0/8 via 192.0.2.9 dev eth1",
        "route 10.50.0.128/25 dev tun0 (table 100)",
        "blackhole route 10.50.0.7",
        "address 10.50.0.9/32 of eth2",
        "address 10.50.1.1/16 of eth3",
    ]


def test_the_labs_own_management_port_and_an_outside_default_route_are_no_conflict():
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "10.50.0.0/24", "dev": "ltm-aaaaaa", "prefsrc": "10.50.0.1"},
    ]
    links = [
        link("ltm-aaaaaa", "10.50.0.1/24"),
        link("eth0", "192.0.2.2/24"),
    ]
    assert subnet_conflicts(SUBNET, "ltm-aaaaaa", routes, links) == []
