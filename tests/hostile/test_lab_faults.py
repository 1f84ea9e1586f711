"""Faults and collisions of running labs, each a real deploy: mirrors of two labs whose names
used to meet in OVS, a veth left without its alias, a startup file that is a directory, and a
host whose only route beyond its router is an FRR static route."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltb.deployed import load_deployed_lab
from tests.integration.conftest import (
    RunningLab,
    assert_no_leftovers,
    deploy,
    remove,
    remove_if_left,
    run_playbook,
    wait_until,
)

pytestmark = pytest.mark.integration

PAIR = """name: {name}
nodes:
  a: {{interfaces: {{eth1: {{ipv4: 10.204.1.1/24}}}}}}
  b: {{interfaces: {{eth1: {{ipv4: 10.204.1.2/24}}}}}}
links:
  - endpoints: [a:eth1, b:eth1]
"""


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.lab.yml"
    path.write_text(text)
    return path


def _ovs_mirrors() -> dict[str, dict[str, str]]:
    """Every OVS mirror: name -> external_ids."""
    out = subprocess.run(
        ["ovs-vsctl", "--format=json", "--columns=name,external_ids", "list", "Mirror"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {name: dict(ids[1]) for name, ids in json.loads(out)["data"]}


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory) -> Iterator[dict[str, Path]]:
    """Labs `d-a` and `d-a-b`: mirror `b-c` of the first and `c` of the second were both
    `ltb-d-a-b-c` in OVS."""
    directory = tmp_path_factory.mktemp("two-labs")
    labs = {name: _write(directory, name, PAIR.format(name=name)) for name in ("d-a", "d-a-b")}
    try:
        for path in labs.values():
            deploy(path)
        yield labs
    finally:
        for path in labs.values():
            remove_if_left(path)  # a test removes d-a-b itself


def _mirror(lab: Path, name: str, *extra: str):
    return run_playbook(
        "mirror.yml", lab, "-e", "mirror_endpoint=a:eth1", "-e", f"mirror_name={name}", *extra
    )


def test_mirrors_of_two_labs_with_once_colliding_names_stay_apart(two_labs):
    for lab, name in (("d-a", "b-c"), ("d-a-b", "c")):
        result = _mirror(two_labs[lab], name)
        assert result.returncode == 0, result.failure_messages() or result.stderr
    mirrors = {name: ids for name, ids in _ovs_mirrors().items() if ids.get("ltb-lab") in two_labs}
    assert {(ids["ltb-lab"], ids["ltb-mirror"]) for ids in mirrors.values()} == {
        ("d-a", "b-c"),
        ("d-a-b", "c"),
    }
    assert len(mirrors) == 2, mirrors
    # Each lab's bridge holds its own mirror, output to a port named with its own tag.
    for lab in two_labs:
        model = load_deployed_lab(lab)
        out = subprocess.run(
            ["ovs-vsctl", "--format=json", "--columns=name,output_port", "find", "Mirror",
             f"external_ids:ltb-lab={lab}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        (row,) = json.loads(out)["data"]
        port = subprocess.run(
            ["ovs-vsctl", "get", "Port", row[1][1], "name"],
            check=True, capture_output=True, text=True,
        ).stdout.strip().strip('"')  # fmt: skip
        assert port.startswith(f"x{model.tag}"), (lab, port)
        bridge_mirrors = subprocess.run(
            ["ovs-vsctl", "get", "Bridge", model.bridge, "mirrors"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert bridge_mirrors.count("-") == 4, bridge_mirrors  # one UUID
    # Removing one lab's mirror leaves the other's.
    result = _mirror(two_labs["d-a"], "b-c", "-e", "mirror_state=absent")
    assert result.returncode == 0, result.failure_messages() or result.stderr
    left = [ids for ids in _ovs_mirrors().values() if ids.get("ltb-lab") in two_labs]
    assert [(ids["ltb-lab"], ids["ltb-mirror"]) for ids in left] == [("d-a-b", "c")]


def test_remove_deletes_a_veth_that_was_left_before_its_alias_was_set(two_labs):
    # What a deploy killed between `ip link add` and `ip link set alias` leaves: a pair named
    # after the lab's tag, with no alias.
    model = load_deployed_lab("d-a-b")
    other = load_deployed_lab("d-a")
    host_end, peer = f"v{model.tag}0badcafe", f"t{model.tag}0badcafe"
    subprocess.run(
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", peer], check=True
    )
    try:
        remove(two_labs["d-a-b"])
        assert not Path("/sys/class/net", host_end).exists()
        assert not Path("/sys/class/net", peer).exists()
        assert_no_leftovers("d-a-b")
        # The other lab keeps its interfaces.
        for node in other.nodes:
            assert Path("/sys/class/net", node.interfaces[0].host_name).exists()
    finally:
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)


def test_startup_file_that_is_a_directory_in_the_node_is_refused_before_any_is_written(
    tmp_path, docker_client
):
    lab = _write(
        tmp_path,
        "d-dir",
        """name: d-dir
nodes:
  a:
    files:
      /etc/ltb/first.txt: "written only if every file can be\\n"
      /usr: "not a file\\n"
""",
    )
    try:
        result = run_playbook("deploy.yml", lab)
        assert result.returncode != 0
        messages = "\n".join(result.failure_messages())
        assert "startup file /usr is a directory" in messages, messages
        node = RunningLab(lab, docker_client)
        assert node.exec("a", "test", "-e", "/etc/ltb/first.txt")[0] != 0
        assert node.exec("a", "test", "-d", "/usr/bin")[0] == 0
    finally:
        remove(lab)
    assert_no_leftovers("d-dir")


FRR_HOSTS = """name: d-frr
nodes:
  h1:
    interfaces: {eth1: {ipv4: 10.205.1.10/24}}
    files:
      # Only static routes: no routing daemon besides zebra and staticd.
      /etc/frr/daemons: |
        staticd=yes
        vtysh_enable=yes
        zebra_options="  -A 127.0.0.1 -s 90000000"
        staticd_options="-A 127.0.0.1"
      /etc/frr/frr.conf: |
        ip route 10.205.2.0/24 10.205.1.1
  r1:
    interfaces:
      eth1: {ipv4: 10.205.1.1/24}
      eth2: {ipv4: 10.205.2.1/24}
  h2:
    interfaces: {eth1: {ipv4: 10.205.2.10/24}}
    files:
      # frr.conf alone, with the image's own daemons file.
      /etc/frr/frr.conf: |
        ip route 10.205.1.0/24 10.205.2.1
links:
  - endpoints: [h1:eth1, r1:eth1]
  - endpoints: [r1:eth2, h2:eth1]
"""


def test_host_with_only_frr_static_routes_reaches_beyond_its_router(tmp_path, docker_client):
    lab = _write(tmp_path, "d-frr", FRR_HOSTS)
    try:
        deploy(lab)
        running = RunningLab(lab, docker_client)
        for host, prefix in (("h1", "10.205.2.0/24"), ("h2", "10.205.1.0/24")):
            found = wait_until(lambda h=host, p=prefix: p in running.exec(h, "ip", "route")[1], 15)
            assert found, f"{host} has no FRR static route to {prefix}: " + str(
                running.exec(host, "ip", "route")[1]
            )
        assert wait_until(lambda: running.ping("h1", "10.205.2.10"), 15)
        assert running.ping("h2", "10.205.1.10")
    finally:
        remove(lab)
    assert_no_leftovers("d-frr")
