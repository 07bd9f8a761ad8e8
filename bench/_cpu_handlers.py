"""Handlers of bench/processes_bench.py and bench/health_bench.py.

``cpu``: ~2 ms of pure-Python work per message (a plain function: the thread pool, the GIL),
recording ``queue pid time`` to ``$BENCH_OUT``. ``sleep_500ms``: a plain function that blocks
500 ms (a slow synchronous client). ``crunch_50ms``: an *async* handler that runs a 50 ms CPU
loop without awaiting (the bug the blocked-loop warning is about).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

_lock = threading.Lock()
_out: Any = None


def _record(queue: str) -> None:
    global _out
    with _lock:
        if _out is None:
            _out = open(os.environ["BENCH_OUT"], "a", buffering=1)  # noqa: SIM115
        _out.write(f"{queue} {os.getpid()} {time.monotonic()!r}\n")


def _spin(seconds: float) -> int:
    """Pure-Python work for about ``seconds`` of CPU time of this thread."""
    end = time.thread_time() + seconds
    n = 0
    while time.thread_time() < end:
        for i in range(200):
            n += i * i % 7
    return n


def cpu(message: Any) -> None:
    _spin(0.002)
    _record(message.queue)


def sleep_500ms(message: Any) -> None:
    time.sleep(0.5)


async def crunch_50ms(message: Any) -> None:
    _spin(0.05)
