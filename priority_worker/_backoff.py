"""How long to wait before the next reconnect (of a link, a channel, a worker process).

Pure: no I/O, no pika, no tornado.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def reconnect_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Capped exponential backoff with jitter for the ``attempt``-th reconnect (0-based).

    "Equal jitter": half the capped exponential plus a random half, so workers that lost the
    same broker spread out but never hammer it with zero delays.
    """
    ceiling = min(cap, base * 2.0 ** min(attempt, 30))
    return ceiling / 2 + rand() * ceiling / 2
