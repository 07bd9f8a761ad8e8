"""The worker's HTTP endpoints on Tornado: /healthz, /readyz, /metrics."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._worker import Worker


class _Base(tornado.web.RequestHandler):
    def initialize(self, worker: Worker) -> None:
        self.worker = worker


class _Health(_Base):
    def get(self) -> None:
        self.write("ok\n")


class _Ready(_Base):
    def get(self) -> None:
        if self.worker.ready:
            self.write("ready\n")
        else:
            self.set_status(503)
            self.write("not ready\n")


class _Metrics(_Base):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(self.worker.metrics.render())


def serve_http(worker: Worker, port: int, host: str) -> tuple[HTTPServer, int]:
    """Start the server on the running loop; returns it and the port it listens on."""
    app = tornado.web.Application(
        [
            (r"/healthz", _Health, {"worker": worker}),
            (r"/readyz", _Ready, {"worker": worker}),
            (r"/metrics", _Metrics, {"worker": worker}),
        ]
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
