"""The mover's own AMQP connection (``declare_amqp._wire``) against a fake transport: how it
reads the broker's frames, however they are split, what it sends back, and when it stops
acknowledging. Its handshake and a real move are in test_migrate_broker.py."""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace
from typing import Any

import pika.frame
import pika.spec
import pytest

from declare_amqp import _movers, _wire
from declare_amqp._wire import WireChannel, WireConnection, method_frame

CH = 3


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:  # pragma: no cover - not reached here
        pass

    def resume_reading(self) -> None:  # pragma: no cover
        pass


def frames(data: bytes) -> list[pika.frame.Frame]:
    """What pika reads in ``data`` (an independent decoder)."""
    out = []
    while data:
        consumed, frame = pika.frame.decode_frame(data)
        assert frame is not None, data[:40]
        out.append(frame)
        data = data[consumed:]
    return out


def forwarding(target: str = "dst") -> tuple[WireConnection, WireChannel, FakeTransport]:
    conn = WireConnection()
    transport = FakeTransport()
    conn.transport = transport  # type: ignore[assignment]
    ch = WireChannel(conn, CH)
    conn._channels[CH] = ch
    ch._publish = method_frame(
        CH, _wire._PUBLISH, b"\x00\x00" + _wire.shortstr("") + _wire.shortstr(target) + b"\x01"
    )
    return conn, ch, transport


PROPERTIES = pika.spec.BasicProperties(
    message_id="m-1",
    delivery_mode=2,
    priority=7,
    expiration="60000",
    headers={"x-death": [{"count": 2, "queue": "q"}], "n": 1, "nested": {"a": b"b"}},
)


def delivery(tag: int, body: bytes, redelivered: bool = False, frame_max: int = 4096) -> bytes:
    """A basic.deliver with its content, as the broker frames it (pika's marshalling)."""
    method = pika.frame.Method(
        CH,
        pika.spec.Basic.Deliver(
            consumer_tag="ctag",
            delivery_tag=tag,
            redelivered=redelivered,
            exchange="ex",
            routing_key="rk",
        ),
    ).marshal()
    header = pika.frame.Header(CH, len(body), PROPERTIES).marshal()
    step = frame_max - 8
    bodies = b"".join(
        pika.frame.Body(CH, body[i : i + step]).marshal() for i in range(0, len(body), step)
    )
    return method + header + bodies


def confirm(tag: int, multiple: bool, nack: bool = False) -> bytes:
    method = (pika.spec.Basic.Nack if nack else pika.spec.Basic.Ack)(
        delivery_tag=tag, multiple=multiple
    )
    return pika.frame.Method(CH, method).marshal()


@pytest.mark.parametrize("body", [b"", b"x" * 300, bytes(range(256)) * 40])
def test_a_delivery_is_published_with_its_own_header_and_body_frames(body: bytes) -> None:
    """The publish carries the delivery's properties and body unchanged (pika decodes them
    back equal), to the default exchange, the target queue, mandatory; a body longer than a
    frame stays in as many frames."""
    conn, ch, transport = forwarding()
    data = delivery(1, body)
    conn.received(data)
    sent = frames(b"".join(transport.written))
    publish, header, *bodies = sent
    assert isinstance(publish.method, pika.spec.Basic.Publish)
    assert (publish.method.exchange, publish.method.routing_key) == ("", "dst")
    assert publish.method.mandatory and publish.channel_number == CH
    assert vars(header.properties) == vars(PROPERTIES)
    assert b"".join(b.fragment for b in bodies) == body
    assert (
        b"".join(transport.written)[len(publish.marshal()) :]
        == data[len(frames(data)[0].marshal()) :]
    )
    assert (ch.published, ch.in_flight) == (1, 1)


def test_frames_split_anywhere_are_read_whole_and_in_order() -> None:
    """Reads that end mid-frame or mid-content wait for the rest: split at every byte, three
    deliveries still make exactly three publishes, in order."""
    data = b"".join(delivery(t, f"body-{t}".encode() * 50, frame_max=256) for t in (1, 2, 3))
    for cut in range(1, len(data)):
        conn, ch, transport = forwarding()
        conn.received(data[:cut])
        conn.received(data[cut:])
        sent = frames(b"".join(transport.written))
        publishes = [f for f in sent if isinstance(f, pika.frame.Method)]
        assert len(publishes) == 3, cut
        assert ch.published == 3 and not conn._buffer


