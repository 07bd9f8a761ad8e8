"""The values a user builds and receives: queue specs, modes, messages. No I/O here."""

from __future__ import annotations

import asyncio
import enum
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errors import ConfigurationError


class Mode(str, enum.Enum):
    """How the worker shares its capacity between queues (first queue = highest priority).

    - ``weighted``: every queue is consumed at its own prefetch; under backlog each gets work in
      proportion to its prefetch (10 and 2 -> about 5:1), so no queue starves.
    - ``strict``: a queue is consumed only while every queue before it is idle.
    - ``conserving``: like weighted, but the prefetch an idle queue leaves unused is lent to the
      next busy queue after it, and taken back as soon as the idle queue gets work.
    """

    WEIGHTED = "weighted"
    STRICT = "strict"
    CONSERVING = "conserving"


@dataclass(frozen=True, init=False)
class Properties:
    """The AMQP basic properties of a message (all optional).

    A frozen dataclass with a hand-written ``__init__`` (the generated one of a frozen class
    sets each field through ``object.__setattr__``: several microseconds per message).
    """

    content_type: str | None = None
    content_encoding: str | None = None
    headers: Mapping[str, Any] | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None

    def __init__(
        self,
        content_type: str | None = None,
        content_encoding: str | None = None,
        headers: Mapping[str, Any] | None = None,
        delivery_mode: int | None = None,
        priority: int | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        expiration: str | None = None,
        message_id: str | None = None,
        timestamp: int | None = None,
        type: str | None = None,
        user_id: str | None = None,
        app_id: str | None = None,
    ) -> None:
        self.__dict__.update(
            {
                "content_type": content_type,
                "content_encoding": content_encoding,
                "headers": headers,
                "delivery_mode": delivery_mode,
                "priority": priority,
                "correlation_id": correlation_id,
                "reply_to": reply_to,
                "expiration": expiration,
                "message_id": message_id,
                "timestamp": timestamp,
                "type": type,
                "user_id": user_id,
                "app_id": app_id,
            }
        )


def with_headers(properties: Properties, headers: Mapping[str, Any] | None) -> Properties:
    """``properties`` with ``headers`` instead of its own: ``dataclasses.replace`` without its
    per-field walk (a copy of the instance's fields, one of them changed)."""
    copy = object.__new__(Properties)
    fields = copy.__dict__
    fields.update(properties.__dict__)
    fields["headers"] = headers
    return copy


class FollowUpPublisher(Protocol):
    """What a handler may do with ``message.publisher``: publish follow-up work, confirmed.

    :class:`priority_worker.Publisher` is the implementation; this protocol keeps the model free
    of the publisher's module (which imports the model back).
    """

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        *,
        mandatory: bool = True,
        properties: Properties | None = None,
        headers: Mapping[str, object] | None = None,
        persistent: bool = True,
    ) -> asyncio.Future[None]:
        """Publish one message; the future resolves when the broker confirms it."""

    def publish_blocking(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        *,
        timeout: float | None = None,
        mandatory: bool = True,
        properties: Properties | None = None,
        headers: Mapping[str, object] | None = None,
        persistent: bool = True,
    ) -> None:
        """Publish from another thread and block until the broker confirms."""


