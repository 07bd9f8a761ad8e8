"""Helpers for the priority_worker tests (imported by conftest and the test modules).

Integration helpers talk to the broker with pika's BlockingConnection (an independent client,
not the code under test) to declare queues, fill them and count what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pika
from broker_support import declare_durable_queues, fill, ready_count

__all__ = ["fill", "ready_count"]  # shared with the other suites (broker_support)

from priority_worker import Message


def declare_queues(url: str, *names: str, arguments: dict[str, Any] | None = None) -> None:
    """Declare durable queues (bound to the default exchange only)."""
    declare_durable_queues(url, names, arguments)


def drain(url: str, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Take every ready message out of ``queue``."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    out = []
    try:
        ch = conn.channel()
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((props, body))
    finally:
        conn.close()


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll ``predicate`` on the loop until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(step)


def run(coro: Awaitable[Any], timeout: float = 120) -> Any:
    """Run one async scenario with an overall time limit."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


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


class TcpProxy:
    """An in-process TCP proxy to the broker whose link can be stalled or cut.

    ``stall()`` stops forwarding broker -> client bytes (confirms and deliveries stop arriving),
    ``cut()`` closes every proxied connection, ``resume()`` forwards again.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._flowing = asyncio.Event()  # cleared while stalled: data to the client waits
        self._flowing.set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, amqp_url: str) -> str:
        """``amqp_url`` rewritten to go through the proxy."""
        u = urllib.parse.urlsplit(amqp_url)
        netloc = u.netloc.rpartition("@")
        return urllib.parse.urlunsplit(
            u._replace(
                netloc=f"{netloc[0]}@127.0.0.1:{self.port}"
                if netloc[0]
                else f"127.0.0.1:{self.port}"
            )
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool
        ) -> None:
            try:
                while data := await src.read(65536):
                    if downstream:
                        await self._flowing.wait()
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def cut(self) -> None:
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


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
