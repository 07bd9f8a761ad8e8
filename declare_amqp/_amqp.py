"""AMQP writes: exchanges, queues and bindings, fast and in dependency order.

pika sends one synchronous method at a time per channel and waits for its ``-Ok``, so the
declares are pipelined (``nowait`` + a barrier) over many channels of one connection per vhost.
pika exceptions are translated here, and only here, into ``_errors`` types.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from ._address import DEFAULT_CHANNELS, BrokerAddress, Node
from ._broker import ManagementClient
from ._errors import (
    ApplyError,
    AuthenticationFailed,
    BrokerError,
    BrokerUnreachable,
)
from ._model import (
    BindingSpec,
    ExchangeSpec,
    QueueSpec,
    Topology,
)
from ._plan import CONFLICT, CREATE, DELETE, UPDATE, Change, Plan
from .tls import tls_failure

Progress = Callable[[int], None]


@dataclass(frozen=True)
class AmqpFailure:
    """One AMQP operation the broker refused."""

    change: Change
    reply_code: int
    reply_text: str

    def __str__(self) -> str:
        return f"{self.change.spec.label}: {self.reply_code} {self.reply_text}"


def _parameters(address: BrokerAddress, node: Node, vhost: str) -> pika.ConnectionParameters:
    ssl_options = None
    if node.tls:
        ssl_options = pika.SSLOptions(address.tls.context(), server_hostname=node.host)
    credentials: Any = pika.PlainCredentials(address.user, address.password)
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
        client_properties={"connection_name": "declare-amqp"},
    )


class _Channel:
    """An asyncio face on one pika channel: ``await call(method, ...)``."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.pending: asyncio.Future[Any] | None = None
        self.closed: BaseException | None = None
        channel.add_on_close_callback(self._on_close)

    def _on_close(self, _channel: Any, reason: BaseException) -> None:
        self.closed = reason
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(reason)

    async def call(self, method: str, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending = future

        def done(frame: Any) -> None:
            if not future.done():
                future.set_result(frame)

        getattr(self.channel, method)(callback=done, **kwargs)
        return await future


class AmqpSession:
    """One AMQP connection to one vhost, with helpers to run many operations on N channels."""

    def __init__(self, address: BrokerAddress, vhost: str) -> None:
        self.address = address
        self.vhost = vhost
        self.connection: Any = None
        self.node: Node | None = None

    async def open(self) -> None:
        errors: list[str] = []
        for node in self.address.nodes:
            try:
                self.connection = await self._open(node)
                self.node = node
                return
            except (
                pika.exceptions.ProbableAuthenticationError,
                pika.exceptions.AuthenticationError,
            ) as exc:
                raise AuthenticationFailed(
                    f"{node.amqp_display} refused user '{self.address.user}' "
                    "(wrong user or password)"
                ) from exc
            except pika.exceptions.ProbableAccessDeniedError as exc:
                raise BrokerError(
                    f"{node.amqp_display} denied user '{self.address.user}' access to vhost "
                    f"'{self.vhost}' (the vhost does not exist, or the user has no "
                    "permissions there)"
                ) from exc
            except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
                failed = tls_failure(exc, node.amqp_display)
                if failed is not None:
                    raise failed from exc
                errors.append(f"{node.amqp_display}: {type(exc).__name__} {exc}".strip())
        raise BrokerUnreachable(
            self.address.redact("no broker node answered on AMQP: " + "; ".join(errors))
        )

    async def _open(self, node: Node) -> Any:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()

        def on_open(conn: Any) -> None:
            if not opened.done():
                opened.set_result(conn)

        def on_error(_conn: Any, exc: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(
                    exc
                    if isinstance(exc, BaseException)
                    else pika.exceptions.AMQPConnectionError(exc)
                )

        def on_closed(_conn: Any, exc: BaseException) -> None:
            if not opened.done():
                opened.set_exception(exc)

        AsyncioConnection(
            _parameters(self.address, node, self.vhost),
            on_open_callback=on_open,
            on_open_error_callback=on_error,
            on_close_callback=on_closed,
            custom_ioloop=loop,
        )
        return await asyncio.wait_for(opened, timeout=20)

    async def channel(self) -> _Channel:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[Any] = loop.create_future()
        self.connection.channel(on_open_callback=opened.set_result)
        return _Channel(await asyncio.wait_for(opened, timeout=20))

    async def close(self) -> None:
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
        operation: Callable[[_Channel, Change], Awaitable[Any]],
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
                except pika.exceptions.ChannelClosedByBroker as exc:
                    failures.append(AmqpFailure(item, exc.reply_code, exc.reply_text))
                    ch = await self.channel()
                except pika.exceptions.ConnectionClosed as exc:
                    raise ApplyError(
                        f"the broker closed the connection while applying {item.spec.label}: {exc}"
                    ) from exc
                except pika.exceptions.ChannelClosed as exc:
                    if self.connection.is_closed:
                        raise BrokerUnreachable(
                            f"the connection to {self.node and self.node.amqp_display} closed "
                            f"during the apply: {exc}"
                        ) from exc
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
        lanes = _lanes(items, channels)

        async def lane(work: list[Change]) -> None:
            ch = await self.channel()
            for start in range(0, len(work), batch):
                chunk = work[start : start + batch]
                try:
                    for item in chunk:
                        ch.channel._send_method(_nowait_method(item.spec))
                    await ch.call("basic_qos", prefetch_count=0)
                except pika.exceptions.ConnectionClosed as exc:
                    raise ApplyError(
                        f"the broker closed the connection while applying "
                        f"{len(chunk)} declarations: {exc}"
                    ) from exc
                except pika.exceptions.ChannelClosed as exc:
                    if self.connection.is_closed:
                        raise ApplyError(
                            f"the broker closed the connection while applying "
                            f"{len(chunk)} declarations: {exc}"
                        ) from exc
                    failures.extend(await self.run(chunk, _declare, 1))
                    ch = await self.channel()
                if progress is not None:
                    progress(len(chunk))
            if ch.closed is None:
                ch.channel.close()

        await asyncio.gather(*(lane(work) for work in lanes))
        return failures


async def _declare(ch: _Channel, change: Change, passive: bool = False) -> Any:
    spec = change.spec
    if isinstance(spec, ExchangeSpec):
        return await ch.call(
            "exchange_declare",
            exchange=spec.name,
            exchange_type=spec.type,
            passive=passive,
            durable=spec.durable,
            auto_delete=spec.auto_delete,
            internal=spec.internal,
            arguments=dict(spec.arguments) or None,
        )
    if isinstance(spec, QueueSpec):
        arguments = dict(spec.arguments)
        if spec.type != "classic":
            # Never write x-queue-type: classic (some versions then refuse a later redeclare).
            arguments["x-queue-type"] = spec.type
        return await ch.call(
            "queue_declare",
            queue=spec.name,
            passive=passive,
            durable=spec.durable,
            auto_delete=spec.auto_delete,
            arguments=arguments or None,
        )
    if isinstance(spec, BindingSpec):
        if spec.destination_type == "queue":
            return await ch.call(
                "queue_bind",
                queue=spec.destination,
                exchange=spec.source,
                routing_key=spec.routing_key,
                arguments=dict(spec.arguments) or None,
            )
        return await ch.call(
            "exchange_bind",
            destination=spec.destination,
            source=spec.source,
            routing_key=spec.routing_key,
            arguments=dict(spec.arguments) or None,
        )
    raise TypeError(f"cannot declare {spec!r} over AMQP")


def _lanes(items: Sequence[Change], channels: int) -> list[list[Change]]:
    """Spread changes over channels; a queue's bindings follow it on the same channel.

    A channel's methods are handled in order, so a binding sent after its queue's declare
    on the same channel never sees the queue missing; queues and bindings then overlap.
    """
    count = max(1, min(channels, len(items)))
    lanes: list[list[Change]] = [[] for _ in range(count)]
    lane_of: dict[str, int] = {}
    for item in items:
        spec = item.spec
        key = (
            spec.destination
            if isinstance(spec, BindingSpec) and spec.destination_type == "queue"
            else spec.name
        )
        index = lane_of.setdefault(key, len(lane_of) % count)
        lanes[index].append(item)
    return [lane for lane in lanes if lane]


def _nowait_method(spec: Any) -> Any:
    """The AMQP method frame that declares ``spec`` with ``nowait`` set."""
    if isinstance(spec, ExchangeSpec):
        return pika.spec.Exchange.Declare(
            exchange=spec.name,
            type=spec.type,
            durable=spec.durable,
            auto_delete=spec.auto_delete,
            internal=spec.internal,
            nowait=True,
            arguments=dict(spec.arguments),
        )
    if isinstance(spec, QueueSpec):
        arguments = dict(spec.arguments)
        if spec.type != "classic":
            arguments["x-queue-type"] = spec.type
        return pika.spec.Queue.Declare(
            queue=spec.name,
            durable=spec.durable,
            auto_delete=spec.auto_delete,
            nowait=True,
            arguments=arguments,
        )
    if isinstance(spec, BindingSpec):
        if spec.destination_type == "queue":
            return pika.spec.Queue.Bind(
                queue=spec.destination,
                exchange=spec.source,
                routing_key=spec.routing_key,
                nowait=True,
                arguments=dict(spec.arguments),
            )
        return pika.spec.Exchange.Bind(
            destination=spec.destination,
            source=spec.source,
            routing_key=spec.routing_key,
            nowait=True,
            arguments=dict(spec.arguments),
        )
    raise TypeError(f"cannot declare {spec!r} over AMQP")


def _delete_operation(force: bool) -> Callable[[_Channel, Change], Awaitable[Any]]:
    async def delete(ch: _Channel, change: Change) -> Any:
        spec = change.spec
        if isinstance(spec, BindingSpec):
            if spec.destination_type == "queue":
                return await ch.call(
                    "queue_unbind",
                    queue=spec.destination,
                    exchange=spec.source,
                    routing_key=spec.routing_key,
                    arguments=dict(spec.arguments) or None,
                )
            return await ch.call(
                "exchange_unbind",
                destination=spec.destination,
                source=spec.source,
                routing_key=spec.routing_key,
                arguments=dict(spec.arguments) or None,
            )
        if isinstance(spec, QueueSpec):
            # The broker's own check is authoritative (management counts are sampled).
            return await ch.call(
                "queue_delete", queue=spec.name, if_unused=not force, if_empty=not force
            )
        if isinstance(spec, ExchangeSpec):
            return await ch.call("exchange_delete", exchange=spec.name)
        raise TypeError(f"cannot delete {spec!r} over AMQP")

    return delete


def _group(changes: Iterable[Change], *kinds: str) -> dict[str, list[Change]]:
    by_vhost: dict[str, list[Change]] = {}
    for c in changes:
        if c.kind in kinds:
            by_vhost.setdefault(c.vhost, []).append(c)
    return by_vhost


@dataclass(frozen=True)
class ApplyReport:
    """What apply did: the changes written, and those the broker refused."""

    written: tuple[Change, ...]
    failures: tuple[AmqpFailure, ...]


def apply_plan(
    address: BrokerAddress,
    management: ManagementClient | None,
    plan: Plan,
    *,
    channels: int = DEFAULT_CHANNELS,
    force: bool = False,
    progress: Progress | None = None,
) -> ApplyReport:
    """Write the plan's creates, updates and deletes in dependency order."""
    if management is not None and management.node is not None:
        # AMQP goes to the node whose management API the plan was read from, first.
        first = management.node
        address = dataclasses.replace(
            address, nodes=(first, *(n for n in address.nodes if n != first))
        )
    return asyncio.run(_apply(address, management, plan, channels, force, progress))


async def _apply(
    address: BrokerAddress,
    management: ManagementClient | None,
    plan: Plan,
    channels: int,
    force: bool,
    progress: Progress | None,
) -> ApplyReport:
    writes = plan.writes
    failures: list[AmqpFailure] = []
    done: list[Change] = []

    def tick(change: Change) -> None:
        done.append(change)
        if progress is not None:
            progress(1)

    sessions: dict[str, AmqpSession] = {}

    async def session(vhost: str) -> AmqpSession:
        if vhost not in sessions:
            s = AmqpSession(address, vhost)
            await s.open()
            sessions[vhost] = s
        return sessions[vhost]

    async def amqp_phase(
        changes: list[Change],
        operation: Callable[[_Channel, Change], Awaitable[Any]] | None,
    ) -> None:
        """``operation`` None: pipelined declares; otherwise one operation per change."""
        for vhost, items in _group(changes, "exchange", "queue", "binding").items():
            s = await session(vhost)
            if operation is None:
                found = await s.run_pipelined(items, channels, progress)
            else:
                found = await s.run(items, operation, channels, progress)
            failures.extend(found)
            failed = {id(f.change) for f in found}
            done.extend(c for c in items if id(c) not in failed)

    try:
        # Connect to every existing vhost that needs AMQP work *before* the first write, so
        # an unreachable AMQP port does not leave policies written and queues missing.
        new_vhosts = {c.name for c in writes if c.kind == "vhost" and c.action == CREATE}
        for vhost in dict.fromkeys(
            c.vhost for c in writes if c.kind in ("exchange", "queue", "binding")
        ):
            if vhost not in new_vhosts:
                await session(vhost)
        for c in writes:
            if c.kind == "vhost" and c.action == CREATE:
                assert management is not None
                management.put_vhost(c.name, getattr(c.desired, "settings", None))
                tick(c)
        creates = [c for c in writes if c.action == CREATE]
        await amqp_phase([c for c in creates if c.kind == "exchange"], None)
        for c in writes:
            if c.kind == "policy" and c.action in (CREATE, UPDATE):
                assert management is not None
                management.put_policy(c.spec)  # type: ignore[arg-type]
                tick(c)
        # Queues and their bindings in one pipelined phase (see _lanes).
        await amqp_phase(
            [c for c in creates if c.kind == "queue"] + [c for c in creates if c.kind == "binding"],
            None,
        )
        deletes = [c for c in writes if c.action == DELETE]
        delete = _delete_operation(force)
        await amqp_phase([c for c in deletes if c.kind == "binding"], delete)
        await amqp_phase([c for c in deletes if c.kind == "queue"], delete)
        await amqp_phase([c for c in deletes if c.kind == "exchange"], delete)
        for c in deletes:
            if c.kind == "policy":
                assert management is not None
                management.delete_policy(c.vhost, c.name)
                tick(c)
    finally:
        for s in sessions.values():
            await s.close()
    return ApplyReport(tuple(done), tuple(failures))


# ------------------------------------------------------------------ AMQP-only mode


def amqp_only_apply(
    address: BrokerAddress,
    desired: Topology,
    channels: int = DEFAULT_CHANNELS,
    progress: Progress | None = None,
) -> tuple[Plan, ApplyReport]:
    """Apply without the management API, as the original tool did, but conflict-safe.

    Phase 1 redeclares every object that already exists (a passive declare tells which)
    with the desired properties: equal ones are no-ops, different ones make the broker close
    the channel with 406 — a conflict, found before anything is written. Phase 2 creates
    the missing objects only if phase 1 found no conflict. It cannot see arguments RabbitMQ
    does not compare, bindings, policies or vhosts.
    """
    return asyncio.run(_amqp_only(address, desired, channels, progress))


async def _amqp_only(
    address: BrokerAddress, desired: Topology, channels: int, progress: Progress | None
) -> tuple[Plan, ApplyReport]:
    conflicts: list[Change] = []
    creates: list[Change] = []
    for vhost in desired.vhost_names():
        part = desired.in_vhost(vhost)
        s = AmqpSession(address, vhost)
        await s.open()
        try:
            objects = [Change(CREATE, "exchange", vhost, x.name, desired=x) for x in part.exchanges]
            objects += [Change(CREATE, "queue", vhost, q.name, desired=q) for q in part.queues]
            missing = await s.run(objects, lambda ch, c: _declare(ch, c, passive=True), channels)
            missing_ids = {id(f.change) for f in missing if f.reply_code == 404}
            existing = [c for c in objects if id(c) not in missing_ids]
            refused = await s.run(existing, _declare, channels)
            for f in refused:
                conflicts.append(
                    Change(
                        CONFLICT,
                        f.change.kind,
                        vhost,
                        f.change.name,
                        desired=f.change.desired,
                        message=f"the broker refused the redeclare: {f.reply_code} {f.reply_text}",
                    )
                )
            creates += [c for c in objects if id(c) in missing_ids]
            creates += [Change(CREATE, "binding", vhost, b.name, desired=b) for b in part.bindings]
        finally:
            await s.close()
    if conflicts:
        return Plan(tuple(conflicts), vhosts=tuple(desired.vhost_names())), ApplyReport((), ())
    plan = Plan(tuple(creates), vhosts=tuple(desired.vhost_names()))
    report = await _apply(address, None, plan, channels, False, progress)
    if report.failures:
        raise ApplyError("the broker refused: " + "; ".join(str(f) for f in report.failures))
    return plan, report
