"""A node's runtime state that lives in no file (routes added by hand, FRR's running config):
plugins/module_utils/ltb_snapshot_runtime.py, which snapshots read and restores replay on the
hypervisor, loaded here for the controller (ltb.device_info, tests)."""

from __future__ import annotations

from ltb import module_utils

_impl = module_utils.load("ltb_snapshot_runtime")

FRR_DAEMON = _impl.FRR_DAEMON
RuntimeStateError = _impl.RuntimeStateError
route_commands = _impl.route_commands
