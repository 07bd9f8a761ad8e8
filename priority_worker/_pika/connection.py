"""The connection: one AMQP connection on the running asyncio loop (Tornado's IOLoop runs on
it) that fails over across several URLs and reconnects with capped exponential backoff and
jitter.

:class:`PikaLink` is the :class:`~priority_worker._link.Link` of a real broker: it owns pika's
``AsyncioConnection`` and opens the channels of :mod:`priority_worker._pika.channels`. Its TLS setup
comes from the environment (:mod:`declare_amqp.tls`, read at each connect). pika's errors and
close reasons become one line each in :mod:`priority_worker._pika.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence

import pika
import pika.channel
import pika.connection
import pika.credentials
from pika.adapters.asyncio_connection import AsyncioConnection

from declare_amqp.socket_writes import coalesce_writes
from declare_amqp.tls import TlsError, TlsOptions
from declare_amqp.urls import redact_url, scrub, url_secrets

from .._backoff import reconnect_delay
from .._errors import ConnectionFailed
from .._link import ChannelClosed, ChannelGone, ConsumingChannel, Delivery, ignore_close
from .._log import log
from .channels import ConfirmChannel, ConsumerChannel, PikaChannel
from .errors import BrokerClosedChannel, PikaError, bad_url, connection_lost, open_failed

logger = logging.getLogger("priority_worker.amqp")

PROBE_TIMEOUT = 10.0  # seconds for ``PikaLink.consumable``'s whole try


def configure_tls(params: pika.connection.Parameters, tls: TlsOptions) -> None:
    """Put ``tls`` on pika connection parameters: a verifying context for an amqps:// URL, and
    EXTERNAL login with the client certificate when asked. Raises TlsError."""
    if params.ssl_options is not None:  # an amqps:// URL
        params.ssl_options = pika.SSLOptions(tls.context(), server_hostname=params.host)
    if tls.auth_mechanism == "external":
        params.credentials = pika.credentials.ExternalCredentials()


class PikaLink:
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
        self._where = ""  # host:port of the connect in progress, for error messages
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
        params = self._parameters(url, self.name)
        if isinstance(params, str):
            self._schedule_retry(params)
            return
        self._where = f"{params.host}:{params.port}"
        log(logger, logging.DEBUG, "connecting", link=self.name, url=redact_url(url))
        self._conn = AsyncioConnection(
            params,
            on_open_callback=self._opened,
            on_open_error_callback=self._open_failed,
            on_close_callback=self._closed_cb,
            custom_ioloop=self._loop,
        )

    def _parameters(self, url: str, name: str) -> pika.URLParameters | str:
        """pika's parameters of a connection to ``url`` named ``name``, or why there are none
        (a bad URL, a TLS setting)."""
        try:
            params = pika.URLParameters(url)
        except Exception as exc:  # pika raises assorted errors on bad URLs
            return bad_url(url, exc)
        if self._heartbeat is not None:
            params.heartbeat = self._heartbeat
        params.client_properties = {
            "connection_name": f"{name} {socket.gethostname()} pid={os.getpid()}",
            "product": "priority_worker",
        }
        params.connection_attempts = 1
        params.socket_timeout = 5
        try:
            configure_tls(params, TlsOptions.from_env())
        except TlsError as exc:
            return str(exc)
        return params

    async def consumable(self, queue: str) -> bool:
        """Whether ``queue`` takes a consumer now, tried on a short connection of its own
        ("NAME probe"): basic.qos 1, basic.consume, basic.cancel; True once the cancel-ok is
        back. A quorum queue whose record exists while its Raft member is not running yet
        (its declare in progress, as when a migration re-creates it) sends the consume-ok
        and then closes the connection (541): on this link that would requeue every
        delivery of every queue and lose the acks on their way. At most one message is
        delivered to the probe; it goes back with the probe's connection (redelivered).

        True as well when the probe cannot tell: its connection does not open (a connection
        limit, say) or the broker refuses the consume with a channel error (403, 404, ...),
        which the link's own channel then meets and handles as before. False when the
        probe's connection is closed on it, or no answer came within PROBE_TIMEOUT."""
        url = self.current_url or self.urls[0]
        params = self._parameters(url, f"{self.name} probe")
        if isinstance(params, str):
            return True
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()

        def finish(ok: bool) -> None:
            if not answer.done():
                answer.set_result(ok)

        def on_channel(ch: pika.channel.Channel) -> None:
            ch.add_on_close_callback(lambda _, why: finish(isinstance(why, BrokerClosedChannel)))
            ch.basic_qos(prefetch_count=1, callback=lambda _: consume(ch))

        def consume(ch: pika.channel.Channel) -> None:
            ch.basic_consume(
                queue,
                lambda *_: None,
                consumer_tag="probe",
                callback=lambda _: ch.basic_cancel("probe", callback=lambda _: finish(True)),
            )

        conn = AsyncioConnection(
            params,
            on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
            on_open_error_callback=lambda *_: finish(True),
            on_close_callback=lambda *_: finish(False),
            custom_ioloop=loop,
        )
        try:
            return await asyncio.wait_for(asyncio.shield(answer), PROBE_TIMEOUT)
        except asyncio.TimeoutError:
            return False
        finally:
            if not (conn.is_closed or conn.is_closing):
                try:
                    conn.close()
                except PikaError:
                    pass  # closing already

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

    def _opened(self, conn: AsyncioConnection) -> None:
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

    def _open_failed(self, conn: AsyncioConnection, error: BaseException | str) -> None:
        self._conn = None
        self._schedule_retry(open_failed(error, self._where))

    def _closed_cb(self, conn: AsyncioConnection, reason: BaseException) -> None:
        self._conn = None
        if self._on_blocked is not None:
            self._on_blocked(False)
        if self._closing:
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)
            return
        text = self.safe(connection_lost(reason))
        log(logger, logging.WARNING, "connection_lost", link=self.name, reason=text)
        self._on_lost(text)
        # Reconnect to the same node first (a closed connection is usually not a dead node);
        # a failed attempt moves on to the next URL.
        self._index -= 1
        self._schedule_retry(text)

    def open_pika_channel(self, on_open: Callable[[pika.channel.Channel], None]) -> None:
        """Open a raw pika channel (used by the channel classes of channels)."""
        if self._conn is None or not self._conn.is_open:
            raise ChannelGone("connection is not open")
        self._conn.channel(on_open_callback=on_open)

    def channel(self, on_closed: ChannelClosed = ignore_close) -> PikaChannel:
        """A plain channel (passive declares, queue declares); call ``open()`` on it."""
        return PikaChannel(self, on_closed)

    def consumer_channel(
        self,
        queue: str,
        *,
        on_delivery: Callable[[Delivery], None],
        on_cancelled: Callable[[ConsumingChannel], None],
        on_closed: ChannelClosed,
    ) -> ConsumerChannel:
        """A channel that will consume ``queue``; call ``open()`` on it."""
        return ConsumerChannel(
            self, queue, on_delivery=on_delivery, on_cancelled=on_cancelled, on_closed=on_closed
        )

    def confirm_channel(
        self,
        *,
        on_confirm: Callable[[int, bool, bool], None],
        on_return: Callable[[int, int, str], None],
        on_closed: ChannelClosed,
    ) -> ConfirmChannel:
        """A channel in confirm mode (selected by ``open()``)."""
        return ConfirmChannel(self, on_confirm=on_confirm, on_return=on_return, on_closed=on_closed)

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
