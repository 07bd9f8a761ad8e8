"""The one module that talks to pika.

``Link`` is an AMQP connection on the running asyncio loop (Tornado's IOLoop runs on it) that
fails over across several URLs and reconnects with capped exponential backoff and jitter.
``ConsumerChannel`` is one channel consuming one queue at a prefetch that can change at run time;
``ConfirmChannel`` is a publisher-confirms channel. pika types and exceptions stop here: callers
see ``Delivery``/``Properties`` values and this package's errors.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection

from ._core import PUBLISH_TAG_HEADER, reconnect_delay, redact_url, scrub, url_secrets
from ._errors import ConnectionFailed, PriorityWorkerError
from ._log import log
from ._model import Properties
from ._tls import TlsSettings, tls_reason

logger = logging.getLogger("priority_worker.amqp")

_PROPERTY_NAMES = tuple(Properties.__dataclass_fields__)
_get_properties = operator.attrgetter(*_PROPERTY_NAMES)
# pika.BasicProperties takes the same 13 properties in the same order (then cluster_id).
assert _PROPERTY_NAMES == (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)
_HEADERS = _PROPERTY_NAMES.index("headers")
_EMPTY_PROPERTIES = Properties()


class ChannelGone(PriorityWorkerError):
    """The channel (or its connection) closed before the operation finished."""

    def __init__(self, reason: str, reply_code: int | None = None) -> None:
        super().__init__(reason)
        self.reply_code = reply_code


def to_properties(props: pika.BasicProperties) -> Properties:
    """pika's BasicProperties as our frozen value."""
    return Properties(*_get_properties(props))


def to_pika(
    props: Properties | None,
    extra_headers: Mapping[str, Any] | None = None,
) -> pika.BasicProperties:
    """Our Properties as pika's BasicProperties (headers copied, ``extra_headers`` added)."""
    if props is None:
        return pika.BasicProperties(headers=dict(extra_headers) if extra_headers else None)
    values = list(_get_properties(props))
    headers = values[_HEADERS]
    if extra_headers:
        values[_HEADERS] = {**headers, **extra_headers} if headers else dict(extra_headers)
    elif headers is not None:
        values[_HEADERS] = dict(headers)
    return pika.BasicProperties(*values)


_COALESCE_LIMIT = 256 * 1024  # bytes joined into one send at most


def coalesce_writes(conn: Any) -> bool:
    """Make ``conn``'s transport send what it has buffered in one ``send()`` call.

    pika buffers every frame as a separate chunk and, when the socket is writable, calls
    ``send()`` once per chunk: three system calls per published message (method, header and
    body frames), one per ack. Joining the buffered chunks first (up to ``_COALESCE_LIMIT``
    bytes; pika still handles partial sends) writes the same bytes in the same order with far
    fewer system calls. This relies on pika internals (``_transport._tx_buffers``, a deque of
    bytes, and ``_transport._produce``); when they are not there, nothing changes and False is
    returned (a unit test pins the pika version's internals).
    """
    transport = getattr(conn, "_transport", None)
    buffers = getattr(transport, "_tx_buffers", None)
    produce = getattr(transport, "_produce", None)
    if not isinstance(buffers, deque) or produce is None or not callable(produce):
        return False
    if getattr(produce, "_coalescing", False):
        return True

    def coalescing_produce() -> None:
        if len(buffers) > 1:
            size, count = 0, 0
            for chunk in buffers:
                size += len(chunk)
                count += 1
                if size >= _COALESCE_LIMIT:
                    break
            if count > 1:
                joined = b"".join([buffers.popleft() for _ in range(count)])
                buffers.appendleft(joined)
        produce()

    coalescing_produce._coalescing = True  # type: ignore[attr-defined]
    transport._produce = coalescing_produce  # type: ignore[union-attr]
    return True


class _TaggedProperties(pika.BasicProperties):  # type: ignore[misc]
    """pika properties whose headers table also carries ``x-publish-tag: <tag>``.

    The tag goes on every mandatory publish (to match a basic.return to its publish); adding
    it to a copy of the headers dict and letting pika encode the table costs more than the
    rest of our publish path, so it is spliced into the encoded table instead. pika encodes a
    properties header as ``[flags, (len, bytes) per shortstr present before the table,
    table size, entries...]``; :func:`_check_tagged_encoding` verifies at import that the
    result is byte for byte what pika itself produces, else plain dict merging is used.
    """

    publish_tag = 0

    def encode(self) -> list[bytes]:
        pieces: list[bytes] = super().encode()
        i = _table_index(self)
        entry = _tag_entry(self.publish_tag)
        pieces[i] = _TABLE_SIZE.pack(_TABLE_SIZE.unpack(pieces[i])[0] + len(entry))
        pieces.insert(i + 1, entry)
        return pieces


