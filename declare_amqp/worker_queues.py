"""The queues priority_worker makes for the queues it consumes: one rule, used by both tools.

priority_worker retries a failed message through a *delay queue* and dead-letters it, when no
dead-letter exchange is configured, to a *dead-letter queue*. declare-amqp derives the same
queues from a topology's ``consumers`` section (and recognises them without one), so the two
tools never disagree about a name or an argument, and prune never deletes or refuses them.

- ``Q.delay.MS``: durable, ``x-message-ttl: MS``, ``x-dead-letter-exchange: ""`` and
  ``x-dead-letter-routing-key: Q``: a message waits MS milliseconds and returns to ``Q``.
  There is one per retry step (a fixed, finite set per consumed queue); a handler's
  ``Retry(delay=...)`` is rounded up to the nearest step (capped at the largest).
- ``Q.dead``: durable, no arguments, where rejected and exhausted messages of ``Q`` go when
  the worker has no dead-letter exchange.

Pure: no I/O, no imports of pika or the broker client (priority_worker imports it at start).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "DEFAULT_INITIAL_DELAY",
    "DEFAULT_MAX_DELAY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MULTIPLIER",
    "LEGACY_EXPIRES_GRACE_MS",
    "dead_letter_queue_name",
    "delay_ms",
    "delay_queue_arguments",
    "delay_queue_name",
    "made_by_worker",
    "retry_steps",
    "round_up_to_step",
]

# The worker's default retry policy (priority_worker.RetryPolicy uses these).
DEFAULT_MAX_RETRIES = 5
DEFAULT_INITIAL_DELAY = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_DELAY = 300.0

# Workers before 0.3 gave every delay queue x-expires = TTL + this grace (one queue per
# arbitrary delay could otherwise pile up); such queues are still recognised as the worker's.
LEGACY_EXPIRES_GRACE_MS = 120_000

# A backoff with a small multiplier would otherwise make hundreds of delay queues.
MAX_STEPS = 32

_DELAY = re.compile(r"^(?P<queue>.+)\.delay\.(?P<ms>[1-9][0-9]*)$")


def retry_steps(
    max_retries: int = DEFAULT_MAX_RETRIES,
    initial_delay: float = DEFAULT_INITIAL_DELAY,
    multiplier: float = DEFAULT_MULTIPLIER,
    max_delay: float = DEFAULT_MAX_DELAY,
    delays: Sequence[float] = (),
) -> tuple[float, ...]:
    """The retry delays in seconds, ascending and distinct: ``delays`` when given, else the
    exponential backoff ``initial_delay * multiplier ** n`` up to and including ``max_delay``
    (1, 2, 4, ... 256, 300 by default: ten steps, so a handler's ``Retry(delay=60)`` waits 64
    s, not 16), at most MAX_STEPS of them. ``max_retries`` does not limit the steps: it says
    how many failures are retried, and a ``Retry`` may ask for any delay."""
    if delays:
        return tuple(sorted({float(d) for d in delays}))
    found: list[float] = []
    delay = float(initial_delay)
    while len(found) < MAX_STEPS - 1 and delay < max_delay:
        found.append(delay)
        if multiplier <= 1 or delay <= 0:
            return tuple(found)
        delay *= multiplier
    found.append(float(max_delay) if delay >= max_delay else delay)
    return tuple(sorted(set(found)))


def round_up_to_step(delay: float, steps: Sequence[float]) -> float:
    """The smallest step at least ``delay`` seconds; the largest step when none is."""
    for step in steps:
        if step >= delay - 1e-9:
            return step
    return steps[-1]


def delay_ms(delay: float) -> int:
    """A delay in seconds as the whole milliseconds of a queue name (at least 1)."""
    return max(int(math.ceil(delay * 1000 - 1e-6)), 1)


def delay_queue_name(queue: str, delay: float) -> str:
    """``Q.delay.MS``, the delay queue of ``queue`` for ``delay`` seconds."""
    return f"{queue}.delay.{delay_ms(delay)}"


def delay_queue_arguments(queue: str, delay: float) -> dict[str, Any]:
    """The arguments of that delay queue (durable, classic)."""
    return {
        "x-message-ttl": delay_ms(delay),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
    }


def dead_letter_queue_name(queue: str) -> str:
    """``Q.dead``, where the worker dead-letters ``queue``'s messages without an exchange."""
    return f"{queue}.dead"


def made_by_worker(name: str, arguments: Mapping[str, Any], queues: Collection[str]) -> str | None:
    """The consumed queue (one of ``queues``) that ``name`` is a worker-made queue of, or None.

    By the naming rule *and* the arguments the worker gives: a queue that is merely called
    ``x.delay.5`` with other arguments is not the worker's.
    """
    args = {k: v for k, v in arguments.items() if k != "x-queue-type" or v != "classic"}
    match = _DELAY.match(name)
    if match is not None and match.group("queue") in queues:
        queue, ms = match.group("queue"), int(match.group("ms"))
        expected = delay_queue_arguments(queue, ms / 1000)
        legacy = {**expected, "x-expires": ms + LEGACY_EXPIRES_GRACE_MS}
        if args in (expected, legacy):
            return queue
    if name.endswith(".dead") and name[: -len(".dead")] in queues and not args:
        return name[: -len(".dead")]
    return None
