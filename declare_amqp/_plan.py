"""What a plan is made of: its changes (``Action``, ``Kind``, ``Change``, ``Difference``),
``Plan``, ``PHASES`` (the one apply order) and the one create/update/conflict-by-identity
loop every kind plans with (``keyed_changes``). ``_planning.plan`` loops over the kinds.

Each difference between the files and the broker becomes one change:

- ``create``   the object is missing;
- ``update``   a mutable object differs (policies), changed in place;
- ``conflict`` an immutable property differs (queue type, durability, any argument of a
               queue or exchange); a plan with conflicts is never applied;
- ``delete``   with prune: the broker has it and no file declares it;
- ``refuse``   with prune: it should be deleted, but it is not safe (a queue with messages or
               consumers) and ``force`` was not given.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from typing import Any

from ._errors import Location, Problem
from ._model import (
    AccessObject,
    BindingSpec,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    TopologyObject,
    VhostSpec,
    canonical,
)
from ._policy_choice import select_policy
from ._versions import QUORUM_DEFAULT_DELIVERY_LIMIT, Subject, edge


class Action(str, Enum):
    """What a change does. A ``str``: JSON output and comparisons with strings keep working."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    CONFLICT = "conflict"
    REFUSE = "refuse"
    KEEP = "keep"  # prune spares it (priority_worker's own queues); listed in Plan.kept
    MIGRATE = "migrate"  # an immutable change carried out by a migration (_migration)

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Kind(str, Enum):
    """What a change is about: a topology object or an access object (a ``str`` too)."""

    VHOST = "vhost"
    EXCHANGE = "exchange"
    POLICY = "policy"
    QUEUE = "queue"
    BINDING = "binding"
    USER = "user"
    PERMISSION = "permission"
    TOPIC_PERMISSION = "topic permission"
    OPERATOR_POLICY = "operator policy"
    FEDERATION_UPSTREAM = "federation upstream"
    SHOVEL = "shovel"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class KindName(str):
    """The kind of a change about a topology kind that has no ``Kind`` member: the kind's
    own name ("widget"), as its module sets it (``TopologyKind.kind``). Such a kind is
    written by its own ``write`` through the management API, in the phases ``PHASES`` keeps
    for them (after the queues and bindings; deleted before the bindings)."""

    __slots__ = ()

    @property
    def value(self) -> str:
        """The name itself (a ``Kind`` member's ``value``, for the JSON form)."""
        return str.__str__(self)


class AccessKindName(KindName):
    """The kind of a change about an access kind that has no ``Kind`` member: the kind's own
    name ("gadget"), as its module sets it (``AccessKind.kind``). Such a kind is written and
    rolled back by ``_access`` like the built-in access kinds, in the "write access objects"
    phase after them (and deleted first in "delete access objects")."""

    __slots__ = ()


# What a change is about: a member of ``Kind``, or a registered kind's own name.
PlanKind = Kind | KindName


def kind_named(name: str) -> PlanKind:
    """``name`` as a ``Kind`` member where it is one, else as a ``KindName`` (a
    ``KindName`` given, an ``AccessKindName`` among them, is kept as it is)."""
    if type(name) is Kind or isinstance(name, KindName):
        return name
    try:
        return Kind(name)
    except ValueError:
        return KindName(name)


def access_kind_named(name: str) -> PlanKind:
    """``name`` as a ``Kind`` member where it is one, else as an ``AccessKindName``."""
    found = kind_named(name)
    return found if type(found) is Kind else AccessKindName(found)


CREATE = Action.CREATE
UPDATE = Action.UPDATE
DELETE = Action.DELETE
CONFLICT = Action.CONFLICT
REFUSE = Action.REFUSE
KEEP = Action.KEEP
MIGRATE = Action.MIGRATE
ACTIONS = (CREATE, UPDATE, DELETE, CONFLICT, REFUSE, MIGRATE)
KINDS = (Kind.VHOST, Kind.EXCHANGE, Kind.POLICY, Kind.QUEUE, Kind.BINDING)  # dependency order
# The built-in access kinds, in the order they are written (deleted in the reverse order);
# an access kind named by its ``AccessKindName`` is written after them, deleted before them.
ACCESS_KINDS = (
    Kind.VHOST,  # its metadata and limits
    Kind.USER,
    Kind.PERMISSION,
    Kind.TOPIC_PERMISSION,
    Kind.OPERATOR_POLICY,
    Kind.FEDERATION_UPSTREAM,
    Kind.SHOVEL,
)