class _PreEncodedProperties(pika.BasicProperties):  # type: ignore[misc]
    """What pika needs to write a header frame (``encode()``, ``INDEX``) from the cached
    encoding of a :class:`Properties` value plus the publish tag (see :func:`_tagged_pika`).
    Only ``encode()`` is meant to be used: the property attributes are not set."""

    def __init__(self, parts: tuple[list[bytes], int, list[bytes]], tag: int) -> None:
        # Deliberately not BasicProperties.__init__: nothing but encode() reads this object.
        self._parts = parts
        self.publish_tag = tag

    def encode(self) -> list[bytes]:
        prefix, size, suffix = self._parts
        entry = _tag_entry(self.publish_tag)
        return [*prefix, _TABLE_SIZE.pack(size + len(entry)), entry, *suffix]


def _tag_entry(tag: int) -> bytes:
    # As pika encodes an int: "I" (signed 32 bits) when it fits, else "l" (64 bits).
    return _TAG_ENTRY_KEY + (_TAG_INT.pack(b"I", tag) if tag < 2**31 else _TAG_LONG.pack(b"l", tag))


_ENCODED: dict[Properties, tuple[list[bytes], int, list[bytes]]] = {}
_ENCODED_MAX = 512  # distinct Properties values whose encoding is kept


def _encoded_parts(props: Properties) -> tuple[list[bytes], int, list[bytes]] | None:
    """pika's encoding of ``props`` with an empty headers table, split around the table's
    size; None when ``props`` is not hashable (it has headers)."""
    try:
        parts = _ENCODED.get(props)
    except TypeError:
        return None
    if parts is None:
        values = list(_get_properties(props))
        values[_HEADERS] = {}
        pieces = pika.BasicProperties(*values).encode()
        i = _table_index(props)
        parts = (pieces[:i], _TABLE_SIZE.unpack(pieces[i])[0], pieces[i + 1 :])
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[props] = parts
    return parts


def _table_index(props: Any) -> int:
    """Where pika puts the headers table's size: after the flags and the (length, bytes)
    pieces of content_type and content_encoding when present."""
    return 1 + (props.content_type is not None) * 2 + (props.content_encoding is not None) * 2


_TABLE_SIZE = struct.Struct(">I")
_TAG_ENTRY_KEY = bytes([len(PUBLISH_TAG_HEADER)]) + PUBLISH_TAG_HEADER.encode()
_TAG_INT = struct.Struct(">ci")
_TAG_LONG = struct.Struct(">cq")


def _tagged_pika(properties: Properties, tag: int) -> pika.BasicProperties:
    """pika properties for a mandatory publish: ``properties`` plus the publish tag header."""
    if _TAGGED_ENCODING_OK:
        parts = _encoded_parts(properties)
        if parts is not None:
            return _PreEncodedProperties(parts, tag)
    values = list(_get_properties(properties))
    headers = values[_HEADERS]
    if _TAGGED_ENCODING_OK:
        values[_HEADERS] = dict(headers) if headers else {}
        props = _TaggedProperties(*values)
        props.publish_tag = tag
        return props
    values[_HEADERS] = (
        {PUBLISH_TAG_HEADER: tag, **headers} if headers else {PUBLISH_TAG_HEADER: tag}
    )
    return pika.BasicProperties(*values)


