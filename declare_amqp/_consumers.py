"""The ``consumers`` section: validation, and the queues declare-amqp derives from it.

Pure. A consumer names the queues an application reads with priority_worker; from it
declare-amqp derives the queues the worker would otherwise make by itself (its retry delay
queues and, without a dead-letter exchange, its ``Q.dead`` queues), by the one rule in
:mod:`declare_amqp.worker_queues`, so both tools agree on every name and argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from ._errors import Problem
from ._model import ConsumerSpec, QueueSpec, Topology
from .worker_queues import (
    dead_letter_queue_name,
    delay_queue_arguments,
    delay_queue_name,
)


def check_consumer_references(
    desired: Topology,
    queue_exists: Callable[[str, str], bool],
    exchange_exists: Callable[[str, str], bool],
    nowhere: str,
) -> list[Problem]:
    """Queues and dead-letter exchanges a consumer names that exist nowhere."""
    problems: list[Problem] = []
    for c in desired.consumers:
        for q in c.queues:
            if not queue_exists(c.vhost, q.queue):
                problems.append(
                    Problem(
                        f"queue '{q.queue}' is declared in no file" + nowhere,
                        q.location or c.location,
                        c.label,
                    )
                )
        dlx = c.dead_letter_exchange
        if dlx is not None and not exchange_exists(c.vhost, dlx):
            problems.append(
                Problem(
                    f"dead-letter exchange '{dlx}' is declared in no file" + nowhere,
                    c.location,
                    c.label,
                )
            )
    return problems


def _derived(c: ConsumerSpec) -> Iterable[QueueSpec]:
    for consumed in c.queues:
        for step in c.retry_steps():
            yield QueueSpec(
                vhost=c.vhost,
                name=delay_queue_name(consumed.queue, step),
                type="classic",
                arguments=delay_queue_arguments(consumed.queue, step),
                location=c.location,
                origin=f"retry delay {step:g} s of {consumed.queue}, consumer '{c.name}'",
            )
        if c.dead_letter_exchange is None:
            yield QueueSpec(
                vhost=c.vhost,
                name=dead_letter_queue_name(consumed.queue),
                type="classic",
                location=c.location,
                origin=f"dead letters of {consumed.queue}, consumer '{c.name}'",
            )


def derive_worker_queues(desired: Topology) -> tuple[Topology, list[Problem]]:
    """The files' topology with the queues its consumers need added.

    A queue the files declare themselves is kept as written when it is the same queue; one
    with other settings is an error (the worker would use it as if it were its own).
    """
    if not desired.consumers:
        return desired, []
    problems: list[Problem] = []
    declared = {(q.vhost, q.name): q for q in desired.queues}
    added: dict[tuple[str, str], QueueSpec] = {}
    for c in desired.consumers:
        for q in _derived(c):
            key = (q.vhost, q.name)
            own = declared.get(key)
            if own is not None:
                same = (own.type, own.durable, own.auto_delete, dict(own.arguments)) == (
                    q.type,
                    q.durable,
                    q.auto_delete,
                    dict(q.arguments),
                )
                if not same:
                    problems.append(
                        Problem(
                            f"{q.origin} needs queue '{q.name}' durable with arguments "
                            f"{dict(q.arguments)}, but a file declares it otherwise (at "
                            f"{own.location}); remove that declaration",
                            c.location,
                            c.label,
                        )
                    )
                continue
            added.setdefault(key, q)
    if not added:
        return desired, problems
    return dataclasses.replace(desired, queues=(*desired.queues, *added.values())), problems