def acks(transport: FakeTransport, before: int = 0) -> list[tuple[int, bool]]:
    sent = frames(b"".join(transport.written[before:]))
    return [
        (f.method.delivery_tag, f.method.multiple)
        for f in sent
        if isinstance(f, pika.frame.Method) and isinstance(f.method, pika.spec.Basic.Ack)
    ]


def test_confirms_acknowledge_what_they_cover_once_all_before_are_confirmed() -> None:
    """A multiple confirm acks every delivery up to it; single confirms out of order ack
    nothing until the gap before them is confirmed, then all at once."""
    conn, ch, transport = forwarding()
    conn.received(b"".join(delivery(t, b"x") for t in range(1, 7)))
    mark = len(transport.written)
    conn.received(confirm(2, multiple=True))
    assert acks(transport, mark) == [(2, True)]
    mark = len(transport.written)
    conn.received(confirm(4, multiple=False) + confirm(5, multiple=False))
    assert acks(transport, mark) == []  # 3 is not confirmed yet
    conn.received(confirm(3, multiple=False))
    assert acks(transport, mark) == [(5, True)]
    assert (ch.confirmed, ch.in_flight) == (5, 1)


def test_a_nack_or_a_return_stops_every_acknowledgement() -> None:
    """After a nack (or a message returned: the target is gone), no confirm acknowledges
    anything and no delivery is forwarded: they go back to the source with the channel."""
    for stop in (
        confirm(1, multiple=False, nack=True),
        pika.frame.Method(
            CH,
            pika.spec.Basic.Return(
                reply_code=312, reply_text="NO_ROUTE", exchange="", routing_key="dst"
            ),
        ).marshal()
        + pika.frame.Header(CH, 1, PROPERTIES).marshal()
        + pika.frame.Body(CH, b"x").marshal(),
    ):
        conn, ch, transport = forwarding()
        conn.received(delivery(1, b"x") + delivery(2, b"y"))
        conn.received(stop)
        conn.received(confirm(2, multiple=True) + delivery(3, b"z"))
        assert acks(transport) == []
        assert ch.failed is not None and ch.published == 2


def test_a_delivery_tag_out_of_count_stops_the_move() -> None:
    """Publish N's confirm acknowledges delivery N: a tag that breaks the count is refused,
    not guessed at."""
    conn, ch, transport = forwarding()
    conn.received(delivery(1, b"x") + delivery(5, b"y"))
    assert ch.published == 1 and "delivery tag 5" in (ch.failed or "")
    conn.received(confirm(1, multiple=True))
    assert acks(transport) == []


def test_the_broker_closing_the_channel_is_answered_and_recorded() -> None:
    conn, ch, transport = forwarding()
    close = pika.frame.Method(
        CH,
        pika.spec.Channel.Close(
            reply_code=404, reply_text="NOT_FOUND - no queue 'src'", class_id=60, method_id=20
        ),
    ).marshal()
    conn.received(close)
    (answer,) = frames(b"".join(transport.written))
    assert isinstance(answer.method, pika.spec.Channel.CloseOk)
    assert ch.closed is not None and ch.closed.reply_code == 404 and "no queue" in str(ch.closed)


def test_a_frame_without_its_end_marker_closes_the_connection() -> None:
    conn, ch, transport = forwarding()
    bad = bytearray(confirm(1, multiple=True))
    bad[-1] = 0
    conn.received(bytes(bad))
    assert transport.closed and conn.closed is not None and ch.closed is not None


def test_client_properties_table_reads_back() -> None:
    """The field table the handshake sends decodes with pika's own reader."""
    from pika.data import decode_table

    raw = _wire.table({"product": "declare-amqp", "capabilities": {"basic.nack": True}})
    decoded, end = decode_table(raw, 0)
    assert end == len(raw)
    assert decoded == {"product": "declare-amqp", "capabilities": {"basic.nack": True}}
    with pytest.raises(_wire.WireError):
        _wire.shortstr("q" * 256)
    assert struct.unpack(">I", raw[:4])[0] == len(raw) - 4


