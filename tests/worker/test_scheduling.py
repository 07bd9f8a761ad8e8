"""The fair-queueing choice of the next held delivery (pure core, no broker).

A fake broker delivers up to each queue's prefetch and refills a queue when one of its
deliveries is settled; handlers take equal time, so the oldest running one finishes first.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from types import SimpleNamespace

import pika
import pytest
from test_hot_path import FakeBroker as FakeChannelBroker
from test_hot_path import FakeLink

from priority_worker import ConfigurationError, Mode, Queue, Worker
from priority_worker._pika.channels import ConsumerChannel
from priority_worker._scheduling import Dispatcher, FairQueueing, ShareWindow, dispatch_weights


def weighted(prefetches: dict[str, int], limit: int) -> Dispatcher[str]:
    weights = dispatch_weights(Mode.WEIGHTED, list(prefetches.items()))
    return Dispatcher(list(prefetches), limit, weights=weights)


class FakeBroker:
    """Per-queue prefetch and backlog, deliveries into a Dispatcher, handlers of equal time."""

    def __init__(
        self, d: Dispatcher[str], prefetches: dict[str, int], backlog: dict[str, int] | None = None
    ) -> None:
        self.d, self.prefetches = d, prefetches
        self.ready = dict(backlog) if backlog is not None else dict.fromkeys(prefetches, 10**9)
        self.unacked = dict.fromkeys(prefetches, 0)
        self.running: deque[str] = deque()
        self.started: list[str] = []
        self.refill()

    def refill(self) -> None:
        for q, p in self.prefetches.items():
            while self.unacked[q] < p and self.ready[q] > 0:
                self.ready[q] -= 1
                self.unacked[q] += 1
                self.d.add(q, q)

    def publish(self, queue: str, n: int = 1) -> None:
        self.ready[queue] += n
        self.refill()

    def step(self) -> None:
        """Start what may start, then finish the oldest running handler (settle, refill).

        The next delivery is chosen before the refill arrives, as in the worker: the broker's
        answer to an ack takes a round trip.
        """
        self.start_all()
        q = self.running.popleft()
        self.d.finish(q)
        self.unacked[q] -= 1
        self.start_all()
        self.refill()

    def start_all(self) -> None:
        """Start deliveries as the worker's runners do: one at a time while any may start."""
        while (taken := self.d.take_one()) is not None:
            self.running.append(taken[0])
            self.started.append(taken[0])


@pytest.mark.parametrize(
    ("prefetches", "concurrency"),
    [
        ({"high": 10, "low": 2}, 1),
        ({"high": 10, "low": 2}, 4),
        ({"high": 10, "low": 2}, 12),
        ({"high": 20, "low": 5}, 3),
        ({"high": 1, "low": 1}, 1),
        ({"a": 4, "b": 3, "c": 1}, 2),
    ],
)
def test_share_under_backlog_follows_the_prefetches(
    prefetches: dict[str, int], concurrency: int
) -> None:
    """With a backlog on every queue, starts follow the prefetch ratio within 10%."""
    broker = FakeBroker(weighted(prefetches, concurrency), prefetches)
    while len(broker.started) < 6000:
        broker.step()
    counts = Counter(broker.started[:6000])
    total = sum(prefetches.values())
    for q, p in prefetches.items():
        assert counts[q] / 6000 == pytest.approx(p / total, rel=0.10), counts


def test_first_600_at_10_to_2_with_one_handler_are_exactly_500_to_100() -> None:
    """The tags interleave exactly: 5 high per low, from the first start on."""
    broker = FakeBroker(weighted({"high": 10, "low": 2}, 1), {"high": 10, "low": 2})
    while len(broker.started) < 600:
        broker.step()
    assert Counter(broker.started[:600]) == {"high": 500, "low": 100}
    assert broker.started[:6] == ["high", "low", "high", "high", "high", "high"]


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_a_high_delivery_arriving_while_high_was_idle_runs_next(concurrency: int) -> None:
    """Low holds its whole prefetch; a high message arrives: it is the next one started."""
    prefetches = {"high": 10, "low": 8}
    broker = FakeBroker(
        weighted(prefetches, concurrency), prefetches, backlog={"high": 0, "low": 10**6}
    )
    for _ in range(500):
        broker.step()
    assert set(broker.started) == {"low"}  # high idle: low gets all the capacity
    assert broker.d.pending("low") > 0
    broker.publish("high")
    before = len(broker.started)
    broker.step()
    assert broker.started[before] == "high", broker.started[before:]


