"""Queue migrations, carried out: the steps of ``_migration`` over AMQP and the management API.

Every step is idempotent and starts by reading where the migration is (``step_of`` on the
broker's queues and bindings, read through the management API, which reads the broker's
database, not sampled statistics), so a process killed at any point leaves a migration a
rerun finishes. Messages are moved by a pipelined, confirmed consumer and publisher
(``move``): a message is acknowledged on the queue it leaves only after the queue it goes to
confirmed it, so a kill loses nothing and at most re-sends what was in flight (a duplicate).
Imported only when a migration runs (pika).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from ._address import BrokerAddress
from ._amqp import AmqpSession, _Channel, _method
from ._errors import DeclareAmqpError
from ._management import ManagementClient
from ._migration import (
    LOCK_QUEUE,
    Record,
    choose_mover,
    holding_queue,
    holding_queue_name,
    same_shape,
    shape,
    step_of,
)
from ._model import QueueSpec
from ._move_gate import MoveGate
from ._move_progress import MoveProgress
from ._movers import MigrationFailed, move, shovel_move, wait_until
from ._plan import Change
from ._wire import WireConnection, WireError

# Queues of one vhost migrated at once: their steps (reads, rebinds, waits) overlap, while
# the moves among them are bounded by CONCURRENT_MOVES and the swaps run alone (``_move_gate``).
CONCURRENT_MIGRATIONS = 16
CONCURRENT_MOVES = 8
SWAPS_TOGETHER = False  # the swaps waiting at once run in turn (see _move_gate)
_POLL = 0.05
_SETTLE = 0.05  # after a rebind, before the holding queue is counted
_LOCK_PREFIX = "declare-amqp migrate"


class MigrationLocked(DeclareAmqpError):
    """Another process migrates queues of this vhost; nothing was migrated."""


@dataclass
class MigrationReport:
    """What one migration did (this run)."""

    vhost: str
    queue: str
    started_at: str  # the step this run found it at
    moved_out: int = 0  # queue -> holding queue
    moved_back: int = 0  # holding queue -> queue
    # Upper bounds of the duplicates this run made (see the README, "Migrating queues"):
    overlap_at_most: int = 0  # reached the holding queue while both queues were bound
    resent_at_most: int = 0  # moved again: redelivered, or handed back by a stopped shovel
    window_ms: float = 0.0  # from the delete's -Ok to the declare's -Ok
    held: dict[str, int] = field(default_factory=dict)  # delay queue -> messages held
    seconds: float = 0.0
    # When messages were moving: (start, end) seconds since this apply's migrations began.
    move_spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def duplicates_at_most(self) -> int:
        """An upper bound of the duplicates this run made (not of a killed earlier run's)."""
        return self.overlap_at_most + self.resent_at_most

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of what the migrations did."""
        return {
            "vhost": self.vhost,
            "queue": self.queue,
            "started_at": self.started_at,
            "moved_out": self.moved_out,
            "moved_back": self.moved_back,
            "duplicates_at_most": self.duplicates_at_most,
            "duplicates_from": {
                "bindings_overlap_at_most": self.overlap_at_most,
                "resent_at_most": self.resent_at_most,
            },
            "default_exchange_window_ms": round(self.window_ms, 2),
            "held": dict(self.held),
            "seconds": round(self.seconds, 3),
            "move_spans": [[round(a, 3), round(b, 3)] for a, b in self.move_spans],
        }


# Fault injection for the tests (and for anyone who wants to see a rerun finish a migration):
# DECLARE_AMQP_MIGRATE_KILL=POINT makes the process SIGKILL itself at POINT, one of
# KILL_POINTS; DECLARE_AMQP_MIGRATE_PAUSE=POINT:SECONDS sleeps there. A documented seam of the
# command (README, "Migrating queues"), kept as environment variables on purpose: the tests
# SIGKILL the real `declare-amqp` process at an exact step and rerun it, and an object handed
# in could not cross into that process. Unset, they cost one environment lookup per step.
KILL_POINTS = (
    "hold",  # the holding queue declared
    "divert",  # the holding queue bound, the queue not yet unbound
    "drain",  # half of the messages moved out (at least one)
    "swap",  # the queue deleted, not yet declared
    "restore",  # the queue bound again, the holding queue not yet unbound
    "fill",  # half of the messages moved back (at least one)
    "finish",  # everything moved back, the holding queue not yet deleted
)


def _kill_point(name: str) -> None:
    if os.environ.get("DECLARE_AMQP_MIGRATE_KILL") == name:
        os.kill(os.getpid(), signal.SIGKILL)


async def _point(name: str) -> None:
    _kill_point(name)
    pause = os.environ.get("DECLARE_AMQP_MIGRATE_PAUSE", "")
    if pause.partition(":")[0] == name:
        await asyncio.sleep(float(pause.partition(":")[2] or 1))


def lock_name() -> str:
    """The lock's connection name: who holds it, so a dead holder can be recognised."""
    return f"{_LOCK_PREFIX} pid={os.getpid()} host={socket.gethostname()}"


def _holder(name: str) -> tuple[int, str] | None:
    """(pid, host) from a lock connection's name, or None when it is not one."""
    if not name.startswith(_LOCK_PREFIX):
        return None
    fields = dict(p.split("=", 1) for p in name.split() if "=" in p)
    try:
        return int(fields["pid"]), fields["host"]
    except (KeyError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_migrations(
    address: BrokerAddress,
    management: ManagementClient,
    changes: Sequence[Change],
    progress: MoveProgress | None = None,
    mover: str = "amqp",
) -> list[MigrationReport]:
    """Carry out the plan's migrate changes, vhost by vhost, each under that vhost's lock.

    ``mover``: "amqp" moves messages with the tool's own confirmed consumer and publisher
    (any broker); "shovel" with the broker's dynamic shovels (the plugin must run); "auto"
    with the shovels where the plugin runs, else the tool's own."""
    mover = check_mover(management, mover)
    return asyncio.run(_run(address, management, changes, progress, mover))


def check_mover(management: ManagementClient, mover: str) -> str:
    """The mover that will run ("auto" resolved); refuse one the broker cannot run (before
    anything is written)."""
    if mover == "amqp":
        return mover
    enabled = management.shovels_enabled()
    if mover == "shovel" and not enabled:
        raise MigrationFailed(
            "--mover shovel: the rabbitmq_shovel plugin (with rabbitmq_shovel_management) is "
            "not enabled on the broker; nothing was changed. Use --mover amqp"
        )
    return choose_mover(mover, enabled)


async def _run(
    address: BrokerAddress,
    management: ManagementClient,
    changes: Sequence[Change],
    progress: MoveProgress | None,
    mover: str,
) -> list[MigrationReport]:
    reports: list[MigrationReport] = []
    epoch = time.monotonic()  # the reports' move spans count from here
    by_vhost: dict[str, list[Change]] = {}
    for c in changes:
        by_vhost.setdefault(c.vhost, []).append(c)
    for vhost, items in by_vhost.items():
        session = AmqpSession(address, vhost, name=lock_name())
        await session.open()
        wire: WireConnection | None = None
        try:
            await _lock(session, management, vhost)
            if mover == "amqp":
                wire = await _open_wire(session)
            # Queues are independent: a few migrate at once (each move keeps its own
            # channels), so one queue's swap and waits overlap another's moving.
            slots = asyncio.Semaphore(CONCURRENT_MIGRATIONS)
            queues = [c for c in items if isinstance(c.desired, QueueSpec)]
            turns = Turns.for_vhost()
            migrations = [
                _Migration(
                    session, management, vhost, c.desired, progress, mover, turns, epoch, wire
                )
                for c in queues
                if isinstance(c.desired, QueueSpec)
            ]
            # The fullest queues take the slots first (the semaphores serve in turn): with
            # fewer slots than queues, a long move started last would run alone at the end.
            # The reports keep the plan's order.
            order = sorted(range(len(queues)), key=lambda i: -_held_messages(queues[i]))
            done = await asyncio.gather(*(_limited(slots, migrations[i]) for i in order))
            by_index = dict(zip(order, done, strict=True))
            reports.extend(by_index[i] for i in range(len(queues)))
        finally:
            if wire is not None:
                await wire.close()
            await session.close()
    return reports


async def _open_wire(session: AmqpSession) -> WireConnection:
    """The own mover's connection, to the node ``session`` is connected to."""
    assert session.node is not None
    try:
        return await WireConnection.open(
            session.address, session.node, session.vhost, f"{session.name} mover"
        )
    except (WireError, OSError, asyncio.TimeoutError) as exc:
        raise MigrationFailed(
            f"the mover could not connect to {session.node.amqp_display}: {exc}; nothing was moved"
        ) from exc


def _held_messages(change: Change) -> int:
    """The messages the plan saw in the queue (0 when it did not say)."""
    messages = (change.migration or {}).get("messages")
    return messages if isinstance(messages, int) else 0


async def _limited(slots: asyncio.Semaphore, migration: _Migration) -> MigrationReport:
    async with slots:
        return await migration.run()


class Turns:
    """The vhost's ``MoveGate`` for the migrations' tasks: ``async with turns.moving()`` /
    ``turns.swapping()`` waits for the gate to admit the turn, and leaves it on the way out
    (also when the task is cancelled while it waits)."""

    def __init__(self, gate: MoveGate[object]) -> None:
        self.gate = gate
        self._waking: dict[object, asyncio.Future[None]] = {}

    @classmethod
    def for_vhost(cls) -> Turns:
        """The turns of one vhost's migrations: CONCURRENT_MOVES moves, swaps as
        SWAPS_TOGETHER says."""
        return cls(MoveGate(CONCURRENT_MOVES, swaps_together=SWAPS_TOGETHER))

    def moving(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A move's turn: at most the gate's number at once, none beside a swap."""
        return self._turn(self.gate.ask_move)

    def swapping(self) -> contextlib.AbstractAsyncContextManager[None]:
        """A swap's turn: no move runs meanwhile."""
        return self._turn(self.gate.ask_swap)

    @contextlib.asynccontextmanager
    async def _turn(self, ask: Callable[[object], list[object]]) -> AsyncIterator[None]:
        who = object()
        admitted = asyncio.get_running_loop().create_future()
        self._waking[who] = admitted
        try:
            self._wake(ask(who))
            await admitted
            yield
        finally:
            del self._waking[who]
            self._wake(self.gate.leave(who))

    def _wake(self, admitted: list[object]) -> None:
        for who in admitted:
            future = self._waking.get(who)
            if future is not None and not future.done():
                future.set_result(None)


async def _lock(session: AmqpSession, management: ManagementClient, vhost: str) -> None:
    """Declare the vhost's lock queue, exclusive to this connection.

    The broker answers 405 RESOURCE_LOCKED while another connection has it. When that
    connection's name says it belongs to a process of this host that no longer runs (its
    connection outlived it: a network the broker has not yet noticed dropping), it is closed,
    which deletes the lock, and the lock is taken.
    """
    for attempt in range(2):
        ch = await session.channel()
        try:
            await ch.call(
                "queue_declare",
                queue=LOCK_QUEUE,
                durable=False,
                exclusive=True,
                auto_delete=False,
                arguments={"x-queue-type": "classic"},
            )
            return
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 405:
                raise MigrationFailed(
                    f"taking the migration lock of vhost '{vhost}': {exc.reply_code} "
                    f"{exc.reply_text}"
                ) from exc
        holder = await _lock_holder(management, vhost)
        if holder is None:
            # Released while its holder was looked up: another migration ran meanwhile, so
            # this plan may be out of date.
            raise MigrationLocked(
                f"another migration ran in vhost '{vhost}' while this one started; nothing was "
                "migrated: plan again"
            )
        connection, who = holder
        parsed = _holder(who)
        if attempt == 0 and parsed is not None and connection:
            pid, host = parsed
            if host == socket.gethostname() and not _alive(pid):
                management.close_connection(
                    connection, f"stale migration lock: process {pid} is gone"
                )
                await wait_until(lambda: management.queue(vhost, LOCK_QUEUE) is None, 10, 0.1)
                continue
        raise MigrationLocked(
            f"another migration runs in vhost '{vhost}' (lock queue '{LOCK_QUEUE}' held by "
            f"connection '{who or connection}'); nothing was migrated. Wait for it, or "
            "close that connection if its process is gone"
        )
    raise MigrationLocked(
        f"another migration runs in vhost '{vhost}' (lock queue '{LOCK_QUEUE}' is held); "
        "nothing was migrated"
    )


async def _lock_holder(
    management: ManagementClient, vhost: str, timeout: float = 12.0
) -> tuple[str, str] | None:
    """(the broker's connection name, its client-given name) of the lock's holder; None when
    the lock is gone. Both come from sampled statistics (every 5 s by default): wait for them."""
    deadline = time.monotonic() + timeout
    connection = ""
    while True:
        info = management.queue(vhost, LOCK_QUEUE, stats=True)
        if info is None:
            return None
        owner = info.get("owner_pid_details")
        connection = str(owner.get("name") or "") if isinstance(owner, dict) else ""
        details = management.connection(connection) if connection else None
        if details is not None or time.monotonic() > deadline:
            props = (details or {}).get("client_properties") or {}
            return connection, str(props.get("connection_name") or "")
        await asyncio.sleep(0.5)


class _Migration:
    """One queue's migration: read the step, do it, until the queue has its new shape and
    its holding queue is gone."""

    def __init__(
        self,
        session: AmqpSession,
        management: ManagementClient,
        vhost: str,
        desired: QueueSpec,
        progress: MoveProgress | None,
        mover: str = "amqp",
        turns: Turns | None = None,
        epoch: float | None = None,
        wire: WireConnection | None = None,
    ) -> None:
        """``mover``: "amqp" (the tool's own consumer and publisher) or "shovel"; ``turns``:
        the vhost's gate, shared by concurrent migrations: their moves take turns with the
        swaps, so that a queue is deleted and declared again with no move beside it (the
        default-exchange window stays short); ``epoch``: the monotonic time the report's move
        spans count from (default: now); ``wire``: the own mover's connection (mover
        "amqp")."""
        self.wire = wire
        self.epoch = time.monotonic() if epoch is None else epoch
        self.mover = mover
        self.turns = turns or Turns.for_vhost()
        self.session = session
        self.http = management
        self.vhost = vhost
        self.name = desired.name
        self.desired = desired
        self.hold = holding_queue_name(desired.name)
        self.progress = progress
        self._control: _Channel | None = None

    async def _live(self) -> QueueSpec | None:
        # Management requests run in a thread: the moves of other queues go on meanwhile.
        info = await asyncio.to_thread(self.http.queue, self.vhost, self.name)
        if info is None:
            return None
        arguments = dict(info.get("arguments") or {})
        queue_type = arguments.pop("x-queue-type", None) or info.get("type") or "classic"
        return QueueSpec(
            vhost=self.vhost,
            name=self.name,
            type=str(queue_type),
            durable=bool(info.get("durable", True)),
            auto_delete=bool(info.get("auto_delete", False)),
            arguments=arguments,
        )

    async def _record(self) -> Record | None:
        info = await asyncio.to_thread(self.http.queue, self.vhost, self.hold)
        if info is None:
            return None
        text = (info.get("arguments") or {}).get("x-declare-amqp-migration")
        if not isinstance(text, str):
            raise MigrationFailed(
                f"queue '{self.hold}' (vhost '{self.vhost}') is in the way of the migration of "
                f"'{self.name}' and records none; nothing was changed"
            )
        return Record.from_argument(text)

    async def _step(self, record: Record) -> str:
        live = await self._live()
        bindings = [
            *await asyncio.to_thread(self.http.queue_bindings, self.vhost, self.name),
            *await asyncio.to_thread(self.http.queue_bindings, self.vhost, self.hold),
        ]
        return step_of(record, live, bindings)

    async def run(self) -> MigrationReport:
        started = time.monotonic()
        record = await self._record()
        if record is None:
            live = await self._live()
            if live is None:
                raise MigrationFailed(f"queue '{self.name}' (vhost '{self.vhost}') is gone")
            if same_shape(shape(live), shape(self.desired)):
                return MigrationReport(self.vhost, self.name, "done")  # done meanwhile
            record = Record(
                queue=self.name,
                before=shape(live),
                after=shape(self.desired),
                bindings=tuple(
                    (b.source, b.routing_key, dict(b.arguments))
                    for b in await asyncio.to_thread(
                        self.http.queue_bindings, self.vhost, self.name
                    )
                ),
            )
            report = MigrationReport(self.vhost, self.name, "hold")
            await self._declare(holding_queue(self.vhost, record))
            await _point("hold")
        else:
            report = MigrationReport(self.vhost, self.name, await self._step(record))
        for _ in range(100):  # each pass makes progress; the bound only stops a livelock
            step = await self._step(record)
            if step in ("divert", "restore"):
                away, to = (self.name, self.hold) if step == "divert" else (self.hold, self.name)
                report.overlap_at_most += await self._rebind_counted(record, to, away)
            elif step == "drain":
                report.moved_out += await self._move(self.name, self.hold, "drain", report)
                await self._settled()
                delay_queues = await asyncio.to_thread(self._delay_queues)
                await self._swap(record, report, delay_queues)
            elif step == "swap":
                await self._declare(record.target(self.vhost))  # after a crash: at once
            else:  # fill, then finish
                report.moved_back += await self._move(self.hold, self.name, "fill", report)
                await _point("finish")
                if await self._delete(self.hold, if_empty=True):
                    report.seconds = time.monotonic() - started
                    return report
        raise MigrationFailed(
            f"the migration of queue '{self.name}' (vhost '{self.vhost}') made no progress; "
            "what it left records it: rerun to finish"
        )

    async def _move(self, source: str, target: str, point: str, report: MigrationReport) -> int:
        """Move ``source``'s messages to ``target`` with this migration's mover; the moves
        that may have re-sent a message and the span of time go into ``report``. It waits
        for its turn (``turns``): only while moving does a migration count against the moves
        that may run at once."""
        on_half = (lambda: _kill_point(point)) if point else None
        async with self.turns.moving():
            started = time.monotonic()
            if self.mover == "shovel":
                result = await shovel_move(
                    self.session, self.http, self.vhost, source, target, self.progress, on_half
                )
            else:
                assert self.wire is not None, "the amqp mover needs its connection"
                result = await move(self.session, self.wire, source, target, self.progress, on_half)
            ended = time.monotonic()
        report.resent_at_most += result.resent_at_most
        report.move_spans.append((started - self.epoch, ended - self.epoch))
        return result.moved

    async def _rebind_counted(self, record: Record, to: str, away: str) -> int:
        """Rebind (``_rebind``); how many messages reached the holding queue meanwhile.

        Nothing consumes the holding queue during either rebind, so each message that reached
        both queues is among them: an upper bound of the duplicates the overlap made. A message
        routed just before the last unbind can still be on its way to the holding queue when
        the unbind's -Ok is back, so the count is taken after a short pause (what arrives in
        it only loosens the bound)."""
        before = await self._count(self.hold)
        await self._rebind(record, to=to, away=away)
        await asyncio.sleep(_SETTLE)
        return max(0, await self._count(self.hold) - before)

    async def _declare(self, spec: QueueSpec) -> None:
        name, kwargs = _method(spec)
        await self._call(name, **kwargs)

    async def _call(self, method: str, **kwargs: Any) -> Any:
        """One synchronous method on this migration's control channel (opened once)."""
        if self._control is None or self._control.closed is not None:
            self._control = await self.session.channel()
        try:
            return await self._control.call(method, **kwargs)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise MigrationFailed(
                f"migrating queue '{self.name}' (vhost '{self.vhost}'): {method} was refused: "
                f"{exc.reply_code} {exc.reply_text}; rerun to finish"
            ) from exc

    async def _count(self, queue: str) -> int:
        frame = await self._call("queue_declare", queue=queue, passive=True)
        return int(frame.method.message_count)

    async def _delete(self, queue: str, if_empty: bool) -> bool:
        """Delete ``queue``; False when ``if_empty`` and a message arrived meanwhile."""
        ch = await self.session.channel()
        try:
            await ch.call("queue_delete", queue=queue, if_empty=if_empty)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 406:
                return False
            raise
        if ch.closed is None:
            ch.channel.close()
        return True

    async def _rebind(self, record: Record, to: str, away: str) -> None:
        """Every recorded binding onto ``to`` first, then off ``away``: no message published
        in between is unroutable (one may reach both: a duplicate)."""
        for spec in record.binding_specs(self.vhost, to):
            name, kwargs = _method(spec)
            await self._call(name, **kwargs)
        await _point("divert" if to == self.hold else "restore")
        for spec in record.binding_specs(self.vhost, away):
            name, kwargs = _method(spec)
            await self._call(name.replace("_bind", "_unbind"), **kwargs)

    async def _swap(
        self, record: Record, report: MigrationReport, delay_queues: Sequence[str]
    ) -> None:
        """Delete the drained queue and declare it anew, its delay queues held meanwhile."""
        held = [await _Hold.start(self.session, q) for q in delay_queues]
        try:
            for h in held:
                report.held[h.queue] = report.held.get(h.queue, 0) + await h.all_taken()
            # What the delay queues dead-lettered before they were held: moved out too, now
            # that nothing more can come from them (a passive declare first: mostly none).
            if await self._count(self.name):
                report.moved_out += await self._move(self.name, self.hold, "", report)
            async with self.turns.swapping():
                await self._replace(record, report)
        finally:
            for h in held:
                h.release()

    async def _replace(self, record: Record, report: MigrationReport) -> None:
        """Delete the drained queue and declare it with its new shape: the default
        exchange's window, with no move beside it (``turns``)."""
        # The delete goes out without waiting for its -Ok (nowait) and the declare right
        # behind it on the same channel: the broker handles them in order, so the queue
        # is missing only for as long as the broker takes to do both. If the delete is
        # refused (a message came in through the default exchange) the broker closes the
        # channel and the declare is never handled: drain again.
        ch = await self.session.channel()
        sent = time.monotonic()
        # Quorum queues refuse if-empty (3.x closes the connection): for them the drained
        # count just read is the check, and a message that comes in through the default
        # exchange in between is lost with the queue (a limit the plan states).
        if_empty = str(record.before.get("type")) != "quorum"
        ch.send("queue_delete", queue=self.name, if_empty=if_empty)
        if os.environ.get("DECLARE_AMQP_MIGRATE_KILL") == "swap":
            # The kill point means "deleted, not yet declared": let the delete land first.
            await wait_until(lambda: self.http.queue(self.vhost, self.name) is None, 10, 0.1)
        await _point("swap")
        name, kwargs = _method(record.target(self.vhost))
        try:
            if isinstance(ch.closed, BaseException):
                raise ch.closed  # the delete was refused while we paused (tests)
            await ch.call(name, **kwargs)  # the default exchange's window ends here
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 406:
                return  # not empty: drain again
            raise
        report.window_ms += (time.monotonic() - sent) * 1000
        ch.channel.close()

    def _delay_queues(self) -> list[str]:
        from ._broker_json import from_definitions

        definitions = self.http.definitions(self.vhost) or {}
        topology = from_definitions(self.vhost, definitions)
        from ._migration import dead_letters_into

        return dead_letters_into(topology, self.vhost, self.name)

    async def _settled(self, timeout: float = 60.0) -> None:
        """Wait (bounded) until other consumers have settled what they took from the queue:
        a queue deleted under unacknowledged deliveries loses those a consumer requeues.

        The management API's counts are sampled, so this narrows the risk, it does not
        remove it; priority_worker settles its deliveries before the cancel reaches it.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = await asyncio.to_thread(self.http.queue, self.vhost, self.name, True) or {}
            if not info.get("consumers") or not info.get("messages_unacknowledged"):
                return
            await asyncio.sleep(0.5)


class _Hold:
    """A delay queue's messages held unacknowledged (they do not expire while held) until
    ``release`` requeues them; a process killed meanwhile requeues them by its death."""

    def __init__(self, session: AmqpSession, queue: str, ch: _Channel) -> None:
        self.session = session
        self.queue = queue
        self.ch = ch
        self.taken = 0

    @classmethod
    async def start(cls, session: AmqpSession, queue: str) -> _Hold:
        ch = await session.channel()
        hold = cls(session, queue, ch)
        await ch.call("basic_qos", prefetch_count=0)

        def on_message(*_: object) -> None:
            hold.taken += 1

        ch.channel.basic_consume(queue, on_message, auto_ack=False)
        return hold

    async def all_taken(self, timeout: float = 10.0) -> int:
        """Wait until the queue has no ready message left (all held); how many are held."""
        probe = await self.session.channel()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                frame: Any = await probe.call("queue_declare", queue=self.queue, passive=True)
                if frame.method.message_count == 0:
                    break
                await asyncio.sleep(_POLL)
        finally:
            if probe.closed is None:
                probe.channel.close()
        return self.taken

    def release(self) -> None:
        if self.ch.closed is None:
            # Requeued messages keep their expiry: the due ones dead-letter into the new queue.
            self.ch.channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
            self.ch.channel.close()
