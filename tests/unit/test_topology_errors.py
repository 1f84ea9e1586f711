"""Golden tests: each bad topology in topologies/errors/ and every error it must report.

Every expected line must be reported, and nothing else: a bad file gets all of its errors at
once, each with its place.
"""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ltb.cli import main
from ltb.mirror import MirrorError, mirror_spec
from ltb.snapshot import SnapshotError
from ltb.snapshot import check_name as snapshot_check_name
from ltb.topology import TopologyError, load_lab, parse_lab, problems_of

CASES = sorted((Path(__file__).parent / "topologies" / "errors").glob("*.lab.yml"))


@pytest.mark.parametrize("topology", CASES, ids=lambda path: path.name.removesuffix(".lab.yml"))
def test_bad_topology_reports_every_error_with_its_place(topology: Path):
    expected = topology.with_name(topology.name.replace(".lab.yml", ".errors")).read_text()
    with pytest.raises(TopologyError) as error:
        load_lab(topology)
    assert [str(problem) for problem in error.value.problems] == expected.splitlines()


def test_error_message_names_the_file_and_counts_the_errors():
    with pytest.raises(TopologyError) as error:
        load_lab(CASES[0])
    assert str(error.value).startswith(f"{CASES[0]}: ")
    assert "error(s) in topology" in str(error.value)


def test_missing_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read the file"):
        load_lab(tmp_path / "nothing.lab.yml")


# Warnings: allowed, often a mistake, never an error --------------------------------------------

LABS = Path(__file__).parent / "topologies" / "labs"  # copies of ../shared/labs
SHARED_LABS = Path(__file__).parents[3] / "shared" / "labs"  # the corpus, where it exists
VRF_LITE_WARNINGS = [
    "nodes.pe.interfaces.eth3.ipv4: address 192.168.1.1 is also used at "
    "nodes.pe.interfaces.eth1.ipv4, on another link",
    "nodes.pe.interfaces.eth4.ipv4: address 192.168.2.1 is also used at "
    "nodes.pe.interfaces.eth2.ipv4, on another link",
    "nodes.ce-b1.interfaces.eth1.ipv4: address 192.168.1.10 is also used at "
    "nodes.ce-a1.interfaces.eth1.ipv4, on another link",
    "nodes.ce-b2.interfaces.eth1.ipv4: address 192.168.2.10 is also used at "
    "nodes.ce-a2.interfaces.eth1.ipv4, on another link",
    "nodes.pe.interfaces.eth3.ipv4: subnet 192.168.1.0/24 overlaps subnet 192.168.1.0/24 of "
    "another link (nodes.pe.interfaces.eth1.ipv4)",
    "nodes.pe.interfaces.eth4.ipv4: subnet 192.168.2.0/24 overlaps subnet 192.168.2.0/24 of "
    "another link (nodes.pe.interfaces.eth2.ipv4)",
]
EXPECTED_WARNINGS = {"vrf-lite.lab.yml": VRF_LITE_WARNINGS}
CORPUS = sorted(LABS.glob("*.lab.yml")) + sorted(SHARED_LABS.glob("*.lab.yml"))


@pytest.mark.parametrize("topology", CORPUS, ids=str)
def test_labs_as_users_write_them_validate_with_the_warnings_they_should_have(topology: Path):
    lab = load_lab(topology)
    assert [str(w) for w in lab.warnings] == EXPECTED_WARNINGS.get(topology.name, [])


def test_the_corpus_copies_are_current():
    if not SHARED_LABS.is_dir():
        pytest.skip(f"no corpus at {SHARED_LABS}")
    for shared in SHARED_LABS.glob("*.lab.yml"):
        assert (LABS / shared.name).read_text() == shared.read_text(), f"copy {shared} here"


def test_validate_prints_warnings_and_succeeds(capsys):
    assert main(["validate", str(LABS / "vrf-lite.lab.yml")]) == 0
    out, err = capsys.readouterr()
    assert "lab 'vrf-lite' is valid (5 nodes, 4 links)" in out
    assert err.splitlines() == [
        f"{LABS / 'vrf-lite.lab.yml'}: warning: {warning}" for warning in VRF_LITE_WARNINGS
    ]


