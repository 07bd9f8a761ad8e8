"""Helpers for the priority_worker tests (imported by conftest and the test modules).

Integration helpers talk to the broker with pika's BlockingConnection (an independent client,
not the code under test) to declare queues, fill them and count what is left. Waiting
(``run``, ``wait_until``) and the TCP proxy are shared by every suite: ``tests/waiting.py``
and ``tests/tcp_proxy.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker_support import declare_durable_queues, drain, fill, ready_count
from waiting import run, wait_until

# Shared with the other suites (broker_support, waiting), importable from here as well.
__all__ = ["drain", "fill", "ready_count", "run", "wait_until"]

from priority_worker import Message

HERE = Path(__file__).resolve().parent
RUNNER = Path(sys.executable).parent / "priority-worker"


def declare_queues(url: str, *names: str, arguments: dict[str, Any] | None = None) -> None:
    """Declare durable queues (bound to the default exchange only)."""
    declare_durable_queues(url, names, arguments)


def vhost_path(vhost: str) -> str:
    """The vhost quoted for a management API path."""
    return urllib.parse.quote(vhost, safe="")


@contextlib.contextmanager
def global_fault_lock() -> Iterator[None]:
    """Serialise broker-global faults (memory alarm) with other engineers' tests."""
    import fcntl

    with open("/tmp/rabbit-global-fault.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Recorder:
    """An async handler that records what it saw and how many ran at once per queue."""

    delay: float = 0.0
    seen: list[tuple[str, str, int, bool]] = field(default_factory=list)
    active: Counter[str] = field(default_factory=Counter)
    max_active: Counter[str] = field(default_factory=Counter)

    async def __call__(self, message: Message) -> None:
        self.active[message.queue] += 1
        self.max_active[message.queue] = max(
            self.max_active[message.queue], self.active[message.queue]
        )
        self.seen.append(
            (message.queue, str(message.message_id), message.attempts, message.redelivered)
        )
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active[message.queue] -= 1

    def ids(self, queue: str | None = None) -> set[str]:
        return {mid for q, mid, _, _ in self.seen if queue in (None, q)}


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def start_runner(
    vhost_url: str, log: Path, seconds: float, *extra: str, stderr: Any = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """``priority-worker run worker_handlers:slow`` as a subprocess."""
    env = {**os.environ, "HANDLED_LOG": str(log), "HANDLER_SECONDS": str(seconds)}
    return subprocess.Popen(
        [
            str(RUNNER),
            "run",
            "worker_handlers:slow",
            "--url",
            vhost_url,
            "--queue",
            "high=10",
            "--queue",
            "low=2",
            *extra,
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def noted(log: Path, what: str) -> list[str]:
    """The message ids of the lines ``WHAT <id>`` the runner's handler wrote to ``log``."""
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith(what + " ")]
