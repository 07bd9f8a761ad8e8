"""Consuming against the real broker: shares, modes, retries and dead letters, HTTP, logs.

Each test runs in its own fresh vhost (``vhost_url`` fixture) and counts message ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
import uuid
from collections import Counter

import httpx
import pika
import pytest
from worker_support import Recorder, drain, fill, ids, ready_count, run, vhost_path, wait_until

from priority_worker import (
    ConfigurationError,
    Message,
    Mode,
    PublishReturned,
    Queue,
    Reject,
    Retry,
    RetryPolicy,
    Worker,
)


def test_weighted_share_is_five_to_one_under_backlog(vhost_url: str, queues2: object) -> None:
    """Prefetch 10 and 2 with a backlog on both: about 5 high per low (within 10%)."""
    fill(vhost_url, "high", ids("h", 700))
    fill(vhost_url, "low", ids("l", 200))
    rec = Recorder(delay=0.005)

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) >= 600, 60, "600 handled")
        finally:
            await worker.stop()

    run(scenario())
    counts = Counter(q for q, *_ in rec.seen[:600])
    assert counts["low"] > 0, "the low queue must keep moving"
    assert counts["high"] / counts["low"] == pytest.approx(5.0, rel=0.10), counts


def test_strict_mode_consumes_low_only_when_high_is_empty(vhost_url: str, queues2: object) -> None:
    """Strict: every high message starts before any low one; then low drains too."""
    fill(vhost_url, "high", ids("h", 60))
    fill(vhost_url, "low", ids("l", 20))
    rec = Recorder(delay=0.01)

    async def scenario() -> None:
        worker = Worker(
            vhost_url, [Queue("high", 10), Queue("low", 2)], rec, mode="strict", probe_interval=0.2
        )
        await worker.start()
        try:
            await wait_until(lambda: len(rec.ids()) >= 80, 60, "all 80 handled")
            # New high work pauses low again: publish high and low together now.
            await asyncio.to_thread(fill, vhost_url, "low", ids("l2", 300))
            await wait_until(lambda: "l2-0" in rec.ids(), 30, "low consumed again")
            await asyncio.to_thread(fill, vhost_url, "high", ids("h2", 30))
            await wait_until(lambda: rec.ids("high") >= set(ids("h2", 30)), 30, "h2 handled")
            # By position, not by looking entries up again: a low delivery that strict mode
            # handed back comes again with redelivered=True.
            seen = list(rec.seen)
            first_h2 = seen.index(("high", "h2-0", 0, False))
            last_h2 = seen.index(("high", "h2-29", 0, False))
            low_during_high = [mid for q, mid, *_ in seen[first_h2 + 1 : last_h2] if q == "low"]
            await wait_until(lambda: len(rec.ids()) >= 410, 60, "all 410 handled")
        finally:
            await worker.stop()
        # While the 30 new high messages were being handled, at most the low deliveries
        # already in hand (prefetch 2, plus one probe interval of slack) ran.
        assert len(low_during_high) <= 4, low_during_high

    run(scenario())
    first_low = next(i for i, (q, *_) in enumerate(rec.seen) if q == "low")
    assert {mid for _, mid, *_ in rec.seen[:first_low]} == set(ids("h", 60))
    assert rec.ids() == set(ids("h", 60) + ids("l", 20) + ids("l2", 300) + ids("h2", 30))


def test_conserving_mode_lends_idle_high_capacity_and_takes_it_back(
    vhost_url: str, queues2: object
) -> None:
    """Conserving: with high idle, low runs up to 12 at once; high work gets its share back."""
    fill(vhost_url, "low", ids("l", 400))
    rec = Recorder(delay=0.05)

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("high", 10), Queue("low", 2)],
            rec,
            mode=Mode.CONSERVING,
            probe_interval=0.2,
        )
        await worker.start()
        try:
            await wait_until(lambda: rec.max_active["low"] > 2, 20, "low borrowing capacity")
            assert rec.max_active["low"] <= 12
            assert worker.metrics.prefetch.labels("low")._value.get() == 12
            await asyncio.to_thread(fill, vhost_url, "high", ids("h", 600))
            await wait_until(lambda: len(rec.ids("high")) >= 50, 30, "high handled")
            # Low is back at its own prefetch of 2 while high has work ...
            assert worker.metrics.prefetch.labels("low")._value.get() == 2
            rec.max_active["low"] = rec.active["low"]
            mark = len(rec.seen)
            await wait_until(lambda: len(rec.seen) >= mark + 240, 30, "240 more handled")
            assert rec.max_active["low"] <= 2
            share = Counter(q for q, *_ in rec.seen[mark : mark + 240])
            assert share["high"] / max(share["low"], 1) == pytest.approx(5, rel=0.2), share
            # ... and borrows again once high is drained.
            await wait_until(lambda: len(rec.ids("high")) == 600, 30, "all high handled")
            await wait_until(
                lambda: worker.metrics.prefetch.labels("low")._value.get() == 12,
                10,
                "low borrowing again",
            )
        finally:
            await worker.stop()

    run(scenario())


def test_retry_with_delay_comes_back_after_the_delay(vhost_url: str, queues2: object) -> None:
    """Retry(delay) sends the message through a delay queue; it returns to its queue later."""
    fill(vhost_url, "high", ids("r", 5))
    first_seen: dict[str, float] = {}
    second_seen: dict[str, tuple[float, int]] = {}

    async def handler(message: Message) -> None:
        mid = str(message.message_id)
        if message.attempts == 0:
            first_seen[mid] = time.monotonic()
            raise Retry(delay=1.0)
        second_seen[mid] = (time.monotonic(), message.attempts)

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], handler)
        await worker.start()
        try:
            await wait_until(lambda: len(second_seen) == 5, 30, "5 retried messages back")
            assert worker.metrics.retries.labels("high")._value.get() == 5
        finally:
            await worker.stop()

    run(scenario())
    for mid, (when, attempts) in second_seen.items():
        assert attempts == 1
        assert when - first_seen[mid] >= 0.9
    assert ready_count(vhost_url, "high.delay.1000") == 0


def test_failures_retry_with_backoff_then_dead_letter_with_the_error(
    vhost_url: str, queues2: object
) -> None:
    """An always-failing handler runs 1 + max_retries times, then the message is dead."""
    fill(vhost_url, "high", ids("f", 3))
    calls: Counter[str] = Counter()

    def failing(message: Message) -> None:  # sync: runs in the thread pool
        calls[str(message.message_id)] += 1
        raise ValueError("smtp down")

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("high", 10), Queue("low", 2)],
            failing,
            retry=RetryPolicy(max_retries=2, initial_delay=0.2),
        )
        await worker.start()
        try:
            await wait_until(
                lambda: worker.metrics.dead_letters.labels("high", "exhausted")._value.get() == 3,
                30,
                "3 dead letters",
            )
        finally:
            await worker.stop()

    run(scenario())
    assert calls == dict.fromkeys(ids("f", 3), 3)
    dead = drain(vhost_url, "high.dead")
    assert sorted(p.message_id for p, _ in dead) == ids("f", 3)
    for props, body in dead:
        assert props.headers["x-error"] == "ValueError: smtp down"
        assert props.headers["x-dead-letter-reason"] == "exhausted"
        assert props.headers["x-original-queue"] == "high"
        assert body == props.message_id.encode()


def test_reject_and_undecodable_go_to_the_dead_letter_exchange(vhost_url: str) -> None:
    """Reject and undecodable bodies are dead-lettered at once via the configured exchange."""
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    ch = conn.channel()
    ch.queue_declare("jobs", durable=True)
    ch.exchange_declare("jobs.dlx", "fanout", durable=True)
    ch.queue_declare("jobs.dead", durable=True)
    ch.queue_bind("jobs.dead", "jobs.dlx")
    conn.close()
    fill(
        vhost_url,
        "jobs",
        ["ok-1", "reject-1"],
        content_type="application/json",
        body=lambda mid: f'{{"id": "{mid}"}}'.encode(),
    )
    fill(
        vhost_url,
        "jobs",
        ["garbled-1"],
        content_type="application/json",
        body=lambda mid: b"{not json",
    )
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.data["id"])
        if message.data["id"].startswith("reject"):
            raise Reject("no such mailbox")

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("jobs", 5, dead_letter_exchange="jobs.dlx")], handler)
        await worker.start()
        try:
            await wait_until(lambda: ready_count(vhost_url, "jobs.dead") == 2, 20, "2 dead")
        finally:
            await worker.stop()

    run(scenario())
    assert sorted(handled) == ["ok-1", "reject-1"]  # the garbled one never reached it
    dead = {p.message_id: p.headers for p, _ in drain(vhost_url, "jobs.dead")}
    assert dead["reject-1"]["x-dead-letter-reason"] == "rejected"
    assert dead["reject-1"]["x-error"] == "no such mailbox"
    assert dead["garbled-1"]["x-dead-letter-reason"] == "undecodable"
    assert ready_count(vhost_url, "jobs") == 0


def test_http_endpoints_report_health_readiness_and_metrics(
    vhost_url: str, queues2: object
) -> None:
    """/healthz, /readyz and /metrics answer on the worker's Tornado server."""
    fill(vhost_url, "high", ids("m", 20))
    rec = Recorder()

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec, http_port=0)
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) == 20 and worker.ready, 20, "20 handled")
            base = f"http://127.0.0.1:{worker.http_port}"
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/readyz")).status_code == 200
                await wait_until(
                    lambda: worker.metrics.acks.labels("high")._value.get() == 20, 10, "20 acks"
                )
                text = (await http.get("/metrics")).text
        finally:
            await worker.stop()
        for line in [
            'priority_worker_deliveries_total{queue="high"} 20.0',
            'priority_worker_acks_total{queue="high"} 20.0',
            'priority_worker_in_flight{queue="high"} 0.0',
            'priority_worker_prefetch{queue="low"} 2.0',
            "priority_worker_confirms_pending 0.0",
            "priority_worker_publisher_blocked_seconds_total",
            'priority_worker_handler_seconds_count{queue="high"} 20.0',
            "priority_worker_reconnects_total",
        ]:
            assert line in text, line

    run(scenario())


