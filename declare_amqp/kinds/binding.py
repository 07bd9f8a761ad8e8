"""The binding kind: a topology file's ``bindings`` and each queue's own ``bindings``, read
into ``_model.BindingSpec`` (whose ``read`` the definitions reader and the broker reader
share). A binding has no name: its identity is ``BindingSpec.key``, all its fields.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from .._errors import Problem
from .._format import Key
from .._model import BindingSpec, ExchangeSpec, Topology, is_builtin_exchange
from .._plan import Difference, Kind
from ._base import PruneContext, Reader, TopologyDefinitionsReader, TopologyKind, WithVhost

_STR = (str,)

BINDING_KEYS = (
    Key("source", _STR, "Source exchange.", required=True),
    Key("destination", _STR, "Queue or exchange that receives.", required=True),
    Key(
        "destination_type",
        _STR,
        "queue or exchange.",
        default="queue",
        choices=("queue", "exchange"),
    ),
    Key("routing_key", _STR, "Routing (binding) key.", default=""),
    Key("binding_key", _STR, "Same as routing_key."),
    Key("arguments", (dict,), "Binding arguments."),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
)

# A binding listed under its queue (the queue's vhost, the queue as destination).
QUEUE_BINDING_KEYS = (
    Key("exchange", _STR, "Source exchange.", required=True),
    Key("routing_key", _STR, "Routing (binding) key.", default=""),
    Key("binding_key", _STR, "Same as routing_key (the original declare-amqp's name)."),
    Key("arguments", (dict,), "Binding arguments (headers exchanges: x-match, ...)."),
)


def routing_key(reader: Reader, f: Mapping[str, Any], line: int, label: str) -> str:
    """An entry's routing key: ``routing_key`` or its synonym ``binding_key`` ('' if none;
    two different values are a problem)."""
    rk = f.get("routing_key")
    bk = f.get("binding_key")
    if rk is not None and bk is not None and rk != bk:
        reader.problem(
            line, "routing_key and binding_key disagree (they are the same thing)", label
        )
    return str(rk if rk is not None else bk if bk is not None else "")


class BindingKind(TopologyKind[BindingSpec]):
    """A binding: declared over AMQP after its queue; created or deleted, never updated
    (all its fields are its identity)."""

    spec = BindingSpec
    kind = Kind.BINDING
    key = "bindings"
    doc = "Bindings, exchange-to-exchange included."
    top_rank = 4
    keys = BINDING_KEYS
    schema_name = "binding"
    schema_doc = "A binding (exchange-to-exchange included)."
    definitions_fields = {
        "source": (_STR, True),
        "vhost": (_STR, False),
        "destination": (_STR, True),
        "destination_type": (_STR, True),
        "routing_key": (_STR, False),
        "arguments": ((dict,), False),
        "properties_key": (_STR, False),
    }

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> BindingSpec:
        """A top-level binding of a checked entry."""
        return BindingSpec.read(
            f.get("vhost", reader.vhost),
            f,
            reader.at(line),
            routing_key(reader, f, line, "binding"),
        )

    def problems(self, spec: BindingSpec) -> Iterable[Problem]:
        """The default exchange bound explicitly; a destination neither queue nor exchange."""
        if spec.source == "":
            yield Problem(
                "the default exchange cannot be bound explicitly", spec.location, spec.label
            )
        if spec.destination_type not in ("queue", "exchange"):
            yield Problem("destination_type must be queue or exchange", spec.location, spec.label)

    def identity(self, spec: BindingSpec) -> Hashable:
        """All its fields (``BindingSpec.key``)."""
        return spec.key

    def differences(self, want: BindingSpec, have: BindingSpec) -> list[Difference]:
        """None: two bindings that differ are two bindings."""
        return []

    def references(self, spec: BindingSpec) -> Iterable[tuple[str, str, str]]:
        """Its source exchange and its destination."""
        yield ("exchange", spec.vhost, spec.source)
        yield (spec.destination_type, spec.vhost, spec.destination)

    def prunable(self, spec: BindingSpec, ctx: PruneContext) -> bool:
        """Not a binding from the broker's own exchanges."""
        return not is_builtin_exchange(spec.source)

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> BindingSpec | None:
        """A binding of a definitions file; one to a skipped queue is skipped too."""
        if f["destination_type"] not in ("queue", "exchange"):
            reader.problem(line, "destination_type must be queue or exchange", "binding")
            return None
        vhost = reader.vhost_of(f)
        if f["destination_type"] == "queue" and (
            ("queue", vhost, f["destination"]) in reader.skipped
        ):
            reader.warn(
                line,
                f"skipped: its queue '{f['destination']}' is skipped (server-named)",
                f"binding {f['source']} -> {f['destination']}",
            )
            return None
        return BindingSpec.read(vhost, f, reader.at(line))

    def to_definitions(self, spec: BindingSpec) -> dict[str, Any]:
        """A binding as definitions JSON spells it (the vhost added by the caller)."""
        return {
            "source": spec.source,
            "destination": spec.destination,
            "destination_type": spec.destination_type,
            "routing_key": spec.routing_key,
            "arguments": dict(spec.arguments),
        }

    def export(
        self, topology: Topology, single: bool, with_vhost: WithVhost
    ) -> list[dict[str, Any]]:
        """The bindings not nested in an exported queue's entry (``entries``)."""
        return entries(topology, single)[1]

    def definitions_order(self, spec: BindingSpec) -> tuple[str, str, str, str, str, str]:
        """Bindings are written sorted by their identity (``BindingSpec.key``)."""
        return spec.key


