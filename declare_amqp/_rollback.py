"""The net under apply: when the broker refuses a write or a connection drops part-way, undo
what this run wrote, so the broker is left as it was.

Validation and the plan-time checks should refuse everything the broker would; this is for
what still slips through (the broker changed between plan and apply, a permission the plan
could not read, a node that went away). Undone, newest first within each step:

1. bindings this run added are removed;
2. queues it created are deleted only while still empty and unused (``if-empty``,
   ``if-unused``: the broker's own check decides; a queue that took messages meanwhile stays,
   and is listed);
3. policies it wrote are restored to what the broker held before, or deleted when new (the
   policy kind's ``undo``; steps 1-4 walk ``kinds.TOPOLOGY_KINDS`` backwards, each kind by
   its writer);
4. exchanges it created are deleted;
5. the access objects it wrote, each by its kind's ``undo`` hook (``kinds._base``): users,
   permissions, topic permissions, operator policies, federation upstreams and shovels it
   created (and the objects of an access kind named by its ``AccessKindName``) are
   deleted; those it updated get back what the broker held before, read at plan time
   (``Change.actual``): a user its stored password hash, hashing algorithm, tags and
   limits, a permission its patterns, a vhost its metadata and limits;
6. vhosts it created are deleted, only when everything this run put into them was undone.

What cannot be undone is listed by name with the reason: a delete this run made (a queue's
messages are gone), an upstream or shovel it updated (the broker's URIs were kept only as
digests, never in the clear, so they cannot be written back), and whatever a step above
could not undo. No secret is shown: a user is restored by its hash, and a broker error is
the kind's own (redacted). A SIGKILL cannot roll back; a rerun converges from wherever the
broker was left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._address import BrokerAddress
from ._amqp import AmqpSession, delete_operation
from ._errors import DeclareAmqpError, printable
from ._management import ManagementClient
from ._plan import (
    ACCESS_KINDS,
    CREATE,
    DELETE,
    UPDATE,
    AccessKindName,
    Change,
    Kind,
    PlanKind,
    Writer,
)
from .kinds import TOPOLOGY_KINDS, kind_of, topology_kind_of

_TOPOLOGY = frozenset(k.kind for k in TOPOLOGY_KINDS)


def _is_access(change: Change) -> bool:
    """A write of an access kind: a built-in one's (a vhost's creation is the topology's;
    its settings' update is the access kind's), or one of a kind added by its own
    ``AccessKindName``."""
    if type(change.kind) is AccessKindName:
        return True
    return change.kind in ACCESS_KINDS and not (
        change.kind is Kind.VHOST and change.action == CREATE
    )


@dataclass(frozen=True)
class Rollback:
    """What the rollback undid and what it could not (each with its reason)."""

    undone: tuple[Change, ...]
    not_undone: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Whether the broker is as it was before the apply."""
        return not self.not_undone

    def summary(self) -> str:
        """One line for people; the names of what stays changed follow it in ``not_undone``."""
        if self.complete:
            return f"rolled back: the broker is as it was ({len(self.undone)} writes undone)"
        return (
            f"rolled back {len(self.undone)} writes, but {len(self.not_undone)} could not be "
            "undone: " + "; ".join(self.not_undone)
        )


def _inverse(change: Change) -> Change:
    """The delete that undoes ``change``'s create (over AMQP)."""
    return Change(DELETE, change.kind, change.vhost, change.name, actual=change.desired)


