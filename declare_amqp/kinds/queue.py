"""The queue kind: a topology file's ``queues``, read into ``_model.QueueSpec`` (whose
``read``/``from_definitions`` the definitions reader and the broker reader share).

Queue-specific reading stays code here: the argument aliases (``max_length`` ->
``x-max-length``...) folded into the arguments, and the queue type, where ``type`` wins
over ``arguments.x-queue-type`` (a disagreement is a problem). A queue's own ``bindings``
are read by ``kinds.binding``; derived worker queues by ``_consumers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .._errors import Problem
from .._fit import fits, type_fits, value_problem
from .._format import ARGUMENT_TYPES, FORBIDDEN_ARGUMENTS, QUEUE_ALIASES, Key, describe_types
from .._model import QUEUE_TYPES, QueueSpec, Topology
from .._plan import DELETE, KEEP, REFUSE, Change, Kind, QueueStats
from ..worker_queues import LEGACY_EXPIRES_GRACE_MS, made_by_worker
from ._base import (
    PruneContext,
    Reader,
    SchemaObject,
    TopologyDefinitionsReader,
    TopologyKind,
    WithVhost,
    reserved_name,
)
from .binding import QUEUE_BINDING_KEYS, entries

_STR, _BOOL = (str,), (bool,)

QUEUE_KEYS = (
    Key("name", _STR, "Queue name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("type", _STR, "Queue type.", default="classic", choices=QUEUE_TYPES),
    Key("durable", _BOOL, "Survives a broker restart (quorum and stream must be).", default=True),
    Key("auto_delete", _BOOL, "Deleted when its last consumer goes.", default=False),
    Key("arguments", (dict,), "Queue arguments (x-...), for anything without an alias."),
    Key("bindings", (list,), "Bindings of this queue: {exchange, routing_key, arguments}."),
    Key(
        "migrate",
        _BOOL,
        "Carry an immutable change (type, durability, arguments) out by migrating the queue "
        "with its messages and bindings, also without --migrate.",
        default=False,
    ),
    *QUEUE_ALIASES,
)

# an argument's alias (``x-max-length`` -> ``max_length``), and back
_ALIAS_OF = {k.argument: k.name for k in QUEUE_ALIASES if k.argument}
_ARGUMENT_OF = {name: argument for argument, name in _ALIAS_OF.items()}


class QueueKind(TopologyKind[QueueSpec]):
    """A queue: declared over AMQP (its bindings follow it on its channel); any difference
    is a conflict, or a migration."""

    spec = QueueSpec
    kind = Kind.QUEUE
    key = "queues"
    doc = "Queues, with their bindings."
    top_rank = 3
    keys = QUEUE_KEYS
    schema_name = "queue"
    schema_doc = "A queue."
    definitions_fields = {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "durable": (_BOOL, False),
        "auto_delete": (_BOOL, False),
        "arguments": ((dict,), False),
        "type": (_STR, False),
        "exclusive": (_BOOL, False),
        "node": (_STR, False),
    }

    def read_document(
        self, reader: Reader, doc: Mapping[str, Any], release: bool = False
    ) -> Iterable[QueueSpec]:
        """The queues of one parsed topology file (problems go to ``reader``).

        ``release``: the document's values are unshared (no aliases) and nothing reads the
        raw queues after this (their bindings were read before): each one is dropped from
        ``doc`` as its spec is built, so the values and the model of a large file are not
        both held whole.
        """
        entries = list(reader.entries(doc, self.key))
        held = doc[self.key] if release and entries else None
        for index, (raw, line) in enumerate(entries):
            if held is not None:
                entries[index] = held[index] = None  # type: ignore[call-overload]
            spec = self.read(reader, raw, line)
            if spec is not None:
                yield spec

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> QueueSpec:
        """A queue: its aliases folded into the arguments, its type from ``type`` or
        ``arguments.x-queue-type`` (a disagreement is a problem)."""
        label = f"queue '{f['name']}'"
        arguments = dict(f.get("arguments") or {})
        for alias in QUEUE_ALIASES:
            if alias.name in f and alias.argument:
                if alias.argument in arguments and arguments[alias.argument] != f[alias.name]:
                    reader.problem(
                        raw.key_lines.get(alias.name, line),
                        f"'{alias.name}' and arguments.{alias.argument} disagree",
                        label,
                    )
                arguments[alias.argument] = f[alias.name]
        queue_type = f.get("type", "classic")
        type_given = "type" in f or "x-queue-type" in arguments
        if "x-queue-type" in arguments:
            declared = arguments.pop("x-queue-type")
            if "type" in f and declared != queue_type:
                reader.problem(
                    line,
                    f"'type: {queue_type}' and arguments.x-queue-type '{declared}' disagree",
                    label,
                )
            elif "type" not in f:
                queue_type = declared
        return QueueSpec.read(
            f.get("vhost", reader.vhost),
            f,
            reader.at(line),
            queue_type=queue_type,
            arguments=arguments,
            type_given=type_given,
            migrate=bool(f.get("migrate", False)),
        )

    def problems(self, spec: QueueSpec) -> Iterable[Problem]:
        """No name or the broker's; an unknown type; quorum and stream queues not durable or
        auto-delete; arguments the type refuses, or of the wrong type or range (``_fit``, the
        rule the loader and the exporter follow); a dead-letter key without its exchange.
        Overflow reject-publish-dlx on a quorum queue is accepted by the broker: a warning
        (``_fit.fit_warnings``)."""
        q = spec
        if q.name == "":
            yield Problem(
                "a queue needs a name (server-named queues are not declarative)",
                q.location,
                q.label,
            )
        elif (reserved := reserved_name(q)) is not None:
            yield reserved
        if q.type not in QUEUE_TYPES:
            yield Problem(
                f"unknown queue type '{q.type}' (expected {', '.join(QUEUE_TYPES)})",
                q.location,
                q.label,
            )
            return
        if q.type in ("quorum", "stream"):
            if not q.durable:
                yield Problem(f"{q.type} queues must be durable", q.location, q.label)
            if q.auto_delete:
                yield Problem(f"{q.type} queues cannot be auto_delete", q.location, q.label)
        for arg in sorted(q.arguments):
            yield from _argument_problems(q, arg)
        if (
            "x-dead-letter-routing-key" in q.arguments
            and "x-dead-letter-exchange" not in q.arguments
        ):
            yield Problem(
                "dead_letter_routing_key needs dead_letter_exchange too", q.location, q.label
            )

    def plan(self, desired: Topology, actual: Topology) -> Iterable[Change]:
        """Creates, and conflicts (any difference), with the x-expires that workers before
        0.3 gave their delay queues left out where a consumer derives that queue (it is the
        same queue, not a conflict)."""
        return self.keyed(desired.queues, _without_legacy_expires(desired.queues, actual.queues))

    def references(self, spec: QueueSpec) -> Iterable[tuple[str, str, str]]:
        """Its dead-letter exchange."""
        dlx = spec.arguments.get("x-dead-letter-exchange")
        if isinstance(dlx, str):
            yield ("exchange", spec.vhost, dlx)

    def prune(self, actual: Sequence[QueueSpec], ctx: PruneContext) -> Iterable[Change]:
        """The broker's queues in scope that no file declares nor uses: kept when
        priority_worker made them for a declared queue; refused when they hold messages
        or consumers (unless forced); deleted otherwise."""
        want = {(q.vhost, q.name) for q in ctx.desired.queues}
        consumed: dict[str, set[str]] = {}
        for dq in ctx.desired.queues:
            consumed.setdefault(dq.vhost, set()).add(dq.name)
        for q in actual:
            if (
                q.vhost not in ctx.scope
                or (q.vhost, q.name) in want
                or ("queue", q.vhost, q.name) in ctx.referenced
            ):
                continue
            owner = made_by_worker(q.name, q.arguments, consumed.get(q.vhost, ()))
            if owner is not None:
                yield Change(
                    KEEP,
                    self.kind,
                    q.vhost,
                    q.name,
                    actual=q,
                    message=f"kept: made by priority_worker for {owner}",
                )
                continue
            s = ctx.stats.get((q.vhost, q.name), QueueStats())
            if (s.messages or s.consumers) and not ctx.force:
                yield Change(REFUSE, self.kind, q.vhost, q.name, actual=q, message=_refusal(s))
            else:
                yield Change(DELETE, self.kind, q.vhost, q.name, actual=q)

    def schema_definitions(self, obj: SchemaObject) -> dict[str, dict[str, Any]]:
        """A queue, with the schema of its own bindings."""
        bindings = obj(QUEUE_BINDING_KEYS, "A binding of this queue.")
        return {
            self.schema_name: obj(
                self.keys,
                self.schema_doc,
                {"bindings": {"type": "array", "items": bindings}},
            )
        }

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> QueueSpec | None:
        """A queue of a definitions file. A server-named queue (``amq.gen-...``) in an
        export is skipped, with its bindings, as the broker's own import does."""
        vhost = reader.vhost_of(f)
        if f["name"].startswith("amq."):
            reader.skipped.add(("queue", vhost, f["name"]))
            reader.warn(
                line,
                "skipped: names starting with 'amq.' are the broker's (a server-named "
                "queue in an export); the broker's own import skips it too",
                f"queue '{f['name']}' (vhost {vhost})",
            )
            return None
        return QueueSpec.from_definitions(vhost, f, reader.at(line))

    def to_definitions(self, spec: QueueSpec) -> dict[str, Any]:
        """A queue as definitions JSON spells it: a type other than classic written as
        ``arguments.x-queue-type`` (the vhost added by the caller)."""
        arguments = dict(spec.arguments)
        if spec.type != "classic":
            arguments["x-queue-type"] = spec.type
        return {
            "name": spec.name,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "arguments": arguments,
        }

    # ------------------------------------------------------------ export (YAML)

    def export(
        self, topology: Topology, single: bool, with_vhost: WithVhost
    ) -> list[dict[str, Any]]:
        """The queues, by vhost and name, each with its bindings nested."""
        nested, _ = entries(topology, single)
        return [
            with_vhost(self.to_entry(q, nested.get((q.vhost, q.name))), q.vhost)
            for q in sorted(topology.queues, key=lambda q: (q.vhost, q.name))
        ]

    def to_entry(self, q: QueueSpec, bindings: list[dict[str, Any]] | None) -> dict[str, Any]:
        """A queue as a YAML entry: arguments by their alias where the loader takes the value
        as it is, its bindings nested."""
        entry: dict[str, Any] = {"name": q.name, "type": q.type}
        if not q.durable:
            entry["durable"] = False
        if q.auto_delete:
            entry["auto_delete"] = True
        arguments = {}
        for key, value in q.arguments.items():
            alias = _ALIAS_OF.get(key)
            if alias is not None and alias_fits(alias, value):
                entry[alias] = value
            else:
                arguments[key] = value
        if arguments:
            entry["arguments"] = arguments
        if bindings:
            entry["bindings"] = bindings
        return entry


