"""Handlers for the runner subprocess tests (``priority-worker run worker_handlers:...``).

They append ``started <id>`` / ``done <id>`` lines to the file named by $HANDLED_LOG, so the
test can tell which messages were in flight and which were handled.
"""

from __future__ import annotations

import os
import time

from priority_worker import Message


def _note(what: str, message: Message) -> None:
    with open(os.environ["HANDLED_LOG"], "a") as fh:
        fh.write(f"{what} {message.message_id}\n")
        fh.flush()


def slow(message: Message) -> None:
    """Takes HANDLER_SECONDS (default 1) per message, in the thread pool."""
    _note("started", message)
    time.sleep(float(os.environ.get("HANDLER_SECONDS", "1")))
    _note("done", message)


def slow_with_pid(message: Message) -> None:
    """Like ``slow``, with the handling process's pid on each line (``--processes`` tests)."""
    with open(os.environ["HANDLED_LOG"], "a") as fh:
        fh.write(f"started {message.message_id} {os.getpid()} {int(message.redelivered)}\n")
    time.sleep(float(os.environ.get("HANDLER_SECONDS", "1")))
    with open(os.environ["HANDLED_LOG"], "a") as fh:
        fh.write(f"done {message.message_id} {os.getpid()} {int(message.redelivered)}\n")


def broken_worker() -> None:
    """A worker factory for the supervisor that always fails (a crash loop)."""
    raise RuntimeError("this worker cannot start")
