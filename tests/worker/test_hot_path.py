"""Unit tests (no broker) of the per-message fast paths: ack batching on a consumer channel,
the confirm tracker's ordered settle, the publisher's single confirm-timeout timer, and the
metrics read at scrape time."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from types import SimpleNamespace
from typing import Any

import pika
import pytest

from priority_worker import Properties, Publisher, PublishTimeout, Queue, Worker
from priority_worker._confirms import ConfirmTracker
from priority_worker._pika.channels import ConsumerChannel
from priority_worker._pika.wire import to_pika, to_properties


class FakeBroker:
    """The broker's side of one channel: unacked delivery tags and what settles them.

    ``basic_ack(tag, multiple=True)`` settles every outstanding tag <= tag, as RabbitMQ does;
    acking an unknown tag is a channel error (406), which the test turns into a failure.
    """

    def __init__(self) -> None:
        self.is_open = True
        self.outstanding: set[int] = set()
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.frames: list[tuple[str, int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", tag, multiple))
        covered = sorted(t for t in self.outstanding if t <= tag) if multiple else [tag]
        for t in covered:
            assert t in self.outstanding, f"406 PRECONDITION_FAILED - unknown delivery tag {t}"
            self.outstanding.discard(t)
            self.acked.append(t)

    def basic_nack(self, tag: int, requeue: bool = True) -> None:
        self.frames.append(("nack", tag, False))
        assert tag in self.outstanding
        self.outstanding.discard(tag)
        self.nacked.append(tag)


class FakeLink:
    @staticmethod
    def safe(text: str) -> str:
        return text


def consumer_channel(broker: FakeBroker, delivered: list[Any]) -> ConsumerChannel:
    ch = ConsumerChannel(
        FakeLink(),
        "q",
        on_delivery=delivered.append,  # type: ignore[arg-type]
        on_cancelled=lambda _c: None,
        on_closed=lambda _c, _r: None,
    )
    ch._ch = broker
    ch._loop = asyncio.get_running_loop()
    return ch


def deliver(ch: ConsumerChannel, broker: FakeBroker, tag: int) -> None:
    broker.outstanding.add(tag)
    method = SimpleNamespace(delivery_tag=tag, redelivered=False, exchange="", routing_key="q")
    ch._deliver(broker, method, pika.BasicProperties(), b"x")


def test_acks_are_batched_into_one_multiple_ack_that_stops_at_an_unhandled_delivery() -> None:
    async def scenario() -> None:
        broker, delivered = FakeBroker(), []
        ch = consumer_channel(broker, delivered)
        for tag in range(1, 7):
            deliver(ch, broker, tag)
        assert [d.delivery_tag for d in delivered] == [1, 2, 3, 4, 5, 6]
        for tag in (2, 1, 3, 5):  # 4 still running
            assert ch.ack(tag)
        assert broker.frames == []  # nothing sent yet: at the next turn of the loop
        await asyncio.sleep(0)
        assert broker.frames == [("ack", 3, True), ("ack", 5, False)]
        assert broker.outstanding == {4, 6}
        assert ch.nack(6, requeue=True)  # nacks go out at once
        assert ch.ack(4)
        await asyncio.sleep(0)
        assert broker.frames[-2:] == [("nack", 6, False), ("ack", 4, False)]
        assert broker.outstanding == set() and sorted(broker.acked) == [1, 2, 3, 4, 5]
        assert ch.flush_acks() == 0  # nothing left

    asyncio.run(scenario())


def test_ack_batching_never_acks_a_delivery_that_was_not_handled() -> None:
    """Random arrival/handling/nack orders: the broker sees exactly the acks we asked for."""

    async def scenario(seed: int) -> None:
        rnd = random.Random(seed)
        broker, delivered = FakeBroker(), []
        ch = consumer_channel(broker, delivered)
        next_tag, in_hand, want_ack, want_nack = 1, [], set(), set()
        for _ in range(400):
            r = rnd.random()
            if r < 0.4 or not in_hand:
                deliver(ch, broker, next_tag)
                in_hand.append(next_tag)
                next_tag += 1
            elif r < 0.9:
                tag = in_hand.pop(rnd.randrange(len(in_hand)))
                if rnd.random() < 0.15:
                    ch.nack(tag, requeue=rnd.random() < 0.5)
                    want_nack.add(tag)
                else:
                    ch.ack(tag)
                    want_ack.add(tag)
            else:
                await asyncio.sleep(0)  # a flush
            # Invariant: the broker never lost a delivery the worker still holds.
            assert set(in_hand) <= broker.outstanding
            assert set(broker.acked) <= want_ack
        ch.flush_acks()
        assert sorted(broker.acked) == sorted(want_ack)
        assert sorted(broker.nacked) == sorted(want_nack)
        assert broker.outstanding == set(in_hand)
        assert any(multiple for kind, _t, multiple in broker.frames if kind == "ack")

    for seed in range(30):
        asyncio.run(scenario(seed))


def test_acks_waiting_on_a_closed_channel_are_never_sent() -> None:
    async def scenario() -> None:
        broker, delivered = FakeBroker(), []
        ch = consumer_channel(broker, delivered)
        deliver(ch, broker, 1)
        assert ch.ack(1)
        broker.is_open = False  # the channel died before the flush
        await asyncio.sleep(0)
        assert broker.frames == []
        assert not ch.ack(1) and not ch.nack(1, requeue=True)

    asyncio.run(scenario())


def test_properties_round_trip_through_pika() -> None:
    props = Properties(
        content_type="application/json",
        headers={"a": 1},
        delivery_mode=2,
        message_id="m1",
        priority=3,
    )
    pk = to_pika(props, {"x-publish-tag": 7})
    assert pk.headers == {"a": 1, "x-publish-tag": 7}
    assert props.headers == {"a": 1}  # not modified
    back = to_properties(pk)
    assert back == Properties(
        content_type="application/json",
        headers={"a": 1, "x-publish-tag": 7},
        delivery_mode=2,
        message_id="m1",
        priority=3,
    )
    assert hash(back.content_type) and repr(back).startswith("Properties(")
    with pytest.raises(AttributeError):
        back.priority = 1  # type: ignore[misc]
    assert to_pika(None).headers is None


def test_confirm_tracker_settles_in_tag_order_even_after_timeouts_and_odd_adds() -> None:
    t: ConfirmTracker[int] = ConfirmTracker()
    for tag in range(1, 11):
        t.add(tag, tag)
    assert t.remove(3) is not None
    assert [e.item for e in t.settle(5, multiple=True)] == [1, 2, 4, 5]
    assert t.oldest() is not None and t.oldest()[0] == 6  # type: ignore[index]
    t.add(2, 2)  # out of order: falls back to sorting
    assert [e.item for e in t.settle(7, multiple=True)] == [2, 6, 7]
    assert [e.item for e in t.drain()] == [8, 9, 10] and t.oldest() is None


class FakeConfirmChannel:
    is_open = True
    close_code = None

    def __init__(self) -> None:
        self.tag = 0

    def publish(self, *args: Any) -> int:
        self.tag += 1
        return self.tag


def test_publisher_times_out_each_unconfirmed_message_with_one_timer() -> None:
    async def scenario() -> None:
        pub = Publisher("amqp://localhost", confirm_timeout=0.2)
        pub._channel = FakeConfirmChannel()  # type: ignore[assignment]
        first = [pub.publish("", "q", b"x") for _ in range(3)]
        await asyncio.sleep(0.1)
        second = [pub.publish("", "q", b"y") for _ in range(2)]
        pub._confirmed(2, multiple=False, ack=True)
        await asyncio.sleep(0.15)  # the first batch is due, the second not yet
        assert first[1].result() is None
        for f in (first[0], first[2]):
            assert isinstance(f.exception(), PublishTimeout)
        assert not any(f.done() for f in second)
        assert pub.pending == 2
        await asyncio.sleep(0.1)
        assert all(isinstance(f.exception(), PublishTimeout) for f in second)
        assert pub.pending == 0 and pub._timeout_handle is None
        text = pub.metrics.render().decode()
        assert "priority_worker_confirms_pending 0.0" in text
        assert "priority_worker_published_total 1.0" in text

    asyncio.run(scenario())


def test_in_flight_gauge_is_read_at_scrape_time() -> None:
    worker = Worker(
        "amqp://localhost", [Queue("high", 10), Queue("low", 2)], handler=lambda m: None
    )
    worker._dispatcher.add("high", object())  # type: ignore[arg-type]
    worker._dispatcher.add("low", object())  # type: ignore[arg-type]
    assert worker._dispatcher.take_one() is not None
    assert worker._dispatcher.take_one() is not None
    worker._dispatcher.add("high", object())  # type: ignore[arg-type]
    text = worker.metrics.render().decode()
    assert 'priority_worker_in_flight{queue="high"} 2.0' in text
    assert 'priority_worker_in_flight{queue="low"} 1.0' in text
    worker._pool.shutdown()


def test_publish_tag_header_is_encoded_exactly_as_pika_would() -> None:
    """The spliced x-publish-tag (cached encoding, or spliced into pika's) is byte for byte
    pika's own encoding of the merged headers; this pins pika's internals we rely on."""
    from priority_worker._pika import wire as _wire

    assert _wire._TAGGED_ENCODING_OK
    for props in [
        Properties(),
        Properties(content_type="application/json", delivery_mode=2),
        Properties(
            content_type="text/plain",
            content_encoding="gzip",
            headers={"k": "v", "n": 3},
            message_id="id",
            timestamp=7,
        ),
        # A traced publish: its trace context in the headers (tracing on, issue 18).
        Properties(
            headers={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "tracestate": "vendor=x",
                "nested": {"a": [1, "b"], "c": b"bytes"},
            },
            delivery_mode=2,
            correlation_id="c",
        ),
        Properties(headers={}, app_id="app"),
    ]:
        # Headers or not, the cached encoding of the other properties is used.
        assert isinstance(_wire.tagged_pika(props, 1), _wire._PreEncodedProperties)
        headers_before = copy.deepcopy(props.headers)
        for tag in (1, 70000, 2**31 - 1, 2**31, 2**45):
            expected = pika.BasicProperties(
                *[
                    {"x-publish-tag": tag, **(props.headers or {})}
                    if name == "headers"
                    else getattr(props, name)
                    for name in _wire._PROPERTY_NAMES
                ]
            )
            got = _wire.tagged_pika(props, tag)
            assert b"".join(got.encode()) == b"".join(expected.encode())
            # Decoded by pika (as the broker's basic.return would carry it back).
            decoded = pika.BasicProperties()
            decoded.decode(b"".join(got.encode()))
            assert decoded.headers == {"x-publish-tag": tag, **(props.headers or {})}
        assert props.headers == headers_before  # the caller's headers are not modified


def test_write_coalescing_joins_buffered_frames_into_one_send() -> None:
    """pika's transport sends each buffered frame with its own send(); we join them first.
    This also pins the pika internals that coalesce_writes relies on."""
    from collections import deque

    from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

    from declare_amqp.socket_writes import coalesce_writes

    sent: list[bytes] = []

    class Sock:
        def send(self, data: bytes) -> int:
            sent.append(bytes(data))
            return len(data)

    transport = _AsyncPlaintextTransport.__new__(_AsyncPlaintextTransport)
    transport._sock = Sock()
    transport._tx_buffers = deque([b"method", b"header", b"body"] * 3)
    transport._tx_buffered_byte_count = sum(len(b) for b in transport._tx_buffers)
    conn = SimpleNamespace(_transport=transport)
    assert coalesce_writes(conn) and coalesce_writes(conn)  # idempotent
    transport._produce()
    assert sent == [b"methodheaderbody" * 3]
    assert transport._tx_buffered_byte_count == 0 and not transport._tx_buffers
    assert not coalesce_writes(SimpleNamespace())  # unknown internals: left alone


def _worker_with_fake_channel(
    handler: Any, prefetch: int
) -> tuple[Worker, ConsumerChannel, FakeBroker]:
    worker = Worker("amqp://localhost", [Queue("q", prefetch)], handler=handler)
    broker = FakeBroker()
    ch = ConsumerChannel(
        FakeLink(),
        "q",
        on_delivery=worker._delivered,  # type: ignore[arg-type]
        on_cancelled=lambda _c: None,
        on_closed=lambda _c, _r: None,
    )
    ch._ch = broker
    ch._loop = asyncio.get_running_loop()
    return worker, ch, broker


def test_handlers_run_in_runner_tasks_in_arrival_order_up_to_the_concurrency() -> None:
    """Waiting handlers each hold a runner (a real task: current_task works), at most
    `concurrency` at once; the rest start in arrival order as runners free up."""
    started: list[bytes] = []

    async def scenario() -> None:
        gate = asyncio.Event()

        async def handler(message: Any) -> None:
            assert asyncio.current_task() is not None
            started.append(message.body)
            await asyncio.wait_for(gate.wait(), 5)

        worker, ch, broker = _worker_with_fake_channel(handler, prefetch=3)
        for tag in range(1, 9):
            broker.outstanding.add(tag)
            ch._deliver(
                broker,
                SimpleNamespace(delivery_tag=tag, redelivered=False, exchange="", routing_key="q"),
                pika.BasicProperties(),
                str(tag).encode(),
            )
        for _ in range(10):
            await asyncio.sleep(0)
        assert started == [b"1", b"2", b"3"] and len(worker._runners) == 3
        assert worker.in_flight("q") == 8 and broker.outstanding == set(range(1, 9))
        gate.set()
        for _ in range(50):
            await asyncio.sleep(0)
        assert started == [str(i).encode() for i in range(1, 9)]
        assert broker.outstanding == set() and worker.in_flight("q") == 0
        assert len(worker._runners) <= 3
        await worker.stop()  # idle runners end
        for _ in range(3):
            await asyncio.sleep(0)
        assert not worker._runners

    asyncio.run(scenario())


def test_handlers_that_do_not_wait_share_one_runner() -> None:
    handled: list[int] = []

    async def scenario() -> None:
        async def handler(message: Any) -> None:
            handled.append(int(message.body))

        worker, ch, broker = _worker_with_fake_channel(handler, prefetch=100)
        for tag in range(1, 101):
            broker.outstanding.add(tag)
            ch._deliver(
                broker,
                SimpleNamespace(delivery_tag=tag, redelivered=False, exchange="", routing_key="q"),
                pika.BasicProperties(),
                str(tag).encode(),
            )
        for _ in range(10):
            await asyncio.sleep(0)
        assert handled == list(range(1, 101))
        assert len(worker._runners) <= 2  # not one task per delivery
        assert broker.outstanding == set()
        assert [f for f in broker.frames if f[0] == "ack"] == [("ack", 100, True)]
        await worker.stop()

    asyncio.run(scenario())


def test_a_run_of_non_waiting_handlers_yields_the_loop_after_a_turn_budget() -> None:
    """Handlers that never await (here: each blocks 5 ms) run back to back in one runner, but
    after RUNNER_TURN_S of them the runner gives the loop a turn: a callback scheduled
    meanwhile (an ack flush, a delivery, /healthz) runs long before the run is over."""
    from priority_worker._runners import RUNNER_TURN_S

    order: list[str] = []

    async def scenario() -> None:
        async def handler(message: Any) -> None:
            time.sleep(0.005)
            order.append("handler")

        worker, ch, broker = _worker_with_fake_channel(handler, prefetch=40)
        for tag in range(1, 41):
            broker.outstanding.add(tag)
            ch._deliver(
                broker,
                SimpleNamespace(delivery_tag=tag, redelivered=False, exchange="", routing_key="q"),
                pika.BasicProperties(),
                str(tag).encode(),
            )
        asyncio.get_running_loop().call_soon(order.append, "other")
        for _ in range(100):
            await asyncio.sleep(0)
        await worker.stop()

    asyncio.run(scenario())
    assert order.count("handler") == 40
    budget = int(RUNNER_TURN_S / 0.005) + 2
    assert order.index("other") <= budget, order.index("other")
