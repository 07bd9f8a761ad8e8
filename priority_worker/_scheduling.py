"""Scheduling: which queues are consumed at which prefetch, and which held delivery runs next.

Pure: no I/O, no pika, no tornado. :func:`effective_prefetch` is the mode's policy (weighted,
strict, conserving); :class:`Dispatcher` does the in-flight accounting and the order of starts.

The :class:`Dispatcher` asks
:class:`FairQueueing` for a *start tag* when a delivery arrives and starts the pending delivery
with the smallest tag (ties: the higher-priority queue).

Why not arrival order: with fewer handlers than deliveries held (``concurrency`` below the sum
of the prefetches), the low queue's deliveries already held were started before a high one that
arrived after them, so an urgent message waited one or two low handlings. Start-time fair
queueing (Goyal, Vin and Cheng, SIGCOMM 1996) gives each queue ``i`` a virtual clock that
advances by ``1 / weight_i`` per delivery:

* a delivery arriving at queue ``i`` gets the tag ``S = max(V, F_i)``, and ``F_i = S + 1/w_i``;
* ``V`` (the system's virtual time) is the tag of the latest started delivery.

Under a backlog on every queue the tags of queue ``i`` are ``k / w_i``, so starts interleave in
the ratio of the weights (10:2 -> 5:1 exactly). A queue that was idle has ``F_i <= V``, so its
next delivery gets ``S = V``: no larger than any waiting tag, it runs next. A queue gets no
credit for the time it was idle, so it cannot burst past the others after coming back.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

from ._errors import ConfigurationError
from ._model import Mode

T = TypeVar("T")


class FairQueueing:
    """Start tags of start-time fair queueing over per-queue buffers."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        for queue, w in weights.items():
            if w <= 0:
                raise ConfigurationError(f"queue {queue}: weight must be > 0")
        self._cost = {q: 1.0 / w for q, w in weights.items()}
        self._finish = dict.fromkeys(weights, 0.0)
        self.virtual_time = 0.0

    def arrive(self, queue: str) -> float:
        """The start tag of a delivery that arrived at ``queue`` now."""
        start = max(self.virtual_time, self._finish[queue])
        self._finish[queue] = start + self._cost[queue]
        return start

    def started(self, tag: float) -> None:
        """A delivery with ``tag`` started: the virtual time moves up to it."""
        if tag > self.virtual_time:
            self.virtual_time = tag

    def withdrawn(self, queue: str, removed: Iterable[float], last_left: float | None) -> None:
        """Deliveries of ``queue`` with the tags ``removed`` left unstarted (requeued, or their
        channel closed): give their virtual time back so the queue is not charged for them.

        ``last_left``: the tag of the newest delivery of ``queue`` still waiting, if any.
        """
        tags = list(removed)
        if not tags:
            return
        if last_left is not None:
            self._finish[queue] = last_left + self._cost[queue]
        else:
            self._finish[queue] = min(tags)


def dispatch_weights(mode: Mode, queues: Sequence[tuple[str, int]]) -> dict[str, float] | None:
    """The fair-queueing weights the worker uses for ``mode``, or None (strict priority order).

    ``queues``: (name, configured prefetch), highest priority first. Weighted and conserving
    modes weigh each queue by its configured prefetch (conserving lends *prefetch*, the broker's
    side; which held delivery runs next still follows the configured ratio).
    """
    if mode is Mode.STRICT or len(queues) < 2:
        return None
    return {name: float(prefetch) for name, prefetch in queues}


class ShareWindow:
    """How the last ``size`` handler starts were shared between queues (for /metrics)."""

    def __init__(self, queues: Sequence[str], size: int = 1000) -> None:
        if size < 1:
            raise ConfigurationError("share window must be >= 1")
        self._recent: deque[str] = deque(maxlen=size)
        self._counts: Counter[str] = Counter(dict.fromkeys(queues, 0))

    def started(self, queue: str) -> None:
        """A handler started on a delivery of ``queue``."""
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._counts[recent[0]] -= 1
        recent.append(queue)
        self._counts[queue] += 1

    def share(self, queue: str) -> float:
        """Fraction of the window's starts that were ``queue``'s (0 while the window is empty)."""
        total = len(self._recent)
        return self._counts[queue] / total if total else 0.0

    def __len__(self) -> int:
        return len(self._recent)


def effective_prefetch(
    mode: Mode, prefetches: Sequence[int], idle: Sequence[bool]
) -> list[int | None]:
    """The prefetch each queue should be consumed at now; ``None`` means not consumed.

    Queues are in priority order. ``idle[i]``: queue i has nothing ready and nothing in flight
    (the last queue is never treated as idle: nothing ranks below it to lend to).
    """
    n = len(prefetches)
    idle = [bool(idle[i]) and i < n - 1 for i in range(n)]
    if mode is Mode.WEIGHTED:
        return list(prefetches)
    if mode is Mode.STRICT:
        out: list[int | None] = []
        for i, p in enumerate(prefetches):
            out.append(p if all(idle[:i]) else None)
        return out
    result: list[int | None] = []
    lent = 0
    for i, p in enumerate(prefetches):
        if idle[i]:
            result.append(p)
            lent += p
        else:
            result.append(p + lent)
            lent = 0
    return result


