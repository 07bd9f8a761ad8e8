"""Checks of a worker's or publisher's arguments: broker URLs, queues, mode.

Pure: no I/O, no pika, no tornado. Each check raises ConfigurationError with a message that
never holds a password.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from declare_amqp.urls import AMQP_SCHEMES, redact_url, split_urls

from ._errors import ConfigurationError
from ._model import Handler, Mode, Queue


def broker_urls(url: str | Sequence[str]) -> list[str]:
    """One or several broker URLs, as a list or a comma-separated string, in failover order."""
    urls = split_urls(url)
    if not urls:
        raise ConfigurationError("no broker URL given")
    for u in urls:
        if urllib.parse.urlsplit(u).scheme not in AMQP_SCHEMES:
            raise ConfigurationError(f"not an amqp:// or amqps:// URL: {redact_url(u)}")
    return urls


def check_queues(queues: Sequence[Queue], handler: Handler | None) -> None:
    """At least one queue, no name twice, and a handler for each."""
    if not queues:
        raise ConfigurationError("at least one queue is needed")
    names = [q.name for q in queues]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"duplicate queue names in {names}")
    for q in queues:
        if q.handler is None and handler is None:
            raise ConfigurationError(f"queue {q.name} has no handler")


def parse_mode(mode: Mode | str) -> Mode:
    """``mode`` as a Mode (its value, e.g. ``"strict"``, works too)."""
    try:
        return Mode(mode)
    except ValueError as exc:
        raise ConfigurationError(f"unknown mode {mode!r}") from exc
