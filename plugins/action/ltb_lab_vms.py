# LTB action plugin: the ltb_lab_vms module, run in this process for this machine's hypervisor.
"""ltb_lab_vms's work (module_utils/ltb_lab_vms.py) runs on the hypervisor as a module, or,
when the hypervisor is this machine, in this process (ltb.module_utils.result): its checks and
its VMs' start then come 0.3 to 0.6 s sooner each, before a boot that the deploy waits for."""

from ltb.module_utils import action_plugin

ActionModule = action_plugin("ltb_lab_vms", "ltb_lab_vms")
