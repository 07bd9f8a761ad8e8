"""Pure validation of a desired topology, before anything touches a broker: the engine
over the kinds' own checks, and the checks across kinds.

``validate(desired)`` checks what a file alone can tell (each kind's ``problems`` hook,
``kinds.TOPOLOGY_KINDS``). ``check_references(desired,
actual)`` also needs the live broker: a binding must name objects that the files declare
*or* the broker already has (missing alternate and dead-letter exchanges are warnings, see
``_warnings``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Protocol

from ._consumers import check_consumer_references
from ._errors import Location, Problem
from ._limits import wire_problems
from ._model import BUILTIN_EXCHANGES, Topology
from ._versions import Edge, Effect, Subject, edges_at, parse_version
from .kinds import QUEUE, TOPOLOGY_KINDS

# The kinds in the order a file lists them, so problems come in that order too.
_IN_FILE_ORDER = sorted(TOPOLOGY_KINDS, key=lambda k: k.top_rank)


def validate(desired: Topology) -> list[Problem]:
    """Every problem the files have on their own; empty when they are valid: each kind's
    objects through its ``problems`` hook, then what the wire refuses of any of them."""
    problems: list[Problem] = []
    for kind in _IN_FILE_ORDER:
        for spec in kind.specs(desired):
            problems.extend(kind.problems(spec))
    problems += wire_problems(desired)  # byte lengths, control characters, 64-bit integers
    return problems


def check_exchange_types(desired: Topology, known: Iterable[str]) -> list[Problem]:
    """Plugin exchange types the broker does not offer (the plugin is not enabled)."""
    offered = set(known)
    return [
        Problem(
            f"exchange type '{x.type}' is not offered by this broker (is its plugin "
            f"enabled? it offers {', '.join(sorted(offered))})",
            x.location,
            x.label,
        )
        for x in desired.exchanges
        if offered and x.type not in offered
    ]


class _Placed(Protocol):
    """An object of the files: in a vhost, written at a place, with a label."""

    @property
    def vhost(self) -> str: ...
    @property
    def location(self) -> Location | None: ...
    @property
    def label(self) -> str: ...


def check_references(
    desired: Topology, actual: Topology, broker_read: bool = True
) -> list[Problem]:
    """References the broker refuses: bindings to exchanges or queues, and vhosts, that exist
    neither in the files nor live.

    With ``broker_read=False`` (no broker at hand) the messages only say what no file
    declares.
    """
    problems: list[Problem] = []
    nowhere = (
        " and does not exist on the broker"
        if broker_read
        else " (it must exist on the broker; plan and apply check that)"
    )
    exchanges = _names_by_vhost(desired.exchanges, actual.exchanges)
    queues = _names_by_vhost(desired.queues, actual.queues)
    vhosts = {v.name for v in (*desired.vhosts, *actual.vhosts)}

    def exchange_exists(vhost: str, name: str) -> bool:
        return name in BUILTIN_EXCHANGES or name in exchanges.get(vhost, ())

    def queue_exists(vhost: str, name: str) -> bool:
        return name in queues.get(vhost, ())

    for v in desired.vhost_names():
        if v not in vhosts:
            objects: list[_Placed] = [
                *desired.exchanges,
                *desired.queues,
                *desired.bindings,
                *desired.policies,
                *desired.consumers,
            ]
            if desired.access is not None:  # e.g. a permission in a vhost nobody makes
                objects += [o for o in desired.access if getattr(o, "IN_VHOST", False)]
            first = next((o for o in objects if o.vhost == v), None)
            problems.append(
                Problem(
                    f"vhost '{v}' does not exist on the broker and no file lists it under 'vhosts'",
                    first.location if first else None,
                    first.label if first else None,
                )
            )
    for b in desired.bindings:
        if not exchange_exists(b.vhost, b.source):
            problems.append(
                Problem(
                    f"source exchange '{b.source}' is declared in no file" + nowhere,
                    b.location,
                    b.label,
                )
            )
        if b.destination_type == "queue" and not queue_exists(b.vhost, b.destination):
            problems.append(
                Problem(
                    f"queue '{b.destination}' is declared in no file" + nowhere, b.location, b.label
                )
            )
        if b.destination_type == "exchange" and not exchange_exists(b.vhost, b.destination):
            problems.append(
                Problem(
                    f"destination exchange '{b.destination}' is declared in no file" + nowhere,
                    b.location,
                    b.label,
                )
            )
    # A missing alternate or dead-letter exchange is accepted by the broker: a warning
    # (``_warnings.reference_warnings``), not an error.
    problems += check_consumer_references(desired, queue_exists, exchange_exists, nowhere)
    return problems


class _Named(Protocol):
    @property
    def vhost(self) -> str: ...

    @property
    def name(self) -> str: ...


def _names_by_vhost(*groups: Iterable[_Named]) -> dict[str, set[str]]:
    """The names of each vhost's objects: a set of names per vhost, no (vhost, name) tuple
    per object (a 50 MB file's 660,000 exchanges and queues: 40 MB fewer)."""
    names: dict[str, set[str]] = {}
    for group in groups:
        for obj in group:
            names.setdefault(obj.vhost, set()).add(obj.name)
    return names


def check_broker_version(desired: Topology, version: str) -> tuple[list[Problem], list[Problem]]:
    """What the broker's version refuses (errors) or deprecates and ignores (warnings).

    Every rule is a row of :data:`declare_amqp._versions.EDGES`; this only walks the files'
    queues and policies through the rows that hold for ``version``. A broker that does not say
    its version is not guessed at.
    """
    v = parse_version(version)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    for edge in edges_at(v):
        if edge.effect is Effect.DEFAULT:
            continue  # said on the plan's changes (_plan.note_broker_defaults), not a problem
        found = errors if edge.effect.blocks else warnings
        for q in desired.queues:
            hits = edge.queue_hits(q.type, q.durable, q.arguments)
            if hits:
                found.append(Problem(_edge_message(edge, hits, v), q.location, q.label))
        for p in desired.policies:
            hits = edge.policy_hits(p.definition)
            if hits:
                found.append(Problem(_edge_message(edge, hits, v), p.location, p.label))
        if edge.subject is Subject.PERMISSION and "passive declare" in edge.names:
            # priority-worker checks its queues with passive declares (startup, idle probe, a
            # deleted queue); whether its user has configure there, the files may not say:
            # a warning, not an error
            for c in desired.consumers:
                warnings.append(
                    Problem(
                        f"priority-worker checks its queues with passive declares: "
                        f"{edge.describe(v)}",
                        c.location,
                        c.label,
                    )
                )
    return errors, warnings


def _edge_message(edge: Edge, hits: tuple[str, ...], version: tuple[int, ...]) -> str:
    """The row's sentence, led by the keys it found where the row names several."""
    text = edge.describe(version)
    return f"{', '.join(hits)}: {text}" if len(edge.names) > 1 else text


def resolve_queue_types(
    desired: Topology, default_queue_types: Mapping[str, str]
) -> tuple[Topology, list[Problem]]:
    """Give queues that name no type their vhost's ``default_queue_type``.

    As the broker does (seen on 4.0.5): a durable queue declared without ``x-queue-type`` in a
    vhost whose default is quorum becomes a quorum queue; a transient or auto-delete one stays
    classic. The
    resolved queues are validated again for their new type (``x-max-priority`` on what became
    a quorum queue is refused by the broker).
    """
    problems: list[Problem] = []
    queues = []
    changed = False
    for q in desired.queues:
        default = default_queue_types.get(q.vhost)
        if (
            q.type_given
            or not q.durable
            or q.auto_delete
            or default not in ("quorum", "stream")
            or default == q.type
        ):
            queues.append(q)
            continue
        resolved = dataclasses.replace(q, type=default)
        for problem in QUEUE.problems(resolved):
            problems.append(
                dataclasses.replace(
                    problem,
                    message=(
                        f"vhost '{q.vhost}' makes queues {default} by default "
                        "(default_queue_type), "
                        f"and this one names no type: {problem.message}; write 'type: classic' to "
                        "keep a classic queue"
                    ),
                )
            )
        queues.append(resolved)
        changed = True
    if not changed:
        return desired, problems
    return dataclasses.replace(desired, queues=tuple(queues)), problems
