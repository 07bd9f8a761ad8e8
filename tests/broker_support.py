"""Helpers shared by the test folders: fresh vhosts and permissions over the management API,
queues filled and counted over pika, and whether a Docker API answers.

``tests/conftest.py`` puts this folder on ``sys.path`` (``--import-mode=importlib`` does not),
so any test module or conftest may ``from broker_support import temporary_vhost``.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pika


def grant_all(http: httpx.Client, vhost: str, user: str) -> None:
    """Give ``user`` configure, write and read on ``vhost``."""
    http.put(
        f"/api/permissions/{urllib.parse.quote(vhost, safe='')}/"
        f"{urllib.parse.quote(user, safe='')}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
    ).raise_for_status()


@contextmanager
def temporary_vhost(
    http: Callable[[], httpx.Client], user: str, prefix: str = "test"
) -> Iterator[str]:
    """A new, empty vhost with full permissions for ``user``; deleted (with all in it) after."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    quoted = urllib.parse.quote(name, safe="")
    with http() as client:
        client.put(f"/api/vhosts/{quoted}").raise_for_status()
        grant_all(client, name, user)
    try:
        yield name
    finally:
        with http() as client:
            client.delete(f"/api/vhosts/{quoted}")


def declare_durable_queues(
    url: str, names: Iterable[str], arguments: dict[str, Any] | None = None
) -> None:
    """Declare durable queues over one blocking connection (test setup, not the tool)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for name in names:
            ch.queue_declare(name, durable=True, arguments=arguments)
    finally:
        conn.close()


def fill(
    url: str,
    queue: str,
    ids: list[str],
    *,
    content_type: str = "text/plain",
    body: Callable[[str], bytes] | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    """Publish one persistent message per id to ``queue`` (message_id = id), with confirms."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for mid in ids:
            ch.basic_publish(
                "",
                queue,
                body(mid) if body else mid.encode(),
                pika.BasicProperties(
                    message_id=mid, delivery_mode=2, content_type=content_type, headers=headers
                ),
            )
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


def docker_answers() -> bool:
    """Whether a Docker API answers (here podman's, after ``tests/container_broker.sh``)."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False