def test_overlaps_across_links_are_warnings_and_within_a_link_errors():
    lab = parse_lab(
        "name: t\nnodes:\n"
        "  a: {interfaces: {eth1: {ipv4: 10.1.0.1/24}, eth2: {ipv4: 10.1.0.1/16}}}\n"
        "  b: {interfaces: {eth1: {ipv6: 2001:db8::1/64}, eth2: {ipv6: 2001:db8::1/48}}}\n"
        "links: [{endpoints: [a:eth1, b:eth1]}, {endpoints: [a:eth2, b:eth2]}]\n"
    )
    assert [str(w) for w in lab.warnings] == [
        "nodes.a.interfaces.eth2.ipv4: address 10.1.0.1 is also used at "
        "nodes.a.interfaces.eth1.ipv4, on another link",
        "nodes.b.interfaces.eth2.ipv6: address 2001:db8::1 is also used at "
        "nodes.b.interfaces.eth1.ipv6, on another link",
        "nodes.a.interfaces.eth2.ipv4: subnet 10.1.0.0/16 overlaps subnet 10.1.0.0/24 of another "
        "link (nodes.a.interfaces.eth1.ipv4)",
        "nodes.b.interfaces.eth2.ipv6: subnet 2001:db8::/48 overlaps subnet 2001:db8::/64 of "
        "another link (nodes.b.interfaces.eth1.ipv6)",
    ]
    assert problems_of(
        "name: t\nnodes: {a: {interfaces: {eth1: {ipv4: 10.1.0.1/24}}},"
        " b: {interfaces: {eth1: {ipv4: 10.1.0.1/24}}}}\nlinks: [{endpoints: [a:eth1, b:eth1]}]\n"
    ) == [
        "nodes.b.interfaces.eth1.ipv4: address 10.1.0.1 is also used at "
        "nodes.a.interfaces.eth1.ipv4"
    ]


def test_many_tenants_with_one_address_plan_validate_with_one_warning_per_link():
    tenants = 200
    nodes = "".join(
        f"  t{i}: {{interfaces: {{eth1: {{ipv4: 192.168.1.1/24}}, "
        f"eth2: {{ipv4: 192.168.1.2/24}}}}}}\n"
        for i in range(tenants)
    )
    links = "".join(f"  - endpoints: [t{i}:eth1, t{i}:eth2]\n" for i in range(tenants))
    lab = parse_lab(f"name: t\nnodes:\n{nodes}links:\n{links}")
    overlaps = [w for w in lab.warnings if "overlaps" in w.message]
    assert len(overlaps) == tenants - 1
    assert all(w.message.endswith("(nodes.t0.interfaces.eth1.ipv4)") for w in overlaps)


def test_warnings_are_not_part_of_a_labs_identity():
    lab = load_lab(LABS / "vrf-lite.lab.yml")
    assert lab.warnings and lab == replace(lab, warnings=())


def test_management_subnet_overlap_stays_an_error():
    assert problems_of(
        "name: t\nmgmt: {ipv4_subnet: 10.9.0.0/24}\n"
        "nodes: {a: {interfaces: {eth1: {ipv4: 10.9.1.1/16}}}}\n"
    ) == ["nodes.a.interfaces.eth1.ipv4: 10.9.1.1/16 overlaps the management subnet 10.9.0.0/24"]


# Names are matched whole -----------------------------------------------------------------------


def test_snapshot_names_with_a_trailing_newline_are_refused():
    with pytest.raises(SnapshotError, match=r"'s1\\n' is not allowed"):
        snapshot_check_name("s1\n")
    snapshot_check_name("s1")


def test_mirror_names_with_a_trailing_newline_are_refused():
    lab = parse_lab("name: t\nnodes: {a: {}, b: {}}\nlinks: [{endpoints: [a:eth1, b:eth1]}]\n")
    with pytest.raises(MirrorError, match=r"'m1\\n' is not allowed"):
        mirror_spec(lab, "link", "a:eth1", "m1\n")
    assert mirror_spec(lab, "link", "a:eth1", "m1").name == "m1"


@pytest.mark.parametrize(
    "hypervisor",
    [
        "{{ lookup('pipe', 'id') }}",  # Jinja
        "hv1; rm -rf /",  # shell metacharacters
        "$(id)",
        "../etc",  # a path
        "hv1\n",  # a trailing newline
        "h" * 10_000,  # huge
        "-hv",
    ],
    ids=["jinja", "shell", "subshell", "dotdot", "newline", "huge", "dash"],
)
def test_a_hostile_node_hypervisor_is_refused_naming_its_place(hypervisor):
    topology = "name: hv-hostile\nnodes:\n  r1:\n    hypervisor: HV\n".replace(
        "HV", yaml_quoted(hypervisor)
    )
    with pytest.raises(TopologyError) as error:
        parse_lab(topology, "hostile")
    places = [problem.place for problem in error.value.problems]
    assert places == ["nodes.r1.hypervisor"], error.value.problems


def yaml_quoted(value: str) -> str:
    return json.dumps(value)  # JSON strings are YAML strings
