"""An in-memory stand-in for the broker behind priority_worker's link seam (priority_worker._link).

``FakeAmqp`` holds what a test needs to see or steer: the queues declared, every message
published, each delivery's settlement, exchanges that are missing (a publish to one closes the
channel with 404, as RabbitMQ does), routing keys nothing is bound to (a mandatory publish is
returned) and whether the broker nacks publishes. ``FakeAmqp.link_factory`` goes to
``Worker(..., link_factory=...)`` or ``Publisher(...)``; both links of a worker then share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from priority_worker import Properties
from priority_worker._link import (
    AmqpChannel,
    ChannelClosed,
    ChannelGone,
    ConsumingChannel,
    Delivery,
    ignore_close,
)


@dataclass
class Published:
    """One message a confirm channel sent."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Properties
    mandatory: bool

    @property
    def headers(self) -> Mapping[str, object]:
        return self.properties.headers or {}


@dataclass
class FakeAmqp:
    """The broker side of every fake link made by ``link_factory``."""

    declared: dict[str, dict[str, object]] = field(default_factory=dict)
    published: list[Published] = field(default_factory=list)
    acked: list[tuple[str, int]] = field(default_factory=list)
    nacked: list[tuple[str, int, bool]] = field(default_factory=list)  # (queue, tag, requeue)
    missing_exchanges: set[str] = field(default_factory=set)
    unroutable: set[tuple[str, str]] = field(default_factory=set)  # (exchange, routing key)
    nack_publishes: bool = False
    links: list[FakeLink] = field(default_factory=list)

    def link_factory(self, urls: Sequence[str], **kwargs: object) -> FakeLink:
        link = FakeLink(self, **kwargs)  # type: ignore[arg-type]
        self.links.append(link)
        return link

    def consumer(self, queue: str) -> FakeConsumerChannel:
        """The open channel consuming ``queue``."""
        for link in self.links:
            for ch in link.channels:
                if isinstance(ch, FakeConsumerChannel) and ch.queue == queue and ch.is_open:
                    return ch
        raise AssertionError(f"nothing consumes {queue}")

    def settled(self, queue: str) -> int:
        """Deliveries of ``queue`` acked or nacked so far."""
        return sum(q == queue for q, _ in self.acked) + sum(q == queue for q, *_ in self.nacked)


class FakeChannel:
    """A plain channel: passive declares answer from ``FakeAmqp.declared`` (404 closes it)."""

    def __init__(self, link: FakeLink, on_closed: ChannelClosed) -> None:
        self.link = link
        self.amqp = link.amqp
        self._on_closed = on_closed
        self._open = False
        self.close_reason: str | None = None
        self.close_code: int | None = None

    @property
    def is_open(self) -> bool:
        return self._open and self.link.is_open

    async def open(self) -> None:
        if not self.link.is_open:
            raise ChannelGone("connection is not open")
        self._open = True
        self.link.channels.append(self)

    def closed_by_broker(self, code: int, text: str) -> None:
        """The broker closes this channel (e.g. 404 after a publish to a missing exchange)."""
        if not self._open:
            return
        self._open = False
        self.close_code, self.close_reason = code, f"{code} {text}"
        self._on_closed(self, self.close_reason)

    def _check(self) -> None:
        if not self.is_open:
            raise ChannelGone(self.close_reason or "channel is not open", self.close_code)

    async def ready_count(self, queue: str) -> int:
        self._check()
        if queue not in self.amqp.declared:
            self.closed_by_broker(404, f"NOT_FOUND - no queue '{queue}'")
            raise ChannelGone(self.close_reason or "", 404)
        return 0

    async def declare_queue(self, queue: str, arguments: Mapping[str, object]) -> None:
        self._check()
        self.amqp.declared[queue] = dict(arguments)

    def close(self) -> None:
        self._open = False


