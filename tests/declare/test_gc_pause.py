"""``_gc.paused``: the cyclic collector is off inside, and back on only when the last of
overlapping pauses (the file parsed while the broker is read in another thread) ends."""

from __future__ import annotations

import gc
import threading

from declare_amqp._gc import paused


def test_overlapping_pauses_restore_the_collector_once_at_the_end() -> None:
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def reader() -> None:
        with paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=reader)
    with paused():
        thread.start()
        assert inside.wait(10)
    assert not gc.isenabled()  # the other thread is still building
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off_and_errors_restore() -> None:
    try:
        with paused():
            raise ValueError("boom")
    except ValueError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