def test_password_never_logged_and_failover_to_the_next_url(
    broker: object, vhost: str, vhost_url: str, queues2: object, caplog: pytest.LogCaptureFixture
) -> None:
    """With a dead first node the worker fails over; no log line or error shows the password."""
    user, password = f"u-{uuid.uuid4().hex[:6]}", f"pw-{uuid.uuid4().hex}"
    with broker.http() as http:  # type: ignore[attr-defined]
        http.put(f"/api/users/{user}", json={"password": password, "tags": ""}).raise_for_status()
        http.put(
            f"/api/permissions/{vhost_path(vhost)}/{user}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    try:
        u = urllib.parse.urlsplit(vhost_url)
        good = u._replace(netloc=f"{user}:{password}@{u.hostname}:{u.port or 5672}").geturl()
        dead = u._replace(netloc=f"{user}:{password}@127.0.0.1:1").geturl()
        fill(vhost_url, "high", ids("p", 5))
        rec = Recorder()
        caplog.set_level(logging.DEBUG)

        async def scenario() -> None:
            worker = Worker(f"{dead},{good}", [Queue("high", 10), Queue("low", 2)], rec)
            await worker.start()
            try:
                await wait_until(lambda: len(rec.seen) == 5, 20, "5 handled after failover")
                with pytest.raises(PublishReturned) as info:
                    await worker.publisher.publish("amq.direct", "nowhere", b"x")
                assert password not in str(info.value)
            finally:
                await worker.stop()

        run(scenario())
        assert "connect_failed" in caplog.text and "***" in caplog.text
        assert password not in caplog.text
        with pytest.raises(ConfigurationError) as error:
            Worker(f"http://{user}:{password}@h/", [Queue("high")], rec)
        assert password not in str(error.value)
    finally:
        with broker.http() as http:  # type: ignore[attr-defined]
            http.delete(f"/api/users/{user}")


def test_sync_handler_publishes_follow_up_work_with_confirms(
    vhost_url: str, queues2: object
) -> None:
    """A thread-pool handler publishes through message.publisher and waits for the confirm."""
    fill(vhost_url, "high", ids("s", 10))

    def handler(message: Message) -> None:
        assert message.publisher is not None
        message.publisher.publish_blocking(
            "", "low", b"follow-up", timeout=10, headers={"parent": message.message_id}
        )

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10)], handler)
        await worker.start()
        try:
            await wait_until(
                lambda: worker.metrics.acks.labels("high")._value.get() == 10, 20, "10 acks"
            )
        finally:
            await worker.stop()

    run(scenario())
    parents = sorted(props.headers["parent"] for props, _ in drain(vhost_url, "low"))
    assert parents == sorted(ids("s", 10))


def test_dead_letter_exchange_missing_falls_back_to_the_brokers_dead_lettering(
    vhost_url: str,
) -> None:
    """If the configured dead-letter exchange does not exist, the message is rejected without
    requeue (no hot loop), so the queue's own x-dead-letter-exchange still catches it."""
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    ch = conn.channel()
    ch.exchange_declare("broker-dlx", "fanout", durable=True)
    ch.queue_declare("fallback", durable=True)
    ch.queue_bind("fallback", "broker-dlx")
    ch.queue_declare("jobs", durable=True, arguments={"x-dead-letter-exchange": "broker-dlx"})
    conn.close()
    fill(vhost_url, "jobs", ["bad-1"])
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(str(message.message_id))
        raise Reject("nope")

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("jobs", 2, dead_letter_exchange="missing")], handler)
        await worker.start()
        try:
            await wait_until(lambda: ready_count(vhost_url, "fallback") == 1, 20, "fallback")
        finally:
            await worker.stop()

    run(scenario())
    assert calls == ["bad-1"]
    [(props, _)] = drain(vhost_url, "fallback")
    assert props.message_id == "bad-1" and props.headers["x-death"][0]["queue"] == "jobs"
