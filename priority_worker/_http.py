"""The worker's HTTP endpoints on Tornado: /healthz, /readyz, /metrics."""

from __future__ import annotations

import socket
from collections.abc import Callable

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ._errors import ConfigurationError


class _Base(tornado.web.RequestHandler):
    # Two callables rather than the Worker: this module stays below _worker (no import circle).
    def initialize(self, ready: Callable[[], bool], metrics: Callable[[], bytes]) -> None:
        self.ready = ready
        self.metrics = metrics


class _Health(_Base):
    def get(self) -> None:
        self.write("ok\n")


class _Ready(_Base):
    def get(self) -> None:
        if self.ready():
            self.write("ready\n")
        else:
            self.set_status(503)
            self.write("not ready\n")


class _Metrics(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(self.metrics())


def serve_http(
    ready: Callable[[], bool], metrics: Callable[[], bytes], port: int, host: str
) -> tuple[HTTPServer, int]:
    """Start the server on the running loop; returns it and the port it listens on.

    ``ready()`` answers /readyz; ``metrics()`` is the Prometheus text /metrics serves.
    """
    given = {"ready": ready, "metrics": metrics}
    app = tornado.web.Application(
        [(r"/healthz", _Health, given), (r"/readyz", _Ready, given), (r"/metrics", _Metrics, given)]
    )
    return listen(app, port, host)


def listen(app: tornado.web.Application, port: int, host: str) -> tuple[HTTPServer, int]:
    """Serve ``app`` on ``host:port`` (0: a free port) on the running loop; returns the
    server and its port."""
    try:
        sockets = bind_sockets(port, address=host, family=socket.AF_INET)
    except OSError as exc:  # busy port, unknown address: a setting to fix, not a crash
        raise ConfigurationError(
            f"cannot serve HTTP on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    server = HTTPServer(app)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
