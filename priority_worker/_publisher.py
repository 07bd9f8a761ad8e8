"""Publishing with publisher confirms on a connection of its own."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ._config import broker_urls
from ._confirms import ConfirmTracker
from ._errors import (
    PublishConnectionLost,
    PublisherClosed,
    PublishError,
    PublishNacked,
    PublishReturned,
    PublishTimeout,
)
from ._link import AmqpChannel, ChannelGone, ConfirmingChannel, LinkFactory
from ._log import log
from ._metrics import Metrics
from ._model import Properties
from ._pika.connection import PikaLink
from ._tracing import Tracing, tracing_for

if TYPE_CHECKING:
    from ._tracing import TracerProvider

logger = logging.getLogger("priority_worker.publisher")


_NO_PROPERTIES = Properties()


class _Outgoing:
    """One publish: what to send, its future, and when its confirm is due (loop time)."""

    __slots__ = (
        "exchange",
        "routing_key",
        "body",
        "properties",
        "mandatory",
        "future",
        "deadline",
        "sends",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Properties,
        mandatory: bool,
        future: asyncio.Future[None],
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.body = body
        self.properties = properties
        self.mandatory = mandatory
        self.future = future
        self.deadline = 0.0
        self.sends = 0


class Publisher:
    """Publishes with publisher confirms; each ``publish()`` returns a future of the confirm.

    ``url``: one URL, a list, or a comma-separated string; the next one is tried when a node is
    down. The connection is its own (the broker blocks publishing connections under a memory or
    disk alarm; consumers elsewhere keep going). While blocked, or not connected, publishes wait
    in order and are sent when possible; ``confirm_timeout`` counts from the moment a message is
    sent. ``resend_unconfirmed=True`` re-sends, after a reconnect, what was sent but not
    confirmed when the connection died (the broker may then hold duplicates; they are counted in
    ``priority_worker_publish_resent_total``); otherwise those publishes fail with
    :class:`PublishConnectionLost`.

    Use on the event loop that runs it: ``await publisher.start()``, ``await
    publisher.publish(...)``, ``await publisher.close()``, or ``async with Publisher(...)``.
    ``link_factory``: makes the connection (default: pika's); tests pass an in-memory fake.
    ``tracer_provider``: trace each publish with this OpenTelemetry provider (a ``send`` span,
    its context in the W3C ``traceparent`` header); without it, the global provider if the
    application set one before ``start()``; otherwise no tracing and nothing of OpenTelemetry
    is imported (the ``otel`` extra; see the README's "Tracing").
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        confirm_timeout: float = 30.0,
        resend_unconfirmed: bool = False,
        metrics: Metrics | None = None,
        name: str = "priority-worker publisher",
        reconnect_max_delay: float = 30.0,
        link_factory: LinkFactory = PikaLink,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.urls = broker_urls(url)
        self._tracing: Tracing | None = (
            tracing_for(tracer_provider) if tracer_provider is not None else None
        )
        self.confirm_timeout = confirm_timeout
        self.resend_unconfirmed = resend_unconfirmed
        self.metrics = metrics or Metrics()
        self._link = link_factory(
            self.urls,
            name=name,
            on_open=self._link_open,
            on_lost=self._link_lost,
            on_blocked=self._set_blocked,
            backoff_cap=reconnect_max_delay,
        )
        self._channel: ConfirmingChannel | None = None
        self._tracker: ConfirmTracker[_Outgoing] = ConfirmTracker()
        self._backlog: deque[_Outgoing] = deque()
        self._blocked = False
        self._closed = False
        self._declared: dict[str, float] = {}
        self._admin: AmqpChannel | None = None
        self._opening: set[asyncio.Task[None]] = set()  # confirm channels being opened
        # Resolved, while close() waits, once nothing is pending or the connection is gone.
        self._drained: asyncio.Future[None] | None = None
        self._ready = asyncio.Event()
        self._admin_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # One timer for the oldest unconfirmed message (tag order is send order), instead of
        # one per message.
        self._timeout_handle: asyncio.TimerHandle | None = None
        self.metrics.confirms_pending.set_function(lambda: self.pending)

    # --- state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """The confirm channel is open."""
        return self._channel is not None and self._channel.is_open

    @property
    def blocked(self) -> bool:
        """The broker currently blocks this connection (memory or disk alarm)."""
        return self._blocked

    @property
    def pending(self) -> int:
        """Publishes not yet confirmed (sent or waiting to be sent)."""
        return len(self._tracker) + len(self._backlog)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (retrying with backoff) and wait until the confirm channel is open."""
        self._loop = asyncio.get_running_loop()
        if self._tracing is None:
            self._tracing = tracing_for(None)  # a global provider set by now
        self._link.start()
        await self._ready.wait()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for pending confirms, then close; what is left fails."""
        if self._closed:
            return
        if self.pending and self._link.is_open:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(self._drained, timeout)
            except asyncio.TimeoutError:
                pass
        self._closed = True
        for out in [*self._backlog, *(e.item for e in self._tracker.drain())]:
            self._fail(
                out,
                PublisherClosed(
                    "publisher closed before the confirm",
                    exchange=out.exchange,
                    routing_key=out.routing_key,
                ),
            )
        self._backlog.clear()
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
            self._timeout_handle = None
        await self._link.close()

    def _link_open(self) -> None:
        task = asyncio.ensure_future(self._open_channel())
        self._opening.add(task)  # a reference until it is done (the loop keeps only a weak one)
        task.add_done_callback(self._opening.discard)

    def _check_drained(self) -> None:
        """Wake close() when it waits and there is nothing left to wait for."""
        drained = self._drained
        if (
            drained is not None
            and not drained.done()
            and (not self.pending or not self._link.is_open)
        ):
            drained.set_result(None)

    async def _open_channel(self) -> None:
        channel = self._link.confirm_channel(
            on_confirm=self._confirmed,
            on_return=self._returned,
            on_closed=self._channel_closed,
        )
        try:
            await channel.open()
        except ChannelGone:
            return  # the connection went away again; _link_open runs on the next connect
        if self._link.connects > 1:
            self.metrics.reconnects.labels("publisher").inc()
        self._channel = channel
        self._declared.clear()
        self._ready.set()
        self._flush()

    def _channel_closed(self, channel: AmqpChannel, reason: str) -> None:
        if channel is not self._channel:
            return
        self._channel = None
        self._ready.clear()
        unconfirmed = [e.item for e in self._tracker.drain()]
        # With the connection still up, the broker closed just this channel because of one of
        # our publishes (e.g. 404: no such exchange); re-sending would close it again forever.
        connection_lost = not self._link.is_open
        if self.resend_unconfirmed and connection_lost and not self._closed:
            self._backlog.extendleft(reversed(unconfirmed))
            if unconfirmed:
                self.metrics.publish_resent.inc(len(unconfirmed))
                log(logger, logging.WARNING, "resending_unconfirmed", count=len(unconfirmed))
        else:
            for out in unconfirmed:
                what = "connection lost" if connection_lost else "channel closed by the broker"
                self._fail(
                    out,
                    PublishConnectionLost(
                        f"{what} before the confirm ({reason})",
                        exchange=out.exchange,
                        routing_key=out.routing_key,
                        reply_code=None if connection_lost else channel.close_code,
                    ),
                )
        if self._link.is_open and not self._closed:
            # Only the channel died (e.g. 404 on a publish to a missing exchange): reopen it.
            asyncio.get_running_loop().call_later(0.2, self._link_open)
        self._check_drained()

    def _link_lost(self, reason: str) -> None:
        """The connection died (channel close callbacks did the bookkeeping): a close()
        waiting for confirms stops waiting, as they cannot come any more."""
        self._check_drained()

    def _set_blocked(self, blocked: bool) -> None:
        self._blocked = blocked
        self.metrics.set_blocked(blocked)
        if not blocked:
            self._flush()

    # --- publishing ----------------------------------------------------------------------------

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        *,
        mandatory: bool = True,
        properties: Properties | None = None,
        headers: Mapping[str, object] | None = None,
        persistent: bool = True,
    ) -> asyncio.Future[None]:
        """Publish one message; the returned future resolves when the broker confirms it.

        Fails with :class:`PublishNacked`, :class:`PublishReturned` (unroutable and
        ``mandatory``), :class:`PublishTimeout`, :class:`PublishConnectionLost` or
        :class:`PublisherClosed`. ``headers`` are merged into ``properties.headers``;
        ``persistent`` sets delivery_mode 2 unless ``properties`` sets one.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._closed:
            future.set_exception(
                PublisherClosed("publisher is closed", exchange=exchange, routing_key=routing_key)
            )
            return future
        props = properties or _NO_PROPERTIES
        if headers:
            props = replace(props, headers={**(props.headers or {}), **headers})
        if props.delivery_mode is None and persistent:
            props = replace(props, delivery_mode=2)
        data = body.encode() if isinstance(body, str) else bytes(body)
        tracing = self._tracing
        if tracing is not None:
            props = tracing.sent(exchange, routing_key, props, future)
        out = _Outgoing(exchange, routing_key, data, props, mandatory, future)
        channel = self._channel
        if self._backlog or self._blocked or channel is None:
            self._backlog.append(out)
            self._flush()
            return future
        # Nothing waiting before it: send it now (the common case, without the backlog).
        try:
            tag = channel.publish(exchange, routing_key, data, props, mandatory)
        except ChannelGone:
            self._backlog.append(out)  # sent when the channel is back
            return future
        out.sends = 1
        out.deadline = loop.time() + self.confirm_timeout
        self._tracker.add(tag, out)
        if self._timeout_handle is None:
            self._schedule_timeout()
        return future

    def publish_blocking(
        self,
        exchange: str,
        routing_key: str,
        body: bytes | str,
        *,
        timeout: float | None = None,
        mandatory: bool = True,
        properties: Properties | None = None,
        headers: Mapping[str, object] | None = None,
        persistent: bool = True,
    ) -> None:
        """Like :meth:`publish`, from another thread (e.g. a sync handler): blocks until the
        broker confirms, raises the same errors (``TimeoutError`` after ``timeout`` s)."""
        loop = self._loop
        if loop is None or self._closed:
            raise PublisherClosed(
                "publisher is not running", exchange=exchange, routing_key=routing_key
            )

        async def confirmed() -> None:
            await self.publish(
                exchange,
                routing_key,
                body,
                mandatory=mandatory,
                properties=properties,
                headers=headers,
                persistent=persistent,
            )

        asyncio.run_coroutine_threadsafe(confirmed(), loop).result(timeout)

    def _flush(self) -> None:
        channel = self._channel
        backlog = self._backlog
        if not backlog or self._blocked or channel is None or not channel.is_open:
            return
        deadline = asyncio.get_running_loop().time() + self.confirm_timeout
        tracker = self._tracker
        while backlog:
            out = backlog[0]
            if out.future.done():  # cancelled by the caller
                backlog.popleft()
                continue
            try:
                tag = channel.publish(
                    out.exchange, out.routing_key, out.body, out.properties, out.mandatory
                )
            except ChannelGone:
                break
            backlog.popleft()
            out.sends += 1
            out.deadline = deadline
            tracker.add(tag, out)
        if self._timeout_handle is None and len(tracker):
            self._schedule_timeout()

    def _schedule_timeout(self) -> None:
        """Wake up when the oldest unconfirmed message is due."""
        oldest = self._tracker.oldest()
        if oldest is None:
            self._timeout_handle = None
            return
        loop = asyncio.get_running_loop()
        self._timeout_handle = loop.call_at(oldest[1].item.deadline, self._timed_out)

    def _timed_out(self) -> None:
        """Fail every unconfirmed message sent more than ``confirm_timeout`` ago."""
        self._timeout_handle = None
        now = asyncio.get_running_loop().time()
        while True:
            oldest = self._tracker.oldest()
            if oldest is None:
                break
            tag, entry = oldest
            if entry.item.deadline > now:
                break
            self._tracker.remove(tag)
            out = entry.item
            self._fail(
                out,
                PublishTimeout(
                    f"no confirm within {self.confirm_timeout:g}s",
                    exchange=out.exchange,
                    routing_key=out.routing_key,
                ),
            )
        if not self._closed:
            self._schedule_timeout()
        self._check_drained()

    def _confirmed(self, tag: int, multiple: bool, ack: bool) -> None:
        confirmed = 0
        for entry in self._tracker.settle(tag, multiple):
            out = entry.item
            if not ack:
                self._fail(
                    out,
                    PublishNacked(
                        "the broker nacked the message",
                        exchange=out.exchange,
                        routing_key=out.routing_key,
                    ),
                )
            elif entry.returned is not None:
                code, text = entry.returned
                self._fail(
                    out,
                    PublishReturned(
                        f"unroutable: {code} {text} (exchange={out.exchange!r}, "
                        f"routing_key={out.routing_key!r})",
                        exchange=out.exchange,
                        routing_key=out.routing_key,
                        reply_code=code,
                        reply_text=text,
                    ),
                )
            else:
                confirmed += 1
                if not out.future.done():
                    out.future.set_result(None)
        if confirmed:
            self.metrics.published.inc(confirmed)
        if self._drained is not None:
            self._check_drained()

    def _returned(self, tag: int, reply_code: int, reply_text: str) -> None:
        self._tracker.returned(tag, reply_code, reply_text)

    def _fail(self, out: _Outgoing, error: PublishError) -> None:
        self.metrics.publish_failures.labels(type(error).__name__).inc()
        if not out.future.done():
            out.future.set_exception(error)

    # --- queues the worker needs ----------------------------------------------------------------

    async def ensure_queue(
        self, name: str, arguments: Mapping[str, object], refresh_after: float | None = None
    ) -> None:
        """Declare a durable queue once per connection (again after ``refresh_after`` s)."""
        loop = asyncio.get_running_loop()
        last = self._declared.get(name)
        if last is not None and (refresh_after is None or loop.time() - last < refresh_after):
            return
        async with self._admin_lock:
            await self._ready.wait()
            if self._admin is None or not self._admin.is_open:
                self._admin = self._link.channel()
                await self._admin.open()
            try:
                await self._admin.declare_queue(name, arguments)
            except ChannelGone as exc:
                if exc.reply_code != 406:
                    raise
                # It exists with other arguments (made by an operator or declare-amqp): use it.
                log(logger, logging.WARNING, "queue_exists_with_other_arguments", queue=name)
            self._declared[name] = loop.time()
