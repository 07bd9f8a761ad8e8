"""The handler of the migration benchmark's priority_worker (``migrate_handlers:record``).

Appends each handled ``message_id`` to $HANDLED_LOG; every 50th message is retried once first
(through the worker's delay queue, which dead-letters back into the queue being migrated).
"""

from __future__ import annotations

import os

from priority_worker import Message, Retry

_log = None


def record(message: Message) -> None:
    """Record the message (retrying every 50th once, after 0.5 s)."""
    global _log
    mid = message.properties.message_id or ""
    if mid.endswith("50") and message.attempts == 0:
        raise Retry(delay=0.5)
    if _log is None:
        _log = open(os.environ["HANDLED_LOG"], "a", buffering=1)  # noqa: SIM115 (kept open)
    _log.write(mid + "\n")
