"""The broker's own JSON listings (``GET /api/exchanges/{vhost}``..., the keys of
``GET /api/definitions/{vhost}``) as model values, normalised like the files: built-in
exchanges and server-named queues left out, ``x-queue-type`` folded into the queue's type.
Pure: ``_management`` reads, this converts (``_migrate`` too, for one queue's vhost).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._model import (
    BindingSpec,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    Topology,
    VhostSpec,
    is_builtin_exchange,
)


def from_definitions(vhost: str, definitions: Mapping[str, Any]) -> Topology:
    """Convert ``GET /api/definitions/{vhost}`` into the model (normalised like the files)."""
    exchanges = tuple(
        ExchangeSpec.read(vhost, x)
        for x in definitions.get("exchanges", [])
        if not is_builtin_exchange(x["name"])
    )
    queues = tuple(
        QueueSpec.from_definitions(vhost, q)
        for q in definitions.get("queues", [])
        # server-named (amq.gen-...): owned by the client that made it
        if not q["name"].startswith("amq.")
    )
    bindings = tuple(
        BindingSpec.read(vhost, b)
        for b in definitions.get("bindings", [])
        # the default exchange's implicit bindings are not listed, but be sure; bindings of
        # server-named queues belong with those queues
        if b.get("source")
        and not (b.get("destination_type") == "queue" and b["destination"].startswith("amq."))
    )
    policies = tuple(PolicySpec.from_definitions(vhost, p) for p in definitions.get("policies", []))
    return Topology(
        vhosts=(VhostSpec(vhost),),
        exchanges=exchanges,
        queues=queues,
        bindings=bindings,
        policies=policies,
    )