BINDING = BindingKind()


def read_queue_bindings(
    reader: Reader, doc: Mapping[str, Any], original: bool
) -> Iterable[tuple[BindingSpec, bool]]:
    """The bindings listed under the queues of one parsed topology file, each with whether it
    has no key. ``original`` (the original declare-amqp's file): a binding without a key is
    bound with the queue's name, as its pika ``queue_bind(queue, exchange)`` did; otherwise
    with '' (as in definitions JSON; see ``unkeyed_warnings``)."""
    for raw_queue, _ in reader.entries(doc, "queues"):
        if not isinstance(raw_queue, dict) or not isinstance(raw_queue.get("bindings"), list):
            continue
        queue = raw_queue.get("name")
        vhost = raw_queue.get("vhost", reader.vhost)
        for raw, line in reader.entries(raw_queue, "bindings"):
            f = reader.fields(raw, QUEUE_BINDING_KEYS, f"binding of queue '{queue}'", line)
            if f is None or not isinstance(queue, str) or not isinstance(vhost, str):
                continue
            unkeyed = f.get("routing_key") is None and f.get("binding_key") is None
            fields = {
                "source": f["exchange"],
                "destination": queue,
                "arguments": f.get("arguments"),
            }
            yield (
                BindingSpec.read(
                    vhost,
                    fields,
                    reader.at(line),
                    queue
                    if unkeyed and original
                    else routing_key(reader, f, line, f"binding of queue '{queue}'"),
                ),
                unkeyed,
            )


def unkeyed_warnings(
    unkeyed: Sequence[BindingSpec], exchanges: Sequence[ExchangeSpec]
) -> Iterable[Problem]:
    """A queue binding without a key to a direct or topic exchange is bound with '' here
    (as in definitions JSON); the original declare-amqp bound it with the queue's name,
    so messages routed by that name would become unroutable after switching tools."""
    types = {(x.vhost, x.name): x.type for x in exchanges}
    for binding in unkeyed:
        queue = binding.destination
        builtin = binding.source[4:] if binding.source.startswith("amq.") else None
        kind = types.get((binding.vhost, binding.source), builtin)
        if kind in ("direct", "topic"):
            yield Problem(
                f"no binding_key: bound with '' (only messages published with an empty "
                f"routing key match); the original declare-amqp bound it with the queue's "
                f"name '{queue}' (write binding_key: {queue} to keep that)",
                binding.location,
                binding.label,
            )


# ------------------------------------------------------------ export (YAML)


def entries(
    topology: Topology, single: bool
) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], list[dict[str, Any]]]:
    """The bindings as YAML entries: those to an exported queue nested in it (by vhost and
    queue), the others as top-level ``bindings``."""
    queue_names = {(q.vhost, q.name) for q in topology.queues}
    nested: dict[tuple[str, str], list[dict[str, Any]]] = {}
    loose = []
    for b in sorted(topology.bindings, key=lambda b: b.key):
        if b.destination_type == "queue" and (b.vhost, b.destination) in queue_names:
            item: dict[str, Any] = {"exchange": b.source}
            if b.routing_key:
                item["routing_key"] = b.routing_key
            if b.arguments:
                item["arguments"] = dict(b.arguments)
            nested.setdefault((b.vhost, b.destination), []).append(item)
            continue
        entry: dict[str, Any] = {"source": b.source, "destination": b.destination}
        if b.destination_type != "queue":
            entry["destination_type"] = b.destination_type
        if b.routing_key:
            entry["routing_key"] = b.routing_key
        if b.arguments:
            entry["arguments"] = dict(b.arguments)
        if not single:
            entry["vhost"] = b.vhost
        loose.append(entry)
    return nested, loose
