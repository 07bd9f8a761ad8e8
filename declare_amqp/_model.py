"""The topology as frozen values: what the files say, and what the broker has.

No I/O here. Both sides of a plan are expressed in these types; ``location`` is set for
objects that come from a file and is ``None`` for objects read from the broker.
Arguments are already normalised (aliases resolved, ``x-queue-type`` moved into ``type``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, TypeVar, cast

from ._errors import Location, Problem

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
QUEUE_TYPES = ("classic", "quorum", "stream")
POLICY_APPLY_TO = ("queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams")

# Exchanges every vhost has; they can be bound to but never declared or deleted.
BUILTIN_EXCHANGES = frozenset(
    {
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
        "amq.rabbitmq.trace",
        "amq.rabbitmq.log",
    }
)


def is_builtin_exchange(name: str) -> bool:
    """The default exchange and every ``amq.*`` exchange belong to the broker."""
    return name == "" or name.startswith("amq.")


Arguments = Mapping[str, Any]


class Table(dict[str, Any]):
    """An argument table as a spec holds it: a dict (JSON, ``dict(...)``, equality and
    ``repr`` as before) that refuses changes, so that specs with the same table share one
    (``table``): most queues and bindings of a large file have none or the same few."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a spec's argument table is read-only: copy it with dict(...)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (Table, (dict(self),))


_EMPTY_TABLE = Table()
_SHARED_TABLES: dict[tuple[Any, ...], Table] = {}  # the most recently used first
_MAX_SHARED_TABLES = 256
_SHARING = threading.Lock()
_PLAIN = (str, int, float, bool, type(None))


def table(values: Mapping[str, Any] | None) -> Arguments:
    """``values`` as a read-only table, one object for equal tables of plain values among
    the ``_MAX_SHARED_TABLES`` most recently used: a 50 MB file's 550,000 queues and 550,000
    bindings hold a few distinct tables (64-184 bytes each), and its 55,000 alternate
    exchanges as many as there are (these pass through without crowding out the others)."""
    if not values:
        return _EMPTY_TABLE
    if type(values) is Table:
        return values
    try:
        # the value's type too: 1 == True and 1 == 1.0, but they are different arguments
        key = tuple((k, type(v), v) for k, v in values.items() if type(v) in _PLAIN)
    except TypeError:
        key = ()
    if len(key) != len(values):  # a list or table inside: kept as its own
        return Table(values)
    with _SHARING:  # the files are read while the broker is, in another thread
        shared = _SHARED_TABLES.pop(key, None)
        if shared is None:
            shared = Table(values)
            if len(_SHARED_TABLES) >= _MAX_SHARED_TABLES:
                del _SHARED_TABLES[next(iter(_SHARED_TABLES))]  # the least recently used
        _SHARED_TABLES[key] = shared
    return shared


def vhost_label(vhost: str) -> str:
    """How a vhost is shown in messages."""
    return f"vhost {vhost}"


