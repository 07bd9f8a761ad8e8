"""Waiting in tests: run a scenario coroutine, and poll a condition until it holds.

The one set of these for every folder under ``tests/`` (``tests/conftest.py`` puts this
folder on ``sys.path``, so ``from waiting import run, wait_until`` works anywhere):

- ``run(coro)`` runs an async scenario on a fresh event loop, bounded by ``timeout``
  (120 s; ``None`` for scenarios that bound each of their own waits, like the fault suite's);
- ``await wait_until(predicate, timeout, what)`` polls inside a coroutine;
- ``wait_until_blocking(predicate, timeout, what)`` polls from plain code (subprocess tests).

A timeout is a bound, not a measurement: when it passes the test fails with ``what``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

DEFAULT_RUN_TIMEOUT = 120.0
POLL_INTERVAL = 0.05


def run(coro: Awaitable[T], timeout: float | None = DEFAULT_RUN_TIMEOUT) -> T:
    """Run one async scenario on a fresh event loop; fail after ``timeout`` seconds (None:
    no overall bound)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _pauses(
    predicate: Callable[[], object], timeout: float, what: str, interval: float
) -> Iterator[float]:
    """The pauses between polls of ``predicate``, until it is true; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for: {what}")
        yield interval


async def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> None:
    """Poll ``predicate`` on the running loop until it is true; fail after ``timeout`` s."""
    for pause in _pauses(predicate, timeout, what, interval):
        await asyncio.sleep(pause)


def wait_until_blocking(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = POLL_INTERVAL
) -> None:
    """Poll ``predicate`` with ``time.sleep`` until it is true; fail after ``timeout`` s."""
    for pause in _pauses(predicate, timeout, what, interval):
        time.sleep(pause)
