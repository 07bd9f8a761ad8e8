"""The ``consumers`` section: reading an entry, validation, and the queues declare-amqp
derives from it.

Pure. A consumer names the queues an application reads with priority_worker; from it
declare-amqp derives the queues the worker would otherwise make by itself (its retry delay
queues and, without a dead-letter exchange, its ``Q.dead`` queues), by the one rule in
:mod:`declare_amqp.worker_queues`, so both tools agree on every name and argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import Problem
from ._format import CONSUMED_QUEUE_KEYS, CONSUMER_KEYS, RETRY_KEYS, Reader
from ._model import ConsumedQueue, ConsumerSpec, QueueSpec, Topology
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


def read_consumer(reader: Reader, raw: Any, line: int) -> ConsumerSpec | None:
    """One entry of a file's ``consumers`` (problems go to ``reader``)."""
    f = reader.fields(raw, CONSUMER_KEYS, "consumer", line)
    # Its queues and retry are checked even when a key above is wrong, so that one run
    # reports every problem.
    top: dict[str, Any] = f if f is not None else raw if isinstance(raw, dict) else {}
    name = top.get("name")
    label = f"consumer '{name if isinstance(name, str) else '?'}'"
    queues: list[ConsumedQueue] = []
    if isinstance(top.get("queues"), list):
        for item, item_line in reader.entries(top, "queues"):
            q = reader.fields(item, CONSUMED_QUEUE_KEYS, f"queue of {label}", item_line)
            if q is None:
                continue
            if any(seen.queue == q["queue"] for seen in queues):
                reader.problem(item_line, f"queue '{q['queue']}' is listed twice", label)
            queues.append(ConsumedQueue(q["queue"], q["prefetch"], reader.at(item_line)))
        if not top["queues"]:
            reader.problem(line, "a consumer needs at least one queue", label)
    retry_line = getattr(raw, "key_lines", {}).get("retry", line)
    retry: dict[str, Any] = {}
    if isinstance(top.get("retry"), dict):
        retry = reader.fields(top["retry"], RETRY_KEYS, f"retry of {label}", retry_line) or {}
    delays: list[float] = []
    for value in retry.get("delays") or []:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            reader.problem(
                retry_line,
                f"retry delays must be positive numbers of seconds, not {value!r}",
                label,
            )
            continue
        delays.append(float(value))
    if delays != sorted(delays):
        reader.problem(
            retry_line,
            "retry delays must be in ascending order (the n-th retry waits the n-th delay)",
            label,
        )
    if f is None:
        return None
    return ConsumerSpec(
        vhost=f.get("vhost", reader.vhost),
        name=f["name"],
        queues=tuple(queues),
        mode=f.get("mode", "weighted"),
        concurrency=f.get("concurrency"),
        max_retries=retry.get("max_retries", 5),
        delays=tuple(delays),
        dead_letter_exchange=f.get("dead_letter_exchange"),
        location=reader.at(line),
    )
