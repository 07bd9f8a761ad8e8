"""The blocked-loop warning names the async handler that holds the loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from priority_worker._watchdog import LoopWatchdog, handler_name


async def crunch(message: object) -> None:
    """An async handler with a bug: it blocks the loop."""
    time.sleep(0.3)


async def polite(message: object) -> None:
    await asyncio.sleep(0.3)


class Crunchy:
    async def __call__(self, message: object) -> None:
        time.sleep(0.3)


def watch(handler: object, caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    reports: list[tuple[str, float]] = []

    async def scenario() -> None:
        dog = LoopWatchdog(
            0.1, [handler, polite], on_blocked=lambda name, s: reports.append((name, s))
        )
        dog.start()
        await asyncio.sleep(0.05)
        await handler(None)  # type: ignore[operator]
        await asyncio.sleep(0.1)
        dog.stop()

    with caplog.at_level(logging.INFO, logger="priority_worker.worker"):
        asyncio.run(scenario())
    return reports


def test_a_blocking_async_handler_is_named_once_per_stall(caplog: pytest.LogCaptureFixture) -> None:
    reports = watch(crunch, caplog)
    assert [name for name, _ in reports] == [handler_name(crunch)]
    assert reports[0][1] > 0.1
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "loop_blocked"]
    assert record.levelno == logging.WARNING
    assert record.fields["handler"].endswith("test_watchdog.crunch")  # type: ignore[attr-defined]


def test_a_callable_object_is_named_by_its_class(caplog: pytest.LogCaptureFixture) -> None:
    reports = watch(Crunchy(), caplog)
    assert [name.rpartition(".")[2] for name, _ in reports] == ["Crunchy"]


def test_an_awaiting_handler_is_never_reported(caplog: pytest.LogCaptureFixture) -> None:
    assert watch(polite, caplog) == []
    assert not [r for r in caplog.records if getattr(r, "event", None) == "loop_blocked"]
