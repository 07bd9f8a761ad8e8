"""OpenTelemetry traces against the real broker, read back from the SDK's in-memory exporter.

One email published by ``Publisher`` inside a request span, failing once with ``Retry`` and then
succeeding, is one trace: request -> send -> process (retry) -> send (retry) -> process (ack).
A message dead-lettered after its retries ends its trace with the dead-letter send. A message
published by other clients' instrumentation (pika's, aio-pika's) continues their trace.
Every test passes its own ``tracer_provider``: the global provider is never set here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from waiting import wait_until_blocking
from worker_support import (
    HERE,
    RUNNER,
    declare_queues,
    drain,
    fill,
    ids,
    noted,
    run,
    wait_until,
)

from priority_worker import Message, Publisher, Queue, Retry, RetryPolicy, Worker
from priority_worker._log import JsonFormatter


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider exporting every ended span to memory at once (no batching to wait for)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _by_kind(found: list[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return sorted((s for s in found if s.kind is kind), key=lambda s: s.start_time or 0)


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def _trace(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The worker's log records as JSON lines (the CLI's formatter), at INFO."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("priority_worker")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield out
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_an_email_that_fails_once_then_succeeds_is_one_trace(
    vhost_url: str,
    spans: tuple[TracerProvider, InMemorySpanExporter],
    json_log: io.StringIO,
) -> None:
    """request -> send -> process (retry, Retry recorded) -> send (retry, linked to the failed
    attempt) -> process (ack): parents, links, attributes; a sync handler sees its delivery's
    span, and its follow-up publish_blocking continues the trace; JSON log lines made inside a
    span carry its ids."""
    provider, exporter = spans
    declare_queues(vhost_url, "email", "email.sent")
    seen_in_handler: list[int] = []

    def send_email(message: Message) -> None:  # sync: runs in the thread pool
        seen_in_handler.append(trace.get_current_span().get_span_context().span_id)
        if message.attempts == 0:
            raise Retry(delay=0.5, reason="smtp greylisted")
        assert message.publisher is not None
        message.publisher.publish_blocking("", "email.sent", b"sent", timeout=10)

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("email", 5)],
            send_email,
            retry=RetryPolicy(initial_delay=0.5),
            tracer_provider=provider,
        )
        await worker.start()
        try:
            async with Publisher(vhost_url, tracer_provider=provider) as publisher:
                with provider.get_tracer("web").start_as_current_span("POST /signup"):
                    await publisher.publish(
                        "",
                        "email",
                        b"welcome",
                        properties=None,
                        headers={"to": "ada@example.com"},
                    )
            await wait_until(
                lambda: worker.metrics.acks.labels("email")._value.get() == 1, 30, "acked once"
            )
        finally:
            await worker.stop()

    run(scenario())
    found = list(exporter.get_finished_spans())
    (request,) = [s for s in found if s.name == "POST /signup"]
    assert {_trace(s) for s in found} == {_trace(request)}, "one trace"
    send, resend, follow_up = _by_kind(found, SpanKind.PRODUCER)
    first, second = _by_kind(found, SpanKind.CONSUMER)

    assert send.name == "send" and _parent_id(send) == _id(request)
    assert _parent_id(first) == _id(send)
    assert _parent_id(resend) == _id(first)
    assert [link.context.span_id for link in resend.links] == [_id(first)]
    assert _parent_id(second) == _id(resend)

    assert first.name == second.name == "process email"
    for s in (send, resend, first, second):
        assert s.attributes is not None
        assert s.attributes["messaging.system"] == "rabbitmq"
        assert s.attributes["messaging.destination.name"] == ""  # the default exchange
    assert send.attributes is not None and first.attributes is not None
    assert second.attributes is not None and resend.attributes is not None
    assert send.attributes["messaging.operation.type"] == "send"
    assert send.attributes["messaging.rabbitmq.destination.routing_key"] == "email"
    assert first.attributes["messaging.operation.type"] == "process"
    assert first.attributes["priority_worker.queue"] == "email"
    assert first.attributes["priority_worker.attempt"] == 1
    assert first.attributes["priority_worker.outcome"] == "retry"
    assert isinstance(first.attributes["messaging.rabbitmq.message.delivery_tag"], int)
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes["error.type"] == "Retry"
    assert [e.name for e in first.events] == ["exception"]
    assert resend.attributes["priority_worker.republish"] == "retry"
    assert resend.attributes["priority_worker.attempt"] == 1
    assert resend.attributes["messaging.rabbitmq.destination.routing_key"].startswith("email.delay")
    assert second.attributes["priority_worker.attempt"] == 2
    assert second.attributes["priority_worker.outcome"] == "ack"
    assert second.status.status_code is StatusCode.UNSET
    assert seen_in_handler == [_id(first), _id(second)]
    assert _parent_id(follow_up) == _id(second) and follow_up.links == ()
    ((sent_props, _),) = drain(vhost_url, "email.sent")
    assert format(_id(follow_up), "016x") in sent_props.headers["traceparent"]

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    (retry_line,) = [d for d in lines if d["event"] == "retry_scheduled"]
    assert retry_line["trace_id"] == format(_trace(request), "032x")
    assert retry_line["span_id"] == format(_id(first), "016x")
    assert all("trace_id" not in d for d in lines if d["event"] in ("starting", "stopped"))


def test_a_dead_lettered_message_ends_its_trace_with_the_dead_letter_send(
    vhost_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Retries exhausted: process -> send (retry) -> process (dead-letter) -> send
    (dead-letter, linked to the last attempt); the dead letter carries that send's context."""
    provider, exporter = spans
    declare_queues(vhost_url, "email")

    async def always_fails(message: Message) -> None:
        raise ConnectionRefusedError("smtp down")

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("email", 5)],
            always_fails,
            retry=RetryPolicy(max_retries=1, initial_delay=0.2),
            tracer_provider=provider,
        )
        await worker.start()
        try:
            await worker.publisher.publish("", "email", b"x")
            await wait_until(
                lambda: worker.metrics.dead_letters.labels("email", "exhausted")._value.get(),
                30,
                "dead-lettered",
            )
        finally:
            await worker.stop()

    run(scenario())
    found = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    assert len({_trace(s) for s in found}) == 1
    assert [(s.kind, (s.attributes or {}).get("priority_worker.republish")) for s in found] == [
        (SpanKind.PRODUCER, None),
        (SpanKind.CONSUMER, None),
        (SpanKind.PRODUCER, "retry"),
        (SpanKind.CONSUMER, None),
        (SpanKind.PRODUCER, "dead-letter"),
    ]
    last_attempt, dead = found[3], found[4]
    assert (last_attempt.attributes or {})["priority_worker.outcome"] == "dead-letter"
    assert (last_attempt.attributes or {})["error.type"] == "ConnectionRefusedError"
    assert _parent_id(dead) == _id(last_attempt)
    assert [link.context.span_id for link in dead.links] == [_id(last_attempt)]
    assert dead.name == "send" and (dead.attributes or {})["priority_worker.attempt"] == 2
    ((props, _),) = drain(vhost_url, "email.dead")
    traceparent = props.headers["traceparent"]
    assert traceparent.split("-")[1:3] == [format(_trace(dead), "032x"), format(_id(dead), "016x")]


