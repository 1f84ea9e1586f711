"""How LTB reaches a lab node (or a hypervisor) over SSH: the client options live once, in
plugins/module_utils/ltb_ssh.py, which the hypervisor's snapshot code uses too."""

from __future__ import annotations

from ltb.module_utils import load

ssh_argv = load("ltb_ssh").ssh_argv

__all__ = ["ssh_argv"]
