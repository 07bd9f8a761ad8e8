"""The AMQP protocol: one connection per vhost, declares and deletes spread over channels.

pika sends one synchronous method at a time per channel and waits for its ``-Ok``, so the
declares are pipelined (``nowait`` + a barrier) over many channels of one connection per vhost,
and the frames pika buffers meanwhile go out joined, a few ``send`` calls instead of one a frame
(``socket_writes.coalesce_writes``, shared with priority_worker).
Which AMQP method writes which spec is one table (``_method``); which pika exception becomes
which ``_errors`` type is one map (``pika_error``). What is written when is ``_apply``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.channel
import pika.credentials
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from ._address import BrokerAddress, Node
from ._errors import ApplyError, AuthenticationFailed, BrokerError, BrokerUnreachable
from ._model import BindingSpec, ExchangeSpec, QueueSpec
from ._plan import Change
from .socket_writes import coalesce_writes
from .tls import tls_failure

Progress = Callable[[int], None]
AmqpSpec = ExchangeSpec | QueueSpec | BindingSpec


@dataclass(frozen=True)
class AmqpFailure:
    """One AMQP operation the broker refused."""

    change: Change
    reply_code: int
    reply_text: str

    def __str__(self) -> str:
        return f"{self.change.spec.label}: {self.reply_code} {self.reply_text}"


# ------------------------------------------------------------------ the one exception map


def pika_error(
    exc: BaseException,
    *,
    where: str,
    user: str,
    vhost: str,
    doing: str | None,
    connection_closed: bool,
) -> BrokerError | ApplyError | None:
    """The ``_errors`` type for a pika exception (or an OS error under pika).

    ``doing`` None: while connecting; otherwise what was being written. None means "not an
    error of the whole apply": while connecting, this node did not answer (try the next);
    while writing, the broker closed one channel to refuse one operation (an ``AmqpFailure``).
    """
    if isinstance(
        exc, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError
    ):
        return AuthenticationFailed(f"{where} refused user '{user}' (wrong user or password)")
    if isinstance(exc, pika.exceptions.ProbableAccessDeniedError):
        return BrokerError(
            f"{where} denied user '{user}' access to vhost '{vhost}' (the vhost does not "
            "exist, or the user has no permissions there)"
        )
    failed = tls_failure(exc, where)
    if failed is not None:
        return failed
    if doing is None:
        return None
    if isinstance(exc, pika.exceptions.ChannelClosed) and not connection_closed:
        return None
    # The connection is gone (closed by the broker or the network) part-way, or pika
    # cannot go on with the channel: either way the write stopped half-done.
    what = "connection" if connection_closed else "channel"
    return ApplyError(f"the {what} to {where} closed while applying {doing}: {exc}")


_CONNECT_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)


# ------------------------------------------------------------------ the one method table


def _method(spec: AmqpSpec, passive: bool = False) -> tuple[str, dict[str, Any]]:
    """The pika channel method that declares ``spec``, and its arguments."""
    if isinstance(spec, ExchangeSpec):
        return "exchange_declare", {
            "exchange": spec.name,
            "exchange_type": spec.type,
            "passive": passive,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "internal": spec.internal,
            "arguments": dict(spec.arguments) or None,
        }
    if isinstance(spec, QueueSpec):
        arguments = dict(spec.arguments)
        if spec.type != "classic":
            # Never write x-queue-type: classic (some versions then refuse a later redeclare).
            arguments["x-queue-type"] = spec.type
        return "queue_declare", {
            "queue": spec.name,
            "passive": passive,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "arguments": arguments or None,
        }
    if isinstance(spec, BindingSpec):
        if spec.destination_type == "queue":
            return "queue_bind", {
                "queue": spec.destination,
                "exchange": spec.source,
                "routing_key": spec.routing_key,
                "arguments": dict(spec.arguments) or None,
            }
        return "exchange_bind", {
            "destination": spec.destination,
            "source": spec.source,
            "routing_key": spec.routing_key,
            "arguments": dict(spec.arguments) or None,
        }
    raise TypeError(f"cannot declare {spec!r} over AMQP")


def _delete_method(spec: AmqpSpec, force: bool) -> tuple[str, dict[str, Any]]:
    """The pika channel method that deletes ``spec`` (unbinds a binding)."""
    if isinstance(spec, BindingSpec):
        name, kwargs = _method(spec)
        return name.replace("_bind", "_unbind"), kwargs
    if isinstance(spec, QueueSpec):
        # The broker's own check is authoritative (management counts are sampled).
        return "queue_delete", {"queue": spec.name, "if_unused": not force, "if_empty": not force}
    if isinstance(spec, ExchangeSpec):
        return "exchange_delete", {"exchange": spec.name}
    raise TypeError(f"cannot delete {spec!r} over AMQP")


def _amqp_spec(change: Change) -> AmqpSpec:
    spec = change.spec
    if not isinstance(spec, ExchangeSpec | QueueSpec | BindingSpec):
        raise TypeError(f"{change.kind} {change.name!r} is not written over AMQP")
    return spec


async def declare(ch: _Channel, change: Change, passive: bool = False) -> object:
    """Declare ``change``'s object and wait for the broker's ``-Ok``."""
    name, kwargs = _method(_amqp_spec(change), passive)
    return await ch.call(name, **kwargs)


async def declare_passive(ch: _Channel, change: Change) -> object:
    """Whether ``change``'s object exists: a 404 closes the channel (an ``AmqpFailure``)."""
    return await declare(ch, change, passive=True)