QUEUE = QueueKind()


def _without_legacy_expires(
    desired: Sequence[QueueSpec], actual: Sequence[QueueSpec]
) -> Sequence[QueueSpec]:
    """The broker's queues, each that a consumer derives without the x-expires workers
    before 0.3 gave their delay queues (its message TTL plus a grace)."""
    derived = {(q.vhost, q.name) for q in desired if q.origin}
    if not derived:
        return actual
    queues = []
    for q in actual:
        ttl = q.arguments.get("x-message-ttl")
        if (
            (q.vhost, q.name) in derived
            and isinstance(ttl, int)
            and q.arguments.get("x-expires") == ttl + LEGACY_EXPIRES_GRACE_MS
        ):
            q = replace(q, arguments={k: v for k, v in q.arguments.items() if k != "x-expires"})
        queues.append(q)
    return tuple(queues)


def _refusal(s: QueueStats) -> str:
    """Why prune does not delete a queue with messages or consumers."""
    why = []
    if s.messages:
        why.append(f"{s.messages} message{'s' if s.messages != 1 else ''}")
    if s.consumers:
        why.append(f"{s.consumers} consumer{'s' if s.consumers != 1 else ''}")
    return f"not deleted: it has {' and '.join(why)} (use --force)"


def _argument_problems(q: QueueSpec, arg: str) -> Iterable[Problem]:
    """One argument of a queue of a known type: refused by that type, or a known argument
    of the wrong type or out of range."""
    if arg in FORBIDDEN_ARGUMENTS[q.type]:
        alias = ARGUMENT_TYPES.get(arg)
        shown = f"{alias.name} ({arg})" if alias else arg
        hint = ""
        if q.type == "quorum" and arg == "x-max-priority":
            hint = (
                " (RabbitMQ 4.x quorum queues have message priorities of their own: "
                "publish with a priority, no argument needed; or use a classic queue)"
            )
        yield Problem(f"{shown} is not supported by {q.type} queues{hint}", q.location, q.label)
    known = ARGUMENT_TYPES.get(arg)
    if known is None:
        return
    value = q.arguments[arg]
    if not type_fits(value, known.types):  # the one rule (_fit), as loader and exporter
        yield Problem(
            f"argument {arg} must be {describe_types(known.types)}, not {value!r}",
            q.location,
            q.label,
        )
        return
    wrong = value_problem(known, value)
    if wrong is not None:
        yield Problem(f"{known.name} ({arg}) {wrong}", q.location, q.label)


def alias_fits(alias: str, value: Any) -> bool:
    """Use the alias only when the loader would accept the value as it is (the one rule)."""
    return fits(_ARGUMENT_OF[alias], value)
