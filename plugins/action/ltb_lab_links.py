# LTB action plugin: the ltb_lab_links module, run in this process for this machine's hypervisor.
"""ltb_lab_links's work (module_utils/ltb_lab_links.py) runs on the hypervisor as a module, or,
when the hypervisor is this machine, in this process (ltb.module_utils.result), saving the
0.3 to 0.6 s of packing, starting and importing a second Python."""

from ltb.module_utils import action_plugin

ActionModule = action_plugin("ltb_lab_links", "ltb_lab_links")
