"""Building blocks of the fault scenarios: publish known ids, record handlings, wait, settle.

Everything here talks to a real broker through priority_worker's own ``Publisher`` and
``Worker``; the only other broker client is pika's ``BlockingConnection`` for declaring the
test queues. A scenario publishes ids (``message_id`` = body = id) while a fault happens,
waits (bounded) until every confirmed id was handled, and records its ``Ledger`` row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from broker_support import declare_durable_queues
from fault_ledger import Ledger, record
from waiting import run, wait_until

from priority_worker import Message, Metrics, Properties, Publisher, PublishError

HERE = Path(__file__).parent
WORKER_PROC = HERE / "worker_proc.py"
SETTLE_TIMEOUT = 90.0  # upper bound for "every confirmed id handled"; a failure, not a timing


def declare_queues(url: str, names: Iterable[str], *, quorum: bool = False) -> None:
    """Declare durable queues (quorum: replicated on every node) for a scenario."""
    arguments = {"x-queue-type": "quorum", "x-quorum-initial-group-size": 3} if quorum else None
    declare_durable_queues(url, names, arguments)


def recording_handler(
    ledger: Ledger, delay: float = 0.0, on_handle: Callable[[Message], None] | None = None
) -> Callable[[Message], Awaitable[None]]:
    """An async handler that works ``delay`` s, then records the message id (before the ack)."""

    async def handle(message: Message) -> None:
        if delay:
            await asyncio.sleep(delay)
        assert message.message_id is not None
        ledger.handled(message.message_id)
        if on_handle is not None:
            on_handle(message)

    return handle


async def publish_ids(
    publisher: Publisher,
    ledger: Ledger,
    ids: Sequence[str],
    routing_key: str,
    *,
    exchange: str = "",
    window: int = 500,
    rate: float | None = None,
) -> Counter[str]:
    """Publish ``ids`` with at most ``window`` unconfirmed; record confirms; return failures.

    ``rate`` (messages/s) paces the stream so that a fault lands while it is still flowing.
    A failed publish (nack, timeout, connection lost without re-send) is published again
    once, as an application would; what fails twice is counted and left unconfirmed.
    """
    failures: Counter[str] = Counter()
    sem = asyncio.Semaphore(window)

    async def one(message_id: str) -> None:
        try:
            for _attempt in range(2):
                ledger.published(message_id)
                try:
                    await publisher.publish(
                        exchange,
                        routing_key,
                        message_id,
                        properties=Properties(message_id=message_id),
                    )
                except PublishError as exc:
                    failures[type(exc).__name__] += 1
                    continue
                ledger.confirmed(message_id)
                return
        finally:
            sem.release()

    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks = []
    for n, message_id in enumerate(ids):
        if rate:
            ahead = started + n / rate - loop.time()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await sem.acquire()
        tasks.append(asyncio.ensure_future(one(message_id)))
    await asyncio.gather(*tasks)
    return failures


def publish_backlog(url: str, ledger: Ledger, ids: Sequence[str], routing_key: str) -> None:
    """Publish ``ids`` with confirms from a publisher of its own, outside any event loop."""

    async def publish() -> None:
        async with Publisher(url) as publisher:
            await publish_ids(publisher, ledger, ids, routing_key)

    run(publish(), timeout=None)


async def wait_all_handled(ledger: Ledger, timeout: float = SETTLE_TIMEOUT) -> None:
    """Wait until every confirmed id was handled at least once."""
    await wait_until(
        lambda: not ledger.lost_ids(),
        timeout,
        f"{ledger.scenario}: confirmed ids handled (missing e.g. {ledger.lost_ids()[:5]})",
    )


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample of priority_worker's metrics, e.g. ``metric(m, "reconnects_total",
    connection="consumer")`` (0 when not yet recorded)."""
    value = metrics.registry.get_sample_value(f"priority_worker_{name}", labels)
    return value or 0.0


def finish(ledger: Ledger, *, expect_confirmed: int | None = None) -> None:
    """Record the row and assert the suite's invariants: nothing confirmed is lost."""
    row = record(ledger)
    assert not ledger.unknown_ids(), f"handled ids nobody published: {ledger.unknown_ids()[:5]}"
    assert row.lost == 0, f"{row.lost} confirmed ids never handled: {ledger.lost_ids()[:10]}"
    if expect_confirmed is not None:
        assert row.confirmed == expect_confirmed, row


# ---- the broker's CLI and HTTP API --------------------------------------------------------------


def main_broker_ctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``rabbitmqctl ARGS`` against the machine's own broker (only vhost-scoped commands!)."""
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    cmd = [exe, *args]
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo", "-n", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[:500]}")
    return proc


def consumers_of(http: httpx.Client, vhost: str, queue: str) -> list[dict[str, Any]]:
    """The consumers of ``queue`` as the management API lists them (may lag a few seconds)."""
    r = http.get(f"/api/consumers/{urllib.parse.quote(vhost, safe='')}")
    if r.status_code != 200:
        return []
    return [
        c for c in r.json() if isinstance(c.get("queue"), dict) and c["queue"].get("name") == queue
    ]


async def wait_consumer(
    http: httpx.Client,
    vhost: str,
    queue: str,
    prefetch: int,
    *,
    not_on_node: str | None = None,
    timeout: float = 30,
) -> dict[str, Any]:
    """Wait until ``queue`` has a consumer at ``prefetch`` (optionally on another node)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        for c in consumers_of(http, vhost, queue):
            details = c.get("channel_details")
            if not isinstance(details, dict):
                continue  # the API lists [] while the consumer's channel is going away
            if c.get("prefetch_count") == prefetch and details.get("node") != not_on_node:
                found.append(c)
                return True
        return False

    await wait_until(check, timeout, f"consumer of {queue} at prefetch {prefetch}", interval=0.5)
    return found[-1]


# ---- worker subprocesses (kill -9, SIGTERM) ------------------------------------------------------


class WorkerProcess:
    """``priority-worker``-style subprocess whose handler appends each id to ``out``."""

    def __init__(
        self,
        url: str | Sequence[str],
        queue: str,
        prefetch: int,
        out: Path,
        *,
        delay: float = 0.0,
        shutdown_timeout: float = 30.0,
        log: Path | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        self.out = out
        self.log_path = log or out.with_suffix(".log")
        cmd = [
            sys.executable,
            str(WORKER_PROC),
            "--out",
            str(out),
            "--queue",
            f"{queue}={prefetch}",
            "--delay",
            str(delay),
            "--shutdown-timeout",
            str(shutdown_timeout),
        ]
        for u in urls:
            cmd += ["--url", u]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def handled_lines(self) -> int:
        try:
            return self.out.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._log.close()
