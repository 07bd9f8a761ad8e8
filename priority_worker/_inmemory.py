"""An in-memory broker and a simulated worker on a virtual clock, for deterministic unit tests.

It models what decides the share and the latency: each queue's consumer holds at most its
prefetch of unacked deliveries (a new consumer after a prefetch change starts counting afresh,
as on RabbitMQ), a settled delivery frees its slot and the broker refills it, unstarted
deliveries that the worker gives back are requeued at the head with ``redelivered`` set, and a
worker that dies (``crash_after``) returns every unacked delivery. The worker side is the
worker's own code: the same :class:`~priority_worker._scheduling.Dispatcher` with the same weights,
the same :func:`~priority_worker._scheduling.effective_prefetch` and idle probe for strict and
conserving modes, and the same :func:`~priority_worker._handling.handle` for each message.

Time is virtual: a handler takes ``handler_time`` seconds of it (a float or a function of the
message), so a run of thousands of messages takes milliseconds and always gives the same order.
Handlers should not sleep for real; their return value or exception is what counts. Network
latency is zero, but the next delivery is chosen before a settled one's refill arrives (the
broker answers an ack after a round trip).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._errors import ConfigurationError
from ._handling import handle
from ._model import Handler, Message, Mode, Properties, Queue, RetryPolicy
from ._outcomes import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    Action,
    DeadLetter,
    RetryLater,
    attempts_of,
)
from ._scheduling import Dispatcher, dispatch_weights, effective_prefetch


@dataclass(frozen=True)
class StoredMessage:
    """A message in an in-memory queue (or dead-lettered)."""

    body: bytes
    properties: Properties
    published_at: float
    redelivered: bool = False


@dataclass(frozen=True)
class Handled:
    """One handler run: which queue, the message, when (virtual seconds) and what came of it."""

    queue: str
    message: Message
    published_at: float
    delivered_at: float
    started_at: float
    finished_at: float
    action: Action

    @property
    def wait(self) -> float:
        """Seconds from publish to handler start."""
        return self.started_at - self.published_at


@dataclass
class Run:
    """What one :meth:`InMemoryBroker.run` did, in handler start order."""

    handled: list[Handled] = field(default_factory=list)
    requeued: int = 0  # deliveries given back unstarted (prefetch cut, stop, crash)
    crashed: bool = False

    def counts(self, first: int | None = None) -> Counter[str]:
        """Handler runs per queue, of the first ``first`` (default: all)."""
        return Counter(h.queue for h in self.handled[:first])

    def waits(self, queue: str) -> list[float]:
        """Publish-to-start seconds of every message handled from ``queue``."""
        return [h.wait for h in self.handled if h.queue == queue]


@dataclass(eq=False)
class _Delivery:
    queue: str
    stored: StoredMessage
    consumer: int
    delivered_at: float


@dataclass(eq=False)
class _Consumer:
    spec: Queue
    prefetch: int | None = None  # of the current consumer; None: not consuming
    generation: int = 0
    unacked: Counter[int] = field(default_factory=Counter)  # per consumer generation
    idle: bool = False


class InMemoryBroker:
    """Queues in memory; :meth:`run` consumes them like a :class:`~priority_worker.Worker`.

    ::

        broker = InMemoryBroker()
        broker.publish_many("email.high", 3000)
        broker.publish_many("email.default", 3000)
        run = broker.run([Queue("email.high", 10), Queue("email.default", 2)], send_email,
                         concurrency=1, handler_time=0.02, max_handled=600)
        assert run.counts() == {"email.high": 500, "email.default": 100}

    ``broker.now`` is the virtual clock (seconds); ``publish(..., at=t)`` schedules a message
    for a later virtual time, so arrivals during a run can be modelled. What a run dead-letters
    is in ``broker.dead_lettered[queue]``; retries come back to their queue after their delay.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.dead_lettered: dict[str, list[StoredMessage]] = {}
        self._ready: dict[str, deque[StoredMessage]] = {}
        self._events: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()

    # --- the broker side ---------------------------------------------------------------------

    def publish(
        self,
        queue: str,
        body: bytes | str = b"",
        *,
        at: float | None = None,
        properties: Properties | None = None,
        content_type: str | None = None,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> None:
        """Put a message into ``queue`` now, or at the virtual time ``at`` (during a run)."""
        props = properties or Properties()
        if content_type is not None or headers is not None or message_id is not None:
            props = replace(
                props,
                content_type=content_type or props.content_type,
                headers={**(props.headers or {}), **(headers or {})} or None,
                message_id=message_id or props.message_id,
            )
        when = self.now if at is None else max(at, self.now)
        raw = body.encode() if isinstance(body, str) else body
        stored = StoredMessage(raw, props, when)
        if when <= self.now:
            self._ready.setdefault(queue, deque()).append(stored)
        else:
            self._schedule(when, "publish", (queue, stored))

    def publish_many(self, queue: str, count: int, *, prefix: str | None = None) -> None:
        """``count`` messages with bodies and message ids ``<prefix>-<n>`` (default: queue)."""
        for n in range(count):
            mid = f"{prefix or queue}-{n}"
            self.publish(queue, mid, message_id=mid)

    def ready(self, queue: str) -> int:
        """Messages ready in ``queue`` (not delivered, not scheduled for later)."""
        return len(self._ready.get(queue, ()))

    def messages(self, queue: str) -> list[StoredMessage]:
        """The ready messages of ``queue``, head first."""
        return list(self._ready.get(queue, ()))

    def _schedule(self, when: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._events, (when, next(self._seq), kind, payload))

    # --- the worker side ---------------------------------------------------------------------

    def run(
        self,
        queues: Sequence[Queue],
        handler: Handler | None = None,
        *,
        mode: Mode | str = Mode.WEIGHTED,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        handler_time: float | Callable[[Message], float] = 0.0,
        max_handled: int | None = None,
        until: float | None = None,
        crash_after: int | None = None,
        probe_interval: float = 0.5,
    ) -> Run:
        """Consume ``queues`` (highest priority first) as a worker with these settings would.

        Stops starting handlers after ``max_handled`` starts, at virtual time ``until``, or
        when there is nothing left to do (no message ready, held or scheduled); then, like the
        worker's stop, the running handlers finish and are settled, and unstarted deliveries
        go back to their queue's head. ``crash_after``: the worker dies after that many
        starts, before settling anything still running: every unacked delivery (handled or
        not) is redelivered, as after a ``kill -9``.
        """
        sim = _Simulation(
            self,
            queues,
            handler,
            Mode(mode),
            concurrency,
            retry or RetryPolicy(),
            handler_time,
            probe_interval,
        )
        return sim.run(max_handled, until, crash_after)


class _Simulation:
    def __init__(
        self,
        broker: InMemoryBroker,
        queues: Sequence[Queue],
        handler: Handler | None,
        mode: Mode,
        concurrency: int | None,
        retry: RetryPolicy,
        handler_time: float | Callable[[Message], float],
        probe_interval: float,
    ) -> None:
        if not queues:
            raise ConfigurationError("at least one queue is needed")
        if probe_interval <= 0:
            raise ConfigurationError("probe_interval must be > 0")
        for q in queues:
            if q.handler is None and handler is None:
                raise ConfigurationError(f"queue {q.name} has no handler")
        self.b = broker
        self.mode = mode
        self.handler = handler
        self.retry = retry
        self.duration = handler_time if callable(handler_time) else (lambda _m: handler_time)
        self.probe_interval = probe_interval
        self.consumers = [_Consumer(q) for q in queues]
        self.by_name = {c.spec.name: c for c in self.consumers}
        names = [q.name for q in queues]
        self.dispatcher: Dispatcher[_Delivery] = Dispatcher(
            names,
            concurrency or sum(q.prefetch for q in queues),
            by_priority=mode is Mode.STRICT,
            weights=dispatch_weights(mode, [(q.name, q.prefetch) for q in queues]),
            clock=lambda: self.b.now,
        )
        self.result = Run()
        self.running: set[_Delivery] = set()
        self.starting = True
        self.limit: int | None = None
        self.loop = asyncio.new_event_loop()

    def run(self, max_handled: int | None, until: float | None, crash_after: int | None) -> Run:
        b = self.b
        limits = [x for x in (max_handled, crash_after) if x is not None]
        self.limit = min(limits) if limits else None
        try:
            if self.mode is not Mode.WEIGHTED and len(self.consumers) > 1:
                b._schedule(b.now, "probe", None)
            self.replan()
            self.deliver()
            self.start()
            kept: list[tuple[float, int, str, Any]] = []  # publishes left for a later run
            while True:
                count = len(self.result.handled)
                if crash_after is not None and count >= crash_after:
                    self.crash()
                    break
                if self.starting and (
                    (max_handled is not None and count >= max_handled)
                    or (until is not None and b.now >= until)
                ):
                    self.stop_starting()
                if not self.starting and not self.running:
                    break
                if self.starting and self.nothing_left():
                    break
                if not b._events:
                    break
                event = heapq.heappop(b._events)
                when, _, kind, payload = event
                if not self.starting and kind != "finish":
                    if kind == "publish":
                        kept.append(event)
                    continue
                if self.starting and until is not None and when > until:
                    b.now = until
                    heapq.heappush(b._events, event)
                    continue
                b.now = max(b.now, when)
                getattr(self, f"on_{kind}")(payload)
            self.give_back(self.dispatcher.take_pending())
            b._events = [e for e in b._events if e[2] == "publish"] + kept
            heapq.heapify(b._events)
            return self.result
        finally:
            self.loop.close()

    def nothing_left(self) -> bool:
        b = self.b
        return (
            not self.running
            and self.dispatcher.in_flight() == 0
            and not any(b._ready.get(c.spec.name) for c in self.consumers)
            and all(e[2] == "probe" for e in b._events)
        )

    def stop_starting(self) -> None:
        """The worker's stop: cancel the consumers, give back what was not started."""
        self.starting = False
        for c in self.consumers:
            c.prefetch = None
        self.give_back(self.dispatcher.take_pending())

    # --- broker -> worker ----------------------------------------------------------------------

    def deliver(self) -> None:
        b = self.b
        for c in self.consumers:
            ready = b._ready.get(c.spec.name)
            while c.prefetch is not None and ready and c.unacked[c.generation] < c.prefetch:
                stored = ready.popleft()
                c.unacked[c.generation] += 1
                if c.idle:  # a delivery marks its queue busy at once, as in the worker
                    c.idle = False
                    self.replan()
                self.dispatcher.add(
                    c.spec.name, _Delivery(c.spec.name, stored, c.generation, b.now)
                )

    def replan(self) -> None:
        """Bring every consumer to the prefetch the mode wants (the worker's _apply_loop)."""
        desired = effective_prefetch(
            self.mode, [c.spec.prefetch for c in self.consumers], [c.idle for c in self.consumers]
        )
        for c, target in zip(self.consumers, desired, strict=True):
            if target == c.prefetch:
                continue
            c.prefetch = target
            c.generation += 1  # basic.cancel + basic.qos + basic.consume: a new consumer
            self.give_back(self.dispatcher.beyond_prefetch(c.spec.name, target or 0))

    def give_back(self, deliveries: list[_Delivery]) -> None:
        """basic.nack(requeue=True): back to the head of the queue, marked redelivered."""
        for d in sorted(deliveries, key=lambda d: d.stored.published_at, reverse=True):
            self.by_name[d.queue].unacked[d.consumer] -= 1
            self.b._ready.setdefault(d.queue, deque()).appendleft(
                replace(d.stored, redelivered=True)
            )
            self.result.requeued += 1

    # --- the worker ----------------------------------------------------------------------------

    def start(self) -> None:
        while self.starting and (self.limit is None or len(self.result.handled) < self.limit):
            taken = self.dispatcher.take_one()
            if taken is None:
                return
            d = taken[1]
            c = self.by_name[d.queue]
            s = d.stored
            handler = c.spec.handler or self.handler
            assert handler is not None
            action, _ = self.loop.run_until_complete(
                handle(
                    handler,
                    body=s.body,
                    queue=d.queue,
                    routing_key=d.queue,
                    exchange="",
                    redelivered=s.redelivered,
                    properties=s.properties,
                    retry=self.retry,
                )
            )
            message = Message(
                s.body,
                d.queue,
                d.queue,
                "",
                s.redelivered,
                s.properties,
                attempts=attempts_of(s.properties.headers),
            )
            finish = self.b.now + max(float(self.duration(message)), 0.0)
            self.result.handled.append(
                Handled(
                    d.queue, message, s.published_at, d.delivered_at, self.b.now, finish, action
                )
            )
            self.running.add(d)
            self.b._schedule(finish, "finish", (d, action))

    def on_finish(self, payload: tuple[_Delivery, Action]) -> None:
        d, action = payload
        self.running.discard(d)
        self.dispatcher.finish(d.queue)
        self.by_name[d.queue].unacked[d.consumer] -= 1
        if isinstance(action, RetryLater | DeadLetter):
            headers = dict(d.stored.properties.headers or {})
            headers[ORIGINAL_QUEUE_HEADER] = d.queue
            headers[ATTEMPTS_HEADER] = action.attempts
            if isinstance(action, RetryLater):
                headers[ERROR_HEADER] = action.reason
                self.b._schedule(
                    self.b.now + action.delay,
                    "publish",
                    (
                        d.queue,
                        StoredMessage(
                            d.stored.body,
                            replace(d.stored.properties, headers=headers),
                            self.b.now + action.delay,
                        ),
                    ),
                )
            else:
                headers[ERROR_HEADER] = action.error
                headers["x-dead-letter-reason"] = action.reason
                self.b.dead_lettered.setdefault(d.queue, []).append(
                    StoredMessage(
                        d.stored.body, replace(d.stored.properties, headers=headers), self.b.now
                    )
                )
        # The next delivery is chosen before this one's refill arrives (an ack round trip).
        self.start()
        self.deliver()
        self.start()

    def on_publish(self, payload: tuple[str, StoredMessage]) -> None:
        queue, stored = payload
        self.b._ready.setdefault(queue, deque()).append(stored)
        self.deliver()
        self.start()

    def on_probe(self, _payload: None) -> None:
        for c in self.consumers[:-1]:
            name = c.spec.name
            c.idle = self.dispatcher.in_flight(name) == 0 and not self.b._ready.get(name)
        self.replan()
        self.deliver()
        self.start()
        self.b._schedule(self.b.now + self.probe_interval, "probe", None)

    def crash(self) -> None:
        """kill -9: nothing more is settled; the broker requeues every unacked delivery."""
        self.result.crashed = True
        self.starting = False
        self.give_back(self.dispatcher.take_pending() + list(self.running))
        self.running.clear()
        self.b._events = [e for e in self.b._events if e[2] == "publish"]
        heapq.heapify(self.b._events)
