"""Queue migrations, the pure part: what is on the broker at each step, and the plan's view.

A queue's type, durability and arguments cannot change once it exists. A *migration* carries
such a change out with the queue's messages and bindings: the queue is deleted and declared
again under the same name, while its messages wait in a *holding queue* and the messages
published to its exchanges meanwhile are routed there. The broker itself records how far a
migration got, so a rerun after a crash (SIGKILL included) resumes it:

========  ===========================================================================
step      what is on the broker when the step starts (``Q`` the queue, ``H`` its holding queue)
========  ===========================================================================
hold      ``Q`` with its old properties and bindings; no ``H``. ``H`` is declared (durable,
          classic) with the migration's *record* as an argument: ``Q``'s old and new
          properties and its bindings (source, routing key, arguments).
divert    ``H`` exists; some recorded binding is still on ``Q`` or not yet on ``H``. Every
          binding is added to ``H``, then removed from ``Q`` (never the other way round: a
          message published in between would be unroutable).
drain     ``Q`` (old) has no recorded binding left. Its messages are moved to ``H``.
swap      (inside drain, when ``Q`` is empty) the retry delay queues that dead-letter into
          ``Q`` are held (consumed, unacked: an unacked message does not expire), what they
          dead-lettered before is moved out too, ``Q`` is deleted with ``if-empty`` and
          declared with its new properties straight after (one pipelined pair), and the held
          messages are released (``nack`` with requeue: due ones dead-letter at once).
restore   ``Q`` has its new properties; some recorded binding is missing on ``Q`` or still
          on ``H``: each is added to ``Q``, then removed from ``H``.
fill      ``Q`` (new) has every binding, ``H`` none: ``H``'s messages are moved to ``Q``.
finish    ``H`` is deleted with ``if-empty`` (it refills only through the default exchange).
========  ===========================================================================

A crash between ``swap``'s delete and declare leaves ``H`` and no ``Q``: the rerun declares
``Q`` (step "swap"). Which step a migration is at is read from the broker alone
(``step_of``), so nothing else needs to be written. A migration holds a *lock*: an exclusive
queue per vhost, which the broker deletes with the connection of the process that holds it.

This module is pure (no I/O); ``_migrate`` carries migrations out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._model import BindingSpec, QueueSpec, Topology, canonical
from ._plan import (
    CONFLICT,
    CREATE,
    DELETE,
    KEEP,
    MIGRATE,
    REFUSE,
    Change,
    Difference,
    Kind,
    Plan,
    QueueStats,
    describe,
)

HOLD_PREFIX = "declare-amqp.migrating."
LOCK_QUEUE = "declare-amqp.migration-lock"
RECORD_ARGUMENT = "x-declare-amqp-migration"
# The steps in order; ``step_of`` names the one a migration on the broker is at.
STEPS = ("hold", "divert", "drain", "swap", "restore", "fill", "finish")
_MAX_NAME = 255  # AMQP short string


def holding_queue_name(queue: str) -> str:
    """The holding queue of ``queue``'s migration (a digest when the name would be too long)."""
    name = HOLD_PREFIX + queue
    if len(name.encode()) <= _MAX_NAME:
        return name
    return HOLD_PREFIX + "sha256-" + hashlib.sha256(queue.encode()).hexdigest()


def shape(queue: QueueSpec) -> dict[str, Any]:
    """What a migration changes: type, durability, auto-delete and arguments."""
    return {k: v for k, v in describe(queue).items() if k not in ("vhost", "name")}


