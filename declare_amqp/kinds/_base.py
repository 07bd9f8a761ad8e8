"""What every kind of access object is made of: the ``AccessKind`` descriptor.

A kind module (``user``, ``permission``, ``shovel``...) holds its frozen spec and one
``AccessKind`` subclass instance: the spec's YAML keys (the one table the loader, validator
and JSON schema read), its identity, what the plan compares, how it is read from the broker
and written (through the ``ManagementClient``'s typed methods), its definitions-JSON mapping
both ways and its export. The engines (``_access``, ``_definitions``, ``_schema``) loop over
the registry (``kinds.ACCESS_KINDS``) and call these hooks; the defaults here fit a kind
keyed by a few fields and written one object at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .._errors import DeclareAmqpError, Location, Problem
from .._format import Key, Reader

__all__ = [
    "AccessKind",
    "DefinitionsReader",
    "PlanContext",
    "PruneContext",
    "Reader",
    "SchemaObject",
    "TopologyDefinitionsReader",
    "TopologyKind",
    "change",
]
from .._model import Access, AccessObject, Topology
from .._plan import (
    CREATE,
    DELETE,
    UPDATE,
    Action,
    Change,
    Difference,
    PlanKind,
    QueueStats,
    Spec,
    Writer,
    access_kind_named,
    compare,
    keyed_changes,
)

if TYPE_CHECKING:
    from .._management import ManagementClient

ADMINISTRATOR = "administrator"
USERS_SCOPE = ""  # the "vhost" of cluster-wide changes (users)

_STR, _INT, _LIST, _BOOL = (str,), (int,), (list,), (bool,)

S = TypeVar("S", bound=AccessObject)
T = TypeVar("T", bound=Spec)

# ``_schema``'s builder of an object's schema: (keys, description, overridden properties).
SchemaObject = Callable[..., dict[str, Any]]


class DefinitionsReader(Protocol):
    """What a kind translates a definitions file's objects through (``_definitions``)."""

    def translated(self, raw: Any, line: int, renamed: Any) -> Any:
        """``raw`` by YAML key (``renamed``: broker key -> YAML key), remembering spellings."""

    def limits(self, out: Any, value: Any, table: Any, line: int, label: str) -> None:
        """The broker's limits object ``value`` set into ``out`` by YAML key (``table``)."""

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        """An error of the definitions file."""


class TopologyDefinitionsReader(Protocol):
    """What a topology kind reads a definitions file's objects through (``_definitions``)."""

    # what was skipped, as (kind, vhost, name): what depends on it is skipped too
    skipped: set[tuple[str, str, str]]

    def vhost_of(self, f: Mapping[str, Any]) -> str:
        """The vhost an object of the file belongs to."""

    def at(self, line: int) -> Location:
        """The location of ``line`` of the file being read."""

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        """An error of the definitions file."""

    def warn(self, line: int, message: str, obj: str | None = None) -> None:
        """Read, with a caveat shown (an object skipped, a field ignored)."""


# How an export entry of an object named by vhost and name gets its vhost (``_export``).
WithVhost = Callable[[dict[str, Any], str], dict[str, Any]]

# The fields of one object of the broker's definitions format: field -> (types, required).
DefinitionsFields = Mapping[str, tuple[tuple[type, ...], bool]]


@dataclass
class PlanContext:
    """What planning one kind needs besides its desired and actual objects."""

    scope: Sequence[str]
    prune: bool
    connecting_user: str
    managed: frozenset[str]
    new_vhosts: frozenset[str] = frozenset()
    env: Mapping[str, str] | None = None
    # users with the administrator tag (the user kind keeps the last one)
    admins: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class PruneContext:
    """What pruning one topology kind needs besides the broker's objects of that kind."""

    desired: Topology
    scope: frozenset[str]  # the vhosts the files name (prune works there only)
    force: bool  # delete queues with messages or consumers too
    stats: Mapping[tuple[str, str], QueueStats]
    # objects the files use without declaring them (``TopologyKind.references``): kept
    referenced: frozenset[tuple[str, str, str]]


def change(
    action: Action | str,
    kind: PlanKind | str,
    vhost: str,
    name: str,
    desired: AccessObject | None = None,
    actual: AccessObject | None = None,
    differences: Iterable[Difference] = (),
    message: str = "",
) -> Change:
    """A plan ``Change`` about an access object (``kind``: a ``Kind`` member, or an access
    kind's own ``AccessKindName``)."""
    return Change(
        Action(action),
        access_kind_named(kind),
        vhost,
        name,
        desired,
        actual,
        tuple(differences),
        message,
    )