# ------------------------------------------------------------------ move() against a fake broker


class Broker(FakeTransport):
    """A fake transport that answers the mover's synchronous channel methods (soon, as a
    broker would); ``on`` adds frames of its own before an answer."""

    ANSWERS = {
        pika.spec.Channel.Open: pika.spec.Channel.OpenOk,
        pika.spec.Basic.Qos: pika.spec.Basic.QosOk,
        pika.spec.Confirm.Select: pika.spec.Confirm.SelectOk,
        pika.spec.Channel.Close: pika.spec.Channel.CloseOk,
    }

    def __init__(self, conn: WireConnection) -> None:
        super().__init__()
        self.conn = conn
        self.on: dict[type, bytes] = {}
        self.after: dict[type, bytes] = {}

    def write(self, data: bytes) -> None:
        super().write(data)
        for f in frames(bytes(data)):
            if not isinstance(f, pika.frame.Method):
                continue
            kind = type(f.method)
            if kind in (pika.spec.Basic.Consume, pika.spec.Basic.Cancel):
                ok = pika.spec.Basic.ConsumeOk if kind is pika.spec.Basic.Consume else None
                answer: Any = (ok or pika.spec.Basic.CancelOk)(consumer_tag="ctag")
            elif kind in self.ANSWERS:
                answer = self.ANSWERS[kind]()
            else:
                continue
            reply = (
                self.on.get(kind, b"")
                + pika.frame.Method(f.channel_number, answer).marshal()
                + self.after.get(kind, b"")
            )
            asyncio.get_running_loop().call_soon(self.conn.received, reply)


class FakeProbe:
    def __init__(self, ready: list[int]) -> None:
        self.ready = ready
        self.closed = None
        self.channel = SimpleNamespace(close=lambda: None)

    async def call(self, method: str, **_: Any) -> Any:
        count = self.ready.pop(0) if len(self.ready) > 1 else self.ready[0]
        return SimpleNamespace(method=SimpleNamespace(message_count=count))


class FakeSession:
    def __init__(self, ready: list[int]) -> None:
        self.probe = FakeProbe(ready)

    async def channel(self) -> FakeProbe:
        return self.probe


def wired() -> tuple[WireConnection, Broker]:
    conn = WireConnection()
    broker = Broker(conn)
    conn.transport = broker  # type: ignore[assignment]
    conn._channel_max = 2047
    return conn, broker


def test_move_fails_when_deliveries_stay_unconfirmed_after_the_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deliveries that came in before the cancel-ok and whose publishes are never confirmed
    in time are not moved: move() must not report success (its caller would delete the
    source they go back to), it stops with MigrationFailed."""
    monkeypatch.setattr(_movers, "_POLL", 0.001)
    monkeypatch.setattr(_movers, "CANCEL_WAIT", 0.05)

    async def run() -> None:
        conn, broker = wired()
        broker.on[pika.spec.Basic.Cancel] = _on_channel(delivery(1, b"x"), 1)
        with pytest.raises(_movers.MigrationFailed, match="not confirmed"):
            await _movers.move(FakeSession([0]), conn, "src", "dst")  # type: ignore[arg-type]
        assert acks(broker) == []

    asyncio.run(run())


def _on_channel(data: bytes, channel: int) -> bytes:
    """``data``'s frames (made on CH) on ``channel`` instead."""
    out = bytearray()
    while data:
        kind, _, length = struct.unpack_from(">BHI", data)
        out += struct.pack(">BHI", kind, channel, length) + data[7 : 8 + length]
        data = data[8 + length :]
    return bytes(out)


