"""Benchmark: priority_worker's consumer and publisher against bare pika and aio-pika, in one run.

Issue 3, "Speed", 256-byte messages, same local broker, same run:

* consuming with a no-op handler and manual acks at prefetch 100: ``priority_worker.Worker``
  reaches at least 0.8 of a bare pika ``AsyncioConnection`` consumer (aio-pika for the table);
* publishing with confirms, 1,000 in flight: ``priority_worker.Publisher`` reaches at least 0.8
  of a bare pika async publisher with the same window (aio-pika for the table);
* the weighted share under backlog for prefetch 10/2, 20/5 and 1/1: observed vs expected ratio.

Each measurement runs in a child process of its own (``--child``), so no contender inherits
another's event loop, threads or garbage. All queues live in one fresh vhost that is deleted at
the end. Run ``python bench/worker_bench.py --help`` for the options; the result table is
printed and written to ``bench/results/worker.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
from pika.adapters.asyncio_connection import AsyncioConnection

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common

# Benchmark the checkout's priority_worker: an editable install made before the package had an
# __init__.py maps it as a namespace package, which hides Worker and Publisher.
if str(common.REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(common.REPO_ROOT))

THROUGHPUT_TARGET = 0.8  # ours / bare pika
TRACING_TARGET = 0.85  # ours with tracing on / ours with tracing off (issue 18)
FASTSTREAM_GOAL = 1.0  # ours / FastStream, tracing off and on alike (issue 18's goal)
# Every pre-filled message carries a W3C trace context, as a traced application's messages do:
# the traced consumers continue it (extraction included), the others ignore the header.
FILL_HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
SHARE_TOLERANCE = 0.10  # |observed / expected - 1|
BODY_SIZE = 256


# =========================================================================== contenders
# Each contender is a function run in a child process; it returns a JSON-able dict with at least
# "count", "seconds" (first delivery/publish to last handled/confirmed) and "cpu" (this
# process's CPU seconds, all threads, over the same span: far less sensitive than wall time to
# other load on a shared machine).


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class Span:
    """Times the span from the first message started to the ``n``-th finished (wall and CPU)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0
        self._started = False

    def start(self) -> None:
        """A message is about to be handled; the first call starts the clock."""
        if not self._started:
            self._started = True
            self.t0, self.c0 = _now()

    def finish(self) -> bool:
        """A message was handled; True (and the clock stops) when it was the ``n``-th."""
        self.count += 1
        if self.count == self.n:
            self.t1, self.c1 = _now()
            return True
        return False

    def result(self) -> dict:
        return {"count": self.count, "seconds": self.t1 - self.t0, "cpu": self.c1 - self.c0}


def _params(url: str) -> pika.URLParameters:
    return pika.URLParameters(url)


def _run_pika_async(
    url: str, on_open: Callable[[AsyncioConnection, asyncio.Future], None], timeout: float
) -> Any:
    """Open an AsyncioConnection, hand it to ``on_open``, run until the future resolves."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    done: asyncio.Future = loop.create_future()
    closed: asyncio.Future = loop.create_future()

    def fail(_conn: object, exc: object) -> None:
        if not done.done():
            done.set_exception(RuntimeError(f"connection failed/closed: {exc}"))

    def on_closed(conn: object, exc: object) -> None:
        fail(conn, exc)
        if not closed.done():
            closed.set_result(None)

    conn = AsyncioConnection(
        _params(url),
        on_open_callback=lambda c: on_open(c, done),
        on_open_error_callback=fail,
        on_close_callback=on_closed,
        custom_ioloop=loop,
    )
    try:
        result = loop.run_until_complete(asyncio.wait_for(done, timeout))
    finally:
        if conn.is_open:
            conn.close()  # flushes buffered acks before the close handshake
            try:
                loop.run_until_complete(asyncio.wait_for(closed, 10))
            except asyncio.TimeoutError:
                pass
        loop.close()
    return result


def noop_handler(_body: object) -> None:
    """The benchmark's handler: does nothing."""


def consume_pika(url: str, queue: str, n: int, prefetch: int, timeout: float) -> dict:
    """Bare pika AsyncioConnection consumer: handler, then basic_ack per message."""
    span = Span(n)

    def on_open(conn: AsyncioConnection, done: asyncio.Future) -> None:
        def on_channel(ch: Any) -> None:
            def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
                span.start()
                noop_handler(body)
                ch.basic_ack(method.delivery_tag)
                if span.finish():
                    done.set_result(None)

            ch.basic_qos(
                prefetch_count=prefetch, callback=lambda _f: ch.basic_consume(queue, on_message)
            )

        conn.channel(on_open_callback=on_channel)

    _run_pika_async(url, on_open, timeout)
    return span.result()


