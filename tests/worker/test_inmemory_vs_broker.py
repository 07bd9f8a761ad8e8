"""The in-memory broker against the real one: the same scenario gives the same share."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import httpx
import pika
import pytest
from worker_support import Recorder, fill, ids, run, wait_until

from priority_worker import Message, Queue, Worker
from priority_worker.testing import InMemoryBroker


@pytest.mark.parametrize("concurrency", [1, None])
def test_share_of_the_first_600_matches_the_in_memory_broker(
    vhost_url: str, queues2: object, concurrency: int | None
) -> None:
    """Prefetch 10/2 and a backlog on both: the real worker's first 600 are within 10% of
    the in-memory broker's 500:100 (one handler, and the default concurrency)."""
    queues = [Queue("high", 10), Queue("low", 2)]
    model = InMemoryBroker()
    model.publish_many("high", 700, prefix="h")
    model.publish_many("low", 200, prefix="l")
    expected = model.run(
        queues, Recorder(), concurrency=concurrency, handler_time=0.005, max_handled=600
    ).counts()
    assert expected == {"high": 500, "low": 100}

    fill(vhost_url, "high", ids("h", 700))
    fill(vhost_url, "low", ids("l", 200))
    rec = Recorder(delay=0.005)

    async def scenario() -> None:
        worker = Worker(vhost_url, queues, rec, concurrency=concurrency)
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) >= 600, 60, "600 handled")
        finally:
            await worker.stop()

    run(scenario())
    real = Counter(q for q, *_ in rec.seen[:600])
    for queue in ("high", "low"):
        assert real[queue] == pytest.approx(expected[queue], rel=0.10), (real, expected)


def test_metrics_show_share_against_target_held_time_and_prefetch(
    vhost_url: str, queues2: object
) -> None:
    """/metrics per queue: the achieved share over the window next to its target, a histogram
    of the time held before the handler started, prefetch in use against the prefetch."""
    fill(vhost_url, "high", ids("h", 400))
    fill(vhost_url, "low", ids("l", 200))
    rec = Recorder(delay=0.003)

    async def scenario() -> str:
        worker = Worker(
            vhost_url,
            [Queue("high", 10), Queue("low", 2)],
            rec,
            concurrency=1,
            http_port=0,
            share_window=300,
        )
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) >= 330, 60, "330 handled")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{worker.http_port}") as c:
                return (await c.get("/metrics")).text
        finally:
            await worker.stop()

    text = run(scenario())
    values = {}
    for line in text.splitlines():
        if line.startswith("priority_worker_") and "{" in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values['priority_worker_share_target{queue="high"}'] == pytest.approx(10 / 12)
    assert values['priority_worker_share_target{queue="low"}'] == pytest.approx(2 / 12)
    assert values['priority_worker_share{queue="high"}'] == pytest.approx(10 / 12, rel=0.10)
    assert values['priority_worker_share{queue="low"}'] == pytest.approx(2 / 12, rel=0.10)
    assert values['priority_worker_held_seconds_count{queue="high"}'] >= 270
    # with one handler and 12 held, most deliveries wait for others: not all in the first bucket
    assert (
        values['priority_worker_held_seconds_bucket{le="0.0005",queue="high"}']
        < values['priority_worker_held_seconds_count{queue="high"}']
    )
    assert values['priority_worker_prefetch_configured{queue="high"}'] == 10
    assert values['priority_worker_prefetch{queue="high"}'] == 10
    assert 0 < values['priority_worker_in_flight{queue="high"}'] <= 10


def test_an_arriving_high_message_starts_before_the_low_work_already_held(
    vhost_url: str, queues2: object
) -> None:
    """Real broker, weighted, one handler (20 ms), a low backlog, a high message every 60 ms:
    a high message starts after at most the low handler running when it arrived, not behind
    the low deliveries the worker already holds. Counted by order, not timed: the number of
    low handler starts between a high message's publish and its own start (arrival order
    gave 2 for most of them)."""
    fill(vhost_url, "low", ids("l", 600))
    starts: list[tuple[str, float]] = []

    async def handler(message: Message) -> None:
        starts.append((message.queue, time.monotonic()))
        await asyncio.sleep(0.02)

    published: list[float] = []

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], handler, concurrency=1)
        await worker.start()
        conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
        try:
            ch = conn.channel()
            await wait_until(lambda: len(starts) >= 20, 30, "low under way")
            for i in range(20):
                published.append(time.monotonic())
                ch.basic_publish("", "high", f"h{i}".encode())
                await asyncio.sleep(0.06)
            await wait_until(lambda: sum(q == "high" for q, _ in starts) == 20, 30, "20 high")
        finally:
            conn.close()
            await worker.stop()

    run(scenario())
    highs = [t for q, t in starts if q == "high"]
    lows = [t for q, t in starts if q == "low"]
    between = [sum(1 for t in lows if p < t < h) for p, h in zip(published, highs, strict=True)]
    assert statistics.median(between) <= 1, between
    assert max(between) <= 2, between