def test_a_trace_started_by_pikas_instrumentation_continues_in_the_worker(
    vhost_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """opentelemetry-instrumentation-pika on a BlockingConnection publisher injects W3C headers;
    the worker's process span is the child of that publisher's span."""
    from opentelemetry.instrumentation.pika import PikaInstrumentor

    provider, exporter = spans
    declare_queues(vhost_url, "email")
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    try:
        channel = conn.channel()
        PikaInstrumentor.instrument_channel(channel, tracer_provider=provider)
        with provider.get_tracer("web").start_as_current_span("POST /reset"):
            channel.basic_publish("", "email", b"reset", pika.BasicProperties(message_id="m1"))
    finally:
        conn.close()
    outside = {_id(s) for s in exporter.get_finished_spans()}
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(str(message.properties.message_id))

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("email", 5)], handler, tracer_provider=provider)
        await worker.start()
        try:
            await wait_until(lambda: handled == ["m1"], 30, "handled")
        finally:
            await worker.stop()

    run(scenario())
    found = exporter.get_finished_spans()
    (request,) = [s for s in found if s.name == "POST /reset"]
    (published,) = [s for s in found if s.kind is SpanKind.PRODUCER]
    (process,) = [s for s in found if _id(s) not in outside]
    assert _id(published) in outside and _parent_id(published) == _id(request)
    assert process.kind is SpanKind.CONSUMER and _parent_id(process) == _id(published)
    assert _trace(process) == _trace(request)
    assert (process.attributes or {})["messaging.message.id"] == "m1"


