"""Pure validation of a desired topology, before anything touches a broker.

``validate(desired)`` checks what a file alone can tell. ``check_references(desired,
actual)`` also needs the live broker: a binding must name objects that the files declare
*or* the broker already has (missing alternate and dead-letter exchanges are warnings, see
``_warnings``).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from ._consumers import check_consumer_references
from ._errors import Location, Problem
from ._fit import type_fits, value_problem
from ._format import (
    ARGUMENT_TYPES,
    FORBIDDEN_ARGUMENTS,
    POLICY_DEFINITION_KEYS,
    describe_types,
)
from ._limits import wire_problems
from ._model import (
    EXCHANGE_TYPES,
    QUEUE_TYPES,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    Topology,
)
from ._versions import Edge, Effect, Subject, edges_at, parse_version

# Exchanges every vhost has; they can be bound to but never declared or deleted.
BUILTIN_EXCHANGES = frozenset(
    {
        "",
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
        "amq.rabbitmq.trace",
        "amq.rabbitmq.log",
    }
)


def is_builtin_exchange(name: str) -> bool:
    """The default exchange and every ``amq.*`` exchange belong to the broker."""
    return name == "" or name.startswith("amq.")


def validate(desired: Topology) -> list[Problem]:
    """Every problem the files have on their own; empty when they are valid."""
    problems: list[Problem] = []
    for x in desired.exchanges:
        problems.extend(_validate_exchange(x))
    for q in desired.queues:
        problems.extend(_validate_queue(q))
    for b in desired.bindings:
        if b.source == "":
            problems.append(
                Problem("the default exchange cannot be bound explicitly", b.location, b.label)
            )
        if b.destination_type not in ("queue", "exchange"):
            problems.append(
                Problem("destination_type must be queue or exchange", b.location, b.label)
            )
    for p in desired.policies:
        problems.extend(_validate_policy(p))
    problems += wire_problems(desired)  # byte lengths, control characters, 64-bit integers
    return problems


def _validate_exchange(x: ExchangeSpec) -> Iterable[Problem]:
    if x.name == "":
        yield Problem(
            "an exchange needs a name (the default exchange cannot be declared)",
            x.location,
            x.label,
        )
    elif x.name.startswith("amq."):
        yield Problem("names starting with 'amq.' are reserved for the broker", x.location, x.label)
    if x.type not in EXCHANGE_TYPES and not x.type.startswith("x-"):
        yield Problem(
            f"unknown exchange type '{x.type}' (expected "
            f"{', '.join(EXCHANGE_TYPES)}, or a plugin's x-... type)",
            x.location,
            x.label,
        )
    # An exchange that is its own alternate exchange is accepted by the broker: a
    # warning (_fit.fit_warnings).


def _validate_policy(p: PolicySpec) -> Iterable[Problem]:
    try:
        re.compile(p.pattern)
    except re.error as exc:
        yield Problem(f"pattern is not a valid regular expression: {exc}", p.location, p.label)
    if not p.definition:
        yield Problem("definition must not be empty", p.location, p.label)
    for key in p.definition:
        if key not in POLICY_DEFINITION_KEYS:
            hint = difflib.get_close_matches(key, sorted(POLICY_DEFINITION_KEYS), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            yield Problem(f"unknown policy key '{key}'{suggestion}", p.location, p.label)
    for key in ("max-priority", "queue-type", "x-queue-type", "durable"):
        if key in p.definition:
            yield Problem(
                f"'{key}' cannot be set by a policy; it is fixed when the queue is declared",
                p.location,
                p.label,
            )


def _validate_queue(q: QueueSpec) -> Iterable[Problem]:
    if q.name == "":
        yield Problem(
            "a queue needs a name (server-named queues are not declarative)", q.location, q.label
        )
    elif q.name.startswith("amq."):
        yield Problem("names starting with 'amq.' are reserved for the broker", q.location, q.label)
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
        value = q.arguments[arg]
        if known is None:
            continue
        if not type_fits(value, known.types):  # the one rule (_fit), as loader and exporter
            yield Problem(
                f"argument {arg} must be {describe_types(known.types)}, not {value!r}",
                q.location,
                q.label,
            )
            continue
        wrong = value_problem(known, value)
        if wrong is not None:
            yield Problem(f"{known.name} ({arg}) {wrong}", q.location, q.label)
    if "x-dead-letter-routing-key" in q.arguments and "x-dead-letter-exchange" not in q.arguments:
        yield Problem("dead_letter_routing_key needs dead_letter_exchange too", q.location, q.label)
    # overflow reject-publish-dlx on a quorum queue: the broker accepts it, so it is a
    # warning (_fit.fit_warnings).


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
        for problem in _validate_queue(resolved):
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