class Writer(str, Enum):
    """Which module writes a phase: the management API, AMQP, or ``_access`` (over HTTP)."""

    MANAGEMENT = "management"
    AMQP = "amqp"
    ACCESS = "access"


@dataclass(frozen=True)
class Phase:
    """One step of an apply: the changes of ``kinds`` of one action group, one writer.

    ``deletes`` phases take deletes (and, for ordering, refusals); the others take creates
    and updates (and, for ordering, conflicts).
    """

    name: str
    writer: Writer
    kinds: tuple[Kind, ...]
    deletes: bool = False
    updates: bool = True  # False: creates only (an update of such a kind is another phase's)
    # the phase of the topology kinds that have no ``Kind`` member (``KindName``)
    others: bool = False


# The apply order, defined once: ``plan`` orders its changes by it, and ``_apply`` walks it.
# Creates in dependency order (vhosts -> exchanges -> policies -> queues with their bindings),
# then the access objects; deletes in the reverse order, the access objects' last.
PHASES: tuple[Phase, ...] = (
    Phase("create vhosts", Writer.MANAGEMENT, (Kind.VHOST,), updates=False),
    Phase("declare exchanges", Writer.AMQP, (Kind.EXCHANGE,)),
    Phase("write policies", Writer.MANAGEMENT, (Kind.POLICY,)),
    # One pipelined phase: a queue's bindings follow it on its channel (_amqp.lanes).
    Phase("declare queues and bindings", Writer.AMQP, (Kind.QUEUE, Kind.BINDING)),
    Phase("write other topology objects", Writer.MANAGEMENT, (), others=True),
    Phase("write access objects", Writer.ACCESS, ACCESS_KINDS),
    Phase("delete other topology objects", Writer.MANAGEMENT, (), deletes=True, others=True),
    Phase("unbind", Writer.AMQP, (Kind.BINDING,), deletes=True),
    Phase("delete queues", Writer.AMQP, (Kind.QUEUE,), deletes=True),
    Phase("delete policies", Writer.MANAGEMENT, (Kind.POLICY,), deletes=True),
    Phase("delete exchanges", Writer.AMQP, (Kind.EXCHANGE,), deletes=True),
    Phase("delete access objects", Writer.ACCESS, ACCESS_KINDS[::-1], deletes=True),
)


def _phase_positions() -> dict[tuple[Kind, bool, bool], tuple[int, int]]:
    found: dict[tuple[Kind, bool, bool], tuple[int, int]] = {}
    for index, phase in enumerate(PHASES):
        for rank, kind in enumerate(phase.kinds):
            for update in (False, True) if phase.updates else (False,):
                found.setdefault((kind, phase.deletes, update), (index, rank))
    return found


_POSITION = _phase_positions()
# where a topology kind without a ``Kind`` member goes, by ``deletes``
_OTHERS = {p.deletes: (i, 0) for i, p in enumerate(PHASES) if p.others}
# where an access kind without a ``Kind`` member goes, by ``deletes``: written after the
# built-in access kinds, deleted before them
_ACCESS_OTHERS = {
    p.deletes: (i, -1 if p.deletes else len(p.kinds))
    for i, p in enumerate(PHASES)
    if p.writer is Writer.ACCESS
}


def apply_position(change: Change) -> tuple[int, int]:
    """Where ``change`` goes in the apply order: (its phase in PHASES, its kind's rank there)."""
    deletes = change.action in (DELETE, REFUSE, KEEP)
    update = change.action in (UPDATE, CONFLICT, MIGRATE)
    kind = change.kind
    if type(kind) is KindName:
        return _OTHERS[deletes]
    if type(kind) is AccessKindName:
        return _ACCESS_OTHERS[deletes]
    return _POSITION[(Kind(kind), deletes, update)]