def consume_aio_pika(url: str, queue: str, n: int, prefetch: int, timeout: float) -> dict:
    import aio_pika

    async def run() -> dict:
        span = Span(n)
        done = asyncio.get_running_loop().create_future()
        conn = await aio_pika.connect(url)
        try:
            ch = await conn.channel()
            await ch.set_qos(prefetch_count=prefetch)
            q = await ch.get_queue(queue, ensure=False)

            async def on_message(message: Any) -> None:
                span.start()
                noop_handler(message.body)
                await message.ack()
                if span.finish():
                    done.set_result(None)

            await q.consume(on_message)
            await asyncio.wait_for(done, timeout)
        finally:
            await conn.close()
        return span.result()

    return asyncio.run(run())


def _worker_api() -> Any:
    import priority_worker

    return priority_worker


def run_our_worker(
    url: str,
    queues: list[tuple[str, int]],
    handler: Any,
    timeout: float,
    mode: str = "weighted",
    provider: Any = None,
) -> None:
    """Run ``priority_worker.Worker`` until ``handler`` sends SIGTERM to this process."""
    pw = _worker_api()
    worker = pw.Worker(
        url=url,
        queues=[pw.Queue(name, prefetch=prefetch) for name, prefetch in queues],
        handler=handler,
        mode=mode,
        tracer_provider=provider,
    )
    # A watchdog: a stuck worker must not hang the whole benchmark.
    signal.signal(signal.SIGALRM, lambda *_: os._exit(3))
    signal.alarm(int(timeout) + 30)
    worker.run()
    signal.alarm(0)


def consume_ours(
    url: str, queue: str, n: int, prefetch: int, timeout: float, traced: bool = False
) -> dict:
    """priority_worker.Worker with an async no-op handler; SIGTERM (its drain path) at the end.
    ``traced``: with a tracer provider (see :func:`dropping_tracer_provider`)."""
    span = Span(n)

    async def handler(message: Any) -> None:
        span.start()
        noop_handler(message.body)
        if span.finish():
            os.kill(os.getpid(), signal.SIGTERM)

    provider = dropping_tracer_provider() if traced else None
    run_our_worker(url, [(queue, prefetch)], handler, timeout, provider=provider)
    return span.result()


def consume_ours_sync(url: str, queue: str, n: int, prefetch: int, timeout: float) -> dict:
    """The same with a plain (sync) handler, which the worker runs in its thread pool."""
    span = Span(n)
    lock = threading.Lock()

    def handler(message: Any) -> None:
        with lock:  # runs in pool threads
            span.start()
        noop_handler(message.body)
        with lock:
            if span.finish():
                os.kill(os.getpid(), signal.SIGTERM)

    run_our_worker(url, [(queue, prefetch)], handler, timeout)
    return span.result()


