"""The queue kind: a topology file's ``queues``, read into ``_model.QueueSpec`` (whose
``read``/``from_definitions`` the definitions reader and the broker reader share).

Queue-specific reading stays code here: the argument aliases (``max_length`` ->
``x-max-length``...) folded into the arguments, and the queue type, where ``type`` wins
over ``arguments.x-queue-type`` (a disagreement is a problem). A queue's own ``bindings``
are read by ``kinds.binding``; derived worker queues by ``_consumers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._fit import fits
from .._format import QUEUE_ALIASES, QUEUE_KEYS, Reader
from .._model import QueueSpec

# an argument's alias (``x-max-length`` -> ``max_length``), and back
_ALIAS_OF = {k.argument: k.name for k in QUEUE_ALIASES if k.argument}
_ARGUMENT_OF = {name: argument for argument, name in _ALIAS_OF.items()}


def read_document(
    reader: Reader, doc: Mapping[str, Any], release: bool = False
) -> Iterable[QueueSpec]:
    """The queues of one parsed topology file (problems go to ``reader``).

    ``release``: the document's values are unshared (no aliases) and nothing reads the raw
    queues after this (their bindings were read before): each one is dropped from ``doc`` as
    its spec is built, so the values and the model of a large file are not both held whole.
    """
    entries = list(reader.entries(doc, "queues"))
    held = doc["queues"] if release and entries else None
    for index, (raw, line) in enumerate(entries):
        if held is not None:
            entries[index] = held[index] = None  # type: ignore[call-overload]
        f = reader.fields(raw, QUEUE_KEYS, "queue", line)
        if f is None:
            continue
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
        yield QueueSpec.read(
            f.get("vhost", reader.vhost),
            f,
            reader.at(line),
            queue_type=queue_type,
            arguments=arguments,
            type_given=type_given,
            migrate=bool(f.get("migrate", False)),
        )


def to_definitions(spec: QueueSpec) -> dict[str, Any]:
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


def definitions_order(spec: QueueSpec) -> tuple[str, str]:
    """Queues are written sorted by vhost, then name."""
    return (spec.vhost, spec.name)


# ------------------------------------------------------------ export (YAML)


def to_entry(q: QueueSpec, bindings: list[dict[str, Any]] | None) -> dict[str, Any]:
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


def alias_fits(alias: str, value: Any) -> bool:
    """Use the alias only when the loader would accept the value as it is (the one rule)."""
    return fits(_ARGUMENT_OF[alias], value)
