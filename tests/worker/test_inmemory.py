"""priority_worker.testing.InMemoryBroker: prefetch, acks, redelivery and the worker's own
scheduling on a virtual clock (no broker). Times asserted here are virtual, hence exact."""

from __future__ import annotations

import statistics

import pytest

from priority_worker import ConfigurationError, Message, Queue, Reject, Retry
from priority_worker.testing import DeadLetter, InMemoryBroker, RetryLater

HIGH, LOW = Queue("high", 10), Queue("low", 2)


async def noop(message: Message) -> None:
    pass


def backlog(high: int = 1000, low: int = 1000) -> InMemoryBroker:
    broker = InMemoryBroker()
    broker.publish_many("high", high)
    broker.publish_many("low", low)
    return broker


@pytest.mark.parametrize("concurrency", [1, 4, None])
def test_first_600_handled_at_prefetch_10_and_2_are_500_to_100(concurrency: int | None) -> None:
    """The issue's example, for one handler, four and the default (sum of prefetches)."""
    run = backlog().run(
        [HIGH, LOW], noop, concurrency=concurrency, handler_time=0.02, max_handled=600
    )
    assert run.counts() == {"high": 500, "low": 100}


def test_runs_are_deterministic() -> None:
    """The same inputs give the same order of handling, message for message."""

    def order() -> list[str | None]:
        run = backlog().run(
            [HIGH, LOW],
            noop,
            concurrency=3,
            handler_time=lambda m: 0.01 + (hash(m.message_id) % 3) * 0.005,
            max_handled=500,
        )
        return [h.message.message_id for h in run.handled]

    assert order() == order()


def test_each_queue_holds_at_most_its_prefetch_unacked() -> None:
    """With unlimited concurrency, a queue's handlers overlap no more than its prefetch."""
    run = backlog().run([HIGH, LOW], noop, concurrency=100, handler_time=0.02, max_handled=600)
    for queue, prefetch in (("high", 10), ("low", 2)):
        spans = [(h.started_at, h.finished_at) for h in run.handled if h.queue == queue]
        peak = max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans)
        assert peak == prefetch


def test_a_high_message_arriving_every_50ms_waits_less_than_one_handler_time() -> None:
    """Weighted, concurrency 1, 20 ms handler, low backlog: a high message waits only for the
    low handler already running (fair queueing), never behind the low work held."""
    broker = backlog(high=0, low=3000)
    for i in range(100):
        broker.publish("high", f"h{i}", at=0.025 + i * 0.05)
    run = broker.run([HIGH, LOW], noop, concurrency=1, handler_time=0.02, until=5.1)
    waits = run.waits("high")
    assert len(waits) == 100
    assert max(waits) <= 0.020 + 1e-9
    assert run.counts()["low"] > 100  # low keeps moving in the gaps


def test_strict_handles_every_high_message_before_any_low_one() -> None:
    """Strict: low is consumed only once high is idle (at the next probe)."""
    run = backlog(high=100, low=50).run(
        [HIGH, LOW], noop, mode="strict", concurrency=1, handler_time=0.01
    )
    queues = [h.queue for h in run.handled]
    assert queues == ["high"] * 100 + ["low"] * 50
    first_low = run.handled[100].started_at
    assert first_low - run.handled[99].finished_at <= 0.5  # one probe interval at most


def test_conserving_lends_idle_high_capacity_to_low_and_takes_it_back() -> None:
    """Conserving: with high idle, low runs at 12 at once; a high burst gets served first."""
    broker = InMemoryBroker()
    broker.publish_many("low", 500)
    for i in range(30):
        broker.publish("high", f"h{i}", at=2.0)
    run = broker.run([HIGH, LOW], noop, mode="conserving", handler_time=0.1, until=4.0)
    low_spans = [
        (h.started_at, h.finished_at)
        for h in run.handled
        if h.queue == "low" and h.finished_at < 2.0
    ]
    assert max(sum(1 for s, f in low_spans if s <= t < f) for t, _ in low_spans) == 12
    highs = [h for h in run.handled if h.queue == "high"]
    assert len(highs) == 30
    assert statistics.median(h.wait for h in highs) <= 0.2


def test_a_crashed_worker_s_unacked_deliveries_are_redelivered_and_handled_next_run() -> None:
    """kill -9 after 25 starts: whatever was unacked (running or held) comes back redelivered;
    a second worker handles every message; nothing is lost."""
    broker = backlog(high=40, low=10)
    first = broker.run([HIGH, LOW], noop, concurrency=4, handler_time=0.02, crash_after=25)
    assert first.crashed and first.requeued > 0
    assert broker.ready("high") + broker.ready("low") == 50 - 25 + 4  # 4 ran but never acked
    second = broker.run([HIGH, LOW], noop, concurrency=4, handler_time=0.02)
    again = [h for h in second.handled if h.message.redelivered]
    assert len(again) == first.requeued
    handled_ids = {h.message.message_id for h in first.handled + second.handled}
    assert handled_ids == {f"high-{i}" for i in range(40)} | {f"low-{i}" for i in range(10)}
    assert broker.ready("high") + broker.ready("low") == 0


def test_retry_comes_back_after_its_delay_and_reject_is_dead_lettered() -> None:
    """The handler's outcomes go through the worker's own mapping (Retry, Reject)."""

    async def handler(message: Message) -> None:
        if message.body == b"later" and message.attempts == 0:
            raise Retry(delay=2.0)
        if message.body == b"bad":
            raise Reject("no recipient")

    broker = InMemoryBroker()
    for body in ("later", "bad", "ok"):
        broker.publish("q", body)
    run = broker.run([Queue("q", 5)], handler, handler_time=0.01)
    outcomes = [(h.message.body, type(h.action).__name__, h.message.attempts) for h in run.handled]
    assert outcomes == [
        (b"later", "RetryLater", 0),
        (b"bad", "DeadLetter", 0),
        (b"ok", "Ack", 0),
        (b"later", "Ack", 1),
    ]
    retried = run.handled[0].action
    assert isinstance(retried, RetryLater) and retried.delay == pytest.approx(2.0)
    assert run.handled[3].started_at == pytest.approx(0.01 + retried.delay)
    assert isinstance(run.handled[1].action, DeadLetter)
    [dead] = broker.dead_lettered["q"]
    assert dead.body == b"bad" and dead.properties.headers is not None
    assert dead.properties.headers["x-dead-letter-reason"] == "rejected"


def test_sync_handlers_and_per_queue_handlers_run_too() -> None:
    """Plain functions go through the thread-pool path; Queue.handler overrides."""
    seen: list[str] = []
    broker = InMemoryBroker()
    broker.publish("a", "1")
    broker.publish("b", "2")
    broker.run(
        [Queue("a", 1, handler=lambda m: seen.append("a:" + m.body.decode())), Queue("b", 1)],
        lambda m: seen.append("b:" + m.body.decode()),
    )
    assert sorted(seen) == ["a:1", "b:2"]


def test_stop_gives_back_what_was_not_started() -> None:
    """max_handled stops like the worker: held deliveries go back, marked redelivered."""
    broker = backlog(high=30, low=0)
    run = broker.run([HIGH, LOW], noop, concurrency=1, handler_time=0.01, max_handled=5)
    assert len(run.handled) == 5 and run.requeued == 9
    assert broker.ready("high") == 25
    assert [m.redelivered for m in broker.messages("high")[:10]] == [True] * 9 + [False]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        InMemoryBroker().run([Queue("q")], None)
    with pytest.raises(ConfigurationError):
        InMemoryBroker().run([Queue("q")], noop, probe_interval=0)