def test_arrival_order_would_make_that_high_delivery_wait() -> None:
    """The same scenario without weights (arrival order): the held low work runs first.
    Pins that the previous test fails without fair queueing."""
    prefetches = {"high": 10, "low": 8}
    broker = FakeBroker(
        Dispatcher(list(prefetches), 1), prefetches, backlog={"high": 0, "low": 10**6}
    )
    for _ in range(50):
        broker.step()
    broker.publish("high")
    before = len(broker.started)
    for _ in range(10):
        broker.step()
    assert broker.started[before] == "low"
    assert broker.started[before:].index("high") >= 5


def test_a_queue_back_from_idle_gets_no_burst_and_the_other_keeps_its_share() -> None:
    """Idle time earns no credit: after a long low-only stretch, a high backlog arriving takes
    its 5:1 share at once, not every start until it has caught up."""
    prefetches = {"high": 10, "low": 2}
    broker = FakeBroker(weighted(prefetches, 1), prefetches, backlog={"high": 0, "low": 10**6})
    for _ in range(1000):
        broker.step()
    before = len(broker.started)
    broker.publish("high", 10**6)
    for _ in range(600):
        broker.step()
    after = broker.started[before : before + 600]
    assert "low" in after[:7]
    assert Counter(after)["low"] == pytest.approx(100, abs=2)


def test_an_idle_queue_does_not_hold_back_the_others() -> None:
    """Work-conserving: while the high queue is idle, low runs at full concurrency."""
    prefetches = {"high": 10, "low": 4}
    broker = FakeBroker(weighted(prefetches, 4), prefetches, backlog={"high": 0, "low": 10**6})
    broker.start_all()  # nothing to compare: four low start at once
    assert broker.d.running("low") == 4


def test_withdrawn_deliveries_are_not_charged_to_their_queue() -> None:
    """Requeued deliveries give their virtual time back: the queue keeps its place."""
    d = weighted({"high": 10, "low": 2}, 1)
    for _ in range(4):
        d.add("low", "l")
    assert d.take_pending("low", keep=1) == ["l", "l", "l"]
    for i in range(10):
        d.add("high", f"h{i}")
    d.add("low", "l2")  # tag 0.5 (not 2.0, as if the three requeued had run)
    order = []
    while (taken := d.take_one()) is not None:
        order.append(taken[1])
        d.finish(taken[0])
    assert order.index("l") == 1 and order.index("l2") == 7, order


def test_a_smaller_prefetch_takes_back_what_running_deliveries_leave_no_room_for() -> None:
    """``beyond_prefetch``: the one give-back rule (worker and in-memory broker). Running
    deliveries count against the new prefetch; the newest pending ones go back first; a paused
    queue (prefetch 0) gives back every pending one; another queue is untouched."""
    d = weighted({"high": 10, "low": 10}, 10)
    for i in range(5):
        d.add("low", f"l{i}")
    d.add("high", "h")
    started = [d.take_one() for _ in range(2)]  # h, then l0 (or l0 first): two running
    running_low = sum(1 for t in started if t is not None and t[0] == "low")
    pending_low = 5 - running_low
    back = d.beyond_prefetch("low", 3)
    assert len(back) == pending_low - (3 - running_low)
    assert back == [f"l{i}" for i in range(4, 4 - len(back), -1)]  # newest first
    assert d.beyond_prefetch("low", 10) == []
    rest = d.beyond_prefetch("low", 0)
    assert len(rest) == 3 - running_low and d.running("low") == running_low
    assert d.beyond_prefetch("high", 0) == []  # h is running, nothing of high pending


