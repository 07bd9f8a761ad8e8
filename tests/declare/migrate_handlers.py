"""Handlers for the migration tests' priority_worker (``priority-worker run migrate_handlers:...``).

``record`` appends ``done <message_id>`` to $HANDLED_LOG; every tenth message is retried once
(through the worker's delay queue, which dead-letters back into the queue being migrated).
"""

from __future__ import annotations

import os

from priority_worker import Message, Retry


def record(message: Message) -> None:
    """Retry ids ending in 0 once (after RETRY_SECONDS, default 0.3), record the rest."""
    mid = message.properties.message_id or ""
    if mid.endswith("0") and message.attempts == 0:
        raise Retry(delay=float(os.environ.get("RETRY_SECONDS", "0.3")))
    with open(os.environ["HANDLED_LOG"], "a") as fh:
        fh.write(f"done {mid}\n")