@dataclass(frozen=True, slots=True)
class VhostSpec:
    """A virtual host that must exist."""

    name: str
    location: Location | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"vhost '{self.name}'"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """An exchange; its alternate exchange is the ``alternate-exchange`` argument."""

    vhost: str
    name: str
    type: str
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: Arguments = field(default_factory=dict)
    location: Location | None = field(default=None, compare=False)

    @property
    def alternate_exchange(self) -> str | None:
        """Its ``alternate-exchange`` argument, if any."""
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) else None

    @classmethod
    def read(
        cls,
        vhost: str,
        f: Mapping[str, Any],
        location: Location | None = None,
        arguments: Arguments | None = None,
    ) -> ExchangeSpec:
        """The one reader of an exchange: from its fields as a topology file, a definitions
        file and the broker's listing all spell them (``arguments`` when the caller folded
        more into them: the YAML ``alternate_exchange``)."""
        return cls(
            vhost=vhost,
            name=f["name"],
            type=f["type"],
            durable=bool(f.get("durable", True)),
            auto_delete=bool(f.get("auto_delete", False)),
            internal=bool(f.get("internal", False)),
            arguments=table(f.get("arguments") if arguments is None else arguments),
            location=location,
        )

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"exchange '{self.name}' ({vhost_label(self.vhost)})"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue. ``type`` is classic, quorum or stream; never repeated in ``arguments``."""

    vhost: str
    name: str
    type: str = "classic"
    durable: bool = True
    auto_delete: bool = False
    arguments: Arguments = field(default_factory=dict)
    location: Location | None = field(default=None, compare=False)
    # False when the file names no type: the vhost's default_queue_type then decides
    # (RabbitMQ 3.13+/4.x), see _validate.resolve_queue_types.
    type_given: bool = field(default=True, compare=False)
    # Set on queues declare-amqp derives from a consumer (its retry delay queues), e.g.
    # "retry delay 30 s of consumer 'email-sender'".
    origin: str = field(default="", compare=False)
    # ``migrate: true`` in the file: a plain apply migrates this queue on a conflict (_migration).
    migrate: bool = field(default=False, compare=False)

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"queue '{self.name}' ({vhost_label(self.vhost)})"

    @classmethod
    def read(
        cls,
        vhost: str,
        f: Mapping[str, Any],
        location: Location | None = None,
        *,
        queue_type: str,
        arguments: Arguments,
        type_given: bool = True,
        migrate: bool = False,
    ) -> QueueSpec:
        """The one reader of a queue, from its fields (name, durable, auto_delete) and its
        type and arguments as the caller resolved them: a topology file folds its aliases
        and lets ``type`` win (``_loader``), definitions JSON lets ``x-queue-type`` win
        (``from_definitions``)."""
        return cls(
            vhost=vhost,
            name=f["name"],
            type=queue_type,
            durable=bool(f.get("durable", True)),
            auto_delete=bool(f.get("auto_delete", False)),
            arguments=table(arguments),
            location=location,
            type_given=type_given,
            migrate=migrate,
        )

    @classmethod
    def from_definitions(
        cls, vhost: str, f: Mapping[str, Any], location: Location | None = None
    ) -> QueueSpec:
        """A queue of a definitions file or of the broker's listing: ``x-queue-type`` folded
        into the type (before the ``type`` field; classic when neither is given)."""
        arguments = dict(f.get("arguments") or {})
        queue_type = arguments.pop("x-queue-type", None) or f.get("type") or "classic"
        return cls.read(vhost, f, location, queue_type=queue_type, arguments=arguments)


@dataclass(frozen=True, slots=True)
class BindingSpec:
    """A binding from exchange ``source`` to a queue or an exchange."""

    vhost: str
    source: str
    destination: str
    destination_type: str = "queue"  # or "exchange"
    routing_key: str = ""
    arguments: Arguments = field(default_factory=dict)
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """Identity: a binding has no name; all its fields together are what it is."""
        return (
            self.vhost,
            self.source,
            self.destination_type,
            self.destination,
            self.routing_key,
            canonical(self.arguments),
        )

    @property
    def name(self) -> str:
        """The name a plan shows: source, arrow, destination, routing key and arguments."""
        arrow = "->" if self.destination_type == "queue" else "=>"
        key = f" [{self.routing_key}]" if self.routing_key else ""
        args = f" {dict(self.arguments)}" if self.arguments else ""
        return f"{self.source} {arrow} {self.destination}{key}{args}"

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"binding {self.name} ({vhost_label(self.vhost)})"

    @classmethod
    def read(
        cls,
        vhost: str,
        f: Mapping[str, Any],
        location: Location | None = None,
        routing_key: str | None = None,
    ) -> BindingSpec:
        """The one reader of a binding, from its fields as a topology file's ``bindings``,
        a definitions file and the broker's listing spell them (``routing_key`` when the
        caller resolved it: a topology file's ``binding_key``)."""
        return cls(
            vhost=vhost,
            source=f["source"],
            destination=f["destination"],
            destination_type=f.get("destination_type", "queue"),
            routing_key=(f.get("routing_key") or "") if routing_key is None else routing_key,
            arguments=table(f.get("arguments")),
            location=location,
        )


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A policy: the mutable way to set TTLs, limits and dead-lettering."""

    vhost: str
    name: str
    pattern: str
    definition: Arguments
    apply_to: str = "all"
    priority: int = 0
    location: Location | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"policy '{self.name}' ({vhost_label(self.vhost)})"

    @classmethod
    def read(
        cls,
        vhost: str,
        f: Mapping[str, Any],
        location: Location | None = None,
        apply_to: str = "apply_to",
    ) -> PolicySpec:
        """The one reader of a policy, from its fields; ``apply_to`` names the field that
        holds it (a topology file's ``apply_to``; definitions JSON and the broker spell it
        ``apply-to``, see ``from_definitions``)."""
        return cls(
            vhost=vhost,
            name=f["name"],
            pattern=f["pattern"],
            definition=dict(f.get("definition") or {}),
            apply_to=f.get(apply_to) or "all",
            priority=f.get("priority", 0),
            location=location,
        )

    @classmethod
    def from_definitions(
        cls, vhost: str, f: Mapping[str, Any], location: Location | None = None
    ) -> PolicySpec:
        """A policy of a definitions file or of the broker's listing (``apply-to``)."""
        return cls.read(vhost, f, location, apply_to="apply-to")

    def body(self) -> dict[str, Any]:
        """The policy as the broker's API and definitions JSON spell it (``apply-to``): the
        one conversion of a policy (or operator policy) into a dict."""
        return {
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(self.definition),
            "priority": self.priority,
        }

    def entry(self) -> dict[str, Any]:
        """The policy as a topology file spells it (``apply_to``), named."""
        body = self.body()
        return {
            "name": self.name,
            "pattern": body["pattern"],
            "apply_to": body["apply-to"],
            "definition": body["definition"],
            "priority": body["priority"],
        }