def dropping_tracer_provider() -> Any:
    """Tracing on as issue 18 measures it: the OpenTelemetry SDK, a batch span processor, and an
    exporter that drops every span (so the row counts making spans, not shipping them)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    return provider


def consume_ours_traced(url: str, queue: str, n: int, prefetch: int, timeout: float) -> dict:
    """``consume:ours`` with tracing on: a process span per delivery (dropped after batching)."""
    return consume_ours(url, queue, n, prefetch, timeout, traced=True)


def _faststream_broker(url: str, otel: bool) -> Any:
    """FastStream's RabbitBroker without its per-message log lines (our Worker logs none
    either); with ``otel``, its OpenTelemetry middleware on the dropping provider."""
    from faststream.rabbit import RabbitBroker

    middlewares: tuple[Any, ...] = ()
    if otel:
        from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware

        middlewares = (RabbitTelemetryMiddleware(tracer_provider=dropping_tracer_provider()),)
    return RabbitBroker(url, logger=None, middlewares=middlewares)


def consume_faststream(
    url: str, queue: str, n: int, prefetch: int, timeout: float, otel: bool = False
) -> dict:
    """FastStream: a subscriber with manual ack at the same prefetch, no-op handler."""
    from faststream import AckPolicy
    from faststream.rabbit import Channel, RabbitMessage, RabbitQueue

    async def run() -> dict:
        span = Span(n)
        done = asyncio.get_running_loop().create_future()
        broker = _faststream_broker(url, otel)

        @broker.subscriber(  # type: ignore[misc]
            RabbitQueue(queue, durable=True, declare=False),
            channel=Channel(prefetch_count=prefetch),
            ack_policy=AckPolicy.MANUAL,
        )
        async def on_message(body: bytes, message: RabbitMessage) -> None:
            span.start()
            noop_handler(body)
            await message.ack()
            if span.finish():
                done.set_result(None)

        await broker.start()
        try:
            await asyncio.wait_for(done, timeout)
        finally:
            await broker.stop()
        return span.result()

    return asyncio.run(run())


def consume_faststream_otel(url: str, queue: str, n: int, prefetch: int, timeout: float) -> dict:
    """``consume:faststream`` with its OpenTelemetry middleware (spans dropped after batching)."""
    return consume_faststream(url, queue, n, prefetch, timeout, otel=True)


def publish_pika(
    url: str,
    queue: str,
    n: int,
    window: int,
    timeout: float,
    persistent: bool = False,
    headers: dict[str, Any] | None = None,
) -> dict:
    """Bare pika async publisher with confirms, at most ``window`` unconfirmed."""
    body = b"x" * BODY_SIZE
    props = pika.BasicProperties(
        content_type="application/octet-stream",
        delivery_mode=2 if persistent else 1,
        headers=headers,
    )
    st = {
        "sent": 0,
        "confirmed": 0,
        "nacked": 0,
        "returned": 0,
        "low": 1,
        "t0": 0.0,
        "t1": 0.0,
        "c0": 0.0,
        "c1": 0.0,
    }
    pending: set[int] = set()

    def on_open(conn: AsyncioConnection, done: asyncio.Future) -> None:
        def on_channel(ch: Any) -> None:
            def pump() -> None:
                while st["sent"] < n and len(pending) < window:
                    ch.basic_publish("", queue, body, props, mandatory=True)
                    st["sent"] += 1
                    pending.add(st["sent"])

            def on_confirm(frame: Any) -> None:
                m = frame.method
                if isinstance(m, pika.spec.Basic.Nack):
                    st["nacked"] += 1
                if m.multiple:
                    for tag in range(st["low"], m.delivery_tag + 1):
                        if tag in pending:
                            pending.discard(tag)
                            st["confirmed"] += 1
                    st["low"] = m.delivery_tag + 1
                elif m.delivery_tag in pending:
                    pending.discard(m.delivery_tag)
                    st["confirmed"] += 1
                if st["confirmed"] == n:
                    st["t1"], st["c1"] = _now()
                    if not done.done():
                        done.set_result(None)
                else:
                    pump()

            def on_return(*_a: Any) -> None:
                st["returned"] += 1

            def start(_frame: Any) -> None:
                st["t0"], st["c0"] = _now()
                pump()

            ch.add_on_return_callback(on_return)
            ch.confirm_delivery(on_confirm, callback=start)

        conn.channel(on_open_callback=on_channel)

    _run_pika_async(url, on_open, timeout)
    if st["nacked"] or st["returned"]:
        raise RuntimeError(f"pika publisher: {st['nacked']} nacked, {st['returned']} returned")
    return {"count": st["confirmed"], "seconds": st["t1"] - st["t0"], "cpu": st["c1"] - st["c0"]}


async def publish_windowed(
    what: str, n: int, window: int, timeout: float, publish_one: Callable[[], Any]
) -> dict:
    """Call ``publish_one()`` (a coroutine or a future of the confirm) ``n`` times, with at most
    ``window`` unsettled; raise if any failed. The way an application would use either API."""
    sem = asyncio.Semaphore(window)
    failures: list[BaseException] = []
    pending: set[asyncio.Future] = set()

    def settled(fut: asyncio.Future) -> None:
        pending.discard(fut)
        sem.release()
        if not fut.cancelled() and fut.exception() is not None:
            failures.append(fut.exception())  # type: ignore[arg-type]

    t0, c0 = _now()
    for _ in range(n):
        await sem.acquire()
        fut = asyncio.ensure_future(publish_one())
        pending.add(fut)
        fut.add_done_callback(settled)
    if pending:
        await asyncio.wait_for(asyncio.wait(set(pending)), timeout)
    t1, c1 = _now()
    if failures:
        raise RuntimeError(f"{what}: {len(failures)} failed: {failures[0]!r}")
    return {"count": n, "seconds": t1 - t0, "cpu": c1 - c0}


def publish_aio_pika(
    url: str, queue: str, n: int, window: int, timeout: float, persistent: bool = False
) -> dict:
    """aio-pika with publisher confirms: one task per publish, at most ``window`` unconfirmed."""
    import aio_pika

    async def run() -> dict:
        body = b"x" * BODY_SIZE
        conn = await aio_pika.connect(url)
        try:
            ch = await conn.channel(publisher_confirms=True)
            ex = ch.default_exchange
            mode = 2 if persistent else 1

            def one() -> Any:
                message = aio_pika.Message(
                    body, content_type="application/octet-stream", delivery_mode=mode
                )
                return ex.publish(message, routing_key=queue, mandatory=True)

            return await publish_windowed("aio-pika publisher", n, window, timeout, one)
        finally:
            await conn.close()

    return asyncio.run(run())


def publish_ours(
    url: str,
    queue: str,
    n: int,
    window: int,
    timeout: float,
    persistent: bool = False,
    traced: bool = False,
) -> dict:
    """priority_worker.Publisher: one awaitable per message, at most ``window`` unconfirmed."""
    pw = _worker_api()

    async def run() -> dict:
        body = b"x" * BODY_SIZE
        provider = dropping_tracer_provider() if traced else None
        publisher = pw.Publisher(url, tracer_provider=provider)
        await publisher.start()
        try:
            props = pw.Properties(
                content_type="application/octet-stream", delivery_mode=2 if persistent else 1
            )

            def one() -> Any:
                return publisher.publish("", queue, body, mandatory=True, properties=props)

            return await publish_windowed("Publisher", n, window, timeout, one)
        finally:
            await publisher.close()

    return asyncio.run(run())


def publish_ours_traced(
    url: str, queue: str, n: int, window: int, timeout: float, persistent: bool = False
) -> dict:
    """``publish:ours`` with tracing on: a send span per message, its context in the headers."""
    return publish_ours(url, queue, n, window, timeout, persistent, traced=True)


def publish_faststream(
    url: str,
    queue: str,
    n: int,
    window: int,
    timeout: float,
    persistent: bool = False,
    otel: bool = False,
) -> dict:
    """FastStream's ``broker.publish`` (publisher confirms on its channel, mandatory), one task
    per message, at most ``window`` unconfirmed."""

    async def run() -> dict:
        body = b"x" * BODY_SIZE
        broker = _faststream_broker(url, otel)
        await broker.connect()
        try:

            def one() -> Any:
                return broker.publish(body, queue=queue, mandatory=True, persist=persistent)

            return await publish_windowed("FastStream publisher", n, window, timeout, one)
        finally:
            await broker.stop()

    return asyncio.run(run())


def publish_faststream_otel(
    url: str, queue: str, n: int, window: int, timeout: float, persistent: bool = False
) -> dict:
    """``publish:faststream`` with its OpenTelemetry middleware."""
    return publish_faststream(url, queue, n, window, timeout, persistent, otel=True)


def share_ours(
    url: str,
    high: str,
    low: str,
    ph: int,
    pl: int,
    warmup: int,
    measure: int,
    handler_ms: float,
    timeout: float,
) -> dict:
    """Our Worker on two backlogged queues; counts per queue after ``warmup`` handled."""
    state = {"seen": 0, high: 0, low: 0, "t0": 0.0, "t1": 0.0, "c0": 0.0, "c1": 0.0}
    delay = handler_ms / 1000.0

    async def handler(message: Any) -> None:
        if delay:
            await asyncio.sleep(delay)
        state["seen"] += 1
        seen = state["seen"]
        if seen == warmup:
            state["t0"], state["c0"] = _now()
        if warmup < seen <= warmup + measure:
            state[message.queue] += 1
            if seen == warmup + measure:
                state["t1"], state["c1"] = _now()
                os.kill(os.getpid(), signal.SIGTERM)

    run_our_worker(url, [(high, ph), (low, pl)], handler, timeout)
    return {
        "count": state[high] + state[low],
        "high": state[high],
        "low": state[low],
        "seconds": state["t1"] - state["t0"],
        "cpu": state["c1"] - state["c0"],
    }


CHILDREN: dict[str, Callable[..., dict]] = {
    "consume:pika": consume_pika,
    "consume:aio-pika": consume_aio_pika,
    "consume:ours": consume_ours,
    "consume:ours-sync": consume_ours_sync,
    "consume:ours-traced": consume_ours_traced,
    "consume:faststream": consume_faststream,
    "consume:faststream-otel": consume_faststream_otel,
    "publish:pika": publish_pika,
    "publish:aio-pika": publish_aio_pika,
    "publish:ours": publish_ours,
    "publish:ours-traced": publish_ours_traced,
    "publish:faststream": publish_faststream,
    "publish:faststream-otel": publish_faststream_otel,
    "share:ours": share_ours,
}


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    fn = CHILDREN[spec.pop("kind")]
    result = fn(**spec)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# =========================================================================== the parent


class ChildFailed(Exception):
    """A contender's child process failed; the text holds its output tail."""


