"""The seam between the management client and the network: one HTTP request, one answer.

``_management`` only ever calls a :class:`Transport`. :class:`HttpTransport` implements it on
the standard library's ``http.client``; ``tests/fake_http.py`` implements it in
memory, so the management client's error paths run in unit tests without a broker.

Why not httpx (issue 22): a no-op ``plan`` is a race with ``curl`` re-posting the same
definitions, and importing httpx with httpcore cost ~70 ms of every start and creating its
client another ~14 ms (it builds an SSL context even when nothing is verified), against ~3 ms
for ``http.client`` and a first request. The management API needs none of what httpx adds:
HTTP/1.1 with keep-alive, basic auth and JSON bodies, to one host at a time.

A transport raises the standard library's own exceptions (:data:`FAILURES`: ``OSError``,
which covers timeouts and TLS errors, and ``http.client.HTTPException``); ``_management``
maps them, in one place, to declare_amqp's errors.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# What a transport raises when the network fails (a timeout is an OSError: TimeoutError).
FAILURES: tuple[type[Exception], ...] = (OSError, http.client.HTTPException)

# Idle kept-alive connections kept per host; more (after a burst of concurrent reads) close.
_MAX_IDLE = 16


@dataclass(frozen=True)
class Request:
    """One request: ``url`` is absolute (scheme, host, port, path and query as sent)."""

    method: str
    url: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """The path and query, percent-encoding kept (``/api/queues/%2F?columns=name``)."""
        parts = urllib.parse.urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    @property
    def path(self) -> str:
        """The path without the query."""
        return urllib.parse.urlsplit(self.url).path or "/"


@dataclass(frozen=True)
class Response:
    """A whole answer: its status and its body, read to the end."""

    status_code: int
    content: bytes = b""

    @property
    def text(self) -> str:
        """The body as text (the management API answers in UTF-8)."""
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body decoded as JSON; ValueError when it is not JSON."""
        return json.loads(self.content)


class Transport(Protocol):
    """Sends one request and returns the whole answer; raises one of :data:`FAILURES` when
    the network fails. Safe to call from several threads at once."""

    def send(self, request: Request) -> Response:
        """The answer to ``request``."""

    def close(self) -> None:
        """Close the idle connections (the transport reconnects on its next request)."""


def _connect(address: tuple[str, int], *args: Any) -> socket.socket:
    """``socket.create_connection`` given an ASCII host as bytes: a str host goes through
    the IDNA codec, whose import (``encodings.idna``, ``stringprep``) costs a few ms of
    every start, before the first request is sent. (typeshed types the host as str only;
    getaddrinfo takes bytes as well.)"""
    host, port = address
    name: Any = host.encode("ascii") if host.isascii() else host
    return socket.create_connection((name, port), *args)


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection has something to read: the server closed it (or
    sent what no request asked for). Either way it must not carry the next request, which
    would fail for a reason that has nothing to do with the request."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


class HttpTransport:
    """HTTP/1.1 over ``http.client``, keeping connections alive between requests.

    Each request takes an idle connection to its host or opens one, and gives it back once
    the answer is read, so concurrent requests (the per-kind reads run in threads) each have
    their own connection. ``context`` verifies https URLs (``TlsOptions.context``); without
    one, only http URLs can be sent.
    """

    def __init__(self, timeout: float, context: ssl.SSLContext | None = None) -> None:
        self._timeout = timeout
        self._context = context
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def send(self, request: Request) -> Response:
        """Send ``request`` on an idle connection to its host, or on a new one."""
        parts = urllib.parse.urlsplit(request.url)
        https = parts.scheme == "https"
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if https else 80))
        connection = self._checkout(key)
        try:
            connection.request(
                request.method, request.target, body=request.body, headers=dict(request.headers)
            )
            answer = connection.getresponse()
            content = answer.read()
        except BaseException:
            connection.close()  # in an unknown state: never reused
            raise
        # An answer with "Connection: close" closed its connection already; that one opens
        # again on its next request.
        self._checkin(key, connection)
        return Response(answer.status, content)

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle = [c for connections in self._idle.values() for c in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()

    def _checkout(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(key) or []
            while idle:
                connection = idle.pop()
                if connection.sock is None or not _closed_by_server(connection.sock):
                    return connection
                connection.close()
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(
                host, port, timeout=self._timeout, context=self._context
            )
        connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        connection._create_connection = _connect  # type: ignore[attr-defined]
        return connection

    def _checkin(self, key: tuple[str, str, int], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _MAX_IDLE:
                idle.append(connection)
                return
        connection.close()