@dataclass(frozen=True)
class ConsumedQueue:
    """One queue a consumer reads, with its prefetch (its weight in weighted mode)."""

    queue: str
    prefetch: int
    location: Location | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ConsumerSpec:
    """An application that consumes queues with priority_worker.

    declare-amqp derives and owns the queues the worker needs for it (see
    :mod:`declare_amqp.worker_queues`); ``priority-worker run --topology FILE --consumer
    NAME`` takes its settings from here.
    """

    vhost: str
    name: str
    queues: tuple[ConsumedQueue, ...]
    mode: str = "weighted"
    concurrency: int | None = None
    max_retries: int = 5
    delays: tuple[float, ...] = ()  # seconds, one delay queue per step; () = the default
    dead_letter_exchange: str | None = None
    location: Location | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How messages name it."""
        return f"consumer '{self.name}' ({vhost_label(self.vhost)})"

    def retry_steps(self) -> tuple[float, ...]:
        """The retry delays in seconds, ascending: one delay queue per step and queue."""
        from .worker_queues import retry_steps

        return retry_steps(max_retries=self.max_retries, delays=self.delays)


@dataclass(frozen=True)
class Expectation:
    """An ``expect`` entry: a message published like this must reach exactly these queues
    (none: unroutable). Checked offline by ``validate`` and against the broker by ``plan``."""

    vhost: str
    exchange: str
    routing_key: str = ""
    headers: Arguments = field(default_factory=dict)
    reaches: tuple[str, ...] = ()
    location: Location | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """How messages name it."""
        key = f" with routing key '{self.routing_key}'" if self.routing_key else ""
        headers = f" and headers {dict(self.headers)}" if self.headers else ""
        where = vhost_label(self.vhost)
        return f"expect: a message to exchange '{self.exchange}'{key}{headers} ({where})"


class Grouped(Protocol):
    """A spec of an access kind: ``GROUP`` names its group in ``Access`` (``users``...)."""

    GROUP: ClassVar[str]


G = TypeVar("G", bound=Grouped)


class TopologyObject(Protocol):
    """What every spec of a topology kind is to a plan and to ``Topology``: a frozen
    dataclass, named, in a vhost, labelled, located."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def name(self) -> str:
        """Its name in a plan."""

    @property
    def vhost(self) -> str:
        """Its vhost."""

    @property
    def label(self) -> str:
        """How messages name it."""

    @property
    def location(self) -> Location | None:
        """Where a file declared it (None for the broker's)."""