def reserved_name(spec: Any) -> Problem | None:
    """A problem when an exchange or queue is named like the broker's own (``amq.*``)."""
    if spec.name.startswith("amq."):
        return Problem(
            "names starting with 'amq.' are reserved for the broker", spec.location, spec.label
        )
    return None


def plain(value: Any) -> Any:
    """A tuple shown as a list (plans and exports)."""
    return list(value) if isinstance(value, tuple) else value


def unlimited(value: Any) -> Any:
    """A limit as compared: -1 (a file's "no limit") is the broker's missing limit."""
    return None if isinstance(value, int) and not isinstance(value, bool) and value < 0 else value


def tag_tuple(value: Any) -> tuple[str, ...]:
    """Tags as the broker lists them (a list, or "a,b" on older brokers), sorted."""
    if isinstance(value, str):
        value = [t for t in value.split(",") if t]
    return tuple(sorted(set(value or ())))


def read_tags(reader: Reader, value: Any, line: int, label: str) -> tuple[str, ...]:
    """A file's ``tags`` list, sorted; a problem when it is no list of strings."""
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        reader.problem(line, "'tags' must be a list of strings", label)
        return ()
    return tuple(sorted(set(value)))


def limit_of(value: Mapping[str, Any], key: str) -> int | None:
    """One limit of a broker's limits object, or None."""
    found = value.get(key)
    return int(found) if found is not None else None