class FakeConsumerChannel(FakeChannel):
    """Consumes one queue; the test hands it deliveries with :meth:`deliver`."""

    def __init__(
        self,
        link: FakeLink,
        queue: str,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumingChannel], None],
        on_closed: ChannelClosed,
    ) -> None:
        super().__init__(link, on_closed)
        self.queue = queue
        self._on_delivery = on_delivery
        self.prefetch: int | None = None
        self._next_tag = 1
        self._unsettled: set[int] = set()

    async def consume(self, prefetch: int) -> None:
        self._check()
        self.prefetch = prefetch

    async def cancel(self) -> None:
        self.prefetch = None

    def deliver(self, body: bytes, properties: Properties | None = None) -> int:
        """The broker delivers one message on this channel; returns its delivery tag."""
        tag, self._next_tag = self._next_tag, self._next_tag + 1
        self._unsettled.add(tag)
        props = properties or Properties()
        self._on_delivery(Delivery(self, self.queue, tag, False, "", self.queue, props, body))
        return tag

    def ack(self, tag: int) -> bool:
        if not self.is_open or tag not in self._unsettled:
            return False
        self._unsettled.discard(tag)
        self.amqp.acked.append((self.queue, tag))
        return True

    def nack(self, tag: int, requeue: bool) -> bool:
        if not self.is_open or tag not in self._unsettled:
            return False
        self._unsettled.discard(tag)
        self.amqp.nacked.append((self.queue, tag, requeue))
        return True

    def flush_acks(self) -> int:
        return 0  # acks are settled at once here


class FakeConfirmChannel(FakeChannel):
    """Confirm mode: each publish is confirmed (or nacked, or returned) at the next loop turn."""

    def __init__(
        self,
        link: FakeLink,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: ChannelClosed,
    ) -> None:
        super().__init__(link, on_closed)
        self._on_confirm = on_confirm
        self._on_return = on_return
        self._next_tag = 1

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties | None,
        mandatory: bool,
    ) -> int:
        self._check()
        tag, self._next_tag = self._next_tag, self._next_tag + 1
        message = Published(exchange, routing_key, body, properties or Properties(), mandatory)
        loop = asyncio.get_running_loop()
        if exchange in self.amqp.missing_exchanges:
            text = f"NOT_FOUND - no exchange '{exchange}' in vhost '/'"
            loop.call_soon(self.closed_by_broker, 404, text)
            return tag
        self.amqp.published.append(message)
        if mandatory and (exchange, routing_key) in self.amqp.unroutable:
            loop.call_soon(self._on_return, tag, 312, "NO_ROUTE")
        loop.call_soon(self._on_confirm, tag, False, not self.amqp.nack_publishes)
        return tag


class FakeLink:
    """A connection that opens at once and stays open until :meth:`lose` or :meth:`close`."""

    def __init__(
        self,
        amqp: FakeAmqp,
        *,
        name: str,
        on_open: Callable[[], None],
        on_lost: Callable[[str], None] | None = None,
        on_blocked: Callable[[bool], None] | None = None,
        backoff_cap: float = 30.0,
        heartbeat: int | None = None,
    ) -> None:
        self.amqp = amqp
        self.name = name
        self._on_open = on_open
        self._on_lost = on_lost
        self._open = False
        self.connects = 0
        self.channels: list[FakeChannel] = []

    @property
    def is_open(self) -> bool:
        return self._open

    def start(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        self._open = True
        self.connects += 1
        loop.call_soon(self._on_open)
        opened: asyncio.Future[None] = loop.create_future()
        opened.set_result(None)
        return opened

    async def close(self) -> None:
        self._open = False

    def safe(self, text: str) -> str:
        return text

    def channel(self, on_closed: ChannelClosed = ignore_close) -> AmqpChannel:
        return FakeChannel(self, on_closed)

    async def consumable(self, queue: str) -> bool:
        return True  # every fake queue takes a consumer once it exists

    def consumer_channel(
        self,
        queue: str,
        *,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumingChannel], None],
        on_closed: ChannelClosed,
    ) -> FakeConsumerChannel:
        return FakeConsumerChannel(self, queue, on_delivery, on_cancelled, on_closed)

    def confirm_channel(
        self,
        *,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: ChannelClosed,
    ) -> FakeConfirmChannel:
        return FakeConfirmChannel(self, on_confirm, on_return, on_closed)
