"""Helpers for testing your handlers without a broker.

A handler runs through exactly the worker's path (decode, call, map the outcome), and you get
back what the worker would do with the message::

    from priority_worker.testing import Ack, DeadLetter, RetryLater, run_handler

    def test_send_email_without_recipient_is_dead_lettered():
        outcome = run_handler(send_email, b'{"to": ""}', content_type="application/json")
        assert isinstance(outcome, DeadLetter) and outcome.reason == "rejected"

To check how a worker shares its capacity, or how long a message waits, without a broker, use
:class:`InMemoryBroker`: queues in memory and the worker's own scheduling on a virtual clock::

    from priority_worker.testing import InMemoryBroker

    def test_high_gets_five_of_every_six_under_backlog():
        broker = InMemoryBroker()
        broker.publish_many("email.high", 1000)
        broker.publish_many("email.default", 1000)
        run = broker.run([Queue("email.high", 10), Queue("email.default", 2)], send_email,
                         concurrency=1, handler_time=0.02, max_handled=600)
        assert run.counts() == {"email.high": 500, "email.default": 100}

``Ack()``: acked. ``RetryLater(delay, attempts, reason)``: republished to a delay queue.
``DeadLetter(reason, error, attempts)``: dead-lettered (reason ``rejected``, ``undecodable`` or
``exhausted``). Pass ``headers={"x-attempts": n}`` to test what happens on the n-th retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ._handling import handle
from ._inmemory import Handled, InMemoryBroker, Run, StoredMessage
from ._model import Handler, Properties, RetryPolicy
from ._outcomes import Ack, Action, DeadLetter, RetryLater
from ._publisher import Publisher

__all__ = [
    "Ack",
    "DeadLetter",
    "Handled",
    "InMemoryBroker",
    "RetryLater",
    "Run",
    "StoredMessage",
    "handle_message",
    "run_handler",
]


async def handle_message(
    handler: Handler,
    body: bytes | str = b"",
    *,
    queue: str = "test",
    routing_key: str | None = None,
    exchange: str = "",
    redelivered: bool = False,
    content_type: str | None = None,
    headers: Mapping[str, Any] | None = None,
    properties: Properties | None = None,
    retry: RetryPolicy | None = None,
    publisher: Publisher | None = None,
) -> Action:
    """Run ``handler`` on one message built from the arguments; return the worker's action."""
    props = properties or Properties()
    if content_type is not None:
        props = replace(props, content_type=content_type)
    if headers is not None:
        props = replace(props, headers={**(props.headers or {}), **headers})
    action, _ = await handle(
        handler,
        body=body.encode() if isinstance(body, str) else body,
        queue=queue,
        routing_key=queue if routing_key is None else routing_key,
        exchange=exchange,
        redelivered=redelivered,
        properties=props,
        retry=retry or RetryPolicy(),
        publisher=publisher,
    )
    return action


def run_handler(handler: Handler, body: bytes | str = b"", **kwargs: Any) -> Action:
    """:func:`handle_message` from synchronous code (runs its own event loop)."""
    return asyncio.run(handle_message(handler, body, **kwargs))
