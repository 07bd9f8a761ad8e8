"""The worker: consumes several queues at their own prefetch and settles every delivery.

A composition: :class:`~priority_worker._consumers.Consumers` (the consumer link, each queue's
channel at the mode's prefetch), :class:`~priority_worker._scheduling.Dispatcher` (what starts
next), :class:`~priority_worker._runners.RunnerPool` (the tasks that run handlers),
:func:`~priority_worker._handling.handle` (one delivery through its handler),
:class:`~priority_worker._republish.Republisher` (retries and dead letters) and its own
:class:`Publisher`. The worker owns the lifecycle (start, graceful stop) and the settling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._config import broker_urls, check_queues, parse_mode
from ._consumers import Consumers, QueueState
from ._handling import handle, is_async_handler
from ._link import Delivery, LinkFactory
from ._log import log
from ._metrics import Metrics
from ._model import Handler, Mode, Queue, RetryPolicy
from ._outcomes import Ack
from ._pika.connection import PikaLink
from ._publisher import Publisher
from ._republish import Republisher
from ._runners import RunnerPool
from ._scheduling import Dispatcher, ShareWindow, dispatch_weights
from ._tracing import ContextExecutor, Tracing, tracing_for
from ._watchdog import LoopWatchdog

if TYPE_CHECKING:
    from tornado.httpserver import HTTPServer

    from ._topology import ExpectedTopology
    from ._tracing import TracerProvider

logger = logging.getLogger("priority_worker.worker")

# A delivery redelivered this often by a quorum queue is handled, not given back (_give_back).
GIVE_BACK_LIMIT = 5


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
    ``tracer_provider``: trace every delivery (a ``process`` span continuing the context in its
    headers) and every publish, retries and dead letters included, with this OpenTelemetry
    provider; without it, the global provider if the application set one before ``start()``;
    otherwise no tracing and nothing of OpenTelemetry is imported (see the README's "Tracing").
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
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.urls = broker_urls(url)
        self.tracer_provider = tracer_provider
        # Resolved by start() (a global provider may be set after construction); None: off.
        self._tracing: Tracing | None = None
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
            tracer_provider=tracer_provider,
        )
        self._states = [
            QueueState(q, i, self.metrics.of_queue(q.name)) for i, q in enumerate(queues)
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
            s.handler = s.spec.handler or handler
            s.is_async = is_async_handler(s.handler)
            # Read at scrape time rather than set on every delivery and settle.
            m.in_flight.labels(s.spec.name).set_function(
                functools.partial(self._dispatcher.in_flight, s.spec.name)
            )
        self._consumers = Consumers(
            self._states,
            self.mode,
            self._dispatcher,
            self.metrics,
            on_delivery=self._delivered,
            give_back=self._return_unstarted,
            link_factory=link_factory,
            urls=self.urls,
            name=f"{name} consumer",
            heartbeat=heartbeat,
            backoff_cap=reconnect_max_delay,
            probe_interval=probe_interval,
        )
        self._link = self._consumers.link
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="priority-worker"
        )
        # What sync handlers run in: the pool, or (tracing on) the pool in the caller's context.
        self._executor: concurrent.futures.Executor = self._pool
        self._runners = RunnerPool(self._dispatcher, self.concurrency, self._handle)
        self._republisher = Republisher(
            self.publisher,
            self.metrics,
            requeue=self._requeue,
            dropped=lambda d: self._dropped(self._by_name[d.queue], d),
        )
        self._stopping = False
        self._stop_requested = asyncio.Event()
        # Resolved by the last running handler to finish once stop() waits for them.
        self._drained: asyncio.Future[None] | None = None
        self.abandoned = 0  # handlers still running when shutdown_timeout ran out
        self._http: HTTPServer | None = None
        # Set by from_topology: what start() checks on the broker before consuming.
        self.expected_topology: ExpectedTopology | None = None
        self.settings_sources: dict[str, str] = {}

    # --- public state --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected, consuming every queue that the mode says to consume, publisher up."""
        return not self._stopping and self.publisher.connected and self._consumers.ready

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
        from ._topology import worker_from_topology

        return worker_from_topology(
            cls,
            paths,
            consumer,
            url,
            handler,
            queues=queues,
            mode=mode,
            concurrency=concurrency,
            retry=retry,
            max_retries=max_retries,
            dead_letter_exchange=dead_letter_exchange,
            sources=sources,
            **options,
        )

    async def start(self) -> None:
        """Connect both links, start consuming and the HTTP server; returns when connected."""
        self._tracing = tracing_for(self.tracer_provider)
        if self._tracing is not None:
            self._executor = ContextExecutor(self._pool)
        if self.expected_topology is not None:
            for setting, where in self.settings_sources.items():
                log(logger, logging.INFO, "setting", setting=setting, source=where)
            await asyncio.to_thread(self.expected_topology.verify, self.urls)
        if self.http_port is not None:
            from ._http import serve_http

            self._http, self.http_port = serve_http(
                lambda: self.ready, self.metrics.render, self.http_port, self.http_host
            )
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
        await self._consumers.start()

    async def stop(self) -> None:
        """Stop consuming, finish running handlers (bounded), requeue the rest, close."""
        if self._stopping:
            return
        self._stopping = True
        cancels = self._consumers.stop()
        self._runners.stop()  # idle runners end; busy ones after their handler
        loop = asyncio.get_running_loop()
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
        self.abandoned = self._dispatcher.running()
        if self.abandoned:
            log(logger, logging.WARNING, "shutdown_timeout", abandoned=self.abandoned)
        self._consumers.flush_acks()
        await self.publisher.close(timeout=max(deadline - loop.time(), 5.0))
        await self._link.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        log(logger, logging.INFO, "stopped")

    # --- deliveries ----------------------------------------------------------------------------

    def _delivered(self, d: Delivery) -> None:
        s = self._by_name[d.queue]
        s.metrics.deliveries.inc()
        if self._stopping:
            self._requeue([d])
            return
        if s.idle:
            self._consumers.busy(s)
        self._dispatcher.add(d.queue, d)
        self._runners.pump()

    def _started(self, queue: str, held: float) -> None:
        self._by_name[queue].metrics.held_seconds.observe(held)
        self._share.started(queue)

    async def _handle(self, d: Delivery) -> None:
        s = self._by_name[d.queue]
        handler = s.handler
        assert handler is not None
        span = self._tracing.process(d) if self._tracing is not None else None
        outcome, error = "ack", None
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
                executor=self._executor,
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
                        outcome = "dropped"
                else:
                    outcome = await self._republisher.settle(d, s.spec, action)
            except Exception as exc:  # a bug here must not leave the delivery unsettled
                log(logger, logging.ERROR, "settle_failed", queue=d.queue, error=repr(exc))
                self._requeue([d])
                outcome = "requeue"
        except Exception as exc:
            log(logger, logging.ERROR, "internal_error", error=repr(exc))
            outcome = "error"
        finally:
            if span is not None:
                span.end(outcome, error)
            self._dispatcher.finish(d.queue)
            drained = self._drained
            if drained is not None and not drained.done() and not self._dispatcher.running():
                drained.set_result(None)

    def _dropped(self, s: QueueState, d: Delivery) -> None:
        s.metrics.dropped.inc()
        log(
            logger,
            logging.INFO,
            "delivery_dropped",
            queue=d.queue,
            reason="channel closed; the broker redelivers it",
        )

    def _return_unstarted(self, deliveries: list[Delivery]) -> None:
        """A smaller prefetch no longer covers these: requeue them (all but those kept)."""
        self._requeue(self._give_back(deliveries))

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
