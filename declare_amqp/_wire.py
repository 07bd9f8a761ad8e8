"""The migration mover's own AMQP 0-9-1 connection: a message is moved as the broker framed it.

pika decodes every frame into objects (the delivery's method, its properties, its body) and a
publish encodes them again. On RabbitMQ 4.0 (8 queues moved at once, idle broker) that was
23-26 us of the mover's CPU per message, a third of the CPU a move took on the machine, and the
reason the tool's mover ran slower than the broker's shovel on the same two cores. A delivered
message's content header frame has the layout of a published one's, and so do its body frames
(AMQP 0-9-1, 4.2.6), so this connection publishes a delivery as a constant ``basic.publish``
method frame followed by the delivery's own header and body frames, byte for byte, on the same
channel (so not even the channel number changes). The properties -- headers, priority,
expiration, ids -- are never decoded: they cannot be altered on the way.

Only what a move needs is here: connect (PLAIN or EXTERNAL, over TLS or not), heartbeats, open
a channel, ``basic.qos``, ``confirm.select``, ``basic.consume`` whose deliveries are forwarded
to one queue, ``basic.cancel``, and the broker's ``connection.close``, ``channel.close``,
``basic.cancel``, ``basic.return`` and ``basic.nack``. Everything else the tool says over AMQP
goes through pika (``_amqp``). Frames: AMQP 0-9-1, 2.3.5 and 4.2.3; the methods' class and
method numbers and fields as the 0-9-1 XML and RabbitMQ's extensions (confirms, consumer
cancel notification, authentication failure close) give them.

Each delivery is acknowledged on its queue only once the broker confirmed its publish. The
channel's delivery tags and its publish sequence numbers both count from 1, one publish per
delivery, in order: the confirm of publish N acknowledges delivery N. A delivery whose tag
breaks that count stops the move (nothing is acknowledged that was not confirmed).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

from ._address import BrokerAddress, Node

_FRAME_END = 0xCE
_HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
_FRAME_MAX = 131072  # what pika asks for too
_HEARTBEAT_SECONDS = 60
_TIMEOUT = 20.0  # seconds a synchronous method may take

# (class, method) numbers
_START, _START_OK, _TUNE, _TUNE_OK, _OPEN, _OPEN_OK = (
    (10, 10),
    (10, 11),
    (10, 30),
    (10, 31),
    (10, 40),
    (10, 41),
)
_CLOSE, _CLOSE_OK = (10, 50), (10, 51)
_CH_OPEN, _CH_OPEN_OK, _CH_CLOSE, _CH_CLOSE_OK = (20, 10), (20, 11), (20, 40), (20, 41)
_QOS, _QOS_OK, _CONSUME, _CONSUME_OK = (60, 10), (60, 11), (60, 20), (60, 21)
_CANCEL, _CANCEL_OK, _PUBLISH, _RETURN, _DELIVER = (60, 30), (60, 31), (60, 40), (60, 50), (60, 60)
_ACK, _NACK = (60, 80), (60, 120)
_SELECT, _SELECT_OK = (85, 10), (85, 11)

# connection.close / channel.close arguments: 200 (normal), no text, no failing method
_NORMAL_CLOSE = struct.pack(">HBHH", 200, 0, 0, 0)

_head = struct.Struct(">BHI")
_ids = struct.Struct(">HH")
_u64 = struct.Struct(">Q")


class WireError(Exception):
    """The broker closed the connection or a channel (its reply code and text), or the
    connection broke."""

    def __init__(self, text: str, reply_code: int = 0) -> None:
        super().__init__(text)
        self.reply_code = reply_code


# ------------------------------------------------------------------ encoding


def method_frame(channel: int, method: tuple[int, int], args: bytes = b"") -> bytes:
    """A method frame: ``method`` (class, method) with its encoded ``args`` on ``channel``."""
    payload = _ids.pack(*method) + args
    return _head.pack(1, channel, len(payload)) + payload + b"\xce"


def shortstr(text: str) -> bytes:
    """A short string: one length byte, then at most 255 bytes of UTF-8."""
    raw = text.encode()
    if len(raw) > 255:
        raise WireError(f"'{text[:40]}...' is longer than AMQP's 255-byte short string")
    return bytes([len(raw)]) + raw


def longstr(raw: bytes) -> bytes:
    """A long string: a 32-bit length, then the bytes."""
    return struct.pack(">I", len(raw)) + raw


def table(fields: dict[str, Any]) -> bytes:
    """A field table of strings, booleans and nested tables (all the client properties need)."""
    out = bytearray()
    for key, value in fields.items():
        out += shortstr(key)
        if isinstance(value, bool):
            out += b"t" + bytes([value])
        elif isinstance(value, dict):
            out += b"F" + table(value)
        else:
            out += b"S" + longstr(str(value).encode())
    return longstr(bytes(out))


def read_shortstr(data: bytes | bytearray, at: int) -> tuple[str, int]:
    """The short string at ``at`` and where it ends."""
    end = at + 1 + data[at]
    return bytes(data[at + 1 : end]).decode(errors="replace"), end


def read_longstr(data: bytes | bytearray, at: int) -> tuple[bytes, int]:
    """The long string at ``at`` and where it ends."""
    (size,) = struct.unpack_from(">I", data, at)
    return bytes(data[at + 4 : at + 4 + size]), at + 4 + size


def _closing(args: bytes) -> tuple[int, str]:
    """reply-code and reply-text of a connection.close or channel.close."""
    (code,) = struct.unpack_from(">H", args, 0)
    text, _ = read_shortstr(args, 2)
    return code, text


# ------------------------------------------------------------------ the connection


class _Protocol(asyncio.Protocol):
    def __init__(self, connection: WireConnection) -> None:
        self.connection = connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connection.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.connection.received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.lost(exc)

    # The broker reads slower than deliveries come in: stop reading (so stop forwarding)
    # until what was written drained, so the write buffer stays bounded.
    def pause_writing(self) -> None:
        self.connection._protocol_paused = True
        if self.connection.transport is not None:
            self.connection.transport.pause_reading()

    def resume_writing(self) -> None:
        self.connection._protocol_paused = False
        if self.connection.transport is not None:
            self.connection.transport.resume_reading()


class WireConnection:
    """One AMQP connection to one vhost, whose channels forward deliveries (``channel``)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed: WireError | None = None
        self._buffer = bytearray()
        self._channels: dict[int, WireChannel] = {}
        self._next_channel = 1
        self._replies: asyncio.Queue[tuple[tuple[int, int], bytes]] = asyncio.Queue()
        self._heartbeat: asyncio.Task[None] | None = None
        self._reads = 0  # data_received calls (the heartbeat task watches it move)
        self._protocol_paused = False  # reading paused until the write buffer drains

    @classmethod
    async def open(
        cls, address: BrokerAddress, node: Node, vhost: str, name: str
    ) -> WireConnection:
        """Connect to ``node`` and open ``vhost`` as ``address``'s user; ``name`` is the
        connection's name on the broker."""
        self = cls()
        loop = asyncio.get_running_loop()
        ssl = address.tls.context() if node.tls else None
        await asyncio.wait_for(
            loop.create_connection(
                lambda: _Protocol(self),
                node.host,
                node.port,
                ssl=ssl,
                server_hostname=node.host if ssl else None,
            ),
            _TIMEOUT,
        )
        try:
            await self._handshake(address, vhost, name)
        except BaseException:
            self._abort()
            raise
        return self

    async def _handshake(self, address: BrokerAddress, vhost: str, name: str) -> None:
        assert self.transport is not None
        self.transport.write(b"AMQP\x00\x00\x09\x01")
        start = await self._reply(_START)
        _, at = read_longstr(start, 2)  # version, then the server's properties
        mechanisms, _ = read_longstr(start, at)
        external = address.tls.auth_mechanism == "external"
        mechanism = "EXTERNAL" if external else "PLAIN"
        if mechanism.encode() not in mechanisms.split():
            raise WireError(f"the broker does not offer {mechanism} authentication")
        response = b"" if external else f"\0{address.user}\0{address.password}".encode()
        properties = {
            "product": "declare-amqp",
            "connection_name": name,
            "capabilities": {
                "publisher_confirms": True,
                "basic.nack": True,
                "consumer_cancel_notify": True,
                "authentication_failure_close": True,
            },
        }
        self._send(
            method_frame(
                0,
                _START_OK,
                table(properties) + shortstr(mechanism) + longstr(response) + shortstr("en_US"),
            )
        )
        tune = await self._reply(_TUNE)
        channel_max, frame_max, heartbeat = struct.unpack_from(">HIH", tune, 0)
        frame_max = min(frame_max or _FRAME_MAX, _FRAME_MAX)
        heartbeat = min(heartbeat, _HEARTBEAT_SECONDS) if heartbeat else 0
        self._channel_max = channel_max or 2047
        self._send(
            method_frame(0, _TUNE_OK, struct.pack(">HIH", self._channel_max, frame_max, heartbeat))
        )
        self._send(method_frame(0, _OPEN, shortstr(vhost) + shortstr("") + b"\x00"))
        await self._reply(_OPEN_OK)
        if heartbeat:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(heartbeat / 2))

    async def _beat(self, every: float) -> None:
        """A heartbeat every ``every`` s (half the interval); nothing read for two intervals
        (AMQP 4.2.7) closes the connection: the socket is dead, the broker has requeued."""
        seen, silent = self._reads, 0
        while self.closed is None and self.transport is not None:
            await asyncio.sleep(every)
            self._send(_HEARTBEAT)
            if self._reads != seen or self._protocol_paused:
                seen, silent = self._reads, 0
                continue
            silent += 1
            if silent >= 4:
                self.closed = WireError(
                    f"the broker sent nothing for {silent * every:g} s (heartbeats missed)"
                )
                self._abort()
                return

    async def _reply(self, expected: tuple[int, int]) -> bytes:
        """The next method on channel 0, which must be ``expected``."""
        try:
            method, args = await asyncio.wait_for(self._replies.get(), _TIMEOUT)
        except asyncio.TimeoutError:
            raise WireError("the broker did not answer in time") from None
        if method == (0, 0):
            raise self.closed or WireError("the connection closed")
        if method != expected:
            raise WireError(f"the broker sent method {method}, expected {expected}")
        return args

    async def channel(self) -> WireChannel:
        """A new open channel."""
        if self.closed is not None:
            raise self.closed
        # the next number not in use (a live channel's frames must not reach a new one)
        for _ in range(self._channel_max):
            number = self._next_channel
            self._next_channel = number % self._channel_max + 1
            if number not in self._channels:
                break
        else:
            raise WireError(f"all {self._channel_max} channels the broker allows are open")
        ch = WireChannel(self, number)
        self._channels[number] = ch
        try:
            await ch.call(_CH_OPEN, shortstr(""), _CH_OPEN_OK)
        except BaseException:
            self._channels.pop(number, None)
            raise
        return ch

    async def close(self) -> None:
        """Close the connection (its channels' unacknowledged deliveries go back)."""
        if self.closed is None and self.transport is not None:
            self._send(method_frame(0, _CLOSE, _NORMAL_CLOSE))
            try:
                await asyncio.wait_for(self._replies.get(), 5)
            except asyncio.TimeoutError:
                pass
        self._abort()

    def _abort(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.transport is not None:
            self.transport.close()
        self.lost(None)

    def _send(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def lost(self, exc: Exception | None) -> None:
        """The connection is gone (``exc``, or closed): every waiter and channel stops."""
        if self.closed is None:
            self.closed = WireError(
                f"the connection broke: {exc}" if exc else "the connection closed"
            )
        self._replies.put_nowait(((0, 0), b""))
        for ch in list(self._channels.values()):
            ch.stopped(self.closed)

    def received(self, data: bytes) -> None:
        """Handle every whole frame received; forward deliveries; write what they caused at
        once (one ``write`` per read)."""
        self._reads += 1
        buf = self._buffer
        buf += data
        out: list[bytes | bytearray] = []  # what the frames read cause, written at once
        size = len(buf)
        pos = 0
        while size - pos >= 8:
            kind, number, length = _head.unpack_from(buf, pos)
            end = pos + 8 + length
            if end > size:
                break
            if buf[end - 1] != _FRAME_END:
                self._protocol_error("a frame without its end marker")
                return
            if kind == 1:
                method = _ids.unpack_from(buf, pos + 7)
                if method in (_DELIVER, _RETURN):
                    ch = self._channels.get(number)
                    whole = _content_end(buf, end, size, number)
                    if whole == -2:
                        self._protocol_error("a content interrupted by another frame")
                        return
                    if whole < 0:
                        break  # the content is not all here yet
                    if ch is not None:
                        if method == _DELIVER:
                            ch.delivered(buf, pos + 11, end, whole, out)
                        else:
                            ch.returned(bytes(buf[pos + 11 : end - 1]))
                    pos = whole
                    continue
                args = bytes(buf[pos + 11 : end - 1])
                if number == 0:
                    self._connection_method(method, args)
                else:
                    ch = self._channels.get(number)
                    if ch is not None:
                        ch.method(method, args, out)
            # heartbeats need no answer; content frames only follow the methods above
            pos = end
        if pos:
            del buf[:pos]
        if out:
            self._send(b"".join(out))

    def _connection_method(self, method: tuple[int, int], args: bytes) -> None:
        if method == _CLOSE:
            code, text = _closing(args)
            self._send(method_frame(0, _CLOSE_OK))
            self.closed = WireError(f"the broker closed the connection: {code} {text}", code)
            self._abort()
            return
        self._replies.put_nowait((method, args))

    def _protocol_error(self, what: str) -> None:
        self.closed = WireError(f"the broker's frames cannot be read: {what}")
        self._abort()


def _content_end(buf: bytearray, at: int, size: int, channel: int) -> int:
    """Where the content (header and body frames on ``channel``) starting at ``at`` ends; -1
    if not all of it is in ``buf`` yet, -2 if another frame comes in between (AMQP allows
    other channels' frames there, RabbitMQ never sends them: forwarded byte for byte, they
    would go out inside the publish)."""
    if size - at < 8:
        return -1
    kind, number, length = _head.unpack_from(buf, at)
    if kind != 2 or number != channel:
        return -2
    pos = at + 8 + length
    if pos > size:
        return -1
    (left,) = _u64.unpack_from(buf, at + 11)  # class, weight, then the body size
    while left > 0:
        if size - pos < 8:
            return -1
        kind, number, length = _head.unpack_from(buf, pos)
        if kind != 3 or number != channel:
            return -2
        if pos + 8 + length > size:
            return -1
        left -= length
        pos += 8 + length
    return int(pos)


# ------------------------------------------------------------------ a channel


class WireChannel:
    """One channel: synchronous methods, and a consumer whose deliveries are published to
    one queue and acknowledged once confirmed (``forward``)."""

    def __init__(self, connection: WireConnection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.closed: WireError | None = None
        self.cancelled = False  # the broker cancelled the consumer (its queue went away)
        self.failed: str | None = None  # why forwarding stopped (a nack, a return)
        self.published = 0
        self.confirmed = 0  # every publish up to here is confirmed
        self.redelivered = 0
        self.on_confirmed: Callable[[], None] | None = None  # after each ack sent
        self._ahead: set[int] = set()  # single confirms beyond ``confirmed``
        self._publish = b""
        self._reply: asyncio.Future[bytes] | None = None
        self._expect: tuple[int, int] | None = None

    @property
    def in_flight(self) -> int:
        """Publishes not confirmed yet (their deliveries are not acknowledged)."""
        return self.published - self.confirmed

    async def call(self, method: tuple[int, int], args: bytes, reply: tuple[int, int]) -> bytes:
        """Send ``method`` and wait for ``reply``."""
        if self.closed is not None:
            raise self.closed
        self._reply = asyncio.get_running_loop().create_future()
        self._expect = reply
        self.connection._send(method_frame(self.number, method, args))
        try:
            return await asyncio.wait_for(self._reply, _TIMEOUT)
        except asyncio.TimeoutError:
            raise WireError(f"the broker did not answer {method} in time") from None

    async def forward(self, source: str, target: str, prefetch: int) -> None:
        """Consume ``source`` (``prefetch`` unacknowledged at most), publishing each delivery
        to ``target`` through the default exchange (mandatory), with confirms."""
        await self.call(_QOS, struct.pack(">IHB", 0, prefetch, 0), _QOS_OK)
        await self.call(_SELECT, b"\x00", _SELECT_OK)
        self._publish = method_frame(
            self.number, _PUBLISH, b"\x00\x00" + shortstr("") + shortstr(target) + b"\x01"
        )
        args = b"\x00\x00" + shortstr(source) + shortstr("") + b"\x00" + table({})
        reply = await self.call(_CONSUME, args, _CONSUME_OK)
        self._tag, _ = read_shortstr(reply, 0)

    async def cancel(self) -> None:
        """Cancel the consumer; the deliveries that came before the cancel-ok were published."""
        if self.closed is None and not self.cancelled:
            await self.call(_CANCEL, shortstr(self._tag) + b"\x00", _CANCEL_OK)

    async def close(self) -> None:
        """Close the channel (its unacknowledged deliveries go back to their queue)."""
        if self.closed is None:
            try:
                await self.call(_CH_CLOSE, _NORMAL_CLOSE, _CH_CLOSE_OK)
            except WireError:
                pass
        self.stopped(WireError("the channel closed"))
        self.connection._channels.pop(self.number, None)

    def stopped(self, why: WireError) -> None:
        """The channel can no longer be used (``why``); a waiting call fails with it."""
        if self.closed is None:
            self.closed = why
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(self.closed)

    # --- frames from the broker (called by the connection, in order)

    def delivered(self, buf: bytearray, args: int, end: int, whole: int, out: list[Any]) -> None:
        """A delivery: method arguments at ``args``, its content from ``end`` to ``whole``."""
        if self.failed is not None or self.closed is not None:
            return  # left unacknowledged: back to the queue when the channel closes
        at = args + 1 + buf[args]  # past the consumer tag
        (tag,) = _u64.unpack_from(buf, at)
        if tag != self.published + 1:
            self.failed = f"delivery tag {tag} where {self.published + 1} was expected"
            return
        self.published = tag
        self.redelivered += buf[at + 8] & 1
        out.append(self._publish)
        out.append(buf[end:whole])

    def returned(self, args: bytes) -> None:
        """A ``basic.return``: the target did not take a message; nothing more is acked."""
        code, text = _closing(args)
        self.failed = f"a message came back ({code} {text}): the target queue is gone"

    def method(self, method: tuple[int, int], args: bytes, out: list[Any]) -> None:
        """A method frame for this channel other than a delivery (answers go to ``out``)."""
        if method == _ACK:
            tag, multiple = struct.unpack_from(">QB", args, 0)
            self._confirm(tag, multiple, out)
        elif method == _NACK:
            self.failed = "the target queue refused a message (nack)"
        elif method == _CANCEL:
            self.cancelled = True
        elif method == _CH_CLOSE:
            code, text = _closing(args)
            out.append(method_frame(self.number, _CH_CLOSE_OK))
            self.stopped(WireError(f"the broker closed the channel: {code} {text}", code))
        elif self._reply is not None and not self._reply.done():
            if method == self._expect:
                self._reply.set_result(args)
            else:
                self._reply.set_exception(WireError(f"unexpected method {method}"))

    def _confirm(self, tag: int, multiple: int, out: list[Any]) -> None:
        if self.failed is not None:
            return  # a return or nack came first: acknowledge nothing more
        if tag > self.published:
            # a publish not made yet: its delivery is on its way, not to be acknowledged
            self.failed = f"a confirm of publish {tag}, {self.published} were made"
            return
        before = self.confirmed
        if multiple & 1:
            if tag > self.confirmed:
                self.confirmed = tag
        elif tag == self.confirmed + 1:
            self.confirmed = tag
        else:
            self._ahead.add(tag)
        ahead = self._ahead
        while ahead and self.confirmed + 1 in ahead:
            self.confirmed += 1
            ahead.discard(self.confirmed)
        if ahead:
            self._ahead = {t for t in ahead if t > self.confirmed}
        if self.confirmed > before:
            # basic.ack, multiple: every delivery up to the last confirmed publish
            out.append(method_frame(self.number, _ACK, _u64.pack(self.confirmed) + b"\x01"))
            if self.on_confirmed is not None:
                self.on_confirmed()