def run_child(kind: str, timeout: float, profile_to: Path | None = None, **kwargs: Any) -> dict:
    spec = json.dumps({"kind": kind, "timeout": timeout, **kwargs})
    command = [sys.executable, str(Path(__file__).resolve()), "--child", spec]
    if profile_to is not None:
        command[1:1] = ["-m", "cProfile", "-o", str(profile_to)]
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"{kind}: timed out after {timeout + 60:.0f} s") from exc
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stdout[-800:] + "\n" + proc.stderr[-2500:]).strip()
    raise ChildFailed(f"{kind}: exited {proc.returncode} without a result:\n{tail}")


class BrokerOps:
    """Blocking helpers in the parent: declare, fill, count and delete the bench's queues."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn = pika.BlockingConnection(_params(url))
        self.ch = self.conn.channel()

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()

    def fresh_queue(self, name: str) -> str:
        self.ch.queue_delete(name)
        self.ch.queue_declare(name, durable=True)
        return name

    def delete(self, name: str) -> None:
        self.ch.queue_delete(name)

    def ready(self, name: str) -> int:
        return self.ch.queue_declare(name, passive=True).method.message_count

    def fill(self, name: str, n: int) -> None:
        """Publish n messages with confirms (the bare pika publisher) and check they are there."""
        before = self.ready(name)
        if n:
            publish_pika(self.url, name, n, 1000, timeout=600, headers=FILL_HEADERS)
        got = self.ready(name)
        if got != before + n:
            raise common.HarnessError(f"fill {name}: {got} ready, expected {before + n}")


@dataclass
class Series:
    """Samples of one table row."""

    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # client CPU microseconds per message
    extra: list[dict] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return common.median(self.rates) if self.rates else None

    @property
    def cpu_median(self) -> float | None:
        return common.median(self.cpu_us) if self.cpu_us else None

    def add(self, result: dict) -> float:
        rate = result["count"] / result["seconds"]
        self.rates.append(rate)
        self.cpu_us.append(result["cpu"] / result["count"] * 1e6)
        return rate


@dataclass
class Config:
    url: str
    messages: int
    publish_messages: int
    prefetch: int
    window: int
    repetitions: int
    share_pairs: list[tuple[int, int]]
    share_measure: int
    share_warmup: int
    handler_ms: list[float]
    timeout: float
    with_ours: bool
    with_sync: bool
    with_tracing: bool
    with_faststream: bool
    persistent: bool
    pause: float
    contenders: list[str] | None = None  # --contenders: only these (names after the colon)


def ours_available() -> tuple[bool, str]:
    try:
        pw = _worker_api()
    except Exception as exc:
        return False, f"import priority_worker failed: {exc!r}"
    missing = [n for n in ("Worker", "Queue", "Publisher", "Properties") if not hasattr(pw, n)]
    if missing:
        return False, f"priority_worker lacks {', '.join(missing)}"
    return True, ""


def importable(*modules: str) -> bool:
    """The optional peers and tracing run only where their packages are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def _is_ours(kind: str) -> bool:
    return kind.split(":")[1].startswith("ours")