class AccessKind(Generic[S]):
    """One kind of access object; a kind module makes one instance and the registry lists it.

    Class attributes a kind sets: ``spec`` (its frozen spec class), ``kind`` (in plans),
    ``key`` (its top-level YAML key, the ``managed`` name), ``doc`` (that key's description),
    ``schema_name``/``schema_doc`` (its JSON schema definition), ``keys`` (the YAML keys),
    ``plural`` (in messages), ``tag`` (the tag writing it needs), ``admin_to_read``
    (reading it needs the administrator tag), ``compared`` (the fields an update changes
    in place), ``definitions_section`` (its list in definitions JSON), ``renamed`` (the
    broker's spelling -> the YAML key), ``component`` (its component among the
    ``parameters`` of definitions JSON, if it is one), ``bulk`` and ``checked_on_broker``.

    ``kind`` is a ``_plan.Kind`` member for the built-in kinds; a kind added later uses its
    own ``_plan.AccessKindName`` ("gadget"): its changes go to the "write access objects"
    phase after the built-in kinds' (deleted before theirs), with no edit in ``_plan``.
    """

    spec: type[S]
    kind: PlanKind  # a ``Kind`` member, or a new kind's own ``AccessKindName``
    key: str
    doc: str
    schema_name: str
    schema_doc: str
    keys: tuple[Key, ...] = ()
    plural: str = ""
    top_level: bool = True  # False: its ``key`` is the topology's (no ``managed`` key)
    tag: str | None = ADMINISTRATOR
    admin_to_read: bool = False
    compared: tuple[str, ...] = ()
    definitions_section: str | None = None
    renamed: Mapping[str, str] = {}
    # created and updated in the one definitions import of a run (``bulk_entry``)
    component: str | None = None
    bulk: bool = False
    # the broker refuses some of its objects in ways ``refusals`` finds before any write
    checked_on_broker: bool = False

    # ------------------------------------------------------------ the model

    def specs(self, access: Access) -> tuple[S, ...]:
        """This kind's objects of ``access``."""
        return access.of(self.spec)

    def identity(self, spec: S) -> tuple[Any, ...]:
        """What makes two declarations the same object."""
        raise NotImplementedError

    def vhost_of(self, spec: S) -> str:
        """The vhost a change of ``spec`` is in (``USERS_SCOPE`` for cluster-wide kinds)."""
        return str(getattr(spec, "vhost"))  # noqa: B009 - the specs share no base class

    def name_of(self, spec: S) -> str:
        """The name a change of ``spec`` shows."""
        return str(getattr(spec, "name"))  # noqa: B009 - the specs share no base class

    # ------------------------------------------------------------ files

    def read_document(self, reader: Reader, doc: Mapping[str, Any]) -> list[S]:
        """This kind's objects of one parsed file (problems go to ``reader``)."""
        found = []
        for raw, line in reader.entries(doc, self.key):
            spec = self.read(reader, raw, line)
            if spec is not None:
                found.append(spec)
        return found

    def read(self, reader: Reader, raw: Any, line: int) -> S | None:
        """One entry of a file; None when it is wrong (the reader has the problem)."""
        f = reader.fields(raw, self.keys, str(self.kind), line)
        return None if f is None else self.build(f, reader.vhost, reader.at(line))

    def build(self, f: Mapping[str, Any], vhost: str, location: Location) -> S:
        """The spec of an entry's checked values (``vhost``: the file's default)."""
        raise NotImplementedError

    def problems(self, spec: S) -> list[Problem]:
        """What the files alone tell is wrong with ``spec`` (pure)."""
        return []

    def refusals(self, specs: Sequence[S], *, users: set[str], version: str) -> list[Problem]:
        """What the broker would refuse of ``specs``, found before anything is written."""
        return []

    # ------------------------------------------------------------ definitions JSON

    def from_definitions(self, reader: DefinitionsReader, raw: Any, line: int) -> Any:
        """One object of a definitions file by YAML key (read then like a YAML entry)."""
        return reader.translated(raw, line, self.renamed)

    def to_definitions(self, spec: S) -> dict[str, Any]:
        """``spec`` as an entry of ``definitions_section`` (without its vhost)."""
        raise NotImplementedError

    def definitions_order(self, spec: S) -> tuple[Any, ...]:
        """The order of the entries written (``to_definitions``, exports)."""
        return self.identity(spec)

    # ------------------------------------------------------------ the broker

    def wanted(self, desired: Access) -> bool:
        """Whether the broker's objects of this kind are read to plan ``desired``."""
        return bool(self.specs(desired)) or self.key in desired.managed

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str], admin: bool
    ) -> list[S]:
        """The broker's objects of this kind in ``vhosts`` (``admin``: the user may read
        what only an administrator may)."""
        raise NotImplementedError

    def plan(
        self, desired: Sequence[S], actual: Sequence[S], ctx: PlanContext
    ) -> tuple[list[Change], list[Problem]]:
        """The changes that make the broker's objects of this kind match the files: one
        create/update-by-identity loop, then (with prune, when the files manage the kind)
        the deletes of the broker's objects in scope that no file declares."""
        changes = list(self.keyed(desired, actual))
        if ctx.prune and self.key in ctx.managed:
            in_scope, declared = set(ctx.scope), {self.identity(d) for d in desired}
            changes += [
                change(DELETE, self.kind, self.vhost_of(a), self.name_of(a), actual=a)
                for a in actual
                if self.vhost_of(a) in in_scope
                and self.identity(a) not in declared
                and self.prunable(a, ctx)
            ]
        return changes, []

    def keyed(self, desired: Iterable[S], actual: Iterable[S]) -> Iterable[Change]:
        """Creates of the missing objects, updates of the ``compared`` fields that differ
        (``_plan.keyed_changes``, the loop the topology kinds plan with too)."""
        return keyed_changes(
            self.kind,
            desired,
            actual,
            self.identity,
            self.differences,
            place=lambda s: (self.vhost_of(s), self.name_of(s)),
        )

    def differences(self, want: S, have: S) -> list[Difference]:
        """The ``compared`` fields in which ``want`` and ``have`` differ."""
        return [
            Difference(f, getattr(have, f), getattr(want, f))
            for f in self.compared
            if getattr(want, f) != getattr(have, f)
        ]

    def prunable(self, spec: S, ctx: PlanContext) -> bool:
        """Whether prune may delete the broker's ``spec``."""
        return True

    def bulk_entry(self, c: Change, env: Mapping[str, str] | None) -> dict[str, Any] | None:
        """A create or update written with the others of its run in one definitions import
        (``definitions_section``), or None when the kind writes it in ``write``."""
        return None

    def write(self, management: ManagementClient, c: Change, env: Mapping[str, str] | None) -> bool:
        """Carry ``c`` out; False when there is nothing for this kind to do."""
        raise NotImplementedError

    def undo(self, management: ManagementClient, c: Change) -> None:
        """Undo this run's write ``c`` (the rollback, ``_rollback``): a create is deleted,
        an update written back to ``c.actual``, what the broker held before (a ``bulk``
        kind's in a definitions import of its own). Raises DeclareAmqpError with the reason
        when that cannot be done exactly (the rollback lists the object by name)."""
        if c.action == CREATE:
            inverse = Change(DELETE, self.kind, c.vhost, c.name, actual=c.desired)
        elif c.action == UPDATE and c.actual is not None:
            back = [Difference(d.field, d.after, d.before) for d in c.differences]
            inverse = Change(UPDATE, self.kind, c.vhost, c.name, c.actual, c.desired, tuple(back))
        else:
            raise DeclareAmqpError(f"{c.action.value}d: only a create or an update is undone")
        entry = self.bulk_entry(inverse, None) if self.bulk and inverse.action == UPDATE else None
        if entry is not None:
            section = str(self.definitions_section)
            management.import_definitions({section: [entry]}, f"restoring {c.spec.label}")
        self.write(management, inverse, None)

    # ------------------------------------------------------------ export

    def export_entry(self, spec: S, with_vhost: bool) -> dict[str, Any]:
        """``spec`` as an entry of a topology file (``with_vhost``: several vhosts)."""
        raise NotImplementedError


