"""Tests of the platform itself (playbooks/site.yml). They run before every other test of a
session: test_site_from_nothing.py stops every service and brings the platform up again,
which the tests after it then use."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: the platform's tests first, every other test in the order it had.
    items.sort(key=lambda item: not item.path.is_relative_to(HERE))