def phase_of(change: Change) -> Phase:
    """The phase that writes ``change``."""
    return PHASES[apply_position(change)[0]]


# Queue and exchange arguments that a policy can set instead, mutable later.
_POLICY_EQUIVALENT = {
    "x-message-ttl": "message-ttl",
    "x-expires": "expires",
    "x-max-length": "max-length",
    "x-max-length-bytes": "max-length-bytes",
    "x-overflow": "overflow",
    "x-dead-letter-exchange": "dead-letter-exchange",
    "x-dead-letter-routing-key": "dead-letter-routing-key",
    "x-dead-letter-strategy": "dead-letter-strategy",
    "x-delivery-limit": "delivery-limit",
    "x-queue-mode": "queue-mode",
    "x-max-age": "max-age",
    "x-queue-leader-locator": "queue-leader-locator",
    "alternate-exchange": "alternate-exchange",
}

Spec = (
    VhostSpec | ExchangeSpec | QueueSpec | BindingSpec | PolicySpec | AccessObject | TopologyObject
)
Named = ExchangeSpec | QueueSpec | PolicySpec


@dataclass(frozen=True)
class Difference:
    """One field that differs: ``field`` is e.g. ``durable`` or ``arguments.x-max-priority``."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class QueueStats:
    """What prune needs to know about a live queue (sampled by the management API)."""

    messages: int = 0
    consumers: int = 0


@dataclass(frozen=True)
class Change:
    """One thing apply would do (or refuses to do)."""

    action: Action
    kind: PlanKind
    vhost: str
    name: str
    desired: Spec | None = None
    actual: Spec | None = None
    differences: tuple[Difference, ...] = ()
    message: str = ""
    # MIGRATE only: what the migration does (``_migration.describe_migration``), shown as is.
    migration: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        # Callers may pass the plain strings ("create", "queue"): stored as the enums.
        if type(self.action) is not Action:
            object.__setattr__(self, "action", Action(self.action))
        if type(self.kind) is not Kind:
            object.__setattr__(self, "kind", kind_named(self.kind))

    @property
    def location(self) -> Location | None:
        """Where the desired object was declared (None for the broker's)."""
        return self.desired.location if self.desired is not None else None

    @property
    def spec(self) -> Spec:
        """The object the change is about (the desired one when there is one)."""
        found = self.desired if self.desired is not None else self.actual
        assert found is not None
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a stable contract, see README: "JSON output")."""
        if self.action in (CREATE,):
            before, after = None, describe(self.spec)
        elif self.action in (DELETE, REFUSE, KEEP):
            before, after = describe(self.spec), None
        else:
            before = {d.field: d.before for d in self.differences}
            after = {d.field: d.after for d in self.differences}
        found = {
            "action": self.action.value,  # plain strings: any encoder takes them
            "kind": self.kind.value,
            "vhost": self.vhost,
            "name": self.name,
            "location": str(self.location) if self.location else None,
            "before": before,
            "after": after,
            "message": self.message or None,
        }
        if self.migration is not None:
            found["migration"] = dict(self.migration)
        return found


@dataclass(frozen=True)
class Plan:
    """The changes that make the broker match the files, in apply order."""

    changes: tuple[Change, ...] = ()
    prune: bool = False
    vhosts: tuple[str, ...] = field(default=())
    # Problems that do not stop the apply (e.g. deprecated by this broker's version).
    warnings: tuple[Problem, ...] = field(default=())
    # What prune leaves alone on purpose, with the reason (not changes: an otherwise empty
    # plan is still "no changes").
    kept: tuple[Change, ...] = field(default=())
    # Checks the plan could not make (e.g. permissions a non-administrator may not read).
    notes: tuple[str, ...] = field(default=())

    def of(self, action: Action) -> tuple[Change, ...]:
        """The changes of one action."""
        return tuple(c for c in self.changes if c.action == action)

    @property
    def conflicts(self) -> tuple[Change, ...]:
        """The changes that block an apply."""
        return self.of(CONFLICT)

    @property
    def refused(self) -> tuple[Change, ...]:
        """The deletes prune refuses (not safe without force)."""
        return self.of(REFUSE)

    @property
    def migrations(self) -> tuple[Change, ...]:
        """Queues apply re-creates with their messages, after every other write."""
        return self.of(MIGRATE)

    @property
    def writes(self) -> tuple[Change, ...]:
        """The changes apply performs."""
        return tuple(c for c in self.changes if c.action in (CREATE, UPDATE, DELETE))

    @property
    def is_empty(self) -> bool:
        """Whether there is nothing to write."""
        return not self.changes

    def summary(self) -> dict[str, int]:
        """How many changes of each action."""
        return {action.value: len(self.of(action)) for action in ACTIONS}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a stable contract, see README: "JSON output")."""
        return {
            "format": 1,
            "vhosts": list(self.vhosts),
            "prune": self.prune,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "warnings": [str(w) for w in self.warnings],
            "kept": [c.to_dict() for c in self.kept],
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def describe(spec: Spec) -> dict[str, Any]:
    """The properties of an object, as shown in plans (no location)."""
    # Shallow on purpose: argument tables are plain dicts of JSON values already, and
    # dataclasses.asdict deep-copies them (measurable on plans of thousands of objects).
    return {
        f.name: dict(v) if isinstance(v := getattr(spec, f.name), Mapping) else v
        for f in fields(spec)
        if f.name not in _NOT_SHOWN
    }


# Bookkeeping fields of the specs, neither compared nor shown.
_NOT_SHOWN = frozenset(
    {
        "location",
        "type_given",
        "origin",
        "migrate",
        "password_hash",
        "password",  # a user's literal password: compared by re-hashing, never shown
        "literal_uris",
        "uri_digests",
    }
)


_PLAIN = (str, int, bool, type(None))


def _same(want: Any, have: Any) -> bool:
    """``canonical(want) == canonical(have)``: two strings, integers, booleans or Nones of
    the same type are equal exactly when their texts are (a boolean is never taken for an
    integer), so most fields of a no-op plan need no text built."""
    kind = type(want)
    if kind is type(have) and kind in _PLAIN:
        return bool(want == have)
    return canonical(want) == canonical(have)


_COMPARED: dict[tuple[type[Any], frozenset[str]], tuple[str, ...]] = {}


def _compared_fields(spec: Spec, skip: frozenset[str]) -> tuple[str, ...]:
    """The fields of a spec that a plan compares (``dataclasses.fields`` once per class)."""
    key = (type(spec), skip)
    found = _COMPARED.get(key)
    if found is None:
        skipped = {*_NOT_SHOWN, "vhost", "name", *skip}
        found = _COMPARED[key] = tuple(f.name for f in fields(spec) if f.name not in skipped)
    return found


def compare(desired: Spec, actual: Spec, skip: Iterable[str] = ()) -> list[Difference]:
    """The fields in which ``desired`` and ``actual`` differ: every compared field, each
    argument on its own (``arguments.x-...``)."""
    diffs: list[Difference] = []
    for name in _compared_fields(desired, frozenset(skip)):
        want, have = getattr(desired, name), getattr(actual, name)
        if isinstance(want, Mapping) and isinstance(have, Mapping) and name == "arguments":
            if not want and not have:
                continue
            for key in sorted(set(want) | set(have)):
                if not _same(want.get(key), have.get(key)):
                    diffs.append(Difference(f"arguments.{key}", have.get(key), want.get(key)))
        elif not _same(want, have):
            diffs.append(Difference(name, have, want))
    return diffs


def _conflict_message(kind: PlanKind, diffs: list[Difference], where: Location | None) -> str:
    parts = []
    for d in diffs:
        parts.append(
            f"{d.field} is {_show(d.before)} on the broker but {_show(d.after)} in "
            f"{where or 'the files'}"
        )
    fixed = "type, durability and arguments" if kind == "queue" else "type, flags and arguments"
    article = "An" if kind[0] in "aeiou" else "A"
    text = "; ".join(parts) + f". {article} {kind}'s {fixed} cannot change once it exists"
    policy_keys = sorted(
        {
            _POLICY_EQUIVALENT[d.field.split(".", 1)[1]]
            for d in diffs
            if d.field.startswith("arguments.") and d.field.split(".", 1)[1] in _POLICY_EQUIVALENT
        }
    )
    lost = " (its messages are lost)" if kind == "queue" else ""
    if policy_keys:
        text += (
            f": set {', '.join(policy_keys)} with a policy instead (policies can change "
            f"at any time), or delete and re-create the {kind}{lost}"
        )
    else:
        text += f": delete and re-create the {kind}{lost}, or keep the broker's value in the file"
    return text + "."


def _show(value: Any) -> str:
    """Values as they are written in YAML: true, 5, 'text', absent."""
    if value is None:
        return "absent"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def keyed_changes(
    kind: PlanKind,
    desired: Iterable[Any],
    actual: Iterable[Any],
    identity: Callable[[Any], Hashable],
    differences: Callable[[Any, Any], list[Difference]],
    *,
    mutable: bool = True,
    place: Callable[[Any], tuple[str, str]] = lambda o: (o.vhost, o.name),
) -> Iterator[Change]:
    """The one create/update/conflict-by-identity loop of every kind (topology and access):
    a create for each desired object the broker lacks; for one it has, its ``differences``
    as an update (``mutable``) or a conflict. ``place``: the vhost and name a change shows."""
    live = {identity(o): o for o in actual}
    for want in desired:
        have = live.get(identity(want))
        vhost, name = place(want)
        if have is None:
            origin = getattr(want, "origin", "")
            yield Change(
                CREATE,
                kind,
                vhost,
                name,
                desired=want,
                message=f"derived: {origin}" if origin else "",
            )
            continue
        diffs = differences(want, have)
        if not diffs:
            continue
        if mutable:
            yield Change(UPDATE, kind, vhost, name, want, have, tuple(diffs))
        else:
            message = _conflict_message(kind, diffs, want.location)
            yield Change(CONFLICT, kind, vhost, name, want, have, tuple(diffs), message)


def ordered(changes: Iterable[Change]) -> list[Change]:
    """In apply order (PHASES): creates and updates in dependency order, then deletes in
    reverse order."""
    return sorted(changes, key=apply_position)


def note_broker_defaults(
    the_plan: Plan, version: tuple[int, ...], policies: Iterable[PolicySpec]
) -> Plan:
    """Say on each quorum queue to be created what delivery limit it will really have.

    From 4.0 on a quorum queue that sets none gets 20 (messages redelivered more often are
    dead-lettered, or dropped without a dead-letter exchange), unless the policy that applies
    to it (the matching one of highest priority) sets ``delivery-limit``.
    """
    if edge("quorum-delivery-limit", Subject.QUEUE_ARGUMENT, version) is None:
        return the_plan
    by_name: dict[tuple[str, str], PolicySpec] = {}
    for p in policies:
        by_name.setdefault((p.vhost, p.name), p)  # the files' policies come first and win
    changes = []
    for c in the_plan.changes:
        q = c.desired
        if (
            c.action == CREATE
            and isinstance(q, QueueSpec)
            and q.type == "quorum"
            and "x-delivery-limit" not in q.arguments
        ):
            policy = _effective_policy(q, by_name.values(), version)
            limit = policy.definition.get("delivery-limit") if policy is not None else None
            if policy is None or limit is None:
                c = replace(
                    c,
                    message=(
                        f"delivery limit {QUORUM_DEFAULT_DELIVERY_LIMIT} (the broker's default for "
                        "quorum queues since 4.0; set delivery_limit, -1 for none)"
                    ),
                )
            else:
                c = replace(c, message=f"delivery limit {limit} (from policy '{policy.name}')")
        changes.append(c)
    return replace(the_plan, changes=tuple(changes))


def _effective_policy(
    q: QueueSpec, policies: Iterable[PolicySpec], version: tuple[int, ...]
) -> PolicySpec | None:
    """The policy the broker applies to ``q`` (``_policy_choice.select_policy``: apply-to, pattern,
    keys the queue type supports, the highest priority)."""
    mine = [p for p in policies if p.vhost == q.vhost]
    return select_policy("queue", q.name, q.type, mine, version).chosen