def same_shape(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two argument tables are equal once canonical (key order, number forms)."""
    return canonical(dict(a)) == canonical(dict(b))


def binding_key(b: BindingSpec) -> tuple[str, str, str]:
    """A binding of the queue as the record keeps it: source, routing key, arguments."""
    return (b.source, b.routing_key, canonical(dict(b.arguments)))


@dataclass(frozen=True)
class Record:
    """What the holding queue records: the queue, its old and new shape, its bindings."""

    queue: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]
    bindings: tuple[tuple[str, str, Mapping[str, Any]], ...]  # (source, key, arguments)

    def to_argument(self) -> str:
        """The record as the holding queue's argument: compact JSON, keys sorted."""
        return json.dumps(
            {
                "queue": self.queue,
                "before": dict(self.before),
                "after": dict(self.after),
                "bindings": [[s, k, dict(a)] for s, k, a in self.bindings],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_argument(cls, text: str) -> Record:
        """The record read back from a holding queue's argument (``to_argument``'s inverse)."""
        doc = json.loads(text)
        return cls(
            queue=str(doc["queue"]),
            before=dict(doc["before"]),
            after=dict(doc["after"]),
            bindings=tuple((str(s), str(k), dict(a)) for s, k, a in doc["bindings"]),
        )

    def binding_specs(self, vhost: str, destination: str) -> list[BindingSpec]:
        """The recorded bindings with ``destination`` (the queue or its holding queue)."""
        return [
            BindingSpec(
                vhost=vhost,
                source=s,
                destination=destination,
                destination_type="queue",
                routing_key=k,
                arguments=dict(a),
            )
            for s, k, a in self.bindings
        ]

    def target(self, vhost: str) -> QueueSpec:
        """The queue as the migration declares it."""
        after = self.after
        return QueueSpec(
            vhost=vhost,
            name=self.queue,
            type=str(after["type"]),
            durable=bool(after["durable"]),
            auto_delete=bool(after["auto_delete"]),
            arguments=dict(after["arguments"]),
        )


def holding_queue(vhost: str, record: Record) -> QueueSpec:
    """The holding queue's declaration: durable and classic, whatever the vhost's default.

    Classic, because it is deleted with ``if-empty`` (the broker's own check that nothing
    arrived meanwhile), which quorum queues refuse on 3.x (the connection is closed, 540).
    """
    return QueueSpec(
        vhost=vhost,
        name=holding_queue_name(record.queue),
        type="classic",
        arguments={"x-queue-type": "classic", RECORD_ARGUMENT: record.to_argument()},
    )


def records(actual: Topology) -> dict[tuple[str, str], Record]:
    """The migrations in progress on the broker: (vhost, queue) -> record."""
    found = {}
    for q in actual.queues:
        text = q.arguments.get(RECORD_ARGUMENT)
        if q.name.startswith(HOLD_PREFIX) and isinstance(text, str):
            try:
                record = Record.from_argument(text)
            except (ValueError, KeyError, TypeError):
                continue  # not ours after all: prune still keeps it (is_holding_queue)
            found[(q.vhost, record.queue)] = record
    return found


def is_holding_queue(q: QueueSpec) -> bool:
    """Whether ``q`` is a migration's holding queue (its prefix and its record argument)."""
    return q.name.startswith(HOLD_PREFIX) and RECORD_ARGUMENT in q.arguments


def step_of(record: Record, live: QueueSpec | None, bindings: Iterable[BindingSpec]) -> str:
    """The step a migration is at, from what the broker holds (see the module's table)."""
    if live is None:
        return "swap"
    on: dict[str, set[tuple[str, str, str]]] = {}
    for b in bindings:
        if b.destination_type == "queue":
            on.setdefault(b.destination, set()).add(binding_key(b))
    wanted = {(s, k, canonical(dict(a))) for s, k, a in record.bindings}
    on_queue = on.get(record.queue, set()) & wanted
    on_hold = on.get(holding_queue_name(record.queue), set()) & wanted
    if same_shape(shape(live), record.after):
        return "fill" if on_queue == wanted and not on_hold else "restore"
    return "drain" if on_hold == wanted and not on_queue else "divert"


# ------------------------------------------------------------------ the plan's view


def unmigratable(change: Change) -> str | None:
    """Why a queue conflict cannot be migrated, or None when it can."""
    if change.kind != Kind.QUEUE or change.action != CONFLICT:
        return "only queues are migrated"
    have, want = change.actual, change.desired
    assert isinstance(have, QueueSpec) and isinstance(want, QueueSpec)
    if have.type == "stream":
        return "a stream is read by offset, not drained: its messages cannot be moved"
    if have.auto_delete or want.auto_delete:
        return "an auto-delete queue is deleted when its consumers go: migrate it by hand"
    if change.name.startswith("amq."):
        return "names starting with amq. are reserved"
    return None


def limits(
    have: QueueSpec,
    want: QueueSpec,
    stats: QueueStats,
    delay_queues: Iterable[str],
) -> list[str]:
    """What a migration of ``have`` into ``want`` cannot keep, in the plan's words."""
    found = [
        f"messages published to '{want.name}' through the default exchange while it is "
        "re-created (one round trip: the declare follows the delete's -Ok at once) are "
        "unroutable; publishers that set mandatory get them back (basic.return)"
    ]
    held = sorted(delay_queues)
    if held:
        found.append(
            "retry delay queues dead-lettering into it are held during the swap (nothing "
            "expires while held; what fell due is delivered right after): " + ", ".join(held)
        )
    if stats.consumers:
        found.append(
            f"{stats.consumers} consumer{'s are' if stats.consumers != 1 else ' is'} cancelled "
            "by the broker (basic.cancel) when the old queue is deleted; priority_worker "
            "consumes again once the queue is back, other clients must handle the cancel"
        )
    if have.type == "quorum":
        found.append(
            "a quorum queue cannot be deleted with if-empty: a message published to it "
            "through the default exchange between its last drain and its delete is lost"
        )
    ttl = have.arguments.get("x-message-ttl")
    if ttl is not None:
        found.append(f"x-message-ttl {ttl}: a moved message's time in the queue starts again")
    for key in ("x-max-length", "x-max-length-bytes"):
        if key in want.arguments:
            found.append(
                f"{key} {want.arguments[key]}: moved messages beyond it are handled as the "
                "overflow setting says (dropped, dead-lettered or refused)"
            )
    if "x-max-priority" in have.arguments and want.type == "quorum":
        found.append(
            "a quorum queue has no x-max-priority: priorities 5 and above come first, the "
            "rest after (RabbitMQ 4.x; 3.x ignores message priority in quorum queues)"
        )
    found.append(
        "duplicates: while bindings move between the queue and its holding queue, a message "
        "may reach both, and a move re-sends what a killed run or a stopped shovel left "
        "unacknowledged; the run reports an upper bound of those it made"
    )
    return found


# What moves a migrating queue's messages (``apply --mover``, ``plan --mover``, whose choices
# ``_cli_args`` lists; "amqp" by default): "auto" is the broker's dynamic shovels where the
# rabbitmq_shovel plugin runs, else the tool's own. Not the default: under load the shovels
# moved slower and less evenly than the tool's own mover (README, Benchmarks, issue 20 third
# pass).
MOVER_WORDS = {
    "amqp": "the tool's own confirmed consumer and publisher",
    "shovel": "the broker's dynamic shovels (rabbitmq_shovel)",
}


def choose_mover(requested: str, shovels_enabled: bool) -> str:
    """The mover that runs: ``requested``, with "auto" made "shovel" where the plugin runs
    and "amqp" otherwise. ("shovel" on a broker without the plugin stays "shovel": apply
    refuses it before any write.)"""
    if requested == "auto":
        return "shovel" if shovels_enabled else "amqp"
    return requested


def with_mover(the_plan: Plan, mover: str, shovels_enabled: bool) -> Plan:
    """The plan's migrations saying which mover will move their messages (``mover`` in the
    JSON's ``migration`` object, a line in text)."""
    if not the_plan.migrations:
        return the_plan
    words = MOVER_WORDS[mover]
    if mover == "shovel" and not shovels_enabled:
        words += ": the plugin is not enabled on the broker, apply refuses"
    changes = tuple(
        replace(c, migration={**c.migration, "mover": mover, "mover_text": words})
        if c.action == MIGRATE and c.migration is not None
        else c
        for c in the_plan.changes
    )
    return replace(the_plan, changes=changes)


def steps(
    queue: str, messages: int, bindings: int, delay_queues: Iterable[str], at: str | None
) -> list[str]:
    """The steps in words; a migration in progress starts at ``at``."""
    hold = holding_queue_name(queue)
    held = sorted(delay_queues)
    words = {
        "hold": f"hold: declare the holding queue '{hold}' recording this migration",
        "divert": f"divert: bind '{hold}' like the queue ({bindings} bindings), then unbind "
        "the queue",
        "drain": f"drain: move the queue's messages ({messages} now) to '{hold}'",
        "swap": "swap: "
        + (f"hold {', '.join(held)}; " if held else "")
        + "delete the queue (if empty), declare it with the new properties",
        "restore": f"restore: bind the queue again ({bindings} bindings), then unbind '{hold}'",
        "fill": f"fill: move the messages of '{hold}' back into the queue",
        "finish": f"finish: delete '{hold}' (if empty)",
    }
    start = STEPS.index(at) if at is not None else 0
    return [words[s] for s in STEPS[start:]]


def dead_letters_into(actual: Topology, vhost: str, queue: str) -> list[str]:
    """Queues that dead-letter into ``queue`` through the default exchange (retry delay
    queues): what they dead-letter while the queue is gone, the broker drops."""
    return sorted(
        q.name
        for q in actual.queues
        if q.vhost == vhost
        and q.arguments.get("x-dead-letter-exchange") == ""
        and q.arguments.get("x-dead-letter-routing-key") == queue
        and q.name != queue
    )


def describe_migration(
    have: QueueSpec,
    want: QueueSpec,
    differences: Iterable[Difference],
    bindings: list[BindingSpec],
    stats: QueueStats,
    delay_queues: list[str],
    at: str | None,
) -> dict[str, Any]:
    """The ``migration`` object of a plan's migrate change (README: "JSON output")."""
    return {
        "changes": {d.field: {"before": d.before, "after": d.after} for d in differences},
        "messages": stats.messages,
        "consumers": stats.consumers,
        "bindings": [
            {"source": b.source, "routing_key": b.routing_key, "arguments": dict(b.arguments)}
            for b in bindings
        ],
        "holding_queue": holding_queue_name(want.name),
        "in_progress": at,
        "steps": steps(want.name, stats.messages, len(bindings), delay_queues, at),
        "limits": limits(have, want, stats, delay_queues),
    }


def plan_migrations(
    the_plan: Plan,
    actual: Topology,
    stats: Mapping[tuple[str, str], QueueStats],
    *,
    migrate: bool = False,
) -> Plan:
    """Turn queue conflicts into migrations where asked, and show migrations in progress.

    ``migrate`` (``--migrate``) migrates every queue conflict that can be; without it only
    queues with ``migrate: true`` in the file. A migration found in progress on the broker
    is always shown and resumed: a half-migrated queue is never left as it is. Its holding
    queue and that queue's bindings are kept by prune, and the queue's own create (when the
    crash fell between delete and declare) is the migration's.
    """
    progress = records(actual)
    live = {(q.vhost, q.name): q for q in actual.queues}
    changes: list[Change] = []
    kept = list(the_plan.kept)
    seen: set[tuple[str, str]] = set()
    holding = {(v, holding_queue_name(q)) for v, q in progress}
    for c in the_plan.changes:
        key = (c.vhost, c.name)
        if (
            c.kind == Kind.QUEUE
            and c.action in (DELETE, REFUSE)
            and isinstance(c.actual, QueueSpec)
            and is_holding_queue(c.actual)
        ):
            kept.append(replace(c, action=KEEP, message="kept: the holding queue of a migration"))
            continue
        if (
            c.kind == Kind.BINDING
            and c.action == DELETE
            and isinstance(c.actual, BindingSpec)
            and (c.vhost, c.actual.destination) in holding
        ):
            continue  # a migration moves it
        if (
            c.kind == Kind.BINDING
            and c.action == CREATE
            and isinstance(c.desired, BindingSpec)
            and (c.vhost, c.desired.destination) in progress
        ):
            continue  # the migration restores the queue's bindings
        if c.kind == Kind.QUEUE and key in progress and c.action in (CREATE, CONFLICT):
            changes.append(_in_progress(c, progress[key], actual, stats))
            seen.add(key)
            continue
        if c.kind == Kind.QUEUE and c.action == CONFLICT:
            wanted = isinstance(c.desired, QueueSpec) and (migrate or c.desired.migrate)
            if wanted:
                why = unmigratable(c)
                if why is None:
                    changes.append(_new_migration(c, actual, stats))
                    continue
                c = replace(c, message=f"{c.message} It cannot be migrated: {why}.")
        changes.append(c)
    for key, record in progress.items():
        if key in seen:
            continue
        vhost, name = key
        if vhost not in the_plan.vhosts:
            continue
        # The queue already has its new properties (restore, fill): no conflict was planned.
        want = record.target(vhost)
        have = live.get(key)
        changes.append(
            _in_progress(
                Change(CONFLICT, Kind.QUEUE, vhost, name, desired=want, actual=have),
                record,
                actual,
                stats,
            )
        )
    return replace(the_plan, changes=tuple(_ordered(changes)), kept=tuple(kept))


def _ordered(changes: list[Change]) -> list[Change]:
    from ._plan import apply_position

    return sorted(changes, key=apply_position)


def _queue_bindings(actual: Topology, vhost: str, queue: str) -> list[BindingSpec]:
    return [
        b
        for b in actual.bindings
        if b.vhost == vhost and b.destination_type == "queue" and b.destination == queue
    ]


def _new_migration(
    c: Change, actual: Topology, stats: Mapping[tuple[str, str], QueueStats]
) -> Change:
    have, want = c.actual, c.desired
    assert isinstance(have, QueueSpec) and isinstance(want, QueueSpec)
    s = stats.get((c.vhost, c.name), QueueStats())
    delay = dead_letters_into(actual, c.vhost, c.name)
    bindings = _queue_bindings(actual, c.vhost, c.name)
    return replace(
        c,
        action=MIGRATE,
        message=f"migrate: {s.messages} messages, {s.consumers} consumers, "
        f"{len(bindings)} bindings carried over",
        migration=describe_migration(have, want, c.differences, bindings, s, delay, None),
    )


def _in_progress(
    c: Change,
    record: Record,
    actual: Topology,
    stats: Mapping[tuple[str, str], QueueStats],
) -> Change:
    live = next((q for q in actual.queues if (q.vhost, q.name) == (c.vhost, c.name)), None)
    at = step_of(record, live, (b for b in actual.bindings if b.vhost == c.vhost))
    want = record.target(c.vhost)
    have = live or want
    differences = tuple(
        Difference(k, record.before.get(k), record.after.get(k))
        for k in sorted(record.after)
        if canonical(record.before.get(k)) != canonical(record.after.get(k))
    )
    hold = stats.get((c.vhost, holding_queue_name(c.name)), QueueStats())
    s = stats.get((c.vhost, c.name), QueueStats())
    s = QueueStats(s.messages + hold.messages, s.consumers)
    bindings = record.binding_specs(c.vhost, c.name)
    delay = dead_letters_into(actual, c.vhost, c.name)
    note = f"migration in progress: step {at}"
    desired = c.desired if isinstance(c.desired, QueueSpec) else want
    if not same_shape(shape(desired), record.after):
        note += " (it finishes with the properties it started for; plan again afterwards)"
    return Change(
        MIGRATE,
        Kind.QUEUE,
        c.vhost,
        c.name,
        desired=desired,
        actual=have,
        differences=differences,
        message=note,
        migration=describe_migration(have, want, differences, bindings, s, delay, at),
    )


# ------------------------------------------------------------------ output


def comparable(plan_doc: Mapping[str, Any]) -> dict[str, Any]:
    """A plan's JSON without what changes from one read to the next (a migrating queue's
    message and consumer counts): what ``apply PLAN`` compares with the saved plan."""
    doc = dict(plan_doc)
    changes = []
    for c in doc.get("changes", []):
        if c.get("action") == MIGRATE.value and isinstance(c.get("migration"), Mapping):
            migration = {
                k: v
                for k, v in c["migration"].items()
                if k not in ("messages", "consumers", "steps", "limits")
            }
            c = {**c, "message": None, "migration": migration}
        changes.append(c)
    doc["changes"] = changes
    return doc


def migration_line(report: Any) -> str:
    """One line per migration an apply carried out (``_migrate.MigrationReport``)."""
    r = report.to_dict()
    dups = r["duplicates_from"]
    held = ", ".join(f"{q} {n}" for q, n in r["held"].items())
    return (
        f"migrated queue '{r['queue']}' (vhost '{r['vhost']}', from step {r['started_at']}) in "
        f"{r['seconds']:.2f} s: {r['moved_out']} messages moved out and {r['moved_back']} back, "
        f"at most {r['duplicates_at_most']} duplicates made by this run "
        f"({dups['bindings_overlap_at_most']} while bindings overlapped, "
        f"{dups['resent_at_most']} moved again), default-exchange window "
        f"{r['default_exchange_window_ms']} ms" + (f", held {held}" if held else "")
    )
