"""The hypervisor's modules check a lab name with the pattern the topology allows: one copy in
module_utils (ltb_names) and, as ltb-capture is installed with a fixed list of files, its own."""

from __future__ import annotations

from ltb import topology
from ltb.module_utils import load


def test_the_modules_lab_name_is_the_topologys():
    assert load("ltb_names").LAB_NAME.pattern == topology.LAB_NAME.pattern


def test_the_capture_commands_lab_name_is_the_topologys():
    assert load("ltb_capture").LAB_NAME.pattern == topology.LAB_NAME.pattern
