"""Who owns a snapshot being taken, and which host-end names remove sweeps: pure logic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ltb import module_utils
from ltb import snapshot as snapshots
from ltb.mirror import mirror_spec
from ltb.model import host_interface_name, mgmt_host_interface_name
from ltb.topology import parse_lab

ROOT = Path(__file__).parents[2]


def _veth_module():
    # The veth code the modules share (plugins/module_utils/ltb_veth.py).
    return module_utils.load("ltb_veth")


def test_this_process_owns_what_it_takes_and_a_finished_one_owns_nothing():
    assert snapshots.owner_alive(snapshots.current_owner())
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    assert not snapshots.owner_alive(f"{done.stdout.strip()}-1")


def test_a_reused_pid_is_not_the_owner_that_died():
    pid, _, started = snapshots.current_owner().partition("-")
    assert not snapshots.owner_alive(f"{pid}-{int(started) + 1}")
    assert snapshots.owner_alive(str(os.getpid()))  # directories of older runs: pid alone


def test_partial_directories_and_images_name_their_snapshot_and_owner():
    match = snapshots.PARTIAL_DIR.fullmatch(".nightly.v2.partial-1234-99887")
    assert match and match["name"] == "nightly.v2" and match["owner"] == "1234-99887"
    assert snapshots.PARTIAL_DIR.fullmatch("nightly") is None
    partial = snapshots.partial_image_name("lab", "r1", "nightly.v2", "1234-99887")
    assert partial == "ltb-partial-snapshot/lab/r1:nightly.v2-1234-99887"
    assert not partial.startswith(snapshots.IMAGE_REPOSITORY + "/")


def test_remove_sweeps_every_host_end_name_of_the_lab_and_no_other_labs():
    lab = parse_lab(
        "name: sweep\nnodes:\n  a: {interfaces: {eth1: {}}}\n  b: {}\n"
        "links:\n  - endpoints: [a:eth1, b:eth1]\n"
    )
    mirror = mirror_spec(lab, "link", "a:eth1")
    host_end = host_interface_name(lab.tag, "a", "eth1")
    names = [
        host_end,
        "t" + host_end[1:],  # the peer before it moves into the node
        mgmt_host_interface_name(lab.tag, "a"),
        mirror.output_port,
        mirror.capture_interface,
    ]
    pattern = _veth_module().host_end_name(lab.tag)
    assert all(pattern.fullmatch(name) for name in names), names
    other = "0" * len(lab.tag) if lab.tag != "0" * len(lab.tag) else "1" * len(lab.tag)
    assert not pattern.fullmatch(host_interface_name(other, "a", "eth1"))
    assert not pattern.fullmatch(f"ltb-{lab.tag}")  # the bridge goes with OVS, not here
    assert _veth_module().host_end_name(None) is None
