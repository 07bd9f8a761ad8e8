"""What becomes of a message after its handler ran: ack, retry later, or dead-letter.

Pure: no I/O, no pika, no tornado. :func:`decide` maps a handler's result (and how often the
message failed before, from its ``x-attempts`` header) to an :data:`Action`; the worker carries
the action out (see :mod:`priority_worker._republish`), and :mod:`priority_worker.testing`
returns it to a handler's unit test.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._decoding import UndecodableError
from ._errors import Reject, Retry
from ._model import RetryPolicy

# Headers priority_worker writes on messages it republishes.
ATTEMPTS_HEADER = "x-attempts"
ERROR_HEADER = "x-error"
ORIGINAL_QUEUE_HEADER = "x-original-queue"
DEAD_LETTER_REASON_HEADER = "x-dead-letter-reason"


def attempts_of(headers: Mapping[str, Any] | None) -> int:
    """How many times priority_worker already failed or retried this message."""
    value = (headers or {}).get(ATTEMPTS_HEADER, 0)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Ack:
    """Settle the delivery with basic.ack."""


@dataclass(frozen=True)
class RetryLater:
    """Republish to a delay queue of ``delay`` seconds with ``attempts`` in a header, then ack."""

    delay: float
    attempts: int
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """Publish to the dead-letter destination with ``error`` in a header, then ack."""

    reason: str
    error: str
    attempts: int


Action = Ack | RetryLater | DeadLetter


def decide(error: BaseException | None, attempts: int, policy: RetryPolicy) -> Action:
    """Map a handler's result to what happens to its message.

    ``attempts`` is the number of earlier failures/retries recorded on the message.
    Return -> ack; ``Retry`` -> retry after its delay rounded up to the policy's nearest step
    (capped at the largest: one delay queue per step);
    ``Reject`` -> dead-letter now; any other exception -> retry with backoff while fewer than
    ``policy.max_retries`` retries happened, then dead-letter with the error.
    """
    if error is None:
        return Ack()
    if isinstance(error, Retry):
        return RetryLater(
            policy.round_up(error.delay), attempts + 1, error.reason or "retry requested"
        )
    if isinstance(error, Reject):
        return DeadLetter("rejected", error.reason, attempts)
    if isinstance(error, UndecodableError):
        return DeadLetter("undecodable", str(error), attempts)
    text = f"{type(error).__name__}: {error}"
    if attempts < policy.max_retries:
        return RetryLater(policy.delay_for(attempts + 1), attempts + 1, text)
    return DeadLetter("exhausted", text, attempts + 1)


class Republish(NamedTuple):
    """Set while the worker republishes a failed delivery, so that the producer span of that
    publish says why and links to the attempt that failed (the current span)."""

    kind: str  # "retry" or "dead-letter"
    queue: str  # the queue the failed delivery came from
    attempt: int  # the attempt that failed, 1-based


#: Read by the send span (tracing on) of a publish made inside ``REPUBLISH.set(...)``.
REPUBLISH: ContextVar[Republish | None] = ContextVar("priority_worker_republish", default=None)
