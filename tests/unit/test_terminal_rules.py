"""Rules of web terminals that need no node: resize messages and the count of open terminals
(portal/terminal.py)."""

from __future__ import annotations

import subprocess

import pytest

from portal.terminal import (
    CLOSE_LIMIT,
    TerminalRefused,
    TerminalSlots,
    origin_matches,
    parse_control,
)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ('{"resize": [120, 40]}', (120, 40)),
        ('{"resize": [1, 1]}', (1, 1)),
        ('{"resize": [0, 40]}', None),
        ('{"resize": [100000, 40]}', None),
        ('{"resize": ["120", 40]}', None),
        ('{"resize": [120]}', None),
        ('{"other": 1}', None),
        ("[1, 2]", None),
        ("not json", None),
    ],
)
def test_only_a_resize_to_a_sane_size_is_a_resize(text, size):
    assert parse_control(text) == size


def test_a_user_past_their_limit_is_refused_and_a_closed_terminal_frees_its_place(tmp_path):
    slots = TerminalSlots(tmp_path, per_user=2, per_worker=10)
    with slots.slot(1), slots.slot(1):
        with pytest.raises(TerminalRefused) as refused, slots.slot(1):
            pass
        assert refused.value.code == CLOSE_LIMIT and "close one" in refused.value.message
        with slots.slot(2):  # another user is not counted against user 1
            assert slots.count() == 3
    assert slots.count() == 0
    with slots.slot(1):
        assert slots.count() == 1


def test_a_worker_past_its_terminal_threads_refuses_anyone(tmp_path):
    slots = TerminalSlots(tmp_path, per_user=10, per_worker=2)
    with slots.slot(1), slots.slot(2):
        with pytest.raises(TerminalRefused) as refused, slots.slot(3):
            pass
        assert "as many terminals open as it can serve" in refused.value.message


def test_terminals_of_other_workers_count_for_the_user_and_a_dead_workers_do_not(tmp_path):
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / f"1.{other.pid}.1").touch()  # user 1's terminal in another live worker
        slots = TerminalSlots(tmp_path, per_user=2, per_worker=10)
        with slots.slot(1), pytest.raises(TerminalRefused), slots.slot(1):
            pass
    finally:
        other.kill()
        other.wait()
    # The worker died (killed with its terminals): its file no longer counts and is removed.
    with slots.slot(1), slots.slot(1):
        assert slots.count() == 2
    assert not (tmp_path / f"1.{other.pid}.1").exists()


@pytest.mark.parametrize(
    ("origin", "host", "same"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("https://ltb.example", "ltb.example", True),
        ("https://LTB.example", "ltb.example", True),
        ("https://ltb.example:8443", "ltb.example", True),  # behind nginx's $host
        ("http://127.0.0.1:9000", "127.0.0.1:8080", False),
        ("https://evil.example", "ltb.example", False),
        ("https://ltb.example.evil.example", "ltb.example", False),
        ("null", "ltb.example", False),
        ("file://ltb.example", "ltb.example", False),
        ("", "ltb.example", False),
        (None, "ltb.example", False),
        ("http://[::1]:8080", "[::1]:8080", True),
    ],
)
def test_only_pages_of_this_site_may_open_a_terminal(origin, host, same):
    assert origin_matches(origin, host) is same
