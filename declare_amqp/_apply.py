"""Applying a plan: its changes written phase by phase, in the order ``_plan.PHASES`` defines.

Each phase names its writer: the management API (vhosts, policies: each change by its
kind's ``write``, ``kinds._base.TopologyKind``), AMQP (``_amqp``: exchanges, queues,
bindings, pipelined over channels) or ``_access`` (users, permissions, limits, operator
policies, federation and shovels, over HTTP: each by its kind's ``write``). This module
decides nothing about the order itself; it walks the phases and hands each its changes.
Imported only when something is written, so ``plan`` does not pay for pika and asyncio.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._access import apply_access, has_followup
from ._address import DEFAULT_CHANNELS, BrokerAddress
from ._amqp import (
    AmqpFailure,
    AmqpSession,
    Progress,
    declare,
    declare_passive,
    delete_operation,
)
from ._errors import ApplyError, DeclareAmqpError
from ._management import ManagementClient
from ._model import Topology
from ._plan import (
    CONFLICT,
    CREATE,
    PHASES,
    Change,
    Kind,
    Phase,
    Plan,
    Writer,
    phase_of,
)
from ._rollback import Rollback, roll_back
from .kinds import topology_kind_of


@dataclass(frozen=True)
class ApplyReport:
    """What apply did: the changes written, those the broker refused, and the rollback that
    followed a refusal (``None`` when nothing was refused)."""

    written: tuple[Change, ...]
    failures: tuple[AmqpFailure, ...]
    rollback: Rollback | None = None


def by_phase(changes: Sequence[Change]) -> dict[Phase, list[Change]]:
    """``changes`` (a plan's writes) by the phase that writes them."""
    found: dict[Phase, list[Change]] = {}
    for c in changes:
        found.setdefault(phase_of(c), []).append(c)
    return found


def apply_plan(
    address: BrokerAddress,
    management: ManagementClient | None,
    plan: Plan,
    *,
    channels: int = DEFAULT_CHANNELS,
    force: bool = False,
    progress: Progress | None = None,
    env: Mapping[str, str] | None = None,
) -> ApplyReport:
    """Write the plan's creates, updates and deletes, phase by phase."""
    if management is not None and management.node is not None:
        # AMQP goes to the node whose management API the plan was read from, first.
        first = management.node
        address = dataclasses.replace(
            address, nodes=(first, *(n for n in address.nodes if n != first))
        )
    return asyncio.run(_apply(address, management, plan, channels, force, progress, env))


class _Run:
    """One apply: its AMQP sessions (one per vhost), what was written and what failed."""

    def __init__(
        self,
        address: BrokerAddress,
        management: ManagementClient | None,
        channels: int,
        force: bool,
        progress: Progress | None,
        env: Mapping[str, str] | None,
    ) -> None:
        self.address, self.management = address, management
        self.channels, self.force, self.progress, self.env = channels, force, progress, env
        self.failures: list[AmqpFailure] = []
        self.done: list[Change] = []
        self.sessions: dict[str, AmqpSession] = {}

    async def session(self, vhost: str) -> AmqpSession:
        if vhost not in self.sessions:
            s = AmqpSession(self.address, vhost)
            await s.open()
            self.sessions[vhost] = s
        return self.sessions[vhost]

    def http(self) -> ManagementClient:
        assert self.management is not None, "the plan holds changes only the management API writes"
        return self.management

    def count(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)

    async def connect(self, writes: Sequence[Change]) -> None:
        """Connect to every existing vhost that needs AMQP work *before* the first write, so
        an unreachable AMQP port does not leave policies written and queues missing."""
        new_vhosts = {c.name for c in writes if c.kind == Kind.VHOST and c.action == CREATE}
        for vhost in dict.fromkeys(c.vhost for c in writes if phase_of(c).writer is Writer.AMQP):
            if vhost not in new_vhosts:
                await self.session(vhost)

    async def amqp(self, phase: Phase, changes: list[Change]) -> None:
        by_vhost: dict[str, list[Change]] = {}
        for c in changes:
            by_vhost.setdefault(c.vhost, []).append(c)
        for vhost, items in by_vhost.items():
            s = await self.session(vhost)
            if phase.deletes:
                found = await s.run(
                    items, delete_operation(self.force), self.channels, self.progress
                )
            else:
                found = await s.run_pipelined(items, self.channels, self.progress)
            self.failures.extend(found)
            failed = {id(f.change) for f in found}
            self.done.extend(c for c in items if id(c) not in failed)

    def management_writes(self, changes: list[Change]) -> None:
        for c in changes:
            topology_kind_of(c.kind).write(self.http(), c)
            self.done.append(c)
            self.count(1)

    def access_writes(self, phase: Phase, changes: list[Change], writes: Sequence[Change]) -> None:
        # The limits of vhosts created in the first phase are set with the access objects.
        followups = [] if phase.deletes else [c for c in writes if has_followup(c)]
        if changes or followups:
            written: list[Change] = []
            try:
                apply_access(self.http(), [*followups, *changes], self.env, written)
            finally:  # what was written before a refusal is the rollback's to undo
                self.done.extend(written)
                self.count(len(written))

    async def phases(self, writes: Sequence[Change], rollback: bool) -> None:
        """Each phase of ``PHASES`` to its writer; with ``rollback``, none after a refusal."""
        grouped = by_phase(writes)
        for phase in PHASES:
            changes = grouped.get(phase, [])
            if phase.writer is Writer.AMQP:
                await self.amqp(phase, changes)
            elif phase.writer is Writer.MANAGEMENT:
                self.management_writes(changes)
            else:
                self.access_writes(phase, changes, writes)
            if self.failures and rollback:
                break  # the broker refused a write: no later phase builds on a half

    async def close(self) -> None:
        for s in self.sessions.values():
            await s.close()


async def _apply(
    address: BrokerAddress,
    management: ManagementClient | None,
    plan: Plan,
    channels: int,
    force: bool,
    progress: Progress | None,
    env: Mapping[str, str] | None = None,
    rollback: bool = True,
) -> ApplyReport:
    run = _Run(address, management, channels, force, progress, env)
    cause: DeclareAmqpError | None = None
    writes = plan.writes
    try:
        await run.connect(writes)
        await run.phases(writes, rollback)
    except DeclareAmqpError as exc:  # refused over HTTP, or a connection dropped
        if not rollback or not run.done:
            raise
        cause = exc
    finally:
        await run.close()
    done, failures = tuple(run.done), tuple(run.failures)
    if not rollback or not (failures or cause):
        return ApplyReport(done, failures)
    undo = await roll_back(address, management, run.done, channels)
    if cause is not None:
        raise ApplyError(f"{cause}; {undo.summary()}") from cause
    return ApplyReport(done, failures, undo)


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
            objects = [
                Change(CREATE, Kind.EXCHANGE, vhost, x.name, desired=x) for x in part.exchanges
            ]
            objects += [Change(CREATE, Kind.QUEUE, vhost, q.name, desired=q) for q in part.queues]
            missing = await s.run(objects, declare_passive, channels)
            missing_ids = {id(f.change) for f in missing if f.reply_code == 404}
            existing = [c for c in objects if id(c) not in missing_ids]
            refused = await s.run(existing, declare, channels)
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
            creates += [
                Change(CREATE, Kind.BINDING, vhost, b.name, desired=b) for b in part.bindings
            ]
        finally:
            await s.close()
    if conflicts:
        return Plan(tuple(conflicts), vhosts=tuple(desired.vhost_names())), ApplyReport((), ())
    plan = Plan(tuple(creates), vhosts=tuple(desired.vhost_names()))
    report = await _apply(address, None, plan, channels, False, progress)
    if report.failures:
        undo = f"; {report.rollback.summary()}" if report.rollback else ""
        raise ApplyError("the broker refused: " + "; ".join(str(f) for f in report.failures) + undo)
    return plan, report