def _chosen(cfg: Config, kinds: list[str]) -> list[str]:
    """``kinds`` less those ``--contenders`` leaves out."""
    if cfg.contenders is None:
        return kinds
    return [k for k in kinds if k.partition(":")[2] in cfg.contenders]


def _measure_rates(
    cfg: Config,
    ops: BrokerOps,
    results: dict[str, Series],
    kinds: list[str],
    fill: int,
    child_args: dict[str, Any],
    check: Callable[[str, dict, int], str | None],
) -> None:
    """Each repetition runs every kind once, back to back in a rotating order, on a fresh queue
    pre-filled with ``fill`` messages; ``check(kind, result, ready_after)`` names what did not
    add up. A peer's failure is a harness failure; ours is recorded and reported in the table."""
    kinds = _chosen(cfg, kinds)
    for rep in range(cfg.repetitions):
        # Rotate the order each repetition so that no contender always runs first.
        shift = rep % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            series = results.setdefault(kind, Series())
            if series.error:
                continue
            q = ops.fresh_queue(f"bench.{kind.replace(':', '.')}")
            try:
                ops.fill(q, fill)
                # Let the broker finish with the previous contender (its deleted queue, its
                # connection) and with the fill: otherwise the next one pays for it.
                time.sleep(cfg.pause)
                try:
                    r = run_child(kind, cfg.timeout, url=cfg.url, queue=q, **child_args)
                    problem = check(kind, r, ops.ready(q))
                except ChildFailed as exc:
                    problem = str(exc)
            finally:
                ops.delete(q)
            if problem:
                if not _is_ours(kind):
                    raise common.HarnessError(problem)
                series.error = problem
                print(f"  {kind}: ERROR\n{problem}", flush=True)
                continue
            rate = series.add(r)
            print(f"  rep {rep + 1} {kind}: {rate:,.0f} msg/s ({r['seconds']:.2f} s)", flush=True)


def measure_consume(cfg: Config, ops: BrokerOps, results: dict[str, Series]) -> None:
    kinds = ["consume:pika", "consume:aio-pika"]
    if cfg.with_faststream:
        kinds += ["consume:faststream"] + (["consume:faststream-otel"] if cfg.with_tracing else [])
    if cfg.with_ours:
        kinds.append("consume:ours")
        if cfg.with_tracing:
            kinds.append("consume:ours-traced")
        if cfg.with_sync:
            kinds.append("consume:ours-sync")

    def check(kind: str, r: dict, left: int) -> str | None:
        # Nothing may be left: every message was acked, not only delivered.
        if r["count"] != cfg.messages or left:
            return f"{kind}: handled {r['count']} of {cfg.messages}, {left} left unacked/ready"
        return None

    args = {"n": cfg.messages, "prefetch": cfg.prefetch}
    _measure_rates(cfg, ops, results, kinds, cfg.messages, args, check)


def measure_publish(cfg: Config, ops: BrokerOps, results: dict[str, Series]) -> None:
    kinds = ["publish:pika", "publish:aio-pika"]
    if cfg.with_faststream:
        kinds += ["publish:faststream"] + (["publish:faststream-otel"] if cfg.with_tracing else [])
    if cfg.with_ours:
        kinds += ["publish:ours"] + (["publish:ours-traced"] if cfg.with_tracing else [])

    def check(kind: str, r: dict, got: int) -> str | None:
        if got != cfg.publish_messages:
            return f"{kind}: {got} messages in the queue, expected {cfg.publish_messages}"
        return None

    args = {"n": cfg.publish_messages, "window": cfg.window, "persistent": cfg.persistent}
    _measure_rates(cfg, ops, results, kinds, 0, args, check)


