"""Write a live broker's topology in the YAML format, so an existing broker can be adopted.

Applying the export to the same broker is a no-op: aliases are used only where the loader
maps them back to the very same arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ._access import access_document
from ._format import QUEUE_ALIASES
from ._model import Topology

_ALIAS_OF = {k.argument: k.name for k in QUEUE_ALIASES if k.argument}


class _Dumper(yaml.SafeDumper):
    """Block style, insertion order, and no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_document(topology: Topology, vhosts: Sequence[str]) -> dict[str, Any]:
    """The topology as a plain mapping of the YAML format."""
    single = len(vhosts) == 1
    doc: dict[str, Any] = {}
    if single:
        doc["vhost"] = vhosts[0]
    else:
        doc["vhosts"] = list(vhosts)

    def with_vhost(entry: dict[str, Any], vhost: str) -> dict[str, Any]:
        if not single:
            entry = {"name": entry.pop("name"), "vhost": vhost, **entry}
        return entry

    exchanges = []
    for x in sorted(topology.exchanges, key=lambda x: (x.vhost, x.name)):
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
        exchanges.append(with_vhost(entry, x.vhost))

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
        entry = {"source": b.source, "destination": b.destination}
        if b.destination_type != "queue":
            entry["destination_type"] = b.destination_type
        if b.routing_key:
            entry["routing_key"] = b.routing_key
        if b.arguments:
            entry["arguments"] = dict(b.arguments)
        if not single:
            entry["vhost"] = b.vhost
        loose.append(entry)

    queues = []
    for q in sorted(topology.queues, key=lambda q: (q.vhost, q.name)):
        entry = {"name": q.name, "type": q.type}
        if not q.durable:
            entry["durable"] = False
        if q.auto_delete:
            entry["auto_delete"] = True
        arguments = {}
        for key, value in q.arguments.items():
            alias = _ALIAS_OF.get(key)
            if alias is not None and _alias_fits(alias, value):
                entry[alias] = value
            else:
                arguments[key] = value
        if arguments:
            entry["arguments"] = arguments
        if (q.vhost, q.name) in nested:
            entry["bindings"] = nested[(q.vhost, q.name)]
        queues.append(with_vhost(entry, q.vhost))

    policies = []
    for p in sorted(topology.policies, key=lambda p: (p.vhost, p.name)):
        entry = {"name": p.name, "pattern": p.pattern, "apply_to": p.apply_to,
                 "definition": dict(p.definition), "priority": p.priority}
        policies.append(with_vhost(entry, p.vhost))

    for key, items in (("exchanges", exchanges), ("queues", queues), ("bindings", loose),
                       ("policies", policies)):
        if items:
            doc[key] = items
    if topology.access is not None:
        doc.update(access_document(topology.access, vhosts))
    return doc


def _alias_fits(alias: str, value: Any) -> bool:
    """Use the alias only when the loader would accept the value as it is."""
    spec = next(k for k in QUEUE_ALIASES if k.name == alias)
    if isinstance(value, bool) != (bool in spec.types) or not isinstance(value, spec.types):
        return False
    if spec.choices and value not in spec.choices:
        return False
    return not (spec.minimum is not None and isinstance(value, int) and value < spec.minimum)


def to_yaml(topology: Topology, vhosts: Sequence[str], header: str = "") -> str:
    """The export as YAML text."""
    text = yaml.dump(to_document(topology, vhosts), Dumper=_Dumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=100)
    return header + text
