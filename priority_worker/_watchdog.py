"""A warning when something holds the event loop too long, naming the handler that does.

Async handlers share the loop with every other handler, the broker connection (heartbeats
included) and the HTTP server: one that computes or sleeps without awaiting delays all of them,
and /healthz answers only when it yields. The loop ticks a timestamp every ``threshold / 4``; a
thread of its own checks that timestamp, and when it is older than ``threshold`` it looks at
the loop thread's stack (``sys._current_frames``) for the frame of a known handler and logs
``loop_blocked`` with that handler's name, once per stall. A stall with no handler on the stack
(the machine was busy, a garbage collection) is logged at INFO as ``loop_stalled``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import CodeType, FrameType

from ._log import log

logger = logging.getLogger("priority_worker.worker")


def handler_name(handler: object) -> str:
    """``module.qualname`` of a handler function or callable object."""
    target = handler if inspect.isfunction(handler) or inspect.ismethod(handler) else type(handler)
    module = getattr(target, "__module__", "?")
    return f"{module}.{getattr(target, '__qualname__', repr(target))}"


def _code_of(handler: object) -> CodeType | None:
    fn = inspect.unwrap(handler) if inspect.isfunction(handler) else None
    if fn is None:
        call = getattr(type(handler), "__call__", None)  # noqa: B004 - the method itself
        fn = getattr(handler, "__func__", None) or call
    return getattr(fn, "__code__", None)


class LoopWatchdog:
    """Watches the running loop; ``on_blocked(name, seconds)`` is called on each report."""

    def __init__(
        self,
        threshold: float,
        handlers: Iterable[object],
        on_blocked: Callable[[str, float], None] | None = None,
    ) -> None:
        self.threshold = threshold
        self.on_blocked = on_blocked
        self._codes: dict[CodeType, str] = {}
        for h in handlers:
            code = _code_of(h)
            if code is not None:
                self._codes[code] = handler_name(h)
        self._beat = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (call from that loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tick()
        # Not named priority-worker-*: the CLI waits for no thread of that name at exit.
        self._thread = threading.Thread(target=self._watch, name="pw-loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        self._beat = time.monotonic()
        assert self._loop is not None
        if not self._stop.is_set():
            self._timer = self._loop.call_later(self.threshold / 4, self._tick)

    def _watch(self) -> None:
        reported = None
        while not self._stop.wait(self.threshold / 4):
            beat = self._beat
            lag = time.monotonic() - beat
            if lag <= self.threshold or beat == reported:
                continue
            reported = beat
            frame = sys._current_frames().get(self._loop_thread)
            name, where = self._culprit(frame)
            if name is not None:
                log(
                    logger,
                    logging.WARNING,
                    "loop_blocked",
                    handler=name,
                    blocked_for=round(lag, 3),
                    threshold=self.threshold,
                    at=where,
                    hint="an async handler must not block: await, or make it a plain "
                    "function (runs in the thread pool)",
                )
                if self.on_blocked is not None:
                    self.on_blocked(name, lag)
            else:
                log(logger, logging.INFO, "loop_stalled", blocked_for=round(lag, 3), at=where)

    def _culprit(self, frame: FrameType | None) -> tuple[str | None, str]:
        where = "?"
        if frame is not None:
            where = f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
        while frame is not None:
            name = self._codes.get(frame.f_code)
            if name is not None:
                return name, where
            frame = frame.f_back
        return None, where