def measure_share(cfg: Config, ops: BrokerOps, results: dict[str, Series]) -> None:
    for (ph, pl), ms in [(pair, ms) for ms in cfg.handler_ms for pair in cfg.share_pairs]:
        key = f"share:{ph}/{pl}@{ms:g}"
        series = results.setdefault(key, Series())
        for rep in range(cfg.repetitions):
            if series.error:
                break
            high = ops.fresh_queue("bench.share.high")
            low = ops.fresh_queue("bench.share.low")
            # Both queues must keep a backlog for the whole measurement.
            backlog = cfg.share_warmup + cfg.share_measure + ph + pl
            ops.fill(high, backlog)
            ops.fill(low, backlog)
            time.sleep(cfg.pause)
            try:
                r = run_child(
                    "share:ours",
                    cfg.timeout,
                    url=cfg.url,
                    high=high,
                    low=low,
                    ph=ph,
                    pl=pl,
                    warmup=cfg.share_warmup,
                    measure=cfg.share_measure,
                    handler_ms=ms,
                )
            except ChildFailed as exc:
                series.error = str(exc)
                print(f"  {key}: ERROR\n{exc}", flush=True)
                continue
            finally:
                ops.delete(high)
                ops.delete(low)
            observed = r["high"] / r["low"] if r["low"] else float("inf")
            series.rates.append(observed)
            series.extra.append(r)
            print(
                f"  rep {rep + 1} {key}: {r['high']}:{r['low']} = {observed:.2f} "
                f"(expected {ph / pl:.2f}, {r['seconds']:.2f} s)",
                flush=True,
            )


PROFILE_PATTERN = (
    r"priority_worker|prometheus_client|opentelemetry"
    r"|asyncio/(tasks|base_events).py.*(create_task|ensure_future|call_later)"
)


