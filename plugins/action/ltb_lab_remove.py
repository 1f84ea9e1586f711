# LTB action plugin: the labs removed on their hypervisor, then their allocations released here.
"""ltb_lab_remove runs its module on the hypervisor (everything of the labs there, see the
module; on this machine its code runs in this process), then releases, in the controller's
Ansible process, the allocation (tag, management subnet) of every lab it removed that runs on
this hypervisor alone: the entry of the controller's registry file that the lab's
`allocations` names (the inventory plugin's `ltb_lab_network.allocations`; empty for a job's
run, whose lab store releases it). Only once nothing of the lab is left may another lab take
its tag and subnet, so nothing is released when the removal failed, and a spread lab is
released by remove.yml's next task, once every hypervisor is done.

This was a task of its own (ltb_lab_allocation state=absent, delegated to localhost, one loop
item per lab): a task costs a worker and its templating whatever it does, ~0.3 CPU-s of a
remove that bare commands do in 0.3."""

from __future__ import annotations

from pathlib import Path

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result.update(self._remove(task_vars))
        result["released"] = []
        if result.get("failed"):
            return result
        from ltb.allocation import release_from_file

        check_mode = self._play_context.check_mode
        for lab in self._task.args.get("labs") or []:
            registry_file = str(lab.get("allocations") or "")
            # A lab spread over hypervisors may still be on another one: remove.yml releases
            # it once every hypervisor is done.
            if not registry_file or lab.get("spread"):
                continue
            try:
                if release_from_file(lab["lab"], Path(registry_file), check_mode):
                    result["released"].append(lab["lab"])
            except (RuntimeError, ValueError, OSError) as error:
                result.update(
                    failed=True,
                    msg=f"lab {lab['lab']} removed, but its allocation is not released from "
                    f"{registry_file}: {error}",
                )
                return result
        # Not a change of its own: the inventory allocates a lab on every read, so a lab that
        # was not there is given back too, and removing it twice must change nothing.
        return result

    def _remove(self, task_vars):
        """The module's result: run on the hypervisor, or, when the hypervisor is this machine,
        in this process (ltb.module_utils.result). There the module run was about 0.6 s of a
        10-node lab's 2.3 s remove."""
        from ltb.module_utils import result

        return result(self, "ltb_lab_remove", "ltb_lab_remove", task_vars)
