"""What ltb_lab_remove refuses before it removes anything: a lab entry it cannot trust to name
only that lab's containers, domains and directory."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ltb.module_utils import load

load("ltb_lab_absent")  # the module imports it as ansible.module_utils.ltb_lab_absent
_spec = importlib.util.spec_from_file_location(
    "ltb_lab_remove", Path(__file__).parents[2] / "plugins" / "modules" / "ltb_lab_remove.py"
)
remove_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(remove_module)

LAB = {"lab": "rm-a", "node_prefix": "ltb-rm-a.", "bridge": "ltb-abc123", "tag": "abc123"}


def test_a_lab_as_the_inventory_gives_it_is_accepted():
    assert (
        remove_module.check_labs([LAB, {**LAB, "lab": "rm-b", "node_prefix": "ltb-rm-b."}]) is None
    )


def test_a_node_prefix_that_is_not_the_labs_own_is_refused():
    # "ltb-" would name the domains of every lab on the hypervisor; "ltb-rm-a" those of rm-ab.
    for prefix in ("ltb-", "ltb-rm-a", "ltb-rm-b."):
        problem = remove_module.check_labs([{**LAB, "node_prefix": prefix}])
        assert problem is not None and "rm-a" in problem, prefix


def test_a_lab_name_that_could_leave_the_state_directory_is_refused():
    for name in ("../etc", "rm-a/..", "RM", ""):
        problem = remove_module.check_labs([{**LAB, "lab": name, "node_prefix": f"ltb-{name}."}])
        assert problem is not None and "nothing removed" in problem, name


def test_a_lab_entry_without_its_prefix_bridge_or_tag_is_refused():
    for key in ("node_prefix", "bridge", "tag"):
        problem = remove_module.check_labs([{**LAB, key: ""}])
        assert problem == f"labs[0] lacks {key}: nothing removed", problem