def profile_ours(cfg: Config, ops: BrokerOps, directory: Path) -> str:
    """One extra, untimed consume and publish run of ours under cProfile; returns a summary."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    consume = {"n": cfg.messages, "prefetch": cfg.prefetch}
    publish = {"n": cfg.publish_messages, "window": cfg.window, "persistent": cfg.persistent}
    runs = [("consume:ours", consume), ("publish:ours", publish)]
    if cfg.with_tracing:
        runs += [("consume:ours-traced", consume), ("publish:ours-traced", publish)]
    chosen = _chosen(cfg, [kind for kind, _ in runs])
    for kind, extra in [(kind, extra) for kind, extra in runs if kind in chosen]:
        q = ops.fresh_queue(f"bench.profile.{kind.split(':')[0]}")
        if kind.startswith("consume"):
            ops.fill(q, cfg.messages)
        prof = directory / f"{kind.replace(':', '-')}.prof"
        try:
            r = run_child(kind, cfg.timeout, profile_to=prof, url=cfg.url, queue=q, **extra)
        except ChildFailed as exc:
            parts.append(f"### {kind}: profiling failed\n{exc}\n")
            continue
        finally:
            ops.delete(q)
        rate = r["count"] / r["seconds"]
        parts.append(f"### {kind} under cProfile ({rate:,.0f} msg/s with the profiler)\n")
        parts.append(common.profile_summary(prof, PROFILE_PATTERN, 30))
    return "\n".join(parts)


RATE_HEADER = [
    "median msg/s",
    "min-max",
    "vs bare pika",
    "client CPU us/msg",
    "CPU: bare pika / this",
]

LABELS = {
    "consume:pika": "bare pika AsyncioConnection",
    "consume:aio-pika": "aio-pika",
    "consume:ours": "priority_worker.Worker (async no-op handler)",
    "consume:faststream": "FastStream RabbitBroker (manual ack)",
    "consume:faststream-otel": "FastStream + its OpenTelemetry middleware",
    "consume:ours-sync": "priority_worker.Worker (sync no-op handler, thread pool)",
    "consume:ours-traced": "priority_worker.Worker, tracing on",
    "publish:pika": "bare pika async, window",
    "publish:aio-pika": "aio-pika, semaphore window",
    "publish:faststream": "FastStream broker.publish (confirms), semaphore window",
    "publish:faststream-otel": "FastStream + its OpenTelemetry middleware",
    "publish:ours": "priority_worker.Publisher",
    "publish:ours-traced": "priority_worker.Publisher, tracing on",
}


def render(
    cfg: Config, env: dict[str, str], results: dict[str, Series], note: str, cmdline: str
) -> str:
    def rate_rows(prefix: str) -> list[list[object]]:
        base = results.get(f"{prefix}:pika", Series())
        rows: list[list[object]] = []
        for key, label in LABELS.items():
            if not key.startswith(prefix + ":"):
                continue
            s = results.get(key)
            if s is None or (not s.rates and not s.error):
                rows.append([label, "not run", "-", "-", "-", "-"])
            elif s.error and not s.rates:
                rows.append([label, "ERROR", "-", "-", "-", "-"])
            else:
                med, cpu = s.median or 0.0, s.cpu_median or 0.0
                rel = f"{med / base.median:.2f}" if base.median else "-"
                cpu_rel = f"{base.cpu_median / cpu:.2f}" if base.cpu_median and cpu else "-"
                spread = f"{min(s.rates):,.0f}-{max(s.rates):,.0f}"
                rows.append([label, f"{med:,.0f}", spread, rel, f"{cpu:.1f}", cpu_rel])
        return rows

    def target_row(
        what: str, key: str, base_key: str, target: float = THROUGHPUT_TARGET
    ) -> list[object]:
        s, b = results.get(key), results.get(base_key)
        if s is None or not s.rates or b is None or not b.rates:
            why = "MISS (ERROR)" if s is not None and s.error else "not run"
            return [what, "-", "-", "-", f">= {target}", why]
        r = (s.median or 0) / (b.median or 1)
        paired = common.paired_ratio(s.rates, b.rates)
        by_cpu = f"{(b.cpu_median or 0) / s.cpu_median:.2f}" if s.cpu_median else "-"
        return [what, f"{r:.2f}", paired, by_cpu, f">= {target}", common.verdict(r >= target)]

    targets = [
        target_row("consume: Worker / bare pika", "consume:ours", "consume:pika"),
        target_row("publish: Publisher / bare pika", "publish:ours", "publish:pika"),
    ]
    if cfg.with_tracing:
        targets += [
            target_row(
                "consume: Worker tracing on / off",
                "consume:ours-traced",
                "consume:ours",
                TRACING_TARGET,
            ),
            target_row(
                "publish: Publisher tracing on / off",
                "publish:ours-traced",
                "publish:ours",
                TRACING_TARGET,
            ),
        ]
    if cfg.with_faststream:
        pairs = [("", "", "")]
        if cfg.with_tracing:
            pairs.append((" (tracing on, both)", "-traced", "-otel"))
        for label, ours, theirs in pairs:
            for part, name in (("consume", "Worker"), ("publish", "Publisher")):
                targets.append(
                    target_row(
                        f"{part}: {name} / FastStream{label}",
                        f"{part}:ours{ours}",
                        f"{part}:faststream{theirs}",
                        FASTSTREAM_GOAL,
                    )
                )

    share_rows: list[list[object]] = []
    for (ph, pl), ms in [(pair, ms) for ms in cfg.handler_ms for pair in cfg.share_pairs]:
        s = results.get(f"share:{ph}/{pl}@{ms:g}")
        expected = ph / pl
        if s is None or not s.rates:
            share_rows.append(
                [
                    f"{ph}/{pl}",
                    f"{ms:g}",
                    f"{expected:.2f}",
                    "ERROR" if s and s.error else "not run",
                    "-",
                    "-",
                    "-",
                ]
            )
            continue
        med = s.median or 0.0
        dev = med / expected - 1
        counts = ", ".join(f"{e['high']}:{e['low']}" for e in s.extra)
        share_rows.append(
            [
                f"{ph}/{pl}",
                f"{ms:g}",
                f"{expected:.2f}",
                f"{med:.2f}",
                f"{dev:+.1%}",
                counts,
                common.verdict(abs(dev) <= SHARE_TOLERANCE),
            ]
        )

    lines = [
        *common.report_header("priority_worker benchmark", env),
        f"- messages: {BODY_SIZE}-byte bodies, default exchange -> durable classic queue; "
        f"consumed queues pre-filled with transient messages carrying a W3C `traceparent` "
        f"header; published messages "
        f"{'persistent' if cfg.persistent else 'transient'} (the same for every publisher); "
        f"repetitions: {cfg.repetitions}, median reported",
        f"- command: `{cmdline}`",
    ]
    if note:
        lines.append(f"- note: {note}")
    lines += [
        "",
        f"## Consuming {cfg.messages:,} pre-filled messages, prefetch {cfg.prefetch}, "
        "manual ack, no-op handler",
        "",
        common.markdown_table(["consumer", *RATE_HEADER], rate_rows("consume")),
        "",
        f"## Publishing {cfg.publish_messages:,} messages with confirms, "
        f"{cfg.window} in flight, mandatory",
        "",
        common.markdown_table(["publisher", *RATE_HEADER], rate_rows("publish")),
        "",
        f"## Weighted share under backlog (our Worker, weighted mode, an async handler that "
        f"sleeps the given time; {cfg.share_measure:,} deliveries counted after "
        f"{cfg.share_warmup:,})",
        "",
        common.markdown_table(
            [
                "prefetch high/low",
                "handler ms",
                "expected",
                "observed (median)",
                "deviation",
                "high:low per run",
                f"within {SHARE_TOLERANCE:.0%}",
            ],
            share_rows,
        ),
        "",
        "## Targets",
        "",
        common.markdown_table(
            [
                "throughput ratio",
                "of the medians",
                "per repetition (median, min-max)",
                "by client CPU per message",
                "target",
                "result",
            ],
            targets,
        ),
        "",
    ]
    for key, s in results.items():
        if s.error:
            lines += [f"**{key}** failed:", "", "```", s.error.strip()[-2500:], "```", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--messages", type=int, default=60000, help="messages pre-filled per consume run (60000)"
    )
    p.add_argument(
        "--publish-messages", type=int, default=50000, help="messages per publish run (50000)"
    )
    p.add_argument("--prefetch", type=int, default=100)
    p.add_argument("--window", type=int, default=1000, help="confirms in flight (1000)")
    p.add_argument("--repetitions", "-n", type=int, help="runs per measurement (3)")
    p.add_argument("--share", default="10/2,20/5,1/1", help="prefetch pairs high/low")
    p.add_argument(
        "--share-measure", type=int, default=5000, help="deliveries counted per share run (5000)"
    )
    p.add_argument("--share-warmup", type=int, default=500)
    p.add_argument(
        "--handler-ms",
        default="2,0",
        help="handler times in ms for the share runs, comma-separated (2,0: a 2 ms handler "
        "and a no-op one)",
    )
    p.add_argument(
        "--sync-handler",
        action="store_true",
        help="also measure our Worker with a sync handler (thread pool)",
    )
    p.add_argument(
        "--only",
        choices=["consume", "publish", "share"],
        action="append",
        help="run only these parts (repeatable)",
    )
    p.add_argument(
        "--persistent",
        action="store_true",
        help="publish benchmark with delivery_mode 2 (all publishers); default transient",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="afterwards, run our consume and publish (and their tracing-on rows) once more "
        "under cProfile (untimed); writes DIR/*.prof and prints the top functions",
    )
    p.add_argument("--skip-ours", action="store_true", help="measure the peers only")
    p.add_argument(
        "--no-tracing",
        action="store_true",
        help="leave out the tracing-on rows (ours and FastStream's middleware)",
    )
    p.add_argument("--no-faststream", action="store_true", help="leave out FastStream")
    p.add_argument(
        "--contenders",
        metavar="NAMES",
        help="comma-separated: measure only these consume/publish contenders (pika, aio-pika, "
        "faststream, faststream-otel, ours, ours-traced, ours-sync); e.g. ours,ours-traced "
        "for the tracing on/off rows alone, interleaved",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="5,000 messages, 1 repetition, 600 counted per share run (< 60 s)",
    )
    p.add_argument("--timeout", type=float, default=120, help="per measurement, s")
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds of quiet before each measurement (1.0)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="result name: bench/results/NAME.md (default worker, worker-quick with --quick; "
        "'-' = none)",
    )
    common.add_broker_arguments(p)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.messages, args.publish_messages = 5000, 5000
        args.share_measure, args.share_warmup = 600, 100
    args.repetitions = args.repetitions or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    broker = common.broker_from(args)
    mgmt = common.Management(broker)
    parts = args.only or ["consume", "publish", "share"]
    have_ours, why = (False, "--skip-ours") if args.skip_ours else ours_available()
    note = "" if have_ours else f"our Worker/Publisher not measured: {why}"
    if note:
        print("note:", note)
    pairs = []
    for item in args.share.split(","):
        h, _, lo = item.partition("/")
        pairs.append((int(h), int(lo)))
    results: dict[str, Series] = {}
    try:
        env = common.environment(mgmt)
        with common.scratch_vhost(mgmt, "worker") as vhost:
            cfg = Config(
                url=broker.amqp_url(vhost),
                messages=args.messages,
                publish_messages=args.publish_messages,
                prefetch=args.prefetch,
                window=args.window,
                repetitions=args.repetitions,
                share_pairs=pairs,
                share_measure=args.share_measure,
                share_warmup=args.share_warmup,
                handler_ms=[float(x) for x in args.handler_ms.split(",")],
                timeout=args.timeout,
                with_ours=have_ours,
                with_sync=args.sync_handler,
                with_tracing=not args.no_tracing and importable("opentelemetry.sdk"),
                with_faststream=not args.no_faststream and importable("faststream", "aio_pika"),
                persistent=args.persistent,
                pause=args.pause,
                contenders=args.contenders.split(",") if args.contenders else None,
            )
            ops = BrokerOps(cfg.url)
            try:
                if "consume" in parts:
                    print("consuming", flush=True)
                    measure_consume(cfg, ops, results)
                if "publish" in parts:
                    print("publishing", flush=True)
                    measure_publish(cfg, ops, results)
                if "share" in parts and have_ours:
                    print("weighted share", flush=True)
                    measure_share(cfg, ops, results)
                if args.profile and have_ours:
                    print(profile_ours(cfg, ops, Path(args.profile)), flush=True)
            finally:
                ops.close()
    except (common.HarnessError, pika.exceptions.AMQPError) as exc:
        print(f"harness failure: {exc!r}", file=sys.stderr)
        return 1
    finally:
        mgmt.close()
    text = render(cfg, env, results, note, common.command_line(__file__, argv))
    common.publish_result(text, args.output, "worker", args.quick)
    return 2 if any(s.error for s in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
