"""What ltb_lab_remove refuses before it removes anything: a lab entry it cannot trust to name
only that lab's containers, domains and directory."""

from __future__ import annotations

from ltb.module_utils import load

# The module's code, as ltb_lab_remove's module and its action plugin run it.
remove_module = load("ltb_lab_remove")

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
