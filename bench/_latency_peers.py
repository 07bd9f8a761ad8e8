"""Handlers of the latency benchmark (bench/latency_bench.py), imported by its consumers.

Each records ``queue published_at started_at pid`` (``time.monotonic()``: CLOCK_MONOTONIC, the
same clock in every process of the machine) to the file ``$BENCH_LATENCY_OUT`` when it starts,
then works for ``$BENCH_HANDLER_S`` seconds. The message body is the publish time.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

HANDLER_S = float(os.environ.get("BENCH_HANDLER_S", "0.02"))
_out: Any = None


def record(queue: str, published: float) -> None:
    """One line per handler start, written at once (the process may be killed at any time)."""
    global _out
    started = time.monotonic()
    if _out is None:
        _out = open(os.environ["BENCH_LATENCY_OUT"], "a", buffering=1)  # noqa: SIM115
    _out.write(f"{queue} {published!r} {started!r} {os.getpid()}\n")


async def handle(message: Any) -> None:
    """priority_worker: an async handler that waits 20 ms (an SMTP round trip, say)."""
    record(message.queue, float(message.body))
    await asyncio.sleep(HANDLER_S)
