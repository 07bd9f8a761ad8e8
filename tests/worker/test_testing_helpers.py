"""priority_worker.testing: users test handlers through the worker's own outcome path."""

from __future__ import annotations

import asyncio

import pytest

from priority_worker import Message, Reject, Retry, RetryPolicy
from priority_worker.testing import Ack, DeadLetter, RetryLater, handle_message, run_handler


async def send_email(message: Message) -> None:
    if not message.data.get("to"):
        raise Reject("no recipient")
    if message.data.get("greylisted"):
        raise Retry(delay=60)
    if message.data.get("smtp_down"):
        raise ConnectionError("smtp down")


def sync_handler(message: Message) -> None:
    assert message.queue == "email.high" and message.routing_key == "email.high"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"to": "a@example.com"}', Ack()),
        (b'{"to": ""}', DeadLetter("rejected", "no recipient", 0)),
        # Retry(delay=60) waits the default policy's next step up: 64 s (1, 2, 4, ... 256, 300)
        (b'{"to": "a@b", "greylisted": true}', RetryLater(64.0, 1, "retry requested")),
        (b'{"to": "a@b", "smtp_down": true}', RetryLater(1.0, 1, "ConnectionError: smtp down")),
    ],
)
def test_outcomes_of_an_async_handler(body: bytes, expected: object) -> None:
    """Each handler result maps to what the worker would do."""
    assert run_handler(send_email, body, content_type="application/json") == expected


def test_undecodable_never_reaches_the_handler() -> None:
    """A body that does not parse as its content type is dead-lettered before the handler."""
    outcome = run_handler(send_email, b"{nope", content_type="application/json")
    assert isinstance(outcome, DeadLetter) and outcome.reason == "undecodable"


def test_last_retry_dead_letters_and_sync_handlers_run_in_a_thread() -> None:
    """With x-attempts at the limit the next failure is final; sync handlers work too."""
    outcome = run_handler(
        send_email,
        '{"to": "a@b", "smtp_down": true}',
        content_type="application/json",
        headers={"x-attempts": 2},
        retry=RetryPolicy(max_retries=2),
    )
    assert outcome == DeadLetter("exhausted", "ConnectionError: smtp down", 3)
    assert run_handler(sync_handler, b"x", queue="email.high") == Ack()
    assert asyncio.run(handle_message(sync_handler, b"", queue="other")) != Ack()
