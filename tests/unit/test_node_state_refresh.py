"""A stale node-state reading is read again behind the callers' backs: nobody waits for
Docker or libvirt once there is a reading (ltb.node_state.Cached)."""

from __future__ import annotations

import threading
import time

from ltb.node_state import Cached


def slow_reader(release: threading.Event):
    reads: list[int] = []

    def read() -> dict[str, str]:
        reads.append(1)
        number = len(reads)
        if number == 2:  # the first reading again: hangs until released
            release.wait(10)
        return {"n": str(number)}

    return read, reads


def test_a_stale_reading_is_answered_at_once_while_a_thread_reads_it_again():
    release = threading.Event()
    read, reads = slow_reader(release)
    cached = Cached(read, 60)
    assert cached.get() == {"n": "1"}
    cached.at -= 61  # the reading is stale
    started = time.monotonic()
    answers = [cached.get() for _ in range(20)]  # the second read hangs until released
    assert time.monotonic() - started < 1
    assert answers == [{"n": "1"}] * 20 and len(reads) == 2  # one reading at a time
    release.set()
    deadline = time.monotonic() + 5
    while cached.get() != {"n": "2"}:  # kept when it ends
        assert time.monotonic() < deadline, "the new reading was never kept"
        time.sleep(0.01)


def test_a_reading_begun_before_forget_is_not_kept():
    release = threading.Event()
    read, reads = slow_reader(release)
    cached = Cached(read, 60)
    cached.get()
    cached.at -= 61  # stale
    assert cached.get() == {"n": "1"}  # the second reading hangs in its thread
    cached.forget()
    assert cached.get() == {"n": "3"}  # after forget the caller reads itself
    release.set()
    deadline = time.monotonic() + 5
    while cached.refreshing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert len(reads) == 3 and cached.get() == {"n": "3"}


def test_a_reading_begun_before_the_lab_changed_is_not_given_for_it():
    reads: list[int] = []

    def read() -> dict[str, str]:
        reads.append(1)
        return {"n": str(len(reads))}

    cached = Cached(read, 60)
    assert cached.get() == {"n": "1"}
    deployed = time.time()  # the lab's deploy ended after that reading began
    assert cached.get(changed_after=deployed) == {"n": "2"}  # read again, at once
    assert cached.get(changed_after=deployed) == {"n": "2"}  # that reading is fresh enough
    assert cached.get(changed_after=deployed - 3600) == {"n": "2"} and len(reads) == 2
    cached.at -= 61  # stale: answered at once, read again behind the caller's back
    assert cached.get(changed_after=deployed) == {"n": "2"}
