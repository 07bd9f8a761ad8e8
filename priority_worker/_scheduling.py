"""Which held delivery runs next: start-time fair queueing with the prefetches as weights.

Pure: no I/O, no pika, no tornado. The :class:`~priority_worker._core.Dispatcher` asks
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

from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence

from ._errors import ConfigurationError
from ._model import Mode


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
