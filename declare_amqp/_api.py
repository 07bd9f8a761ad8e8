"""The library's workflow: load -> validate -> read the broker -> plan -> apply -> verify."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._access import access_plan, check_privileges, read_broker_kinds, validate_access, whoami
from ._address import DEFAULT_CHANNELS, BrokerAddress
from ._consumers import derive_worker_queues
from ._errors import PlanConflictError, TopologyError
from ._files import DEFAULT_MAX_FILE_SIZE
from ._fit import policy_problems
from ._http import Transport
from ._loader import read_unvalidated
from ._management import BrokerState, ManagementClient, Prefetch
from ._migration import choose_mover, plan_migrations, records, with_mover
from ._model import Topology
from ._permissions import Permissions, permission_problems
from ._plan import Kind, Plan, note_broker_defaults
from ._planning import plan
from ._validate import (
    check_broker_version,
    check_exchange_types,
    check_references,
    resolve_queue_types,
    validate,
)
from ._versions import parse_version
from ._warnings import plan_warnings, sort_problems
from .kinds.federation_upstream import policy_plugin_problems
from .kinds.vhost_settings import VhostSettings

if TYPE_CHECKING:  # pika and rich only when writing
    from rich.console import Console

    from ._amqp import AmqpFailure
    from ._migrate import MigrationReport
    from ._rollback import Rollback


def load(
    paths: Sequence[str],
    vhost: str | None = None,
    default_vhost: str = "/",
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    original_format: bool = False,
) -> Topology:
    """Load, merge and validate topology files; raises TopologyError with every problem.

    A file over ``max_file_size`` bytes (64 MiB by default) or not a regular file is refused
    unread. ``original_format``: the original declare-amqp's files (``--config FILE``), whose
    queue bindings without a key are bound with the queue's name."""
    topology, problems = read_unvalidated(
        paths,
        vhost=vhost,
        default_vhost=default_vhost,
        max_file_size=max_file_size,
        original_format=original_format,
    )
    problems += policy_problems(topology)  # values the broker refuses (_fit)
    problems += validate(topology)
    topology, derived_problems = derive_worker_queues(topology)
    problems += derived_problems
    if topology.access is not None:
        problems += validate_access(topology.access)
    if problems:
        raise TopologyError(sort_problems(problems))
    return topology


