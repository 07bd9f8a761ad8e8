"""One email followed through OpenTelemetry: queued by a web request, failing once, then sent.

A ``POST /signup`` span publishes a welcome email with ``Publisher``; the worker's handler
answers the first attempt with ``Retry`` (the SMTP server greylisted it) and sends it on the
second. The SDK's ``ConsoleSpanExporter`` prints each span as it ends (JSON), then a line per
span sums the trace up: request -> send -> process (retry) -> send (retry) -> process (ack).

    pip install 'declare-amqp[otel]'
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/tracing_example.py [--summary]

It uses the queue ``tracing-example.email`` (and its delay queue), deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import pika
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from priority_worker import Message, Publisher, Queue, Retry, RetryPolicy, Worker

QUEUE = "tracing-example.email"
sent = asyncio.Event()


async def send_email(message: Message) -> None:
    """The first attempt is greylisted ("try again later"); the second one goes out."""
    if message.attempts == 0:
        raise Retry(delay=1, reason="greylisted by the SMTP server")
    sent.set()


def one_line(span: ReadableSpan, first: ReadableSpan) -> str:
    """``+0.012s  process tracing-example.email  CONSUMER  parent=...  outcome=retry``."""
    attributes = dict(span.attributes or {})
    parent = f"{span.parent.span_id:016x}" if span.parent else "-" * 16
    context = span.get_span_context()
    links = ",".join(f"{link.context.span_id:016x}" for link in span.links) or "-"
    extra = " ".join(
        f"{key.removeprefix('priority_worker.')}={attributes[key]}"
        for key in (
            "priority_worker.attempt",
            "priority_worker.outcome",
            "priority_worker.republish",
        )
        if key in attributes
    )
    offset = ((span.start_time or 0) - (first.start_time or 0)) / 1e9
    return (
        f"+{offset:6.3f}s  {span.name:<30} {span.kind.name:<9} span={context.span_id:016x} "
        f"parent={parent} links={links} {extra}"
    )


async def main(url: str, console: bool) -> None:
    provider = TracerProvider()
    kept = InMemorySpanExporter()  # for the summary at the end
    provider.add_span_processor(SimpleSpanProcessor(kept))
    if console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    worker = Worker(
        url,
        [Queue(QUEUE, 5)],
        send_email,
        retry=RetryPolicy(initial_delay=1),
        tracer_provider=provider,
    )
    await worker.start()
    try:
        async with Publisher(url, tracer_provider=provider) as publisher:
            await publisher.ensure_queue(QUEUE, {})
            with provider.get_tracer("web").start_as_current_span("POST /signup"):
                await publisher.publish(
                    "", QUEUE, b'{"to": "ada@example.com"}', headers={"template": "welcome"}
                )
        await asyncio.wait_for(sent.wait(), 30)
    finally:
        await worker.stop()
    spans = sorted(kept.get_finished_spans(), key=lambda s: s.start_time or 0)
    trace_ids = {s.get_span_context().trace_id for s in spans}
    print(f"\none trace: {len(trace_ids) == 1} (trace_id {next(iter(trace_ids)):032x})")
    for span in spans:
        print(one_line(span, spans[0]))


def cleanup(url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in (QUEUE, f"{QUEUE}.delay.1000"):
            channel.queue_delete(name)
    finally:
        connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://127.0.0.1/"))
    parser.add_argument(
        "--summary", action="store_true", help="only the summary, not ConsoleSpanExporter's JSON"
    )
    args = parser.parse_args()
    try:
        asyncio.run(main(args.url, not args.summary))
    finally:
        cleanup(args.url)
    sys.exit(0)