def test_a_trace_started_by_aio_pikas_instrumentation_continues_in_the_worker(
    vhost_url: str, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """The same with opentelemetry-instrumentation-aio-pika on an aio-pika publisher."""
    aio_pika = pytest.importorskip("aio_pika")
    from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor

    provider, exporter = spans
    declare_queues(vhost_url, "email")
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(str(message.properties.message_id))

    async def scenario() -> None:
        instrumentor = AioPikaInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            connection = await aio_pika.connect(vhost_url)
            async with connection:
                channel = await connection.channel()
                with provider.get_tracer("web").start_as_current_span("POST /invite"):
                    await channel.default_exchange.publish(
                        aio_pika.Message(b"invite", message_id="a1"), routing_key="email"
                    )
        finally:
            instrumentor.uninstrument()
        worker = Worker(vhost_url, [Queue("email", 5)], handler, tracer_provider=provider)
        await worker.start()
        try:
            await wait_until(lambda: handled == ["a1"], 30, "handled")
        finally:
            await worker.stop()

    run(scenario())
    found = exporter.get_finished_spans()
    (request,) = [s for s in found if s.name == "POST /invite"]
    (published,) = [s for s in found if s.kind is SpanKind.PRODUCER]
    (process,) = [s for s in found if s.kind is SpanKind.CONSUMER]
    assert _parent_id(published) == _id(request)
    assert _parent_id(process) == _id(published) and _trace(process) == _trace(request)


def _consumers(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        count: int = conn.channel().queue_declare(queue, passive=True).method.consumer_count
        return count
    finally:
        conn.close()


def test_processes_children_configure_tracing_from_the_otel_environment(
    vhost_url: str, tmp_path: Path
) -> None:
    """``priority-worker run --trace --processes 2``: each child builds its SDK from OTEL_*
    (here the console exporter and a service name) and exports a process span per delivery,
    flushed when it drains on SIGTERM."""
    declare_queues(vhost_url, "q")
    log = tmp_path / "handled.log"
    env = {
        **os.environ,
        "HANDLED_LOG": str(log),
        "HANDLER_SECONDS": "0.05",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "emails",
    }
    proc = subprocess.Popen(
        [str(RUNNER), "run", "worker_handlers:slow_with_pid", "--url", vhost_url]
        + ["--queue", "q=2", "--processes", "2", "--trace"],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # Both children consuming before anything is published: on a loaded machine the first
        # one could otherwise handle all 20 before the second has connected.
        wait_until_blocking(lambda: _consumers(vhost_url, "q") == 2, 60, "2 children consuming")
        fill(vhost_url, "q", ids("t", 20))
        wait_until_blocking(lambda: len(noted(log, "done")) == 20, 60, "20 handled")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()[-3000:]
    decoder, text, exported = json.JSONDecoder(), out.decode(), []
    position = text.find("{")
    while position != -1:
        span, end = decoder.raw_decode(text, position)
        exported.append(span)
        position = text.find("{", end)
    processed = [s for s in exported if s["name"] == "process q"]
    assert sorted(s["attributes"]["messaging.message.id"] for s in processed) == sorted(
        ids("t", 20)
    )
    assert {s["resource"]["attributes"]["service.name"] for s in processed} == {"emails"}
    assert {s["kind"] for s in processed} == {"SpanKind.CONSUMER"}
    pids = {line.split()[2] for line in log.read_text().splitlines()}
    assert len(pids) == 2, "both children handled (and so traced) messages"
