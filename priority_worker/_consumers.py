"""Consuming: each queue on a channel of its own, at the prefetch the mode wants.

:class:`Consumers` owns the consumer link and, per queue, its channel: it opens them on every
(re)connect, reopens a channel the broker closed (with backoff), consumes again as soon as a
deleted queue is back after a broker cancel, and changes a consumer's prefetch (cancel, qos,
consume on the same channel) when the mode's plan changes. In strict and conserving modes its
probe finds out which higher-priority queues are idle. What arrives goes to ``on_delivery``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field

from ._backoff import reconnect_delay
from ._link import AmqpChannel, ChannelGone, ConsumingChannel, Delivery, Link, LinkFactory
from ._log import log
from ._metrics import Metrics, QueueMetrics
from ._model import Handler, Mode, Queue
from ._scheduling import Dispatcher, effective_prefetch

logger = logging.getLogger("priority_worker.worker")

QUEUE_WATCH_INTERVAL = 0.5  # after a broker cancel, how often to look whether the queue is back


@dataclass(eq=False)
class QueueState:
    """One consumed queue: its channel and consumer, and what the per-message path needs."""

    spec: Queue
    index: int
    metrics: QueueMetrics = field(repr=False)
    channel: ConsumingChannel | None = None
    applied: int | None = None  # prefetch of the running consumer; None: not consuming
    idle: bool = False  # nothing ready and nothing in flight (strict/conserving only)
    applying: bool = False
    attempt: int = 0  # consecutive failures to (re)open/consume, for backoff
    retry: asyncio.TimerHandle | None = field(default=None, repr=False)
    # Per-message hot path: the handler, looked up once.
    handler: Handler | None = field(default=None, repr=False)
    is_async: bool = False


class Consumers:
    """The consumer link and every queue's consumer on it (see the module docstring).

    ``give_back(deliveries)``: received but not started deliveries a smaller prefetch no longer
    covers (the worker requeues them, or keeps some; see Worker._give_back).
    """

    def __init__(
        self,
        states: Sequence[QueueState],
        mode: Mode,
        dispatcher: Dispatcher[Delivery],
        metrics: Metrics,
        *,
        on_delivery: Callable[[Delivery], None],
        give_back: Callable[[list[Delivery]], None],
        link_factory: LinkFactory,
        urls: Sequence[str],
        name: str,
        heartbeat: int | None,
        backoff_cap: float,
        probe_interval: float,
    ) -> None:
        self._states = list(states)
        self._by_name = {s.spec.name: s for s in self._states}
        self.mode = mode
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._on_delivery = on_delivery
        self._give_back = give_back
        self._backoff_cap = backoff_cap
        self.probe_interval = probe_interval
        self.link: Link = link_factory(
            urls,
            name=name,
            on_open=self._link_open,
            on_lost=self._link_lost,
            backoff_cap=backoff_cap,
            heartbeat=heartbeat,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe: AmqpChannel | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def ready(self) -> bool:
        """Connected, and consuming every queue that the mode says to consume."""
        if self._stopping or not self.link.is_open:
            return False
        return all(
            s.channel is not None and s.channel.is_open and (d is None or s.applied is not None)
            for s, d in zip(self._states, self.desired(), strict=True)
        )

    async def start(self) -> None:
        """Connect (returns at the first open); strict/conserving modes start probing."""
        await self.link.start()
        if self.mode is not Mode.WEIGHTED and len(self._states) > 1:
            self._probe_task = asyncio.ensure_future(self._probe_loop())

    def stop(self) -> list[asyncio.Future[None]]:
        """Stop consuming: no more reopens, prefetch changes or probes; basic.cancel goes to
        every open consumer (each returned future finishes with its cancel-ok)."""
        self._stopping = True
        if self._probe_task is not None:
            self._probe_task.cancel()
        for s in self._states:
            if s.retry is not None:
                s.retry.cancel()
        return [
            asyncio.ensure_future(s.channel.cancel())
            for s in self._states
            if s.channel and s.channel.is_open
        ]

    def flush_acks(self) -> None:
        """Send every ack still batched."""
        for s in self._states:
            if s.channel is not None:
                s.channel.flush_acks()

    def busy(self, s: QueueState) -> None:
        """A delivery arrived from ``s``, which counted as idle: plan again at once."""
        if s.idle:
            s.idle = False
            self.replan()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log(logger, logging.ERROR, "internal_error", error=repr(task.exception()))

    def _link_open(self) -> None:
        if self.link.connects > 1:
            self._metrics.reconnects.labels("consumer").inc()
        for s in self._states:
            s.attempt = 0
            self._spawn(self._open_queue(s))

    def _link_lost(self, reason: str) -> None:
        """Every channel died with the connection; their close callbacks did the cleanup."""
        self._probe = None

    async def _open_queue(self, s: QueueState) -> None:
        if self._stopping or not self.link.is_open:
            return
        channel = self.link.consumer_channel(
            s.spec.name,
            on_delivery=self._on_delivery,
            on_cancelled=self._cancelled,
            on_closed=self._channel_closed,
        )
        try:
            await channel.open()
        except ChannelGone:
            return
        s.channel, s.applied = channel, None
        self._apply(s)

    def _channel_closed(self, channel: AmqpChannel, reason: str) -> None:
        queue = getattr(channel, "queue", None)
        s = self._by_name.get(queue) if isinstance(queue, str) else None
        if s is None or channel is not s.channel:
            return
        s.channel, s.applied = None, None
        s.metrics.prefetch.set(0)
        # The broker requeued this channel's unacked deliveries; never ack them elsewhere.
        dropped = self._dispatcher.discard(lambda d: d.channel is channel)
        if dropped:
            s.metrics.dropped.inc(len(dropped))
        if self._stopping:
            return
        log(
            logger,
            logging.WARNING,
            "channel_closed",
            queue=s.spec.name,
            reason=reason,
            dropped=len(dropped),
        )
        if self.link.is_open:
            self._retry_later(s, lambda: self._spawn(self._open_queue(s)))

    def _cancelled(self, channel: ConsumingChannel) -> None:
        s = self._by_name[channel.queue]
        if channel is not s.channel or self._stopping:
            return
        s.applied = None
        s.metrics.prefetch.set(0)
        # The broker cancels a consumer when its queue is deleted (or, on a cluster, when
        # the queue's node goes away): consume again as soon as the queue exists, not after
        # a backoff that has grown while it was missing.
        self._spawn(self._watch_queue(s, channel))

    async def _watch_queue(self, s: QueueState, channel: ConsumingChannel) -> None:
        """Until ``s``'s queue exists again (passive declares on a channel of their own, which
        a 404 closes) and takes a consumer (``Link.consumable``), then bring its consumer
        back."""
        watch: AmqpChannel | None = None
        try:
            while not self._stopping and s.channel is channel and channel.is_open:
                if watch is None or not watch.is_open:
                    watch = self.link.channel()
                    try:
                        await watch.open()
                    except ChannelGone:
                        return  # the link is gone: reconnecting reopens every queue
                try:
                    await watch.ready_count(s.spec.name)
                except ChannelGone:
                    await asyncio.sleep(QUEUE_WATCH_INTERVAL)
                    continue
                # A queue being declared again exists before it can take a consumer (a
                # quorum queue's Raft member starts after its record): consuming it then
                # would make the broker close this whole link, requeueing every queue's
                # deliveries, handled ones whose acks were on the way among them.
                if not await self.link.consumable(s.spec.name):
                    log(logger, logging.INFO, "queue_not_ready", queue=s.spec.name)
                    await asyncio.sleep(QUEUE_WATCH_INTERVAL)
                    continue
                log(logger, logging.INFO, "queue_back", queue=s.spec.name)
                self._apply(s)
                return
        finally:
            if watch is not None:
                watch.close()

    def _retry_later(self, s: QueueState, action: Callable[[], None]) -> None:
        delay = reconnect_delay(s.attempt, cap=self._backoff_cap)
        s.attempt += 1
        if s.retry is not None:
            s.retry.cancel()
        s.retry = asyncio.get_running_loop().call_later(delay, action)

    def desired(self) -> list[int | None]:
        """The prefetch each queue should be consumed at now (None: paused)."""
        return effective_prefetch(
            self.mode, [s.spec.prefetch for s in self._states], [s.idle for s in self._states]
        )

    def _apply(self, s: QueueState) -> None:
        """Bring the queue's consumer to the prefetch the mode wants (one change at a time)."""
        if not s.applying and not self._stopping:
            self._spawn(self._apply_loop(s))

    async def _apply_loop(self, s: QueueState) -> None:
        s.applying = True
        try:
            while not self._stopping and s.channel is not None and s.channel.is_open:
                target = self.desired()[s.index]
                if target == s.applied:
                    break
                channel = s.channel
                if target is None:
                    await channel.cancel()
                else:
                    await channel.consume(target)
                    if self._stopping:  # stop() cancelled the consumers while we waited
                        await channel.cancel()
                        break
                s.applied = target
                s.attempt = 0
                s.metrics.prefetch.set(target or 0)
                log(
                    logger,
                    logging.INFO,
                    "consuming" if target else "paused",
                    queue=s.spec.name,
                    prefetch=target or 0,
                )
                # Give back capacity now: requeue what this queue received but has not started
                # beyond its new prefetch (all of it when paused).
                self._give_back(self._dispatcher.beyond_prefetch(s.spec.name, target or 0))
        except ChannelGone:
            pass  # the close callback schedules the reopen
        finally:
            s.applying = False

    def replan(self) -> None:
        """Bring every consumer to the prefetch the mode wants now."""
        for s, target in zip(self._states, self.desired(), strict=True):
            if target != s.applied:
                self._apply(s)

    async def _probe_loop(self) -> None:
        """Strict/conserving: find out whether each higher-priority queue is idle.

        "Idle" = nothing of it in flight here *and* a passive queue.declare reports no ready
        messages. Deliveries alone cannot tell an empty queue from a slow one, and the message
        count alone misses work already prefetched, so both are needed. A delivery from a queue
        marks it busy at once (see busy), so low-priority work is cut back immediately;
        becoming idle again is only noticed at the next probe, which errs on the side of the
        high-priority queue.
        """
        while not self._stopping:
            try:
                for s in self._states[:-1]:
                    if self._dispatcher.in_flight(s.spec.name):
                        idle = False
                    else:
                        count = await self._ready_count(s.spec.name)
                        idle = count == 0
                    if idle != s.idle:
                        s.idle = idle
                        log(logger, logging.DEBUG, "idle" if idle else "busy", queue=s.spec.name)
                self.replan()
            except Exception as exc:  # the modes must survive any one failed probe
                log(logger, logging.ERROR, "probe_failed", error=repr(exc))
            await asyncio.sleep(self.probe_interval)

    async def _ready_count(self, queue: str) -> int | None:
        if not self.link.is_open:
            return None
        try:
            if self._probe is None or not self._probe.is_open:
                self._probe = self.link.channel()
                await self._probe.open()
            return await self._probe.ready_count(queue)
        except ChannelGone:
            return None
