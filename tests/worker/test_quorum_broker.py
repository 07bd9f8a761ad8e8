"""The worker on quorum queues and what 4.x brokers change (run against 3.x and 4.x in CI).

Which count wins: a handler's failures are retried by the worker (republish to a delay queue,
then ack), so the broker's quorum delivery limit (20 by default since 4.0) never sees them and
``RetryPolicy.max_retries`` decides. The broker's limit applies only to real redeliveries
(a worker that died or lost its channel, a requeue): those are the broker's to count.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pika
from worker_support import (
    Recorder,
    declare_queues,
    drain,
    fill,
    ids,
    ready_count,
    run,
    vhost_path,
    wait_until,
)

from priority_worker import Message, Queue, RetryPolicy, Worker

QUORUM = {"x-queue-type": "quorum"}


def test_worker_retries_past_the_quorum_default_delivery_limit(vhost_url: str) -> None:
    """25 handler failures on a quorum queue (more than 4.0's default limit of 20): the
    worker's max_retries=24 decides; every attempt is seen, then the message is dead-lettered
    by the worker with its error, none dropped by the broker."""
    declare_queues(vhost_url, "high", "low", arguments=QUORUM)
    fill(vhost_url, "high", ids("q", 2))
    calls: Counter[str] = Counter()

    async def failing(message: Message) -> None:
        calls[str(message.message_id)] += 1
        raise ValueError("smtp down")

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("high", 10), Queue("low", 2)],
            failing,
            retry=RetryPolicy(max_retries=24, initial_delay=0.01, multiplier=1),
        )
        await worker.start()
        try:
            await wait_until(
                lambda: worker.metrics.dead_letters.labels("high", "exhausted")._value.get() == 2,
                90,
                "2 dead letters",
            )
        finally:
            await worker.stop()

    run(scenario())
    assert calls == dict.fromkeys(ids("q", 2), 25)
    dead = drain(vhost_url, "high.dead")
    assert sorted(p.message_id for p, _ in dead) == ids("q", 2)
    assert all(p.headers["x-dead-letter-reason"] == "exhausted" for p, _ in dead)
    assert ready_count(vhost_url, "high") == 0


def test_broker_delivery_limit_counts_requeues_on_4_0(broker: Any, vhost_url: str) -> None:
    """What the worker leaves to the broker: on 4.0-4.2 a quorum queue with no limit set
    drops a message requeued more than 20 times (4.3 stops counting requeues)."""
    broker.require(4, 0, why="quorum queues have a default delivery limit from 4.0")
    if broker.at_least(4, 3):
        import pytest

        pytest.skip(f"4.3 does not count requeues toward the delivery limit ({broker.version})")
    declare_queues(vhost_url, "limited", arguments=QUORUM)
    fill(vhost_url, "limited", ["m"])
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    try:
        ch = conn.channel()
        deliveries = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            method, _, _ = ch.basic_get("limited")
            if method is None:
                if ready_count(vhost_url, "limited") == 0:
                    break
                time.sleep(0.05)
                continue
            deliveries += 1
            ch.basic_nack(method.delivery_tag, requeue=True)
    finally:
        conn.close()
    assert deliveries == 21, deliveries
    assert ready_count(vhost_url, "limited") == 0


def test_worker_never_uses_global_qos(
    broker: Any, vhost: str, vhost_url: str, queues2: object
) -> None:
    """Each consumer has its own prefetch (10 and 2) and no channel of the worker has a
    global prefetch (refused by quorum queues, denied on 4.3)."""
    fill(vhost_url, "high", ids("h", 50))
    fill(vhost_url, "low", ids("l", 50))
    rec = Recorder(delay=0.5)

    def sample() -> tuple[dict[str, int], list[int]]:
        with broker.http() as http:
            consumers = http.get(f"/api/consumers/{vhost_path(vhost)}").json()
            channels = http.get("/api/channels?columns=vhost,global_prefetch_count").json()
        return (
            {c["queue"]["name"]: int(c["prefetch_count"]) for c in consumers},
            [int(c.get("global_prefetch_count") or 0) for c in channels if c.get("vhost") == vhost],
        )

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)
        await worker.start()
        try:
            deadline = time.monotonic() + 20  # the management API samples every 5 s
            while True:
                prefetches, global_prefetches = await asyncio.to_thread(sample)
                if prefetches == {"high": 10, "low": 2} and global_prefetches:
                    break
                assert time.monotonic() < deadline, (prefetches, global_prefetches)
                await asyncio.sleep(1)
            assert set(global_prefetches) == {0}, global_prefetches
        finally:
            await worker.stop()

    run(scenario())


def test_strict_mode_does_not_give_back_a_delivery_near_the_delivery_limit(vhost_url: str) -> None:
    """Strict mode gives back low deliveries not yet started when high work arrives; a
    delivery the quorum queue has already redelivered 5 times is handled instead (another
    requeue would bring it nearer the broker's delivery limit), the others are given back."""
    declare_queues(vhost_url, "high", "low", arguments=QUORUM)
    fill(vhost_url, "low", ["c1", "c2"])
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    try:  # redeliver both 5 times: x-delivery-count 5
        ch = conn.channel()
        for _ in range(5):
            tags = []
            while len(tags) < 2:
                method, _, _ = ch.basic_get("low")
                if method is not None:
                    tags.append(method.delivery_tag)
            for tag in tags:
                ch.basic_nack(tag, requeue=True)
    finally:
        conn.close()
    fill(vhost_url, "low", ["fresh"])
    counts: dict[str, int] = {}
    started: list[str] = []
    release = asyncio.Event()

    async def handler(message: Message) -> None:
        mid = str(message.message_id)
        started.append(mid)
        counts[mid] = int((message.properties.headers or {}).get("x-delivery-count", 0))
        if message.queue == "low" and len(started) == 1:
            await release.wait()  # hold the one runner while high work arrives

    async def scenario() -> None:
        from priority_worker import Mode

        worker = Worker(
            vhost_url,
            [Queue("high", 10), Queue("low", 2)],
            handler,
            mode=Mode.STRICT,
            concurrency=1,
        )
        await worker.start()
        try:
            await wait_until(lambda: len(started) == 1, 20, "a low delivery started")
            await asyncio.to_thread(fill, vhost_url, "high", ["h1"])
            await wait_until(
                lambda: worker.metrics.prefetch.labels("low")._value.get() == 0,
                20,
                "low paused for high work",
            )
            release.set()
            await wait_until(lambda: {"c1", "c2", "fresh", "h1"} <= set(started), 30, "all handled")
        finally:
            await worker.stop()

    run(scenario())
    assert counts["c1"] == counts["c2"] == 5, counts  # handled, never requeued again
    assert started.index("h1") < started.index("fresh"), started