def delete_operation(force: bool) -> Callable[[_Channel, Change], Awaitable[object]]:
    """Delete (or unbind) ``change``'s object; queues only when unused and empty unless
    ``force``."""

    async def delete(ch: _Channel, change: Change) -> object:
        name, kwargs = _delete_method(_amqp_spec(change), force)
        return await ch.call(name, **kwargs)

    return delete


# ------------------------------------------------------------------ connection and channels


def _parameters(
    address: BrokerAddress, node: Node, vhost: str, name: str = "declare-amqp"
) -> pika.ConnectionParameters:
    ssl_options = None
    if node.tls:
        ssl_options = pika.SSLOptions(address.tls.context(), server_hostname=node.host)
    credentials: pika.credentials.PlainCredentials | pika.credentials.ExternalCredentials
    credentials = pika.PlainCredentials(address.user, address.password)
    if address.tls.auth_mechanism == "external":
        credentials = pika.credentials.ExternalCredentials()
    return pika.ConnectionParameters(
        host=node.host,
        port=node.port,
        virtual_host=vhost,
        credentials=credentials,
        ssl_options=ssl_options,
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=60,
        heartbeat=60,
        client_properties={"connection_name": name},
    )


class _Channel:
    """An asyncio face on one pika channel: ``await call(method, ...)``."""

    def __init__(self, channel: pika.channel.Channel) -> None:
        self.channel = channel
        self.pending: asyncio.Future[object] | None = None
        self.closed: BaseException | None = None
        channel.add_on_close_callback(self._on_close)

    def _on_close(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        self.closed = reason
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(reason)

    async def call(self, method: str, **kwargs: Any) -> object:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self.pending = future

        def done(frame: object) -> None:
            if not future.done():
                future.set_result(frame)

        getattr(self.channel, method)(callback=done, **kwargs)
        try:
            return await asyncio.wait_for(future, OPERATION_TIMEOUT)
        except asyncio.TimeoutError:
            # a stalled link would otherwise wait for the heartbeat to run out (minutes)
            raise ApplyError(
                f"the broker did not answer {method} within {OPERATION_TIMEOUT:g} s (timed "
                "out); the connection is stalled or the broker overloaded"
            ) from None

    def send(self, method: str, **kwargs: Any) -> None:
        """Send without waiting: pika sets ``nowait`` when there is no callback."""
        getattr(self.channel, method)(callback=None, **kwargs)


# Seconds one synchronous AMQP method (a declare, the barrier after a batch) may take.
OPERATION_TIMEOUT = 60.0


class AmqpSession:
    """One AMQP connection to one vhost, with helpers to run many operations on N channels."""

    def __init__(self, address: BrokerAddress, vhost: str, name: str = "declare-amqp") -> None:
        """``name``: the connection's name on the broker (a migration's lock is told by it)."""
        self.address = address
        self.vhost = vhost
        self.name = name
        self.connection: AsyncioConnection | None = None
        self.node: Node | None = None

    def _error(
        self, exc: BaseException, doing: str | None, node: Node | None = None
    ) -> BrokerError | ApplyError | None:
        node = node or self.node
        return pika_error(
            exc,
            where=node.amqp_display if node else str(self.address),
            user=self.address.user,
            vhost=self.vhost,
            doing=doing,
            connection_closed=self.connection is None or self.connection.is_closed,
        )

    async def open(self) -> None:
        """Connect to the first node that answers; every node's failure in the error."""
        errors: list[str] = []
        for node in self.address.nodes:
            try:
                self.connection = await self._open(node)
                self.node = node
                return
            except _CONNECT_ERRORS as exc:
                mapped = self._error(exc, None, node)
                if mapped is not None:
                    raise mapped from exc
                errors.append(f"{node.amqp_display}: {type(exc).__name__} {exc}".strip())
        raise BrokerUnreachable(
            self.address.redact("no broker node answered on AMQP: " + "; ".join(errors))
        )

    async def _open(self, node: Node) -> AsyncioConnection:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open(conn: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_error(_conn: AsyncioConnection, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(
                    exc
                    if isinstance(exc, BaseException)
                    else pika.exceptions.AMQPConnectionError(exc)
                )

        def on_closed(_conn: AsyncioConnection, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(exc)

        AsyncioConnection(
            _parameters(self.address, node, self.vhost, self.name),
            on_open_callback=on_open,
            on_open_error_callback=on_error,
            on_close_callback=on_closed,
            custom_ioloop=loop,
        )
        connection = await asyncio.wait_for(opened, timeout=20)
        coalesce_writes(connection)
        return connection

    async def channel(self) -> _Channel:
        """A new channel on the open connection."""
        assert self.connection is not None
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[pika.channel.Channel] = loop.create_future()
        self.connection.channel(on_open_callback=opened.set_result)
        return _Channel(await asyncio.wait_for(opened, timeout=20))

    async def close(self) -> None:
        """Close the connection, if open, and wait for it to close."""
        if self.connection is None or self.connection.is_closed:
            return
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()

        def on_closed(*_: object) -> None:
            if not closed.done():
                closed.set_result(None)

        self.connection.add_on_close_callback(on_closed)
        if not self.connection.is_closing:
            self.connection.close()
        try:
            await asyncio.wait_for(closed, timeout=5)
        except asyncio.TimeoutError:
            pass

    async def run(
        self,
        items: Sequence[Change],
        operation: Callable[[_Channel, Change], Awaitable[object]],
        channels: int,
        progress: Progress | None = None,
    ) -> list[AmqpFailure]:
        """Run ``operation`` for every change, on up to ``channels`` channels at once."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        failures: list[AmqpFailure] = []

        async def lane() -> None:
            ch = await self.channel()
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                try:
                    await operation(ch, item)
                except pika.exceptions.AMQPError as exc:
                    mapped = self._error(exc, item.spec.label)
                    if mapped is not None:
                        raise mapped from exc
                    assert isinstance(exc, pika.exceptions.ChannelClosed)
                    failures.append(AmqpFailure(item, exc.reply_code, exc.reply_text))
                    ch = await self.channel()
                if progress is not None:
                    progress(1)
            if ch.closed is None:
                ch.channel.close()

        count = max(1, min(channels, len(items)))
        await asyncio.gather(*(lane() for _ in range(count)))
        return failures

    async def run_pipelined(
        self,
        items: Sequence[Change],
        channels: int,
        progress: Progress | None = None,
        batch: int = 250,
    ) -> list[AmqpFailure]:
        """Declare without waiting for each ``-Ok``: ``nowait`` methods, then one barrier.

        pika sends one synchronous method at a time per channel; with ``nowait`` the broker
        sends no reply, so a batch streams out at once. A ``basic.qos`` after the batch is
        the barrier: the broker handles a channel's methods in order, so its ``-Ok`` means
        every declare before it succeeded. If the broker closed the channel instead, the
        batch is declared again one by one (declares are idempotent) to name the culprit.
        """
        failures: list[AmqpFailure] = []

        async def lane(work: list[Change]) -> None:
            ch = await self.channel()
            for start in range(0, len(work), batch):
                chunk = work[start : start + batch]
                try:
                    for item in chunk:
                        name, kwargs = _method(_amqp_spec(item))
                        ch.send(name, **kwargs)
                    await ch.call("basic_qos", prefetch_count=0)
                except pika.exceptions.AMQPError as exc:
                    mapped = self._error(exc, f"{len(chunk)} declarations")
                    if mapped is not None:
                        raise mapped from exc
                    failures.extend(await self.run(chunk, declare, 1))
                    ch = await self.channel()
                if progress is not None:
                    progress(len(chunk))
            if ch.closed is None:
                ch.channel.close()

        await asyncio.gather(*(lane(work) for work in lanes(items, channels)))
        return failures


def lanes(items: Sequence[Change], channels: int) -> list[list[Change]]:
    """Spread changes over channels; a queue's bindings follow it on the same channel.

    A channel's methods are handled in order, so a binding sent after its queue's declare
    on the same channel never sees the queue missing; queues and bindings then overlap.
    """
    count = max(1, min(channels, len(items)))
    found: list[list[Change]] = [[] for _ in range(count)]
    lane_of: dict[str, int] = {}
    for item in items:
        spec = item.spec
        key = (
            spec.destination
            if isinstance(spec, BindingSpec) and spec.destination_type == "queue"
            else spec.name
        )
        index = lane_of.setdefault(key, len(lane_of) % count)
        found[index].append(item)
    return [lane for lane in found if lane]
