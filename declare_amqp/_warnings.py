"""Warnings: what the broker accepts but what probably loses messages, or what the tool skipped.

A warning is a ``Problem`` that does not stop a run: plan and apply show it (text on stderr,
``warnings`` in the JSON, each a ``file:line: object: message`` string), and ``--strict``
turns every warning into an error (exit 1, nothing written). Three sources:

- references the broker accepts although they resolve nowhere: an alternate exchange or a
  dead-letter exchange (of a queue, or of a policy) that no file declares and the broker
  lacks. RabbitMQ declares such an exchange without a word; messages sent there are dropped.
  (A binding to a missing exchange or queue is refused by the broker, so that stays an
  error in ``_validate.check_references``.)
- values the broker accepts although the tool would not write them that way (``_fit``).
- objects of kinds the tool does not manage, found in a definitions file (``_definitions``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._errors import Problem, TopologyError
from ._fit import fit_warnings
from ._model import BUILTIN_EXCHANGES, Topology


def reference_warnings(
    desired: Topology, actual: Topology, broker_read: bool = True
) -> list[Problem]:
    """Alternate and dead-letter exchanges that exist neither in the files nor on the broker.

    With ``broker_read=False`` (``validate``, no broker at hand) the message says the exchange
    must exist on the broker instead.
    """
    exchanges = {(x.vhost, x.name) for x in (*desired.exchanges, *actual.exchanges)}

    def missing(vhost: str, name: str) -> bool:
        return name not in BUILTIN_EXCHANGES and (vhost, name) not in exchanges

    where = (
        "is declared in no file and does not exist on the broker"
        if broker_read
        else "is declared in no file (unless the broker has it; plan and apply check)"
    )
    found: list[Problem] = []
    for x in desired.exchanges:
        ae = x.alternate_exchange
        if ae is not None and missing(x.vhost, ae):
            found.append(
                Problem(
                    f"alternate exchange '{ae}' {where}: RabbitMQ accepts this, but messages that "
                    "no binding routes are dropped until that exchange exists",
                    x.location,
                    x.label,
                )
            )
    for q in desired.queues:
        dlx = q.arguments.get("x-dead-letter-exchange")
        if isinstance(dlx, str) and missing(q.vhost, dlx):
            found.append(
                Problem(
                    f"dead-letter exchange '{dlx}' {where}: RabbitMQ accepts this, but rejected, "
                    "expired and overflowing messages are lost until that exchange exists",
                    q.location,
                    q.label,
                )
            )
    for p in desired.policies:
        for key, consequence in (
            ("alternate-exchange", "messages that no binding routes are dropped"),
            ("dead-letter-exchange", "rejected, expired and overflowing messages are lost"),
        ):
            name = p.definition.get(key)
            if isinstance(name, str) and missing(p.vhost, name):
                found.append(
                    Problem(
                        f"{key} '{name}' {where}: RabbitMQ accepts this, but {consequence} until "
                        "that exchange exists",
                        p.location,
                        p.label,
                    )
                )
    return found


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """By file and line, the order people read them in."""
    return sorted(
        problems, key=lambda p: (p.location.file, p.location.line) if p.location else ("", 0)
    )


def strict(warnings: Sequence[Problem]) -> None:
    """``--strict``: raise the warnings as a TopologyError (exit 1, nothing written)."""
    if warnings:
        raise TopologyError(
            [
                Problem(f"{p.message} (an error with --strict)", p.location, p.object)
                for p in warnings
            ]
        )


def plan_warnings(desired: Topology, actual: Topology) -> list[Problem]:
    """Every warning of a plan: the loader's, the values' (``_fit``) and the references'."""
    return sort_problems(
        [*desired.warnings, *fit_warnings(desired), *reference_warnings(desired, actual)]
    )