def _check_tagged_encoding() -> bool:
    samples = [
        Properties(),
        Properties(content_type="application/json", delivery_mode=2),
        Properties(
            content_encoding="gzip",
            headers={"a": 1, "b": "x"},
            message_id="m",
            priority=3,
            app_id="app",
            timestamp=5,
            type="t",
            expiration="100",
        ),
        Properties(
            content_type="text/plain",
            content_encoding="utf-8",
            headers={},
            correlation_id="c",
            reply_to="r",
            user_id="guest",
        ),
    ]
    try:
        for props in samples:
            for tag in (1, 2**40):
                values = list(_get_properties(props))
                plain = dict(values[_HEADERS] or {})
                values[_HEADERS] = {PUBLISH_TAG_HEADER: tag, **plain}
                expected = b"".join(pika.BasicProperties(*values).encode())
                values[_HEADERS] = plain
                tagged = _TaggedProperties(*values)
                tagged.publish_tag = tag
                if b"".join(tagged.encode()) != expected:
                    return False
                if props.headers is None:
                    values[_HEADERS] = None
                    parts = _encoded_parts(Properties(*values))
                    assert parts is not None
                    if b"".join(_PreEncodedProperties(parts, tag).encode()) != expected:
                        return False
    except Exception:  # any surprise in pika's internals: use the plain path
        return False
    finally:
        _ENCODED.clear()
    return True


_TAGGED_ENCODING_OK = _check_tagged_encoding()


class Delivery:
    """A message as it came off one channel; ``channel`` is needed to settle it."""

    __slots__ = (
        "channel",
        "queue",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
        "properties",
        "body",
    )

    def __init__(
        self,
        channel: ConsumerChannel,
        queue: str,
        delivery_tag: int,
        redelivered: bool,
        exchange: str,
        routing_key: str,
        properties: Properties,
        body: bytes,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.delivery_tag = delivery_tag
        self.redelivered = redelivered
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body

    def __repr__(self) -> str:
        return f"Delivery(queue={self.queue!r}, delivery_tag={self.delivery_tag})"


class Link:
    """One AMQP connection with failover over ``urls`` and automatic reconnects.

    ``on_open`` runs after every successful (re)connect, ``on_lost(reason)`` after every loss
    that we did not ask for. ``on_blocked(bool)`` reports connection.blocked/unblocked.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        name: str,
        on_open: Callable[[], None],
        on_lost: Callable[[str], None],
        on_blocked: Callable[[bool], None] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        heartbeat: int | None = None,
    ) -> None:
        self.urls = list(urls)
        self.name = name
        self._secrets = url_secrets(self.urls)
        self._on_open = on_open
        self._on_lost = on_lost
        self._on_blocked = on_blocked
        self._backoff = (backoff_base, backoff_cap)
        self._heartbeat = heartbeat
        self._index = 0
        self._attempt = 0
        self._conn: AsyncioConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._retry_handle: asyncio.TimerHandle | None = None
        self._closed: asyncio.Future[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self.connects = 0
        self.current_url: str | None = None
        self.last_error: str | None = None

    @property
    def is_open(self) -> bool:
        """Connected and usable."""
        return self._conn is not None and self._conn.is_open

    def start(self) -> asyncio.Future[None]:
        """Begin connecting; the future resolves at the first successful open."""
        self._loop = asyncio.get_running_loop()
        self._first = self._loop.create_future()
        self._connect()
        return self._first

    def safe(self, text: str) -> str:
        """``text`` without any password of this link's URLs."""
        return scrub(text, self._secrets)

    def _connect(self) -> None:
        self._retry_handle = None
        if self._closing:
            return
        url = self.urls[self._index % len(self.urls)]
        self.current_url = url
        try:
            params = pika.URLParameters(url)
        except Exception as exc:  # pika raises assorted errors on bad URLs
            self._schedule_retry(f"bad URL {redact_url(url)}: {type(exc).__name__}")
            return
        if self._heartbeat is not None:
            params.heartbeat = self._heartbeat
        params.client_properties = {
            "connection_name": f"{self.name} {socket.gethostname()} pid={os.getpid()}",
            "product": "priority_worker",
        }
        params.connection_attempts = 1
        params.socket_timeout = 5
        try:
            TlsSettings.from_env().configure(params, params.host)
        except (OSError, ssl.SSLError) as exc:
            self._schedule_retry(f"cannot load the TLS CA file or client certificate: {exc}")
            return
        log(logger, logging.DEBUG, "connecting", link=self.name, url=redact_url(url))
        self._conn = AsyncioConnection(
            params,
            on_open_callback=self._opened,
            on_open_error_callback=self._open_failed,
            on_close_callback=self._closed_cb,
            custom_ioloop=self._loop,
        )

    def _schedule_retry(self, reason: str) -> None:
        self.last_error = self.safe(reason)
        self._index += 1
        delay = reconnect_delay(self._attempt, base=self._backoff[0], cap=self._backoff[1])
        self._attempt += 1
        log(
            logger,
            logging.WARNING,
            "connect_failed",
            link=self.name,
            url=redact_url(self.current_url or ""),
            error=self.last_error,
            retry_in=round(delay, 2),
        )
        assert self._loop is not None
        self._retry_handle = self._loop.call_later(delay, self._connect)

    def _opened(self, conn: Any) -> None:
        self._attempt = 0
        self.connects += 1
        self.last_error = None
        if not coalesce_writes(conn):
            log(logger, logging.DEBUG, "write_coalescing_unavailable", link=self.name)
        conn.add_on_connection_blocked_callback(lambda *_: self._blocked(True))
        conn.add_on_connection_unblocked_callback(lambda *_: self._blocked(False))
        log(
            logger,
            logging.INFO,
            "connected",
            link=self.name,
            url=redact_url(self.current_url or ""),
        )
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self._on_open()

    def _blocked(self, blocked: bool) -> None:
        log(
            logger,
            logging.WARNING if blocked else logging.INFO,
            "blocked" if blocked else "unblocked",
            link=self.name,
        )
        if self._on_blocked is not None:
            self._on_blocked(blocked)

    def _open_failed(self, conn: Any, error: BaseException | str) -> None:
        self._conn = None
        reason = tls_reason(error) if isinstance(error, BaseException) else None
        self._schedule_retry(reason or f"{type(error).__name__}: {error}")

    def _closed_cb(self, conn: Any, reason: BaseException) -> None:
        self._conn = None
        if self._on_blocked is not None:
            self._on_blocked(False)
        if self._closing:
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
            return
        text = self.safe(f"{type(reason).__name__}: {reason}")
        log(logger, logging.WARNING, "connection_lost", link=self.name, reason=text)
        self._on_lost(text)
        # Reconnect to the same node first (a closed connection is usually not a dead node);
        # a failed attempt moves on to the next URL.
        self._index -= 1
        self._schedule_retry(text)

    def channel(self, on_open: Callable[[Any], None]) -> None:
        """Open a raw pika channel (used by the channel classes below)."""
        if self._conn is None or not self._conn.is_open:
            raise ChannelGone("connection is not open")
        self._conn.channel(on_open_callback=on_open)

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closing = True
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        if self._first is not None and not self._first.done():
            self._first.set_exception(
                ConnectionFailed(
                    f"{self.name}: closed before connecting to "
                    f"{', '.join(redact_url(u) for u in self.urls)}"
                )
            )
            self._first.exception()  # mark retrieved
        conn = self._conn
        if conn is None or conn.is_closed:
            return
        self._closed = asyncio.get_running_loop().create_future()
        if not conn.is_closing:
            conn.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), 10)
        except asyncio.TimeoutError:
            pass