def test_strict_starts_the_first_queue_first_and_takes_no_weights() -> None:
    """Strict mode is unchanged: priority order, whatever arrived first."""
    assert dispatch_weights(Mode.STRICT, [("high", 10), ("low", 2)]) is None
    d: Dispatcher[str] = Dispatcher(["high", "low"], 1, by_priority=True)
    for item in ["l1", "l2"]:
        d.add("low", item)
    d.add("high", "h1")
    assert d.take_one() == ("high", "h1")
    with pytest.raises(ConfigurationError):
        Dispatcher(["high", "low"], 1, by_priority=True, weights={"high": 1, "low": 1})


def test_conserving_weighs_by_the_configured_prefetches() -> None:
    """Conserving lends prefetch on the broker side; which held delivery runs next still
    follows the configured prefetches."""
    assert dispatch_weights(Mode.CONSERVING, [("high", 10), ("low", 2)]) == {
        "high": 10.0,
        "low": 2.0,
    }
    assert dispatch_weights(Mode.WEIGHTED, [("only", 3)]) is None


def test_fair_queueing_tags() -> None:
    """S = max(V, F_i), F_i = S + 1/w_i; V follows the started tags."""
    fq = FairQueueing({"a": 2, "b": 1})
    assert [fq.arrive("a"), fq.arrive("a"), fq.arrive("b"), fq.arrive("b")] == [0, 0.5, 0, 1]
    fq.started(3.0)
    assert fq.arrive("a") == 3.0
    with pytest.raises(ConfigurationError):
        FairQueueing({"a": 0})


def test_on_start_reports_the_time_each_delivery_was_held() -> None:
    """The held time is measured from add to start on the dispatcher's clock."""
    now = [0.0]
    held: list[tuple[str, float]] = []
    d: Dispatcher[str] = Dispatcher(
        ["q"], 1, on_start=lambda q, s: held.append((q, s)), clock=lambda: now[0]
    )
    d.add("q", "a")
    d.add("q", "b")
    now[0] = 0.25
    d.take_one()
    d.finish("q")
    now[0] = 1.0
    d.take_one()
    assert held == [("q", 0.25), ("q", 1.0)]


def test_share_window_slides() -> None:
    """The share counts only the latest `size` starts."""
    w = ShareWindow(["high", "low"], size=4)
    assert w.share("high") == 0.0
    for q in ["low", "low", "high", "high", "high", "high"]:
        w.started(q)
    assert (w.share("high"), w.share("low"), len(w)) == (1.0, 0.0, 4)
    w.started("low")
    assert w.share("low") == 0.25


def test_the_worker_starts_an_arriving_high_delivery_before_the_low_ones_it_holds() -> None:
    """The Worker itself (fake channels, no broker), weighted, concurrency 1: two low
    deliveries held and one running; a high delivery arrives and starts right after the
    running one. Pins that the worker wires the fair-queueing weights in."""
    started: list[str] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        async def handler(message: object) -> None:
            started.append(message.body.decode())  # type: ignore[attr-defined]
            await gate.wait()
            gate.clear()

        worker = Worker(
            "amqp://localhost",
            [Queue("high", 10), Queue("low", 3)],
            handler,
            concurrency=1,
            blocked_loop_warning=None,
        )
        channels = {}
        for name in ("high", "low"):
            broker = FakeChannelBroker()
            ch = ConsumerChannel(
                FakeLink(),
                name,
                on_delivery=worker._delivered,  # type: ignore[arg-type]
                on_cancelled=lambda _c: None,
                on_closed=lambda _c, _r: None,
            )
            ch._ch, ch._loop = broker, asyncio.get_running_loop()
            channels[name] = (ch, broker)

        def deliver(name: str, tag: int, body: str) -> None:
            ch, broker = channels[name]
            broker.outstanding.add(tag)
            ch._deliver(
                broker,
                SimpleNamespace(delivery_tag=tag, redelivered=False, exchange="", routing_key=name),
                pika.BasicProperties(),
                body.encode(),
            )

        for tag, body in enumerate(["l1", "l2", "l3"], 1):
            deliver("low", tag, body)
        for _ in range(5):
            await asyncio.sleep(0)
        deliver("high", 1, "h1")
        for _ in range(4):
            for _ in range(5):
                await asyncio.sleep(0)
            gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        await worker.stop()

    asyncio.run(scenario())
    assert started[:2] == ["l1", "h1"], started
