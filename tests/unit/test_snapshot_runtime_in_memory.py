"""A VM snapshotted with its memory keeps its runtime state there (not read over SSH): after a
restore nothing is replayed in it, and one that booted instead of resuming is named in a
warning. Pure logic on a snapshot manifest in a temporary state directory: the node's address
is one nothing answers on, so an attempt to reach it fails the test."""

from __future__ import annotations

import json

import pytest

from ltb import module_utils

snapshots = module_utils.load("ltb_snapshot")
resume = module_utils.load("ltb_snapshot_resume")

LAB, NAME = "vb-unit", "s1"
VM = {
    "name": "vm",
    "kind": "vm",
    "domain": "ltb-vb-unit.vm",
    "disk": f"labs/{LAB}/vms/vm/disk.qcow2",
    "memory_bytes": 256 * 1024**2,
    "address": "192.0.2.1",  # TEST-NET-1: nothing answers
}


@pytest.fixture
def where(tmp_path):
    settings = snapshots.Settings(tmp_path, tmp_path / "no-key", docker=object())
    path = settings.path(LAB, NAME)
    path.mkdir(parents=True)
    saved = {
        "kind": "vm",
        "disk": "vm.qcow2",
        "memory": "vm.memory",
        "runtime": dict(snapshots.RUNTIME_IN_MEMORY),
    }
    manifest = {"lab": LAB, "name": NAME, "created": "2026-12-02T00:00:00Z", "nodes": {"vm": saved}}
    (path / snapshots.MANIFEST).write_text(json.dumps(manifest))
    return settings


def test_a_vm_saved_with_memory_is_said_to_keep_its_runtime_state_there(where):
    assert snapshots.VmKind.runtime_in_memory(where)
    where.vm_memory = False
    assert not snapshots.VmKind.runtime_in_memory(where)
    assert not snapshots.ContainerKind.runtime_in_memory(where)


def test_a_resumed_vm_gets_nothing_replayed_and_no_warning(where):
    assert snapshots.restore_runtime(LAB, NAME, [VM], where, resumed=["vm"]) == ({"vm": 0}, [])


def test_a_vm_that_booted_instead_of_resuming_is_warned_about_not_reached(where):
    replayed, warnings = snapshots.restore_runtime(LAB, NAME, [VM], where, resumed=[])
    assert replayed == {"vm": 0}
    assert len(warnings) == 1 and "node vm did not resume" in warnings[0]
    assert "is not replayed" in warnings[0]


def test_a_restore_in_place_resumes_vms_with_memory_and_boots_those_with_a_definition(where):
    container = {"name": "c1", "kind": "container", "container": "ltb-vb-unit.c1"}

    def restorable():
        found, why_not = resume.restorable(LAB, NAME, [VM, container], where)
        names = [
            (node["name"], disk.name, memory and memory.name, xml and xml.name)
            for node, disk, memory, xml in found
        ]
        return names, why_not

    assert restorable() == ([("vm", "vm.qcow2", "vm.memory", None)], [])
    manifest = where.path(LAB, NAME) / snapshots.MANIFEST
    disk_only = json.loads(manifest.read_text())
    del disk_only["nodes"]["vm"]["memory"]
    manifest.write_text(json.dumps(disk_only))
    # An older snapshot without the domain's definition: the lab is deployed whole instead.
    assert restorable() == ([], ["node vm: the snapshot has neither its memory nor its definition"])
    disk_only["nodes"]["vm"]["xml"] = "vm.xml"
    manifest.write_text(json.dumps(disk_only))
    assert restorable() == ([("vm", "vm.qcow2", None, "vm.xml")], [])


def test_a_restore_in_place_refuses_a_lab_whose_vm_directory_is_gone(where):
    (where.path(LAB, NAME) / "vm.qcow2").write_bytes(b"")
    (where.path(LAB, NAME) / "vm.memory").write_bytes(b"")
    todo, _ = resume.restorable(LAB, NAME, [VM], where)
    with pytest.raises(snapshots.SnapshotError, match="only a lab that runs from the snapshot"):
        resume.check_restorable(LAB, NAME, todo, where, "ltb-vb-unit.")
