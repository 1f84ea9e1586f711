# LTB action plugin: the ltb_mirror module, run in this process for this machine's hypervisor.
"""ltb_mirror's work (module_utils/ltb_mirror_module.py) runs on the hypervisor as a module,
or, when the hypervisor is this machine, in this process (ltb.module_utils.result), saving the
0.3 to 0.6 s of packing, starting and importing a second Python each time a capture starts or
stops."""

from ltb.module_utils import action_plugin

ActionModule = action_plugin("ltb_mirror", "ltb_mirror_module")
