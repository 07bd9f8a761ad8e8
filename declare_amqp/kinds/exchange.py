"""The exchange kind: a topology file's ``exchanges``, read into ``_model.ExchangeSpec``
(whose ``read`` the definitions reader and the broker reader share).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import Problem
from .._format import Key
from .._model import EXCHANGE_TYPES, ExchangeSpec, Topology, is_builtin_exchange
from .._plan import Kind
from ._base import (
    PruneContext,
    Reader,
    TopologyDefinitionsReader,
    TopologyKind,
    WithVhost,
    reserved_name,
)

_STR, _BOOL = (str,), (bool,)

EXCHANGE_KEYS = (
    Key("name", _STR, "Exchange name.", required=True),
    Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
    Key("type", _STR, "direct, fanout, topic, headers, or a plugin's x-... type.", required=True),
    Key("durable", _BOOL, "Survives a broker restart.", default=True),
    Key("auto_delete", _BOOL, "Deleted when its last binding goes.", default=False),
    Key("internal", _BOOL, "Only other exchanges may publish to it.", default=False),
    Key("alternate_exchange", _STR, "Where messages no binding matches go."),
    Key("arguments", (dict,), "Extra exchange arguments."),
)


class ExchangeKind(TopologyKind[ExchangeSpec]):
    """An exchange: declared over AMQP; any difference is a conflict."""

    spec = ExchangeSpec
    kind = Kind.EXCHANGE
    key = "exchanges"
    doc = "Exchanges."
    top_rank = 2
    keys = EXCHANGE_KEYS
    schema_name = "exchange"
    schema_doc = "An exchange."
    definitions_fields = {
        "name": (_STR, True),
        "vhost": (_STR, False),
        "type": (_STR, True),
        "durable": (_BOOL, False),
        "auto_delete": (_BOOL, False),
        "internal": (_BOOL, False),
        "arguments": ((dict,), False),
    }

    def build(self, reader: Reader, f: Mapping[str, Any], raw: Any, line: int) -> ExchangeSpec:
        """An exchange: ``alternate_exchange`` folded into the arguments (a disagreement with
        ``arguments.alternate-exchange`` is a problem)."""
        arguments = dict(f.get("arguments") or {})
        ae = f.get("alternate_exchange")
        if ae is not None:
            if arguments.get("alternate-exchange", ae) != ae:
                reader.problem(
                    line,
                    "alternate_exchange and arguments.alternate-exchange disagree",
                    f"exchange '{f['name']}'",
                )
            arguments["alternate-exchange"] = ae
        return ExchangeSpec.read(f.get("vhost", reader.vhost), f, reader.at(line), arguments)

    def problems(self, spec: ExchangeSpec) -> Iterable[Problem]:
        """A name the broker's, or none; an unknown type (a plugin's are x-...). An exchange
        that is its own alternate exchange is accepted by the broker: a warning
        (``_fit.fit_warnings``)."""
        x = spec
        if x.name == "":
            yield Problem(
                "an exchange needs a name (the default exchange cannot be declared)",
                x.location,
                x.label,
            )
        elif (reserved := reserved_name(x)) is not None:
            yield reserved
        if x.type not in EXCHANGE_TYPES and not x.type.startswith("x-"):
            yield Problem(
                f"unknown exchange type '{x.type}' (expected "
                f"{', '.join(EXCHANGE_TYPES)}, or a plugin's x-... type)",
                x.location,
                x.label,
            )

    def references(self, spec: ExchangeSpec) -> Iterable[tuple[str, str, str]]:
        """Its alternate exchange."""
        if spec.alternate_exchange is not None:
            yield ("exchange", spec.vhost, spec.alternate_exchange)

    def prunable(self, spec: ExchangeSpec, ctx: PruneContext) -> bool:
        """Not the broker's own (``amq.*``, the default), nor one the files use."""
        return not is_builtin_exchange(spec.name) and (
            ("exchange", spec.vhost, spec.name) not in ctx.referenced
        )

    def from_definitions(
        self, reader: TopologyDefinitionsReader, f: Mapping[str, Any], line: int
    ) -> ExchangeSpec | None:
        """An exchange of a definitions file; the broker's own (``amq.*``) are ignored."""
        vhost = reader.vhost_of(f)
        if is_builtin_exchange(f["name"]):
            reader.warn(
                line,
                "ignored: built-in exchanges belong to the broker",
                f"exchange '{f['name']}' (vhost {vhost})",
            )
            return None
        return ExchangeSpec.read(vhost, f, reader.at(line))

    def to_definitions(self, spec: ExchangeSpec) -> dict[str, Any]:
        """An exchange as definitions JSON spells it (the vhost added by the caller)."""
        return {
            "name": spec.name,
            "type": spec.type,
            "durable": spec.durable,
            "auto_delete": spec.auto_delete,
            "internal": spec.internal,
            "arguments": dict(spec.arguments),
        }

    # ------------------------------------------------------------ export (YAML)

    def export(
        self, topology: Topology, single: bool, with_vhost: WithVhost
    ) -> list[dict[str, Any]]:
        """The exchanges, by vhost and name."""
        return [
            with_vhost(self.to_entry(x), x.vhost)
            for x in sorted(topology.exchanges, key=lambda x: (x.vhost, x.name))
        ]

    def to_entry(self, x: ExchangeSpec) -> dict[str, Any]:
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


EXCHANGE = ExchangeKind()
