"""A check-mode run's allocation (Registry.allocate with record=False): what a real run would
record, and the registry file left as it was."""

from __future__ import annotations

from ltb.allocation import Registry
from tests.unit.test_allocation import bare_lab


def test_an_unrecorded_allocation_leaves_a_new_lab_out_of_the_registry(tmp_path):
    registry = Registry(tmp_path)
    registry.allocate(bare_lab("dp-other"))
    before = registry.path.read_text()
    checked = registry.allocate(bare_lab("dp-new"), record=False)
    assert registry.path.read_text() == before
    # The allocation a real run then records.
    assert registry.allocate(bare_lab("dp-new")) == checked


def test_an_unrecorded_allocation_keeps_what_a_lab_holds(tmp_path):
    registry = Registry(tmp_path)
    held = registry.allocate(bare_lab("dp-held"))
    assert registry.allocate(bare_lab("dp-held"), record=False) == held
    assert registry.held()["dp-held"].allocation == held