class Dispatcher(Generic[T]):
    """In-flight accounting and the order in which received deliveries are started.

    A delivery is *pending* from arrival until a handler starts it, then *running* until
    ``finish``. At most ``limit`` run at once. Which pending delivery starts next:

    - ``weights`` given (weighted and conserving modes): start-time fair queueing with those
      weights (see :class:`FairQueueing`): under backlog the starts follow the
      weights, and a delivery of a queue that was idle starts next;
    - ``by_priority=True`` (strict mode): the highest-priority queue's deliveries first;
    - neither: arrival order across queues.

    ``on_start(queue, held)``: called as each delivery starts, with the seconds it was held
    (by ``clock``) since it arrived.
    """

    def __init__(
        self,
        queues: Sequence[str],
        limit: int,
        *,
        by_priority: bool = False,
        weights: Mapping[str, float] | None = None,
        on_start: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if limit < 1:
            raise ConfigurationError("concurrency must be >= 1")
        if by_priority and weights:
            raise ConfigurationError("strict priority order takes no weights")
        self.limit = limit
        self.by_priority = by_priority
        self._order = list(queues)
        # (key, item, arrived): key orders the starts (sequence number or start tag).
        self._pending: dict[str, deque[tuple[float, T, float]]] = {q: deque() for q in queues}
        self._running: dict[str, int] = dict.fromkeys(queues, 0)
        self._total_running = 0
        self._seq = 0
        self._fair = FairQueueing(weights) if weights else None
        self._on_start = on_start
        self._clock = clock or time.monotonic

    def add(self, queue: str, item: T) -> None:
        """A delivery arrived from ``queue``."""
        if self._fair is not None:
            key = self._fair.arrive(queue)
        else:
            self._seq += 1
            key = self._seq
        self._pending[queue].append((key, item, self._clock()))

    def take_one(self) -> tuple[str, T] | None:
        """The next delivery to start now (marked running), or None (nothing, or no capacity)."""
        if self._total_running >= self.limit:
            return None
        queue = self._next_queue()
        if queue is None:
            return None
        key, item, arrived = self._pending[queue].popleft()
        if self._fair is not None:
            self._fair.started(key)
        self._running[queue] += 1
        self._total_running += 1
        if self._on_start is not None:
            self._on_start(queue, self._clock() - arrived)
        return queue, item

    def startable(self) -> bool:
        """Something is pending and there is capacity to start it."""
        return self._total_running < self.limit and self._next_queue() is not None

    def _next_queue(self) -> str | None:
        if len(self._order) == 1:
            q = self._order[0]
            return q if self._pending[q] else None
        best: str | None = None
        for q in self._order:
            pending = self._pending[q]
            if not pending:
                continue
            if self.by_priority:
                return q
            # Strictly smaller: on a tie the earlier (higher-priority) queue wins.
            if best is None or pending[0][0] < self._pending[best][0][0]:
                best = q
        return best

    def finish(self, queue: str) -> None:
        """A running delivery of ``queue`` was settled (or dropped)."""
        if self._running[queue] <= 0:
            raise RuntimeError(f"finish() without a running delivery on {queue}")
        self._running[queue] -= 1
        self._total_running -= 1

    def take_pending(self, queue: str | None = None, keep: int = 0) -> list[T]:
        """Remove not-yet-started deliveries (newest first beyond ``keep``) to requeue them."""
        removed: list[T] = []
        for q in [queue] if queue else self._order:
            pending = self._pending[q]
            tags = []
            while len(pending) > keep:
                key, item, _ = pending.pop()
                removed.append(item)
                tags.append(key)
            self._withdrawn(q, tags)
        return removed

    def beyond_prefetch(self, queue: str, prefetch: int) -> list[T]:
        """Take back ``queue``'s not-started deliveries that a prefetch of ``prefetch`` no
        longer covers, newest first (all of them for 0: the queue is paused).

        The one rule for giving capacity back when a queue's prefetch drops (the worker's
        consumers and the in-memory broker both call it): the running deliveries already use
        part of the new prefetch, so only ``prefetch - running`` pending ones may stay.
        """
        return self.take_pending(queue, keep=max(0, prefetch - self.running(queue)))

    def discard(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove pending deliveries matching ``predicate`` (e.g. of a closed channel)."""
        removed: list[T] = []
        for q in self._order:
            gone = [e for e in self._pending[q] if predicate(e[1])]
            if gone:
                self._pending[q] = deque(e for e in self._pending[q] if not predicate(e[1]))
                removed.extend(e[1] for e in gone)
                self._withdrawn(q, [e[0] for e in gone])
        return removed

    def _withdrawn(self, queue: str, tags: list[float]) -> None:
        if self._fair is not None and tags:
            pending = self._pending[queue]
            self._fair.withdrawn(queue, tags, pending[-1][0] if pending else None)

    def running(self, queue: str | None = None) -> int:
        """Deliveries being handled (of ``queue``, or in total)."""
        return self._running[queue] if queue else self._total_running

    def pending(self, queue: str | None = None) -> int:
        """Deliveries received but not started (of ``queue``, or in total)."""
        if queue:
            return len(self._pending[queue])
        return sum(len(p) for p in self._pending.values())

    def in_flight(self, queue: str | None = None) -> int:
        """Received and not yet settled: pending plus running."""
        return self.pending(queue) + self.running(queue)
