"""The topology as frozen values: what the files say, and what the broker has.

No I/O here. Both sides of a plan are expressed in these types; ``location`` is set for
objects that come from a file and is ``None`` for objects read from the broker.
Arguments are already normalised (aliases resolved, ``x-queue-type`` moved into ``type``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import Location, Problem

if TYPE_CHECKING:
    from ._access import Access

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")
QUEUE_TYPES = ("classic", "quorum", "stream")
POLICY_APPLY_TO = ("queues", "exchanges", "all", "classic_queues", "quorum_queues", "streams")

Arguments = Mapping[str, Any]


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
        value = self.arguments.get("alternate-exchange")
        return value if isinstance(value, str) else None

    @property
    def label(self) -> str:
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
        return f"queue '{self.name}' ({vhost_label(self.vhost)})"


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
        arrow = "->" if self.destination_type == "queue" else "=>"
        key = f" [{self.routing_key}]" if self.routing_key else ""
        args = f" {dict(self.arguments)}" if self.arguments else ""
        return f"{self.source} {arrow} {self.destination}{key}{args}"

    @property
    def label(self) -> str:
        return f"binding {self.name} ({vhost_label(self.vhost)})"


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
        return f"policy '{self.name}' ({vhost_label(self.vhost)})"


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
        key = f" with routing key '{self.routing_key}'" if self.routing_key else ""
        headers = f" and headers {dict(self.headers)}" if self.headers else ""
        where = vhost_label(self.vhost)
        return f"expect: a message to exchange '{self.exchange}'{key}{headers} ({where})"


@dataclass(frozen=True)
class Topology:
    """Everything one set of files declares (or one broker holds)."""

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
        )


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
    )


def canonical(value: Any) -> str:
    """A stable text form of a value (argument tables included), for identity and comparison."""
    if isinstance(value, Mapping):
        inner = ",".join(f"{k!r}:{canonical(value[k])}" for k in sorted(value))
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