@pytest.mark.parametrize(
    ("stop", "says"),
    [
        (pika.spec.Basic.Cancel(consumer_tag="ctag"), "cancelled"),
        (
            pika.spec.Channel.Close(
                reply_code=406, reply_text="PRECONDITION_FAILED", class_id=0, method_id=0
            ),
            "PRECONDITION_FAILED",
        ),
    ],
)
def test_move_fails_when_the_broker_stops_its_consumer_early(
    monkeypatch: pytest.MonkeyPatch, stop: Any, says: str
) -> None:
    """The broker cancels the consumer (its queue was deleted, or its node went down) or
    closes the channel while the source still holds messages, nothing in flight: the move
    did not finish, it must not say it did."""
    monkeypatch.setattr(_movers, "_POLL", 0.001)

    async def run() -> None:
        conn, broker = wired()
        broker.after[pika.spec.Basic.Consume] = pika.frame.Method(1, stop).marshal()
        with pytest.raises(_movers.MigrationFailed, match=says):
            await _movers.move(FakeSession([5]), conn, "src", "dst")  # type: ignore[arg-type]

    asyncio.run(run())


def test_a_content_interrupted_by_another_frame_is_not_forwarded() -> None:
    """AMQP lets frames of other channels (a heartbeat, another move's confirm) come between
    a content's frames; RabbitMQ does not, and byte-for-byte forwarding cannot: such a
    content must close the connection, never go out with the foreign frame in it (a foreign
    basic.ack would be sent back to the broker as an acknowledgement)."""
    data = delivery(1, b"x" * 600, frame_max=256)
    method_end = len(frames(data)[0].marshal())
    header_end = method_end + len(frames(data[method_end:])[0].marshal())
    foreign = pika.frame.Method(CH + 1, pika.spec.Basic.Ack(delivery_tag=9)).marshal()
    for cut, frame in ((method_end, _wire._HEARTBEAT), (header_end, foreign)):
        conn, ch, transport = forwarding()
        conn.received(data[:cut] + frame + data[cut:])
        assert transport.written == [] and transport.closed and ch.published == 0


def test_a_confirm_beyond_the_publishes_acknowledges_nothing() -> None:
    """A confirm of a publish not yet made would ack deliveries not yet read (on their way):
    refused, not acted on."""
    conn, ch, transport = forwarding()
    conn.received(delivery(1, b"x") + delivery(2, b"y"))
    conn.received(confirm(5, multiple=True))
    assert acks(transport) == [] and ch.failed is not None


def test_channel_numbers_in_use_are_never_handed_out_again() -> None:
    """A broker with a small channel_max and more moves at once than it: a live channel's
    number is not reused (its frames would go to the new one), the surplus is refused; a
    channel the broker would not open leaves no entry behind."""

    async def run() -> None:
        conn, broker = wired()
        conn._channel_max = 2
        first, second = await conn.channel(), await conn.channel()
        assert (first.number, second.number) == (1, 2)
        with pytest.raises(_wire.WireError, match="channel"):
            await conn.channel()
        assert conn._channels == {1: first, 2: second}
        await first.close()
        assert (await conn.channel()).number == 1
        await second.close()
        refused = pika.spec.Channel.Close(
            reply_code=530, reply_text="NOT_ALLOWED", class_id=20, method_id=10
        )
        broker.on[pika.spec.Channel.Open] = pika.frame.Method(2, refused).marshal()
        with pytest.raises(_wire.WireError, match="NOT_ALLOWED"):
            await conn.channel()
        assert list(conn._channels) == [1]

    asyncio.run(run())


def test_a_broker_silent_for_two_heartbeat_intervals_is_taken_for_dead() -> None:
    """Heartbeats go out every half interval; a connection on which nothing came in for two
    intervals is closed (AMQP 4.2.7) instead of waiting on a dead socket for the kernel's
    timeout (a move would poll for minutes meanwhile); not while reading is paused for
    the write buffer (then nothing is read on purpose)."""

    async def run() -> None:
        conn, ch, transport = forwarding()
        conn._protocol_paused = True
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn._beat(0.005), 0.1)
        assert conn.closed is None
        conn._protocol_paused = False
        conn.received(_wire._HEARTBEAT)
        await asyncio.wait_for(conn._beat(0.005), 1)
        assert transport.closed and ch.closed is not None
        assert "heartbeat" in str(conn.closed)
        assert transport.written.count(_wire._HEARTBEAT) >= 4

    asyncio.run(run())
