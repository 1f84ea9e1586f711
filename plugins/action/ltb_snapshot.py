# LTB action plugin: the ltb_snapshot module, run in this process for this machine's hypervisor.
"""ltb_snapshot's work (module_utils/ltb_snapshot_module.py) runs on the hypervisor as a
module, or, when the hypervisor is this machine, in this process (ltb.module_utils.result):
a snapshot or a restore in place then saves the 0.3 to 0.6 s of packing, starting and
importing a second Python. A signal to the process that takes a snapshot ends it the same way
in both: the module's own handlers (ltb_snapshot, _Cancellation) take SIGTERM and SIGINT while
it runs."""

from ltb.module_utils import action_plugin

ActionModule = action_plugin("ltb_snapshot", "ltb_snapshot_module")