@dataclass(frozen=True)
class ApplyResult:
    """The outcome of ``Session.apply``."""

    plan: Plan
    written: int
    failures: tuple[AmqpFailure, ...]  # the changes the broker refused
    remaining: Plan  # what still differs afterwards (empty when the broker matches)
    seconds: float
    refused: int = field(default=0)
    migrations: tuple[MigrationReport, ...] = field(default=())
    rollback: Rollback | None = None  # after a refused write: what was undone, what was not

    @property
    def matches(self) -> bool:
        """The re-plan after the apply found nothing left to write, no conflict, no migration."""
        remaining = self.remaining
        return not remaining.writes and not remaining.conflicts and not remaining.migrations

    @property
    def ok(self) -> bool:
        """Exit 0: everything written, nothing refused, and the broker matches the files."""
        return self.matches and not self.failures and not self.refused

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the result (``apply --format json``)."""
        return {
            "written": self.written,
            "failures": [str(f) for f in self.failures],
            "refused": self.refused,
            "migrations": [m.to_dict() for m in self.migrations],
            "matches": self.matches,
            "seconds": round(self.seconds, 3),
            **(
                {
                    "rolled_back": self.rollback.complete,
                    "not_undone": list(self.rollback.not_undone),
                }
                if self.rollback is not None
                else {}
            ),
        }


class Session:
    """A connection to one broker (or cluster) for planning and applying."""

    def __init__(
        self,
        address: BrokerAddress,
        transport: Transport | None = None,
        prefetched: Prefetch | None = None,
    ) -> None:
        """``transport`` replaces the network of the management API (tests);
        ``prefetched``: a read already started for this broker, whose client the session
        takes over (``_cli.early_read``)."""
        self.address = address
        if prefetched is not None:
            self.management = prefetched.management
        else:
            self.management = ManagementClient(address, transport=transport)
        self.last_state: BrokerState | None = None
        self._prefetched = prefetched

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a background read, then close the management client."""
        if self._prefetched is not None:
            self._prefetched.future.exception()  # let a background read finish first
            self._prefetched = None
        self.management.close()

    def describe_target(self) -> str:
        """The broker as the plan names it: node and RabbitMQ version, no credentials."""
        node = self.management.node
        version = getattr(self.management, "version", "?")
        where = node.amqp_display if node else str(self.address)
        return f"{where} (RabbitMQ {version})"

    def prefetch(self, vhosts: Sequence[str], with_stats: bool = False) -> None:
        """Start reading ``vhosts`` in the background (while the files are parsed).

        ``read`` uses the result when it asks for the same vhosts; an error surfaces only
        there, so a file problem found meanwhile is still reported first. A read of the same
        vhosts already running (started before the session) is kept.
        """
        running = self._prefetched
        if running is not None:
            if running.key == (tuple(vhosts), with_stats):
                return
            running.future.exception()  # another read: let it finish, ignore its outcome
        self._prefetched = Prefetch(self.management, vhosts, with_stats)

    def read(self, vhosts: Sequence[str], with_stats: bool = False) -> BrokerState:
        """One bulk read per vhost."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None:
            if prefetched.key == (tuple(vhosts), with_stats):
                return self._remember(prefetched.future.result())  # raises what it raised
            prefetched.future.exception()  # a guess that missed: wait, ignore its outcome
        return self._remember(self.management.read(vhosts, with_stats=with_stats))

    def _remember(self, state: BrokerState) -> BrokerState:
        """Add the objects of the kinds that read themselves (``read_broker_kinds``: none
        among the built-in kinds, so the same state comes back) and keep the last state
        read: what a plan was computed against (saved plans)."""
        existing = [v.name for v in state.topology.vhosts]
        topology = read_broker_kinds(self.management, existing, state.topology)
        if topology is not state.topology:
            state = dataclasses.replace(state, topology=topology)
        self.last_state = state
        return state

    def plan(
        self,
        desired: Topology,
        *,
        prune: bool = False,
        force: bool = False,
        broker_version: str | None = None,
        migrate: bool = False,
        mover: str = "amqp",
    ) -> Plan:
        """Read the broker and plan; raises TopologyError for references that resolve nowhere.

        ``broker_version`` checks the files against another release than the broker's (what
        an upgrade would break); the plan itself is always against the broker read.
        ``migrate``: queue conflicts become migrations (``_migration``); queues marked
        ``migrate: true`` are migrated without it, and migrations in progress always show;
        they say which mover would move their messages (``mover``, "auto" resolved)."""
        state = self.read(desired.vhost_names(), with_stats=prune)
        defaults = dict(state.default_queue_types)
        existing = {v.name for v in state.topology.vhosts}
        for v in desired.access.of(VhostSettings) if desired.access else ():
            if v.name not in existing and v.default_queue_type in ("quorum", "stream"):
                defaults[v.name] = v.default_queue_type  # a new vhost is created with it
        desired, problems = resolve_queue_types(desired, defaults)
        problems += check_references(desired, state.topology)
        problems += check_exchange_types(desired, state.exchange_types)
        problems += policy_plugin_problems(self.management, desired.policies)
        version = broker_version or state.version
        too_new, warnings = check_broker_version(desired, version)
        problems += too_new
        if desired.expectations:  # the `expect` section, against what the broker will hold
            from ._simulate import after_apply, check_expectations, simulator_for

            after = after_apply(desired, state.topology, prune=prune)
            sim = simulator_for(after, parse_version(version))
            problems += check_expectations(sim, desired.expectations, offline=False)[0]
        if problems:
            raise TopologyError(sort_problems(problems))
        result = plan(desired, state.topology, prune=prune, force=force, stats=state.stats)
        result = note_broker_defaults(
            result, parse_version(state.version), (*desired.policies, *state.topology.policies)
        )
        result = self._migrations(result, state, migrate, mover)
        warnings = [*warnings, *plan_warnings(desired, state.topology)]
        result = dataclasses.replace(result, warnings=tuple(warnings))
        result = access_plan(self.management, desired, result, prune=prune)
        return self._check_permissions(result)

    def _check_permissions(self, the_plan: Plan) -> Plan:
        """The user's permissions against every AMQP write (``_permissions``): a refusal is a
        TopologyError naming file, line and object; unreadable permissions are a note."""
        if not any(c.kind in ("exchange", "queue", "binding") for c in the_plan.writes):
            return the_plan
        user, _ = whoami(self.management)
        rows = self.management.permissions_of(user)
        if rows is None:
            note = (
                f"the permission check was skipped: user '{user}' may not read its permissions "
                "(only an administrator may); should the broker refuse a write, apply rolls "
                "back what it wrote"
            )
            return dataclasses.replace(the_plan, notes=(*the_plan.notes, note))
        granted = {
            str(r.get("vhost")): Permissions(
                str(r.get("configure", "")), str(r.get("write", "")), str(r.get("read", ""))
            )
            for r in rows
        }
        new = [c.name for c in the_plan.writes if c.kind == "vhost" and c.action == "create"]
        problems = permission_problems(user, the_plan.writes, granted, new)
        if problems:
            raise TopologyError(sort_problems(problems))
        return the_plan

    def _migrations(self, result: Plan, state: BrokerState, migrate: bool, mover: str) -> Plan:
        """The plan with migrations (only when a queue conflicts or one is in progress: the
        queue counts they show cost one more request per vhost)."""
        in_progress = records(state.topology)
        if not in_progress and not any(c.kind == Kind.QUEUE for c in result.conflicts):
            return result
        stats = dict(state.stats)
        for vhost in result.vhosts if not stats else ():
            if any(q.vhost == vhost for q in state.topology.queues):
                stats.update(self.management.queue_stats(vhost))
        result = plan_migrations(result, state.topology, stats, migrate=migrate)
        if not result.migrations:
            return result
        shovels = mover != "amqp" and self.management.shovels_enabled()
        return with_mover(result, choose_mover(mover, shovels), shovels)

    def apply(
        self,
        desired: Topology,
        the_plan: Plan,
        *,
        force: bool = False,
        channels: int | None = None,
        progress_console: Console | None = None,
        mover: str = "amqp",
    ) -> ApplyResult:
        """Write the plan (never one with conflicts), then read and plan again to verify.

        ``mover``: what moves a migrating queue's messages ("amqp", "shovel", or "auto": the
        shovel where the broker runs the plugin, else "amqp")."""
        if the_plan.conflicts:
            raise PlanConflictError(the_plan.conflicts)
        from ._apply import apply_plan  # pika only when writing

        check_privileges(self.management, the_plan)  # before any write
        if the_plan.migrations:
            from ._migrate import check_mover

            mover = check_mover(self.management, mover)  # before any write too
        channels = channels or DEFAULT_CHANNELS
        started = time.monotonic()
        writes = the_plan.writes
        report = None
        if writes:
            if progress_console is not None and len(writes) >= 50:
                from rich.progress import Progress

                with Progress(console=progress_console, transient=True) as bar:
                    task = bar.add_task("applying", total=len(writes))
                    report = apply_plan(
                        self.address,
                        self.management,
                        the_plan,
                        channels=channels,
                        force=force,
                        progress=lambda n: bar.advance(task, n),
                    )
            else:
                report = apply_plan(
                    self.address, self.management, the_plan, channels=channels, force=force
                )
        migrations = the_plan.migrations
        reports: list[MigrationReport] = []
        if migrations and not (report and (report.failures or report.rollback is not None)):
            # After every other write (the queue's new bindings and policies are in place);
            # never rolled back: an interrupted migration stays recorded on the broker.
            from ._migrate import run_migrations
            from ._move_progress import progress_reporter

            with progress_reporter(progress_console) as moved:
                reports = run_migrations(
                    self.address, self.management, migrations, moved, mover=mover
                )
        seconds = time.monotonic() - started
        remaining = (
            self.plan(
                desired, prune=the_plan.prune, force=force, migrate=bool(migrations), mover=mover
            )
            if writes or migrations
            else the_plan
        )
        return ApplyResult(
            plan=the_plan,
            written=len(report.written) if report else 0,
            failures=report.failures if report else (),
            remaining=remaining,
            seconds=seconds,
            refused=len(remaining.refused),
            migrations=tuple(reports),
            rollback=report.rollback if report else None,
        )
