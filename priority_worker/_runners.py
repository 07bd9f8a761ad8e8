"""The runner pool: long-lived tasks that start held deliveries in the dispatcher's order.

Handlers run in at most ``concurrency`` runner tasks, made on demand, not in a task per
delivery: an idle runner waits on a future of its own, and ``_waking`` counts runners woken
(or made) that have not yet taken work, so a burst of arrivals wakes one runner, not many.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from ._log import log
from ._scheduling import Dispatcher

T = TypeVar("T")

logger = logging.getLogger("priority_worker.worker")
RUNNER_TURN_S = 0.02  # longest run of non-waiting handlers before a runner yields the loop


class RunnerPool(Generic[T]):
    """Runs ``handle(item)`` for what ``dispatcher`` lets start, at most ``concurrency`` at
    once. ``len(pool)``: runner tasks alive."""

    def __init__(
        self,
        dispatcher: Dispatcher[T],
        concurrency: int,
        handle: Callable[[T], Awaitable[None]],
    ) -> None:
        self._dispatcher = dispatcher
        self._concurrency = concurrency
        self._handle = handle
        self._runners: set[asyncio.Task[None]] = set()
        self._idle: list[asyncio.Future[None]] = []
        self._waking = 0
        self._stopping = False

    def __len__(self) -> int:
        return len(self._runners)

    def pump(self) -> None:
        """Have a runner start what can be started (a runner already woken will do it)."""
        if self._stopping or self._waking or not self._dispatcher.startable():
            return
        while self._idle:
            waiter = self._idle.pop()  # the most recently idle one
            if not waiter.done():
                self._waking += 1
                waiter.set_result(None)
                return
        if len(self._runners) < self._concurrency:
            self._waking += 1
            task = asyncio.ensure_future(self._run())
            self._runners.add(task)
            task.add_done_callback(self._done)
        # else every runner is busy: each takes more work as soon as its handler is done

    def stop(self) -> None:
        """Start nothing more: idle runners end now, busy ones after their handler."""
        self._stopping = True
        for waiter in self._idle:
            waiter.cancel()
        self._idle.clear()

    async def _run(self) -> None:
        """Start deliveries in the dispatcher's order, one at a time, until there is none.

        Before running a handler, another runner is woken if more work can start, so a
        handler that waits never holds up the others; a handler that does not wait (no I/O)
        costs no task and no loop turn of its own, but after RUNNER_TURN_S of such handlers
        in a row the runner yields once, so acks, deliveries, heartbeats and /healthz get a
        turn (without it a backlog of non-waiting handlers held the loop until it ran dry).
        """
        dispatcher = self._dispatcher
        loop = asyncio.get_running_loop()
        self._waking -= 1
        turn = loop.time()
        while not self._stopping:  # the worker's stop requeues what was not started
            if loop.time() - turn > RUNNER_TURN_S:
                await asyncio.sleep(0)
                turn = loop.time()
            taken = dispatcher.take_one()
            if taken is None:
                waiter: asyncio.Future[None] = loop.create_future()
                self._idle.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter.done() and not waiter.cancelled():  # woken by pump
                        self._waking -= 1
                continue
            self.pump()
            await self._handle(taken[1])

    def _done(self, task: asyncio.Task[None]) -> None:
        self._runners.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log(logger, logging.ERROR, "internal_error", error=repr(task.exception()))
        self.pump()
