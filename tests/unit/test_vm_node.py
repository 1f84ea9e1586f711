"""VM nodes without a hypervisor: inventory connection, config drive, snapshot names."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ltb import module_utils
from ltb.inventory import render_inventory
from ltb.snapshot import SnapshotError, check_name, image_name
from ltb.topology import parse_lab

ROOT = Path(__file__).parents[2]
MIXED = (ROOT / "tests" / "integration" / "topologies" / "mixed.lab.yml").read_text()


def _config_drive():
    # The module's building code, shared with ltb_lab_vms.
    return module_utils.load("ltb_config_drive")


def test_vm_nodes_are_reached_over_ssh_on_their_management_address_as_root():
    lab = parse_lab(MIXED.replace("name: NAME", "name: vm-unit"))
    data = render_inventory(lab)
    vm = data.hosts["vm"]
    assert data.groups["vms"] == ["vm"]
    assert data.groups["containers"] == ["c1", "c2"]
    assert vm["ansible_connection"] == "ssh"
    assert vm["ansible_host"] == str(lab.node("vm").mgmt_ipv4.ip)
    assert vm["ansible_user"] == "root"


def test_config_drive_is_the_same_tar_for_the_same_input_with_macs_from_host_names():
    drive = _config_drive()
    interfaces = [
        {
            "name": "eth0",
            "host_name": "mabc",
            "addresses": ["172.20.0.2/24"],
            "mac": "52:54:00:aa:bb:cc",
        },
        {"name": "eth1", "host_name": "vabc", "addresses": [], "mac": "52:54:00:dd:ee:ff"},
    ]
    files = [
        {"path": "/etc/ltb/startup.sh", "content": "echo {{ not templated }}\n", "mode": "0755"}
    ]
    first, config_id = drive.render("r1", interfaces, files)
    assert drive.render("r1", interfaces, files) == (first, config_id)
    with tarfile.open(fileobj=io.BytesIO(first)) as archive:
        assert archive.getnames() == ["ltb/node.env", "ltb/interfaces", "files/etc/ltb/startup.sh"]
        lines = archive.extractfile("ltb/interfaces").read().decode().splitlines()
        startup = archive.getmember("files/etc/ltb/startup.sh")
        assert archive.extractfile(startup).read() == b"echo {{ not templated }}\n"
    assert lines == ["52:54:00:aa:bb:cc eth0 172.20.0.2/24", "52:54:00:dd:ee:ff eth1"]
    assert startup.mode == 0o755
    assert drive.mac_address("vabc") == drive.mac_address("vabc") != drive.mac_address("vabd")
    assert drive.mac_address("vabc").startswith("52:54:00:")


@pytest.mark.parametrize("name", ["", "Bad", "a/b", "-x", "x" * 64, "a b"])
def test_snapshot_names_that_are_refused(name):
    with pytest.raises(SnapshotError, match="is not allowed"):
        check_name(name)


def test_snapshot_images_are_named_by_lab_node_and_snapshot():
    check_name("before-ospf.1")
    assert image_name("lab1", "r1", "s1") == "ltb-snapshot/lab1/r1:s1"
