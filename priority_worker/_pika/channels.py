"""The channel protocol on pika: one class per kind of channel the worker and publisher use.

:class:`PikaChannel` turns pika's callback-style synchronous methods into awaitables that all
fail with ChannelGone when the channel closes; :class:`ConsumerChannel` consumes one queue at a
prefetch that can change and batches its acks; :class:`ConfirmChannel` publishes in confirm
mode. They implement the protocols of :mod:`priority_worker._link`; the connection that opens
them is :class:`priority_worker._pika.connection.PikaLink`. pika's exceptions are translated by
:mod:`priority_worker._pika.errors`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Protocol

import pika
import pika.channel
import pika.frame
import pika.spec

from .._link import ChannelClosed, ChannelGone, ConsumingChannel, Delivery
from .._log import log
from .._model import Properties
from .errors import PikaError, channel_gone, close_details
from .wire import EMPTY_PROPERTIES, PUBLISH_TAG_HEADER, tagged_pika, to_pika, to_properties

logger = logging.getLogger("priority_worker.amqp")


class ChannelOpener(Protocol):
    """What a channel needs of its connection (see PikaLink)."""

    def open_pika_channel(self, on_open: Callable[[pika.channel.Channel], None]) -> None:
        """Open a pika channel on the connection; ``on_open`` gets it once open."""

    def safe(self, text: str) -> str:
        """``text`` without any password of the link's URLs."""


class PikaChannel:
    """A pika channel with futures for its synchronous methods; all fail when it closes."""

    def __init__(self, link: ChannelOpener, on_closed: ChannelClosed) -> None:
        self.link = link
        self._on_closed_cb = on_closed
        self._ch: pika.channel.Channel = None  # set when open
        self._waiting: set[asyncio.Future[object]] = set()
        self.close_reason: str | None = None
        self.close_code: int | None = None  # the broker's reply code (404, 406, ...) if any

    @property
    def is_open(self) -> bool:
        """The channel can be used."""
        return self._ch is not None and self._ch.is_open

    async def open(self) -> None:
        """Open the channel."""
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)

        def opened(ch: pika.channel.Channel) -> None:
            self._ch = ch
            ch.add_on_close_callback(self._closed)
            self._opened(ch)
            if not fut.done():
                fut.set_result(None)

        self.link.open_pika_channel(opened)
        try:
            await fut
        finally:
            self._waiting.discard(fut)

    def _opened(self, ch: pika.channel.Channel) -> None:
        """Hook for subclasses."""

    def _forget(self) -> None:
        """Hook for subclasses: the channel closed."""

    def _closed(self, ch: pika.channel.Channel, reason: BaseException) -> None:
        self._forget()
        self.close_code, text = close_details(reason)
        self.close_reason = self.link.safe(text)
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(ChannelGone(self.close_reason, self.close_code))
        self._waiting.clear()
        self._on_closed_cb(self, self.close_reason)

    async def _rpc(self, name: str, *args: object, **kwargs: object) -> pika.frame.Method:
        """Call the pika channel method ``name`` (which takes ``callback=``) and wait for its
        -Ok frame."""
        return (await self._call(name, *args, **kwargs))[1]

    async def _call(
        self, name: str, *args: object, **kwargs: object
    ) -> tuple[object, pika.frame.Method]:
        """Like _rpc, returning what the method returned too (basic_consume's tag)."""
        if not self.is_open:
            raise ChannelGone(self.close_reason or "channel is not open")
        method = getattr(self._ch, name)
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)

        def done(frame: pika.frame.Method) -> None:
            if not fut.done():
                fut.set_result(frame)

        try:
            result = method(*args, callback=done, **kwargs)
            return result, await fut
        except PikaError as exc:
            raise channel_gone(exc) from exc
        finally:
            self._waiting.discard(fut)

    async def ready_count(self, queue: str) -> int:
        """Messages ready in ``queue`` (passive queue.declare). A 404 closes this channel."""
        frame = await self._rpc("queue_declare", queue, passive=True)
        return int(frame.method.message_count)

    async def declare_queue(self, queue: str, arguments: Mapping[str, object]) -> None:
        """Declare a durable queue with ``arguments``."""
        await self._rpc("queue_declare", queue, durable=True, arguments=dict(arguments))

    def close(self) -> None:
        """Close the channel (no wait)."""
        if self._ch is not None and self._ch.is_open:
            try:
                self._ch.close()
            except PikaError:
                pass  # closing already: nothing more to do


class ConsumerChannel(PikaChannel):
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
        link: ChannelOpener,
        queue: str,
        *,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumingChannel], None],
        on_closed: ChannelClosed,
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

    def _opened(self, ch: pika.channel.Channel) -> None:
        self._loop = asyncio.get_running_loop()
        ch.add_on_cancel_callback(self._broker_cancelled)

    def _broker_cancelled(self, frame: pika.frame.Method) -> None:
        log(logger, logging.WARNING, "consumer_cancelled_by_broker", queue=self.queue)
        self.consumer_tag = None
        self.prefetch = None
        self._on_cancelled(self)

    def _deliver(
        self,
        ch: pika.channel.Channel,
        method: pika.spec.Basic.Deliver,
        props: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
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
        self.consumer_tag = str(tag)
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
            except PikaError:
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
        except PikaError:
            return False

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
        except PikaError:
            return 0
        return run + singles


class ConfirmChannel(PikaChannel):
    """A channel in confirm mode. ``on_confirm(tag, multiple, ack)`` and
    ``on_return(tag, reply_code, reply_text)`` report the broker's answers; tags count from 1."""

    def __init__(
        self,
        link: ChannelOpener,
        *,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: ChannelClosed,
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

    def _opened(self, ch: pika.channel.Channel) -> None:
        ch.add_on_return_callback(self._returned)

    def _confirmed(self, frame: pika.frame.Method) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        self._on_confirm(int(method.delivery_tag), bool(method.multiple), ack)

    def _returned(
        self,
        ch: pika.channel.Channel,
        method: pika.spec.Basic.Return,
        props: pika.spec.BasicProperties,
        body: bytes,
    ) -> None:
        raw: object = (props.headers or {}).get(PUBLISH_TAG_HEADER)
        if isinstance(raw, bytes):
            raw = raw.decode(errors="replace")
        if not isinstance(raw, (int, float, str)):
            return  # not one of ours
        try:
            tag = int(raw)
        except ValueError:
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
            props = tagged_pika(properties or EMPTY_PROPERTIES, tag)
        else:
            props = to_pika(properties)
        try:
            self._ch.basic_publish(exchange, routing_key, body, props, mandatory=mandatory)
        except PikaError as exc:
            raise channel_gone(exc) from exc
        self._next_tag += 1
        return tag