class AccessObject(Grouped, TopologyObject, Protocol):
    """What every access spec is to a plan: a topology object's properties (its vhost
    ``""`` for cluster-wide objects: users), and its plan details."""

    @property
    def shown(self) -> str:
        """Plan details (never a secret)."""


class Access:
    """The access objects of a set of files (or of a broker): users, permissions, vhost
    settings, operator policies, federation upstreams, shovels... held alike, by group.

    The model does not know the kinds (they live in ``declare_amqp.kinds``, which builds on
    the model): each spec class names its group (``UserSpec.GROUP == "users"``), and
    ``of(UserSpec)`` gives that group's specs, typed. ``managed``: the top-level keys the
    files use (prune covers only those kinds).
    """

    __slots__ = ("_groups", "managed")

    def __init__(self, *, managed: Iterable[str] = frozenset(), **groups: Iterable[Any]) -> None:
        """``Access(users=(...), permissions=(...), managed=...)``: groups by name."""
        # in the order given (the registry's): the order of vhost_names
        self._groups: tuple[tuple[str, tuple[Any, ...]], ...] = tuple(
            (k, specs) for k, v in groups.items() if (specs := tuple(v))
        )
        self.managed = frozenset(managed)

    @classmethod
    def holding(cls, specs: Iterable[Any], managed: Iterable[str] = frozenset()) -> Access:
        """The specs grouped by their class's ``GROUP`` (in their order)."""
        groups: dict[str, list[Any]] = {}
        for spec in specs:
            groups.setdefault(type(spec).GROUP, []).append(spec)
        return cls(managed=managed, **groups)

    def of(self, spec_type: type[G]) -> tuple[G, ...]:
        """The specs of one group, e.g. ``access.of(UserSpec)``."""
        return cast("tuple[G, ...]", self.group(spec_type.GROUP))

    def group(self, name: str) -> tuple[Any, ...]:
        """The specs of the group ``name`` (``"operator_policies"``...)."""
        return next((specs for key, specs in self._groups if key == name), ())

    def __iter__(self) -> Iterator[Any]:
        """Every spec, group by group."""
        return (spec for _, specs in self._groups for spec in specs)

    @property
    def size(self) -> int:
        """How many objects."""
        return sum(len(specs) for _, specs in self._groups)

    def vhost_names(self) -> list[str]:
        """The vhosts the objects live in (users and vhost settings name none of their own)."""
        return list(dict.fromkeys(s.vhost for s in self if getattr(s, "IN_VHOST", False)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Access):
            return NotImplemented
        return (sorted(self._groups), self.managed) == (sorted(other._groups), other.managed)

    def __hash__(self) -> int:
        return hash((tuple(sorted(self._groups)), self.managed))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._groups)
        return f"Access({shown}, managed={sorted(self.managed)!r})"


# The objects of the topology kinds that have no field of ``Topology`` (a kind registered in
# ``declare_amqp.kinds`` after the five built in): (the kind's key, its objects), by key.
Others = tuple[tuple[str, tuple[Any, ...]], ...]

# The topology kinds that have a field of their own (their key is the field's name).
FIELD_KINDS = ("vhosts", "exchanges", "queues", "bindings", "policies")


