"""Fixtures and helpers for the priority_worker tests.

Integration helpers talk to the broker with pika's BlockingConnection (an independent client,
not the code under test) to declare queues, fill them and count what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pika
import pytest


def declare_queues(url: str, *names: str, arguments: dict[str, Any] | None = None) -> None:
    """Declare durable queues (bound to the default exchange only)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for name in names:
            ch.queue_declare(name, durable=True, arguments=arguments)
    finally:
        conn.close()


def fill(url: str, queue: str, ids: list[str], *, content_type: str = "text/plain",
         body: Callable[[str], bytes] | None = None, headers: dict[str, Any] | None = None
         ) -> None:
    """Publish one persistent message per id to ``queue`` (message_id = id), with confirms."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for mid in ids:
            ch.basic_publish("", queue, body(mid) if body else mid.encode(),
                             pika.BasicProperties(message_id=mid, delivery_mode=2,
                                                  content_type=content_type, headers=headers))
    finally:
        conn.close()


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


def ready_count(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (passive declare)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl on the local broker."""
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True,
                          text=True, timeout=60).stdout


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
                   step: float = 0.05) -> None:
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


@pytest.fixture
def queues2(vhost_url: str) -> tuple[str, str]:
    """Two durable queues ``high`` and ``low`` in the test vhost."""
    declare_queues(vhost_url, "high", "low")
    return "high", "low"