@dataclass(frozen=True, init=False)
class Message:
    """One delivered message, as a handler receives it.

    ``body`` is the raw bytes; ``data`` is the body decoded by its content type (JSON for
    ``application/json`` and ``*+json``, ``str`` for ``text/*``, else the bytes themselves).
    ``attempts`` counts earlier failed or retried handlings of this message by priority_worker.
    ``publisher`` is the worker's confirmed publisher, for handlers that publish follow-up work.
    """

    body: bytes
    queue: str
    routing_key: str
    exchange: str
    redelivered: bool
    properties: Properties
    data: Any = None
    attempts: int = 0
    publisher: FollowUpPublisher | None = field(default=None, repr=False, compare=False)

    def __init__(
        self,
        body: bytes,
        queue: str,
        routing_key: str,
        exchange: str,
        redelivered: bool,
        properties: Properties,
        data: Any = None,
        attempts: int = 0,
        publisher: FollowUpPublisher | None = None,
    ) -> None:
        # Hand-written for speed, like Properties.__init__.
        self.__dict__.update(
            {
                "body": body,
                "queue": queue,
                "routing_key": routing_key,
                "exchange": exchange,
                "redelivered": redelivered,
                "properties": properties,
                "data": data,
                "attempts": attempts,
                "publisher": publisher,
            }
        )

    @property
    def headers(self) -> Mapping[str, Any]:
        """The message headers (an empty mapping when there are none)."""
        return self.properties.headers or {}

    @property
    def message_id(self) -> str | None:
        """The ``message_id`` property, the natural idempotency key."""
        return self.properties.message_id


Handler = Callable[[Message], Awaitable[Any] | Any]
"""A handler: ``def f(message)`` (run in the thread pool) or ``async def f(message)``."""


@dataclass(frozen=True)
class Queue:
    """A queue to consume with its own prefetch.

    ``dead_letter_exchange``: where rejected and exhausted messages are published (with the
    routing key ``dead_letter_routing_key``, default: the message's own routing key). Without it
    the worker declares ``<name>.dead`` and sends them there. ``handler`` overrides the worker's
    handler for this queue.
    """

    name: str
    prefetch: int = 1
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    handler: Handler | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("queue name must not be empty")
        if not 1 <= self.prefetch <= 65535:
            raise ConfigurationError(f"queue {self.name}: prefetch must be in 1..65535")

    @classmethod
    def parse(cls, spec: str) -> Queue:
        """``"email.high=10"`` -> ``Queue("email.high", prefetch=10)`` (CLI syntax)."""
        name, sep, prefetch = spec.rpartition("=")
        if not sep or not name:
            raise ConfigurationError(f"queue spec {spec!r}: expected NAME=PREFETCH")
        try:
            count = int(prefetch)
        except ValueError as exc:
            raise ConfigurationError(f"queue spec {spec!r}: prefetch is not a number") from exc
        if not 1 <= count <= 65535:  # basic.qos carries prefetch_count as a 16-bit field
            raise ConfigurationError(f"queue spec {spec!r}: prefetch must be in 1..65535")
        return cls(name, count)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after unhandled handler exceptions: delayed retries, then dead-letter.

    The retry *steps* are ``delays`` when given (seconds, ascending; the n-th failure waits the
    n-th step, the last one repeats), else the exponential backoff ``initial_delay *
    multiplier ** (n - 1)`` capped at ``max_delay``. After ``max_retries`` retries the next
    failure dead-letters the message. Each step is one delay queue per consumed queue (a fixed,
    finite set that declare-amqp can derive from a topology's ``consumers``); a handler's
    ``Retry(delay=...)`` is rounded up to the nearest step (capped at the largest).
    """

    max_retries: int = 5
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    delays: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial_delay < 0 or self.multiplier < 1:
            raise ConfigurationError("retry policy: negative count/delay or multiplier < 1")
        if any(d <= 0 for d in self.delays) or list(self.delays) != sorted(self.delays):
            raise ConfigurationError("retry policy: delays must be positive and ascending")

    @functools.cached_property
    def steps(self) -> tuple[float, ...]:
        """The retry delays in seconds, ascending and distinct (one delay queue each)."""
        from declare_amqp.worker_queues import retry_steps  # the rule both tools share

        return retry_steps(
            self.max_retries, self.initial_delay, self.multiplier, self.max_delay, self.delays
        )

    def delay_for(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based)."""
        steps = self.steps
        return steps[min(max(failures, 1), len(steps)) - 1]

    def round_up(self, delay: float) -> float:
        """A handler's requested delay as the step that serves it: the nearest step up."""
        from declare_amqp.worker_queues import round_up_to_step

        return round_up_to_step(delay, self.steps)
