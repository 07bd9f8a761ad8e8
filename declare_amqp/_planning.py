"""Planning: ``plan(desired, actual) -> Plan``, a pure function over the registry of kinds.

Both sides are normalised first (defaults, ``x-queue-type`` folded into ``type``) and then
compared field by field, *every* argument included — also the ones RabbitMQ itself does not
compare on redeclare. Each topology kind (``kinds.TOPOLOGY_KINDS``) says what makes two
declarations the same object, which differences it changes in place and how its objects are
pruned (``kinds._base.TopologyKind``: ``identity``, ``differences``, ``mutable``, ``plan``,
``prune``); each difference becomes one change (``_plan``: create, update, conflict, delete,
refuse).

The access kinds are planned by their own engine (``_access.plan_access``).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._model import Topology
from ._plan import KEEP, Plan, QueueStats, ordered
from .kinds import TOPOLOGY_KINDS
from .kinds._base import PruneContext


def plan(
    desired: Topology,
    actual: Topology,
    *,
    prune: bool = False,
    force: bool = False,
    stats: Mapping[tuple[str, str], QueueStats] | None = None,
) -> Plan:
    """Compare the files with the broker; ``actual`` holds the vhosts the files name."""
    scope = tuple(desired.vhost_names())
    changes = [c for kind in TOPOLOGY_KINDS for c in kind.plan(desired, actual)]
    if prune:
        referenced = frozenset(
            r for kind in TOPOLOGY_KINDS for s in kind.specs(desired) for r in kind.references(s)
        )
        ctx = PruneContext(desired, frozenset(scope), force, stats or {}, referenced)
        for kind in TOPOLOGY_KINDS:
            changes.extend(kind.prune(kind.specs(actual), ctx))
    kept = tuple(c for c in changes if c.action == KEEP)
    changes = [c for c in changes if c.action != KEEP]
    return Plan(tuple(ordered(changes)), prune=prune, vhosts=scope, kept=kept)