@dataclass(frozen=True)
class Topology:
    """Everything one set of files declares (or one broker holds).

    The five built-in topology kinds have a field each; any other registered topology kind's
    objects are in ``others``, by the kind's key. ``of(key)`` reads either alike (it is what
    ``TopologyKind.specs`` reads), and ``holding`` builds a topology from objects by key.
    """

    vhosts: tuple[VhostSpec, ...] = ()
    exchanges: tuple[ExchangeSpec, ...] = ()
    queues: tuple[QueueSpec, ...] = ()
    bindings: tuple[BindingSpec, ...] = ()
    policies: tuple[PolicySpec, ...] = ()
    # What the loader read but does not manage (kinds of a definitions file it skips), or
    # accepted with a caveat: shown as warnings, never dropped silently.
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    # Vhosts a file names explicitly as its default (`vhost:` or --vhost), even if it
    # declares nothing there: prune works in them too.
    named: tuple[str, ...] = ()
    consumers: tuple[ConsumerSpec, ...] = ()
    # Users, permissions, vhost metadata and limits (see _access); None when there are none.
    access: Access | None = None
    # The `expect` section: routing expectations (see _simulate).
    expectations: tuple[Expectation, ...] = ()
    # The other topology kinds' objects, by key (none empty; see ``Others``).
    others: Others = ()

    def of(self, key: str) -> tuple[Any, ...]:
        """The objects of the topology kind whose key is ``key`` ("queues", "widgets"...)."""
        if key in FIELD_KINDS:
            found: tuple[Any, ...] = getattr(self, key)
            return found
        return next((specs for k, specs in self.others if k == key), ())

    def holding(self, **by_key: Iterable[Any]) -> Topology:
        """This topology with the objects of the kinds named by key replaced (a built-in
        kind's field, or another kind's entry of ``others``)."""
        fields_: dict[str, Any] = {}
        others = dict(self.others)
        for key, specs in by_key.items():
            if key in FIELD_KINDS:
                fields_[key] = tuple(specs)
            else:
                others[key] = tuple(specs)
        kept = tuple((k, v) for k, v in others.items() if v)
        return replace(self, **fields_, others=kept)

    def vhost_names(self) -> list[str]:
        """Every vhost named by any object or by a file, in first-seen order."""
        seen: dict[str, None] = {}
        for name in self.named:
            seen.setdefault(name)
        for v in self.vhosts:
            seen.setdefault(v.name)
        for group in (self.exchanges, self.queues, self.bindings, self.policies, self.consumers):
            for obj in group:
                seen.setdefault(obj.vhost)
        for _, specs in self.others:
            for obj in specs:
                seen.setdefault(obj.vhost)
        for name in self.access.vhost_names() if self.access is not None else ():
            seen.setdefault(name)
        return list(seen)

    def in_vhost(self, vhost: str) -> Topology:
        """The objects of one vhost."""
        return Topology(
            vhosts=tuple(v for v in self.vhosts if v.name == vhost),
            exchanges=tuple(x for x in self.exchanges if x.vhost == vhost),
            queues=tuple(q for q in self.queues if q.vhost == vhost),
            bindings=tuple(b for b in self.bindings if b.vhost == vhost),
            policies=tuple(p for p in self.policies if p.vhost == vhost),
            named=tuple(n for n in self.named if n == vhost),
            consumers=tuple(c for c in self.consumers if c.vhost == vhost),
            expectations=tuple(e for e in self.expectations if e.vhost == vhost),
            others=_others((k, (s for s in specs if s.vhost == vhost)) for k, specs in self.others),
        )


def _others(parts: Iterable[tuple[str, Iterable[Any]]]) -> Others:
    """``Others`` from (key, objects) pairs: one entry per key, in first-seen order, the
    objects of a key's pairs concatenated, empty keys left out."""
    found: dict[str, list[Any]] = {}
    for key, specs in parts:
        found.setdefault(key, []).extend(specs)
    return tuple((k, tuple(v)) for k, v in found.items() if v)


def merge(parts: Iterable[Topology]) -> Topology:
    """Concatenate topologies (duplicates are resolved by the loader, not here)."""
    parts = list(parts)
    return Topology(
        vhosts=tuple(v for p in parts for v in p.vhosts),
        exchanges=tuple(x for p in parts for x in p.exchanges),
        queues=tuple(q for p in parts for q in p.queues),
        bindings=tuple(b for p in parts for b in p.bindings),
        policies=tuple(po for p in parts for po in p.policies),
        warnings=tuple(w for p in parts for w in p.warnings),
        named=tuple(dict.fromkeys(n for p in parts for n in p.named)),
        consumers=tuple(c for p in parts for c in p.consumers),
        expectations=tuple(e for p in parts for e in p.expectations),
        others=_others(pair for p in parts for pair in p.others),
    )


def canonical(value: Any) -> str:
    """A stable text form of a value (argument tables included), for identity and comparison."""
    if isinstance(value, Mapping):
        if not value:
            return "{}"  # one object: every binding without arguments has this in its key
        inner = ",".join(f"{k!r}:{canonical(value[k])}" for k in sorted(value))
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
