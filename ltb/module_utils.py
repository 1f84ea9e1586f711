"""The hypervisor-side code of plugins/module_utils/, importable in the controller's Python.

Ansible ships `plugins/module_utils/ltb_*.py` to a hypervisor with each module that imports
it (`from ansible.module_utils.ltb_ovs import ...`). The controller (ltb.mirror, the capture
command) and the unit tests use the same files: adding the directory to the path of the
installed `ansible.module_utils` package makes those imports resolve here as they do there,
so there is one implementation of each.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import ansible.module_utils

MODULE_UTILS = Path(__file__).resolve().parent.parent / "plugins" / "module_utils"


def load(name: str) -> ModuleType:
    """The module_utils file `name` (e.g. 'ltb_mirror') as `ansible.module_utils.<name>`."""
    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(MODULE_UTILS))
    return importlib.import_module(f"ansible.module_utils.{name}")