# The vhost and name of a spec, the default place and identity of a topology object.
_VHOST_AND_NAME: Callable[[Any], tuple[str, str]] = attrgetter("vhost", "name")


class TopologyKind(Generic[T]):
    """One kind of topology object (vhost, exchange, policy, queue, binding); a kind module
    makes one instance and the registry (``kinds.TOPOLOGY_KINDS``) lists it.

    Class attributes a kind sets: ``spec`` (its frozen spec class, in ``_model``: the
    definitions reader and the broker reader build it too; a new kind's may live in its
    module), ``kind`` (in plans: a ``Kind`` member, or a new kind's ``KindName``), ``key``
    (its top-level YAML list, and its objects' key in ``Topology.of``), ``doc`` (that key's
    description), ``top_rank`` (where a file's top-level keys list it), ``keys`` (its YAML
    keys: the one table the loader, the validator and the JSON schema read),
    ``schema_name``/``schema_doc`` (its JSON schema definition).
    """

    spec: type[T]
    kind: PlanKind  # a ``Kind`` member, or a new kind's own ``KindName``
    key: str
    doc: str
    top_rank: int
    keys: tuple[Key, ...] = ()
    schema_name: str = ""
    schema_doc: str = ""
    # a difference is an update in place (policies), not a conflict
    mutable: bool = False
    # its objects' fields in definitions JSON (the broker's format; ``from_definitions``)
    definitions_fields: DefinitionsFields = {}
    # AMQP: its changes go to ``_amqp``'s sessions with the others of their phase (a
    # queue's bindings pipelined behind it); MANAGEMENT: this kind's ``write`` and ``undo``
    writer: Writer = Writer.AMQP

    # ------------------------------------------------------------ the model

    def specs(self, topology: Topology) -> tuple[T, ...]:
        """This kind's objects of ``topology``."""
        found: tuple[T, ...] = topology.of(self.key)
        return found

    # ------------------------------------------------------------ files

    def read_document(self, reader: Reader, doc: Mapping[str, Any]) -> Iterable[T]:
        """This kind's objects of one parsed topology file (problems go to ``reader``)."""
        for raw, line in reader.entries(doc, self.key):
            spec = self.read(reader, raw, line)
            if spec is not None:
                yield spec

    def read(self, reader: Reader, raw: Any, line: int) -> T | None:
        """One entry of a file; None when it is wrong (the reader has the problem)."""
        f = reader.fields(raw, self.keys, str(self.kind), line)
        return None if f is None else self.build(reader, f, raw, line)

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> T:
        """The spec of an entry's checked values ``f`` (``raw``: the entry as written)."""
        raise NotImplementedError

    def problems(self, spec: T) -> Iterable[Problem]:
        """What the files alone tell is wrong with ``spec`` (pure; ``_validate.validate``
        loops over every kind's objects)."""
        return ()

    def schema_definitions(self, obj: SchemaObject) -> dict[str, dict[str, Any]]:
        """This kind's entries of the JSON schema's ``$defs`` (built with ``obj``)."""
        return {self.schema_name: obj(self.keys, self.schema_doc)}

    def schema_property(self, obj: SchemaObject) -> dict[str, Any]:
        """The schema of this kind's top-level list (its items by ``$ref``)."""
        return {"type": "array", "items": {"$ref": f"#/$defs/{self.schema_name}"}}

    # ------------------------------------------------------------ definitions JSON

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> T | None:
        """One object of a definitions file (its ``definitions_fields`` checked); None when
        it is skipped (the reader has the warning or the problem)."""
        raise NotImplementedError

    def export(
        self, topology: Topology, single: bool, with_vhost: WithVhost
    ) -> list[dict[str, Any]]:
        """This kind's objects of ``topology`` as entries of its top-level list of a
        topology file, sorted (``single``: the file has one vhost, named once)."""
        return []

    def to_definitions(self, spec: T) -> dict[str, Any]:
        """``spec`` as an entry of its definitions-JSON list (the vhost added by the caller)."""
        raise NotImplementedError

    def definitions_order(self, spec: T) -> tuple[Any, ...]:
        """The order of the entries written: by vhost, then name."""
        return self.place(spec)

    # ------------------------------------------------------------ planning

    def identity(self, spec: T) -> Hashable:
        """What makes two declarations the same object: its vhost and name."""
        return self.place(spec)

    def place(self, spec: T) -> tuple[str, str]:
        """The vhost and name a change of ``spec`` shows."""
        return _VHOST_AND_NAME(spec)

    def differences(self, want: T, have: T) -> list[Difference]:
        """The fields in which the files' ``want`` and the broker's ``have`` differ (every
        argument compared on its own: ``_plan.compare``)."""
        return compare(want, have)

    def plan(self, desired: Topology, actual: Topology) -> Iterable[Change]:
        """The changes that make the broker's objects of this kind match the files
        (``keyed``)."""
        return self.keyed(self.specs(desired), self.specs(actual))

    def keyed(self, desired: Sequence[T], actual: Sequence[T]) -> Iterable[Change]:
        """Creates of the objects the broker lacks; for one it has, its ``differences`` as an
        update (``mutable``) or a conflict (``_plan.keyed_changes``, the one loop)."""
        cls = type(self)
        place = _VHOST_AND_NAME if cls.place is TopologyKind.place else self.place
        return keyed_changes(
            self.kind,
            desired,
            actual,
            self.identity_function(),
            compare if cls.differences is TopologyKind.differences else self.differences,
            mutable=self.mutable,
            place=place,
        )

    def identity_function(self) -> Callable[[T], Hashable]:
        """``identity`` as the cheapest callable: a no-op plan and the files' merge run it
        once per object, so where a kind keeps the defaults the plain function is handed
        over, not the methods that call it (issue 22's no-op plan)."""
        cls = type(self)
        if cls.identity is TopologyKind.identity and cls.place is TopologyKind.place:
            return _VHOST_AND_NAME
        return self.identity

    def references(self, spec: T) -> Iterable[tuple[str, str, str]]:
        """The objects ``spec`` uses, as (kind, vhost, name): prune keeps them."""
        return ()

    def prune(self, actual: Sequence[T], ctx: PruneContext) -> Iterable[Change]:
        """With prune: the deletes of the broker's objects in scope that no file declares
        and that ``prunable`` allows."""
        declared = {self.identity(d) for d in self.specs(ctx.desired)}
        for have in actual:
            vhost, name = self.place(have)
            if (
                vhost in ctx.scope
                and self.identity(have) not in declared
                and self.prunable(have, ctx)
            ):
                yield Change(DELETE, self.kind, vhost, name, actual=have)

    def prunable(self, spec: T, ctx: PruneContext) -> bool:
        """Whether prune may delete the broker's ``spec``."""
        return True

    # ------------------------------------------------------------ the broker

    def read_broker(
        self, management: ManagementClient, vhosts: Sequence[str]
    ) -> Sequence[T] | None:
        """The broker's objects of this kind in ``vhosts``, read through the management
        client's typed method for its endpoint; None (the five built-in kinds) when
        ``ManagementClient.read``'s one round of requests lists them (``_broker_json``)."""
        return None

    def write(self, management: ManagementClient, c: Change) -> None:
        """Carry out ``c``, a change of a kind the management API writes (``writer``)."""
        raise NotImplementedError(f"{self.kind} changes are written over AMQP (_amqp)")

    def undo(self, management: ManagementClient, c: Change) -> None:
        """Undo this run's write ``c`` of a kind the management API writes (the rollback,
        ``_rollback``); raises DeclareAmqpError with the reason when that cannot be done."""
        raise NotImplementedError(f"{self.kind} changes are undone over AMQP (_amqp)")
