"""An in-memory ``declare_amqp._http.Transport``: a function answers for the broker.

``FakeTransport(handler)`` hands each request to ``handler``, which returns a ``Response``
or raises what the network would (the standard library's exceptions, as ``HttpTransport``
lets them through: ``ConnectionRefusedError``, ``TimeoutError``, an ``ssl.SSLError``...).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from declare_amqp._http import Request, Response

Handler = Callable[[Request], Response]


def json_response(status: int, body: Any) -> Response:
    """An answer whose body is ``body`` as JSON."""
    return Response(status, json.dumps(body).encode())


def text_response(status: int, text: str) -> Response:
    """An answer whose body is ``text``."""
    return Response(status, text.encode())


def body_of(request: Request) -> Any:
    """The request's JSON body, or None when it has none."""
    return json.loads(request.body) if request.body else None


class FakeTransport:
    """Answers every request with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def send(self, request: Request) -> Response:
        """``handler``'s answer to ``request`` (or what it raises)."""
        return self.handler(request)

    def close(self) -> None:
        """Nothing to close: no connection was opened."""
