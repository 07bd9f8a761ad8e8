"""The seam between the worker and the broker: what a link (one connection) and its channels do.

The worker and the publisher only ever use these protocols. :mod:`priority_worker._pika.connection`
and :mod:`priority_worker._pika.channels` implement them on pika; ``tests/worker/fake_link.py``
implements them in memory, so the settle, retry and dead-letter paths run in unit tests without
a broker. Pure: no I/O, no pika, no tornado.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ._errors import PriorityWorkerError
from ._model import Properties


class ChannelGone(PriorityWorkerError):
    """The channel (or its connection) closed before the operation finished."""

    def __init__(self, reason: str, reply_code: int | None = None) -> None:
        super().__init__(reason)
        self.reply_code = reply_code


class AmqpChannel(Protocol):
    """One channel with the synchronous methods the worker needs; all raise ChannelGone once
    it closed. ``close_reason``/``close_code``: why it closed (the broker's reply code)."""

    close_reason: str | None
    close_code: int | None

    @property
    def is_open(self) -> bool:
        """The channel can be used."""

    async def open(self) -> None:
        """Open the channel (and, for a confirming one, enter confirm mode)."""

    async def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (passive queue.declare)."""

    async def declare_queue(self, queue: str, arguments: Mapping[str, object]) -> None:
        """Declare a durable queue with ``arguments``."""

    def close(self) -> None:
        """Close the channel (no wait)."""


class ConsumingChannel(AmqpChannel, Protocol):
    """A channel consuming one queue at a prefetch that can change; settles its deliveries
    (``ack``/``nack`` answer False when the channel is gone: the broker redelivers)."""

    queue: str

    async def consume(self, prefetch: int) -> None:
        """(Re)start consuming at ``prefetch``."""

    async def cancel(self) -> None:
        """Stop the consumer (deliveries already received stay ackable)."""

    def ack(self, tag: int) -> bool:
        """Ack ``tag`` (possibly as part of a multiple ack); False when the channel is gone."""

    def nack(self, tag: int, requeue: bool) -> bool:
        """basic.nack, sent at once; False when the channel is gone."""

    def flush_acks(self) -> int:
        """Send the requested acks now; returns how many deliveries they settle."""


class ConfirmingChannel(AmqpChannel, Protocol):
    """A channel in confirm mode; ``publish`` returns the message's delivery tag."""

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties | None,
        mandatory: bool,
    ) -> int:
        """Send one message; returns its delivery tag. Raises ChannelGone when closed."""


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
        channel: ConsumingChannel,
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


ChannelClosed = Callable[[AmqpChannel, str], None]


def ignore_close(channel: AmqpChannel, reason: str) -> None:
    """An ``on_closed`` for channels whose close needs no action (probes, declares)."""


class Link(Protocol):
    """One connection that reconnects by itself. ``connects`` counts successful opens."""

    connects: int

    @property
    def is_open(self) -> bool:
        """Connected and usable."""

    def start(self) -> asyncio.Future[None]:
        """Begin connecting; the future resolves at the first successful open."""

    async def close(self) -> None:
        """Close the connection and stop reconnecting."""

    def safe(self, text: str) -> str:
        """``text`` without any password of the link's URLs."""

    def channel(self, on_closed: ChannelClosed = ignore_close) -> AmqpChannel:
        """A plain channel (passive declares, queue declares); call ``open()`` on it."""

    async def consumable(self, queue: str) -> bool:
        """Whether ``queue`` takes a consumer now, tried where a refusal cannot hurt this
        link: a quorum queue whose record exists before its Raft member runs (its declare
        in progress) makes the broker close the whole connection on basic.consume (541)."""

    def consumer_channel(
        self,
        queue: str,
        *,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumingChannel], None],
        on_closed: ChannelClosed,
    ) -> ConsumingChannel:
        """A channel for consuming ``queue``, with the callbacks it reports to."""

    def confirm_channel(
        self,
        *,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: ChannelClosed,
    ) -> ConfirmingChannel:
        """A channel in confirm mode; ``on_confirm`` and ``on_return`` hear the broker."""


class LinkFactory(Protocol):
    """Makes a link: ``on_open`` after every (re)connect, ``on_lost(reason)`` after every loss
    not asked for, ``on_blocked(bool)`` on connection.blocked/unblocked."""

    def __call__(
        self,
        urls: Sequence[str],
        *,
        name: str,
        on_open: Callable[[], None],
        on_lost: Callable[[str], None],
        on_blocked: Callable[[bool], None] | None = None,
        backoff_cap: float = 30.0,
        heartbeat: int | None = None,
    ) -> Link: ...
