"""The worker: consumes several queues at their own prefetch and settles every delivery."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._backoff import reconnect_delay
from ._config import broker_urls, check_queues, parse_mode
from ._connection import PikaLink
from ._handling import handle, is_async_handler
from ._link import AmqpChannel, ChannelGone, ConsumingChannel, Delivery, LinkFactory
from ._log import log
from ._metrics import Metrics, QueueMetrics
from ._model import Handler, Mode, Queue, RetryPolicy
from ._outcomes import Ack
from ._publisher import Publisher
from ._republish import Republisher
from ._runners import RunnerPool
from ._scheduling import Dispatcher, ShareWindow, dispatch_weights, effective_prefetch
from ._watchdog import LoopWatchdog

if TYPE_CHECKING:
    from tornado.httpserver import HTTPServer

    from ._topology import ExpectedTopology

logger = logging.getLogger("priority_worker.worker")

# A delivery redelivered this often by a quorum queue is handled, not given back (_give_back).
GIVE_BACK_LIMIT = 5
QUEUE_WATCH_INTERVAL = 0.5  # after a broker cancel, how often to look whether the queue is back


@dataclass(eq=False)
class _QueueState:
    spec: Queue
    index: int
    metrics: QueueMetrics = field(repr=False)
    channel: ConsumingChannel | None = None
    applied: int | None = None  # prefetch of the running consumer; None: not consuming
    idle: bool = False  # nothing ready and nothing in flight (strict/conserving only)
    applying: bool = False
    attempt: int = 0  # consecutive failures to (re)open/consume, for backoff
    retry: asyncio.TimerHandle | None = field(default=None, repr=False)
    # Per-message hot path: the handler and the labelled metric children, looked up once.
    handler: Handler | None = field(default=None, repr=False)
    is_async: bool = False


def delivery_count(d: Delivery) -> int:
    """How often a quorum queue has delivered this message before (``x-delivery-count``)."""
    headers = d.properties.headers
    count = headers.get("x-delivery-count") if headers else None
    return count if isinstance(count, int) and not isinstance(count, bool) else 0


class Worker:
    """Consumes ``queues`` (highest priority first), each on its own channel at its own prefetch.

    ``handler(message)`` may be ``async`` (runs on the loop) or a plain function (runs in a
    thread pool of ``concurrency`` threads). Returning acks the message; ``Retry(delay)``
    republishes it to a delay queue that dead-letters it back after ``delay`` seconds; ``Reject``
    and undecodable bodies dead-letter it at once; other exceptions retry with backoff per
    ``retry`` and then dead-letter it with the error in the ``x-error`` header.

    ``url``: one URL, a list or a comma-separated string (failover in order). ``mode``: see
    :class:`Mode`. ``concurrency``: handlers running at once (default: the sum of prefetches).
    ``http_port``: serve /healthz, /readyz and /metrics (0 picks a free port; None: no server).
    ``shutdown_timeout``: how long a stop waits for running handlers. ``probe_interval``: how
    often strict/conserving modes check whether higher-priority queues are idle.
    ``reconnect_max_delay``: cap of the reconnect backoff. ``heartbeat``: AMQP heartbeat seconds
    (default: the broker's). ``resend_unconfirmed`` / ``confirm_timeout``: of the worker's own
    :class:`Publisher` (``worker.publisher``, also ``message.publisher``), which republishes
    retries and dead letters; re-sending is on by default there, duplicates being harmless.
    ``worker.metrics`` holds the Prometheus metrics; ``share_window``: how many of the latest
    handler starts the ``priority_worker_share`` gauge counts. ``blocked_loop_warning``: log
    ``loop_blocked`` with the handler's name when an async handler holds the event loop longer
    than this many seconds (None: off). ``link_factory``: makes the worker's and its
    publisher's connections (default: pika's); tests pass an in-memory fake.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        queues: Sequence[Queue],
        handler: Handler | None = None,
        *,
        mode: Mode | str = Mode.WEIGHTED,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        shutdown_timeout: float = 30.0,
        probe_interval: float = 0.5,
        resend_unconfirmed: bool = True,
        confirm_timeout: float = 30.0,
        reconnect_max_delay: float = 30.0,
        heartbeat: int | None = None,
        name: str = "priority-worker",
        share_window: int = 1000,
        blocked_loop_warning: float | None = 0.1,
        link_factory: LinkFactory = PikaLink,
    ) -> None:
        self.urls = broker_urls(url)
        check_queues(queues, handler)
        names = [q.name for q in queues]
        self.mode = parse_mode(mode)
        self.queues = list(queues)
        self.handler = handler
        self.retry = retry or RetryPolicy()
        total = sum(q.prefetch for q in queues)
        self.concurrency = concurrency or total
        self.http_port = http_port
        self.http_host = http_host
        self.shutdown_timeout = shutdown_timeout
        self.probe_interval = probe_interval
        self.name = name
        self.metrics = Metrics()
        self.publisher = Publisher(
            self.urls,
            confirm_timeout=confirm_timeout,
            resend_unconfirmed=resend_unconfirmed,
            metrics=self.metrics,
            name=f"{name} publisher",
            reconnect_max_delay=reconnect_max_delay,
            link_factory=link_factory,
        )
        self._states = [
            _QueueState(q, i, self.metrics.of_queue(q.name)) for i, q in enumerate(queues)
        ]
        self._by_name = {s.spec.name: s for s in self._states}
        m = self.metrics
        self._share = ShareWindow(names, share_window)
        self.blocked_loop_warning = blocked_loop_warning
        self._watchdog: LoopWatchdog | None = None
        self._dispatcher: Dispatcher[Delivery] = Dispatcher(
            names,
            self.concurrency,
            by_priority=self.mode is Mode.STRICT,
            weights=dispatch_weights(self.mode, [(q.name, q.prefetch) for q in queues]),
            on_start=self._started,
        )
        for q in queues:
            m.prefetch_configured.labels(q.name).set(q.prefetch)
            m.share.labels(q.name).set_function(functools.partial(self._share.share, q.name))
            if self.mode is not Mode.STRICT:
                m.share_target.labels(q.name).set(q.prefetch / total)
        for s in self._states:
            name = s.spec.name
            s.handler = s.spec.handler or handler
            s.is_async = is_async_handler(s.handler)
            # Read at scrape time rather than set on every delivery and settle.
            m.in_flight.labels(name).set_function(
                functools.partial(self._dispatcher.in_flight, name)
            )
        self._link = link_factory(
            self.urls,
            name=f"{name} consumer",
            on_open=self._link_open,
            on_lost=self._link_lost,
            backoff_cap=reconnect_max_delay,
            heartbeat=heartbeat,
        )
        self._backoff_cap = reconnect_max_delay
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="priority-worker"
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._runners = RunnerPool(self._dispatcher, self.concurrency, self._handle)
        self._republisher = Republisher(
            self.publisher,
            self.metrics,
            requeue=self._requeue,
            dropped=lambda d: self._dropped(self._by_name[d.queue], d),
        )
        self._probe: AmqpChannel | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        # Resolved by the last running handler to finish once stop() waits for them.
        self._drained: asyncio.Future[None] | None = None
        self._http: HTTPServer | None = None
        # Set by from_topology: what start() checks on the broker before consuming.
        self.expected_topology: ExpectedTopology | None = None
        self.settings_sources: dict[str, str] = {}

    # --- public state --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected, consuming every queue that the mode says to consume, publisher up."""
        if self._stopping or not self._link.is_open or not self.publisher.connected:
            return False
        desired = self._desired()
        return all(
            s.channel is not None and s.channel.is_open and (d is None or s.applied is not None)
            for s, d in zip(self._states, desired, strict=True)
        )

    def in_flight(self, queue: str | None = None) -> int:
        """Deliveries received and not yet settled (of ``queue``, or in total)."""
        return self._dispatcher.in_flight(queue)

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and return (the Tornado IOLoop's loop)."""
        from tornado.ioloop import IOLoop

        async def main() -> None:
            loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            await self.serve()

        asyncio.run(main())

    async def serve(self) -> None:
        """Start, run until :meth:`request_stop`, then stop gracefully.

        A stop requested while still connecting (no broker answers yet) also ends it.
        """
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()
                await stopping
            else:
                starting.cancel()
        finally:
            stopping.cancel()
            await self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`serve` to stop (safe from a signal handler on the loop)."""
        log(logger, logging.INFO, "stop_requested")
        self._stop_requested.set()

    @classmethod
    def from_topology(
        cls,
        paths: str | Sequence[str],
        consumer: str,
        url: str | Sequence[str],
        handler: Handler | None = None,
        *,
        queues: Sequence[Queue] | None = None,
        mode: Mode | str | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        max_retries: int | None = None,
        dead_letter_exchange: str | None = None,
        sources: dict[str, str] | None = None,
        **options: object,
    ) -> Worker:
        """A worker configured by the ``consumers`` entry ``consumer`` of topology files.

        Its queues (in priority order) and prefetches, mode, concurrency, retry policy and
        dead-letter exchange come from the files; any of them given here wins (``max_retries``
        alone keeps the files' retry steps; ``sources``
        names, e.g. ``{"mode": "--mode"}``, say where an override came from for the startup
        log). The URL must name the consumer's vhost. Before consuming, ``start()`` checks that
        each queue exists with the arguments the files give it, and the dead-letter exchange
        exists; it raises :class:`TopologyMismatch` naming every one that does not.
        Other keyword ``options`` are those of ``Worker(...)``.
        """
        from ._topology import consumer_settings, url_vhost

        files = [paths] if isinstance(paths, str) else list(paths)
        urls = broker_urls(url)
        overrides: dict[str, object] = {
            "queues": list(queues) if queues else None,
            "mode": mode,
            "concurrency": concurrency,
            "retry": retry,
            "max_retries": max_retries,
            "dead_letter_exchange": dead_letter_exchange,
        }
        for key, where in (sources or {}).items():
            overrides[f"{key}_source"] = where
        settings = consumer_settings(files, consumer, vhost=url_vhost(urls[0]), overrides=overrides)
        worker = cls(
            urls,
            list(settings.queues),
            handler,
            mode=settings.mode,
            concurrency=settings.concurrency,
            retry=settings.retry,
            **options,  # type: ignore[arg-type]
        )
        worker.expected_topology = settings.expected
        worker.settings_sources = dict(settings.sources)
        return worker

    async def start(self) -> None:
        """Connect both links, start consuming and the HTTP server; returns when connected."""
        if self.expected_topology is not None:
            for setting, where in self.settings_sources.items():
                log(logger, logging.INFO, "setting", setting=setting, source=where)
            await asyncio.to_thread(self.expected_topology.verify, self.urls)
        if self.http_port is not None:
            from ._http import serve_http

            self._http, self.http_port = serve_http(self, self.http_port, self.http_host)
        if self.blocked_loop_warning:
            self._watchdog = LoopWatchdog(
                self.blocked_loop_warning,
                [s.handler for s in self._states],
                on_blocked=lambda name, _s: self.metrics.loop_blocked.labels(name).inc(),
            )
            self._watchdog.start()
        log(
            logger,
            logging.INFO,
            "starting",
            mode=self.mode.value,
            queues=",".join(f"{q.name}={q.prefetch}" for q in self.queues),
            concurrency=self.concurrency,
        )
        await self.publisher.start()
        await self._link.start()
        if self.mode is not Mode.WEIGHTED and len(self._states) > 1:
            self._probe_task = asyncio.ensure_future(self._probe_loop())

    async def stop(self) -> None:
        """Stop consuming, finish running handlers (bounded), requeue the rest, close."""
        if self._stopping:
            return
        self._stopping = True
        self._runners.stop()  # idle runners end; busy ones after their handler
        loop = asyncio.get_running_loop()
        if self._probe_task is not None:
            self._probe_task.cancel()
        for s in self._states:
            if s.retry is not None:
                s.retry.cancel()
        cancels = [
            asyncio.ensure_future(s.channel.cancel())
            for s in self._states
            if s.channel and s.channel.is_open
        ]
        await asyncio.sleep(0)  # basic.cancel goes out before the nacks below
        # Not started: back to the broker now (the consumers are gone, so not to us again).
        requeued = self._requeue(self._dispatcher.take_pending())
        await asyncio.gather(*cancels, return_exceptions=True)
        log(logger, logging.INFO, "draining", running=self._dispatcher.running(), requeued=requeued)
        deadline = loop.time() + self.shutdown_timeout
        if self._dispatcher.running():
            self._drained = loop.create_future()
            try:
                await asyncio.wait_for(self._drained, self.shutdown_timeout)
            except asyncio.TimeoutError:
                pass
        if self._dispatcher.running():
            log(logger, logging.WARNING, "shutdown_timeout", abandoned=self._dispatcher.running())
        self._flush_acks()
        await self.publisher.close(timeout=max(deadline - loop.time(), 5.0))
        await self._link.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        log(logger, logging.INFO, "stopped")

    # --- connection and channels ---------------------------------------------------------------

    def _link_open(self) -> None:
        if self._link.connects > 1:
            self.metrics.reconnects.labels("consumer").inc()
        for s in self._states:
            s.attempt = 0
            self._spawn(self._open_queue(s))

    def _link_lost(self, reason: str) -> None:
        """Every channel died with the connection; their close callbacks did the cleanup."""
        self._probe = None

    async def _open_queue(self, s: _QueueState) -> None:
        if self._stopping or not self._link.is_open:
            return
        channel = self._link.consumer_channel(
            s.spec.name,
            on_delivery=self._delivered,
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
        if self._link.is_open:
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

    async def _watch_queue(self, s: _QueueState, channel: ConsumingChannel) -> None:
        """Until ``s``'s queue exists again (passive declares on a channel of their own, which
        a 404 closes), then bring its consumer back."""
        watch: AmqpChannel | None = None
        try:
            while not self._stopping and s.channel is channel and channel.is_open:
                if watch is None or not watch.is_open:
                    watch = self._link.channel()
                    try:
                        await watch.open()
                    except ChannelGone:
                        return  # the link is gone: reconnecting reopens every queue
                try:
                    await watch.ready_count(s.spec.name)
                except ChannelGone:
                    await asyncio.sleep(QUEUE_WATCH_INTERVAL)
                    continue
                log(logger, logging.INFO, "queue_back", queue=s.spec.name)
                self._apply(s)
                return
        finally:
            if watch is not None:
                watch.close()

    def _retry_later(self, s: _QueueState, action: Callable[[], None]) -> None:
        delay = reconnect_delay(s.attempt, cap=self._backoff_cap)
        s.attempt += 1
        if s.retry is not None:
            s.retry.cancel()
        s.retry = asyncio.get_running_loop().call_later(delay, action)

    # --- consuming at the right prefetch --------------------------------------------------------

    def _desired(self) -> list[int | None]:
        return effective_prefetch(
            self.mode, [s.spec.prefetch for s in self._states], [s.idle for s in self._states]
        )

    def _apply(self, s: _QueueState) -> None:
        """Bring the queue's consumer to the prefetch the mode wants (one change at a time)."""
        if not s.applying and not self._stopping:
            self._spawn(self._apply_loop(s))

    async def _apply_loop(self, s: _QueueState) -> None:
        s.applying = True
        try:
            while not self._stopping and s.channel is not None and s.channel.is_open:
                target = self._desired()[s.index]
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
                keep = max(0, (target or 0) - self._dispatcher.running(s.spec.name))
                self._requeue(
                    self._give_back(self._dispatcher.take_pending(s.spec.name, keep=keep))
                )
        except ChannelGone:
            pass  # the close callback schedules the reopen
        finally:
            s.applying = False

    def _replan(self) -> None:
        for s, target in zip(self._states, self._desired(), strict=True):
            if target != s.applied:
                self._apply(s)

    async def _probe_loop(self) -> None:
        """Strict/conserving: find out whether each higher-priority queue is idle.

        "Idle" = nothing of it in flight here *and* a passive queue.declare reports no ready
        messages. Deliveries alone cannot tell an empty queue from a slow one, and the message
        count alone misses work already prefetched, so both are needed. A delivery from a queue
        marks it busy at once (see _delivered), so low-priority work is cut back immediately;
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
                self._replan()
            except Exception as exc:  # the modes must survive any one failed probe
                log(logger, logging.ERROR, "probe_failed", error=repr(exc))
            await asyncio.sleep(self.probe_interval)

    async def _ready_count(self, queue: str) -> int | None:
        if not self._link.is_open:
            return None
        try:
            if self._probe is None or not self._probe.is_open:
                self._probe = self._link.channel()
                await self._probe.open()
            return await self._probe.ready_count(queue)
        except ChannelGone:
            return None

    # --- deliveries ----------------------------------------------------------------------------

    def _delivered(self, d: Delivery) -> None:
        s = self._by_name[d.queue]
        s.metrics.deliveries.inc()
        if self._stopping:
            self._requeue([d])
            return
        if s.idle:
            s.idle = False
            self._replan()
        self._dispatcher.add(d.queue, d)
        self._runners.pump()

    def _started(self, queue: str, held: float) -> None:
        self._by_name[queue].metrics.held_seconds.observe(held)
        self._share.started(queue)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log(logger, logging.ERROR, "internal_error", error=repr(task.exception()))

    async def _handle(self, d: Delivery) -> None:
        s = self._by_name[d.queue]
        handler = s.handler
        assert handler is not None
        try:
            started = time.perf_counter()
            action, error = await handle(
                handler,
                body=d.body,
                queue=d.queue,
                routing_key=d.routing_key,
                exchange=d.exchange,
                redelivered=d.redelivered,
                properties=d.properties,
                retry=self.retry,
                executor=self._pool,
                publisher=self.publisher,
                is_async=s.is_async,
            )
            m = s.metrics
            m.handler_seconds.observe(time.perf_counter() - started)
            if error is not None:
                m.handler_errors.inc()
            try:
                if isinstance(action, Ack):
                    if d.channel.ack(d.delivery_tag):
                        m.acks.inc()
                    else:
                        self._dropped(s, d)
                else:
                    await self._republisher.settle(d, s.spec, action)
            except Exception as exc:  # a bug here must not leave the delivery unsettled
                log(logger, logging.ERROR, "settle_failed", queue=d.queue, error=repr(exc))
                self._requeue([d])
        except Exception as exc:
            log(logger, logging.ERROR, "internal_error", error=repr(exc))
        finally:
            self._dispatcher.finish(d.queue)
            drained = self._drained
            if drained is not None and not drained.done() and not self._dispatcher.running():
                drained.set_result(None)

    def _flush_acks(self) -> None:
        for s in self._states:
            if s.channel is not None:
                s.channel.flush_acks()

    def _dropped(self, s: _QueueState, d: Delivery) -> None:
        s.metrics.dropped.inc()
        log(
            logger,
            logging.INFO,
            "delivery_dropped",
            queue=d.queue,
            reason="channel closed; the broker redelivers it",
        )

    def _give_back(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Of deliveries a mode change would give back, those it may requeue.

        A quorum queue counts every requeue toward its delivery limit (20 by default on
        4.0-4.2) and dead-letters or drops a message past it. A delivery the broker has already
        redelivered GIVE_BACK_LIMIT times is kept and handled here instead, so that switching
        modes can never push a message over that limit.
        """
        kept: list[Delivery] = []
        given: list[Delivery] = []
        for d in deliveries:
            (kept if delivery_count(d) >= GIVE_BACK_LIMIT else given).append(d)
        if kept:
            for d in kept:
                self._dispatcher.add(d.queue, d)
            log(
                logger,
                logging.INFO,
                "kept_not_requeued",
                queue=kept[0].queue,
                count=len(kept),
                reason=f"redelivered {GIVE_BACK_LIMIT}+ times (quorum delivery limit)",
            )
            self._runners.pump()
        return given

    def _requeue(self, deliveries: Sequence[Delivery]) -> int:
        count = 0
        for d in deliveries:
            if d.channel.nack(d.delivery_tag, requeue=True):
                self._by_name[d.queue].metrics.requeues.inc()
                count += 1
        return count
