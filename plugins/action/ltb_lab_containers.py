# LTB action plugin: the ltb_lab_containers module, run in this process for this machine's
# hypervisor.
"""ltb_lab_containers's work (module_utils/ltb_lab_containers.py) runs on the hypervisor as a
module, or, when the hypervisor is this machine, in this process (ltb.module_utils.result):
each of a deploy's container runs (checks, nodes, ready) then saves the 0.3 to 0.6 s of
packing, starting and importing a second Python."""

from ltb.module_utils import action_plugin

ActionModule = action_plugin("ltb_lab_containers", "ltb_lab_containers")