class _Channel:
    """A pika channel with futures for its synchronous methods; all fail when it closes."""

    def __init__(self, link: Link, on_closed: Callable[[_Channel, str], None]) -> None:
        self.link = link
        self._on_closed_cb = on_closed
        self._ch: Any = None
        self._waiting: set[asyncio.Future[Any]] = set()
        self.close_reason: str | None = None
        self.close_code: int | None = None  # the broker's reply code (404, 406, ...) if any

    @property
    def is_open(self) -> bool:
        """The channel can be used."""
        return self._ch is not None and self._ch.is_open

    async def open(self) -> None:
        """Open the channel."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)

        def opened(ch: Any) -> None:
            self._ch = ch
            ch.add_on_close_callback(self._closed)
            self._opened(ch)
            if not fut.done():
                fut.set_result(None)

        self.link.channel(opened)
        try:
            await fut
        finally:
            self._waiting.discard(fut)

    def _opened(self, ch: Any) -> None:
        """Hook for subclasses."""

    def _forget(self) -> None:
        """Hook for subclasses: the channel closed."""

    def _closed(self, ch: Any, reason: BaseException) -> None:
        self._forget()
        code = getattr(reason, "reply_code", None)
        self.close_code = code if isinstance(code, int) else None
        self.close_reason = self.link.safe(
            f"{code} {getattr(reason, 'reply_text', reason)}" if code else str(reason)
        )
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(ChannelGone(self.close_reason, self.close_code))
        self._waiting.clear()
        self._on_closed_cb(self, self.close_reason)

    async def _rpc(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the pika channel method ``name`` (which takes ``callback=``) and wait for its
        -Ok frame."""
        return (await self._call(name, *args, **kwargs))[1]

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Like _rpc, returning what the method returned too (basic_consume's tag)."""
        if not self.is_open:
            raise ChannelGone(self.close_reason or "channel is not open")
        method = getattr(self._ch, name)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)

        def done(frame: Any) -> None:
            if not fut.done():
                fut.set_result(frame)

        try:
            result = method(*args, callback=done, **kwargs)
            return result, await fut
        except pika.exceptions.AMQPError as exc:
            raise ChannelGone(str(exc)) from exc
        finally:
            self._waiting.discard(fut)

    async def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (passive queue.declare). A 404 closes this channel."""
        frame = await self._rpc("queue_declare", queue, passive=True)
        return int(frame.method.message_count)

    async def declare_queue(self, queue: str, arguments: Mapping[str, Any]) -> None:
        """Declare a durable queue with ``arguments``."""
        await self._rpc("queue_declare", queue, durable=True, arguments=dict(arguments))

    def close(self) -> None:
        """Close the channel (no wait)."""
        if self.is_open:
            try:
                self._ch.close()
            except pika.exceptions.AMQPError:
                pass


class ConsumerChannel(_Channel):
    """One channel consuming one queue; its prefetch can change at run time.

    Changing the prefetch cancels the consumer, issues basic.qos and consumes again on the same
    channel: basic.qos only applies to consumers started after it, and deliveries of the old
    consumer stay ackable on this channel.

    Acks are batched: :meth:`ack` records the request and a callback at the next turn of the
    loop sends one ``basic.ack(multiple=True)`` for the longest run of oldest deliveries that
    are *all* acked, and a single ``basic.ack`` for every other requested tag. A multiple ack
    never covers a delivery that was not acked by the worker: every delivery of the channel is
    registered on arrival, and the run stops at the first one not acked (nacked ones are
    already settled and skipped). Nacks go out at once.
    """

    def __init__(
        self,
        link: Link,
        queue: str,
        *,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumerChannel], None],
        on_closed: Callable[[_Channel, str], None],
    ) -> None:
        super().__init__(link, on_closed)
        self.queue = queue
        self._on_delivery = on_delivery
        self._on_cancelled = on_cancelled
        self.consumer_tag: str | None = None
        self.prefetch: int | None = None
        # Ack batching: tags in arrival order (settled ones removed lazily from the front);
        # tag -> ack requested, for every delivery not yet settled on the wire; requested tags
        # not yet sent; the pending flush callback.
        self._arrived: deque[int] = deque()
        self._unsettled: dict[int, bool] = {}
        self._ack_requests: list[int] = []
        self._flush_handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _opened(self, ch: Any) -> None:
        self._loop = asyncio.get_running_loop()
        ch.add_on_cancel_callback(self._broker_cancelled)

    def _broker_cancelled(self, frame: Any) -> None:
        log(logger, logging.WARNING, "consumer_cancelled_by_broker", queue=self.queue)
        self.consumer_tag = None
        self.prefetch = None
        self._on_cancelled(self)

    def _deliver(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        tag = method.delivery_tag
        self._arrived.append(tag)
        self._unsettled[tag] = False
        self._on_delivery(
            Delivery(
                self,
                self.queue,
                tag,
                bool(method.redelivered),
                method.exchange,
                method.routing_key,
                to_properties(props),
                body,
            )
        )

    def _forget(self) -> None:
        # Delivery tags of a closed channel are never acked, here or elsewhere.
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        unsent = len(self._ack_requests)
        if unsent:
            log(logger, logging.WARNING, "acks_lost_with_channel", queue=self.queue, count=unsent)
        self._ack_requests = []
        self._arrived.clear()
        self._unsettled.clear()

    async def consume(self, prefetch: int) -> None:
        """(Re)start consuming at ``prefetch``."""
        await self.cancel()
        await self._rpc("basic_qos", prefetch_count=prefetch, global_qos=False)
        tag, _ = await self._call("basic_consume", self.queue, self._deliver)
        self.consumer_tag = tag
        self.prefetch = prefetch

    async def cancel(self) -> None:
        """Stop the consumer (deliveries already received stay ackable)."""
        tag, self.consumer_tag, self.prefetch = self.consumer_tag, None, None
        if tag is not None and self.is_open:
            await self._rpc("basic_cancel", tag)

    def ack(self, tag: int) -> bool:
        """Ack ``tag`` (sent at the next turn of the loop, possibly as part of a multiple ack);
        False when the channel is gone (the broker will redeliver)."""
        if not self.is_open:
            return False
        state = self._unsettled.get(tag)
        if state is None:  # not a delivery of this channel that we know of: ack it alone
            try:
                self._ch.basic_ack(tag)
                return True
            except pika.exceptions.AMQPError:
                return False
        if not state:
            self._unsettled[tag] = True
            self._ack_requests.append(tag)
            if self._flush_handle is None:
                loop = self._loop or asyncio.get_running_loop()
                self._flush_handle = loop.call_soon(self.flush_acks)
        return True

    def nack(self, tag: int, requeue: bool) -> bool:
        """basic.nack, sent at once; False when the channel is gone."""
        if not self.is_open:
            return False
        if self._unsettled.get(tag):  # its ack is already on the way: an ack it stays
            return True
        self._unsettled.pop(tag, None)
        try:
            self._ch.basic_nack(tag, requeue=requeue)
            return True
        except pika.exceptions.AMQPError:
            return False

    @property
    def acks_waiting(self) -> int:
        """Acks requested and not yet sent."""
        return len(self._ack_requests)

    def flush_acks(self) -> int:
        """Send the requested acks now; returns how many deliveries they settle."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        requests = self._ack_requests
        if not requests:
            return 0
        self._ack_requests = []
        if not self.is_open:  # the channel died: the broker requeued them
            return 0
        arrived, unsettled = self._arrived, self._unsettled
        # The oldest deliveries, while every one of them is acked: one multiple ack.
        last, run = 0, 0
        while arrived:
            tag = arrived[0]
            state = unsettled.get(tag)
            if state is None:  # settled earlier (nacked, or acked alone)
                arrived.popleft()
                continue
            if not state:  # not acked by the worker: the multiple ack must stop before it
                break
            arrived.popleft()
            del unsettled[tag]
            last = tag
            run += 1
        try:
            if run:
                self._ch.basic_ack(last, multiple=run > 1)
            # Acked deliveries behind one still being handled: one by one.
            singles = 0
            for tag in requests:
                if unsettled.pop(tag, None):
                    self._ch.basic_ack(tag)
                    singles += 1
        except pika.exceptions.AMQPError:
            return 0
        return run + singles


