"""The broker's own JSON listings (``GET /api/exchanges/{vhost}``..., the keys of
``GET /api/definitions/{vhost}``) as model values, normalised like the files: built-in
exchanges and server-named queues left out, ``x-queue-type`` folded into the queue's type.
Pure: ``_management`` reads, this converts (``_migrate`` too, for one queue's vhost).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import BindingSpec, ExchangeSpec, PolicySpec, QueueSpec, Topology, VhostSpec
from ._validate import is_builtin_exchange


def from_definitions(vhost: str, definitions: Mapping[str, Any]) -> Topology:
    """Convert ``GET /api/definitions/{vhost}`` into the model (normalised like the files)."""
    exchanges = tuple(
        ExchangeSpec(
            vhost=vhost,
            name=x["name"],
            type=x["type"],
            durable=bool(x.get("durable", True)),
            auto_delete=bool(x.get("auto_delete", False)),
            internal=bool(x.get("internal", False)),
            arguments=dict(x.get("arguments") or {}),
        )
        for x in definitions.get("exchanges", [])
        if not is_builtin_exchange(x["name"])
    )
    queues = []
    for q in definitions.get("queues", []):
        if q["name"].startswith("amq."):
            continue  # server-named (amq.gen-...): owned by the client that made it
        arguments = dict(q.get("arguments") or {})
        queue_type = arguments.pop("x-queue-type", None) or q.get("type") or "classic"
        queues.append(
            QueueSpec(
                vhost=vhost,
                name=q["name"],
                type=queue_type,
                durable=bool(q.get("durable", True)),
                auto_delete=bool(q.get("auto_delete", False)),
                arguments=arguments,
            )
        )
    bindings = tuple(
        BindingSpec(
            vhost=vhost,
            source=b["source"],
            destination=b["destination"],
            destination_type=b.get("destination_type", "queue"),
            routing_key=b.get("routing_key", ""),
            arguments=dict(b.get("arguments") or {}),
        )
        for b in definitions.get("bindings", [])
        # the default exchange's implicit bindings are not listed, but be sure; bindings of
        # server-named queues belong with those queues
        if b.get("source")
        and not (b.get("destination_type") == "queue" and b["destination"].startswith("amq."))
    )
    policies = tuple(
        PolicySpec(
            vhost=vhost,
            name=p["name"],
            pattern=p["pattern"],
            definition=dict(p.get("definition") or {}),
            apply_to=p.get("apply-to", "all"),
            priority=int(p.get("priority", 0)),
        )
        for p in definitions.get("policies", [])
    )
    return Topology(
        vhosts=(VhostSpec(vhost),),
        exchanges=exchanges,
        queues=tuple(queues),
        bindings=bindings,
        policies=policies,
    )
