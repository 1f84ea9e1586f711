"""LTB's modules whose work is one function of their arguments (plugins/module_utils/
ltb_module.py) run in the controller's process for a hypervisor on a local connection, and as
modules otherwise (here: with become). One real Ansible run each (about a second); the
modules' work itself is tested with their labs."""

from __future__ import annotations

import pytest

from tests.adhoc import run_module

PREFLIGHT = "lab=ip-test state=preflight state_dir=/var/lib/ltb image_root=/nonexistent"


def run(args: str, *extra: str) -> dict:
    return run_module("ltb_lab_vms", args, *extra)


@pytest.mark.integration
def test_on_a_local_connection_the_module_runs_in_the_controllers_process():
    # A module's result carries its `invocation`; the same code called in-process has none.
    here = run(f"{PREFLIGHT} default_image=ltb-vm")
    assert not here.get("failed"), here
    assert "invocation" not in here and here["actions"] == []
    with_become = run(f"{PREFLIGHT} default_image=ltb-vm", "--become", "--become-method=su")
    assert not with_become.get("failed"), with_become
    assert "invocation" in with_become and with_become["actions"] == []


@pytest.mark.integration
def test_in_process_arguments_are_checked_against_the_modules_own_spec():
    unknown = run(f"{PREFLIGHT} default_image=ltb-vm bogus=1")
    assert unknown["failed"] is True
    assert unknown["msg"].startswith("Unsupported parameters for (ltb_lab_vms) module: bogus")
    missing = run(PREFLIGHT)
    assert missing["failed"] is True and "default_image" in missing["msg"]
    wrong = run(f"{PREFLIGHT} default_image=ltb-vm parallel=many")
    assert wrong["failed"] is True and "parallel" in wrong["msg"]