class _Undo:
    """One rollback: what was undone, what could not be (and why), its AMQP sessions."""

    def __init__(
        self, address: BrokerAddress, management: ManagementClient | None, channels: int
    ) -> None:
        self.address, self.management, self.channels = address, management, channels
        self.undone: list[Change] = []
        self.failed: list[str] = []
        self.blocked_vhosts: set[str] = set()  # a vhost something stays in is not deleted
        self.sessions: dict[str, AmqpSession] = {}

    def keep(self, change: Change, why: str) -> None:
        self.failed.append(printable(f"{change.spec.label}: {why}"))
        self.blocked_vhosts.add(change.vhost)

    def keep_the_undoable(self, newest_first: Sequence[Change]) -> None:
        """Deletes, and the topology's updates in place other than policies', are not
        undone (the access kinds' updates are: ``access_stage``)."""
        for change in newest_first:
            if change.action == DELETE:
                self.keep(change, "deleted by this apply; a delete cannot be undone")
            elif _is_access(change):
                continue
            elif change.kind not in _TOPOLOGY:
                self.keep(
                    change, f"{change.action.value}d; {change.kind} writes are not rolled back"
                )
            elif change.action == UPDATE and not topology_kind_of(change.kind).mutable:
                self.keep(change, "updated in place; not rolled back")

    async def session(self, vhost: str) -> AmqpSession:
        if vhost not in self.sessions:
            session = AmqpSession(self.address, vhost)
            await session.open()
            self.sessions[vhost] = session
        return self.sessions[vhost]

    async def amqp_stage(self, kind: PlanKind, newest_first: Sequence[Change]) -> None:
        """Delete this apply's creates of ``kind`` over AMQP, vhost by vhost."""
        by_vhost: dict[str, list[Change]] = {}
        for c in newest_first:
            if c.kind == kind and c.action == CREATE:
                by_vhost.setdefault(c.vhost, []).append(c)
        for vhost, items in by_vhost.items():
            pairs = [(_inverse(c), c) for c in items]
            try:
                session = await self.session(vhost)
                refused = await session.run(
                    [inverse for inverse, _ in pairs], delete_operation(False), self.channels
                )
            except DeclareAmqpError as exc:  # the connection is gone again
                for c in items:
                    self.keep(c, f"could not be undone: {exc}")
                continue
            refusals = {id(f.change): f for f in refused}
            for inverse, c in pairs:
                failure = refusals.get(id(inverse))
                if failure is None:
                    self.undone.append(c)
                else:
                    self.keep(c, f"could not be undone: {failure.reply_code} {failure.reply_text}")

    def access_stage(self, newest_first: Sequence[Change]) -> None:
        """Undo this apply's creates and updates of the access kinds, newest first, each by
        its kind's ``undo`` hook."""
        for c in newest_first:
            if not _is_access(c) or c.action not in (CREATE, UPDATE):
                continue
            if self.management is None:
                self.keep(c, "could not be undone without the management API")
                continue
            try:
                kind_of(c.kind).undo(self.management, c)
                self.undone.append(c)
            except DeclareAmqpError as exc:
                self.keep(c, f"could not be undone: {exc}")

    def http_stage(
        self,
        kind: PlanKind,
        undo: Callable[[ManagementClient, Change], None],
        newest_first: Sequence[Change],
    ) -> None:
        """Undo this apply's creates and updates of ``kind`` (a topology kind) over HTTP."""
        for c in newest_first:
            if c.kind != kind or c.action not in (CREATE, UPDATE) or _is_access(c):
                continue
            if kind is Kind.VHOST and c.name in self.blocked_vhosts:
                self.keep(c, "not deleted: something this apply put in it could not be undone")
                continue
            if self.management is None:
                self.keep(c, "could not be undone without the management API")
                continue
            try:
                undo(self.management, c)
                self.undone.append(c)
            except DeclareAmqpError as exc:
                self.keep(c, f"could not be undone: {exc}")

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()


async def roll_back(
    address: BrokerAddress,
    management: ManagementClient | None,
    done: Sequence[Change],
    channels: int,
) -> Rollback:
    """Undo ``done`` (the writes of this apply, in the order they were made)."""
    run = _Undo(address, management, channels)
    newest_first = list(reversed(done))
    run.keep_the_undoable(newest_first)
    try:
        # the topology kinds in the reverse of their apply order, each by its writer; the
        # vhosts last, after the access objects in them
        for kind in reversed(TOPOLOGY_KINDS):
            if kind.kind is Kind.VHOST:
                continue
            if kind.writer is Writer.AMQP:
                await run.amqp_stage(kind.kind, newest_first)
            else:
                run.http_stage(kind.kind, kind.undo, newest_first)
    finally:
        await run.close()
    run.access_stage(newest_first)
    run.http_stage(Kind.VHOST, topology_kind_of(Kind.VHOST).undo, newest_first)
    return Rollback(tuple(run.undone), tuple(run.failed))