class ConfirmChannel(_Channel):
    """A channel in confirm mode. ``on_confirm(tag, multiple, ack)`` and
    ``on_return(tag, reply_code, reply_text)`` report the broker's answers; tags count from 1."""

    def __init__(
        self,
        link: Link,
        *,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: Callable[[_Channel, str], None],
    ) -> None:
        super().__init__(link, on_closed)
        self._on_confirm = on_confirm
        self._on_return = on_return
        self._next_tag = 1

    async def open(self) -> None:
        """Open the channel and select confirm mode."""
        await super().open()
        await self._rpc("confirm_delivery", self._confirmed)
        self._next_tag = 1

    def _opened(self, ch: Any) -> None:
        ch.add_on_return_callback(self._returned)

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        self._on_confirm(int(method.delivery_tag), bool(method.multiple), ack)

    def _returned(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        raw: Any = (props.headers or {}).get(PUBLISH_TAG_HEADER)
        try:
            tag = int(raw.decode() if isinstance(raw, bytes) else raw)
        except (TypeError, ValueError):
            return
        self._on_return(tag, int(method.reply_code), str(method.reply_text))

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties | None,
        mandatory: bool,
    ) -> int:
        """Send one message; returns its delivery tag. Raises ChannelGone when closed."""
        if self._ch is None:  # pika itself refuses a publish on a channel that is not open
            raise ChannelGone(self.close_reason or "channel is not open")
        tag = self._next_tag
        if mandatory:
            props = _tagged_pika(properties or _EMPTY_PROPERTIES, tag)
        else:
            props = to_pika(properties)
        try:
            self._ch.basic_publish(exchange, routing_key, body, props, mandatory=mandatory)
        except pika.exceptions.AMQPError as exc:
            raise ChannelGone(str(exc)) from exc
        self._next_tag += 1
        return tag
