"""The exchange kind: a topology file's ``exchanges``, read into ``_model.ExchangeSpec``
(whose ``read`` the definitions reader and the broker reader share).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._format import EXCHANGE_KEYS, Reader
from .._model import ExchangeSpec


def read_document(reader: Reader, doc: Mapping[str, Any]) -> Iterable[ExchangeSpec]:
    """The exchanges of one parsed topology file: ``alternate_exchange`` folded into the
    arguments (a disagreement with ``arguments.alternate-exchange`` is a problem)."""
    for raw, line in reader.entries(doc, "exchanges"):
        f = reader.fields(raw, EXCHANGE_KEYS, "exchange", line)
        if f is None:
            continue
        arguments = dict(f.get("arguments") or {})
        label = f"exchange '{f['name']}'"
        ae = f.get("alternate_exchange")
        if ae is not None:
            if arguments.get("alternate-exchange", ae) != ae:
                reader.problem(
                    line, "alternate_exchange and arguments.alternate-exchange disagree", label
                )
            arguments["alternate-exchange"] = ae
        yield ExchangeSpec.read(f.get("vhost", reader.vhost), f, reader.at(line), arguments)


def to_definitions(spec: ExchangeSpec) -> dict[str, Any]:
    """An exchange as definitions JSON spells it (the vhost added by the caller)."""
    return {
        "name": spec.name,
        "type": spec.type,
        "durable": spec.durable,
        "auto_delete": spec.auto_delete,
        "internal": spec.internal,
        "arguments": dict(spec.arguments),
    }


def definitions_order(spec: ExchangeSpec) -> tuple[str, str]:
    """Exchanges are written sorted by vhost, then name."""
    return (spec.vhost, spec.name)


# ------------------------------------------------------------ export (YAML)


def to_entry(x: ExchangeSpec) -> dict[str, Any]:
    """An exchange as a YAML entry: the defaults left out, its alternate exchange by key."""
    entry: dict[str, Any] = {"name": x.name, "type": x.type}
    if not x.durable:
        entry["durable"] = False
    if x.auto_delete:
        entry["auto_delete"] = True
    if x.internal:
        entry["internal"] = True
    arguments = dict(x.arguments)
    ae = arguments.pop("alternate-exchange", None)
    if isinstance(ae, str):
        entry["alternate_exchange"] = ae
    elif ae is not None:
        arguments["alternate-exchange"] = ae
    if arguments:
        entry["arguments"] = arguments
    return entry
