"""The in-process TCP proxy of every suite: forward, cut, stall and refuse a link.

    with TcpProxy("127.0.0.1", 5672) as proxy:
        url = proxy.url("amqp://guest:guest@127.0.0.1:5672/v?heartbeat=2")  # via the proxy
        ...
        proxy.cut()       # reset every open connection (like a dropped link)
        proxy.stall()     # keep connections open but move no bytes (heartbeats must notice)
        proxy.stall_downstream()  # the broker gets everything, the client hears nothing back
        proxy.resume()    # move bytes again
        proxy.refuse()    # new connections are accepted and closed at once (node gone)

Threads, not asyncio, so that it runs beside any event loop the code under test uses (and
``start``/``close`` may be called from inside a coroutine as well as from plain code).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import urllib.parse
from types import TracebackType


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a cut cable or a dead middlebox looks to the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One client connection and its upstream connection, pumped by one thread."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="tcp-proxy-link", daemon=True)

    def _pump(self) -> None:
        peer = {self.client: self.upstream, self.upstream: self.client}
        try:
            while not self.closed.is_set():
                # A stalled direction is not read: its bytes pile up in the kernel buffers
                # and the receiving peer sees silence.
                sources = []
                if not self.proxy.stalled.is_set():
                    sources.append(self.client)
                if not (self.proxy.stalled.is_set() or self.proxy.stalled_down.is_set()):
                    sources.append(self.upstream)
                if not sources:
                    self.closed.wait(0.05)
                    continue
                readable, _, _ = select.select(sources, [], [], 0.05)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    peer[src].sendall(data)
                    with self.proxy._lock:
                        if src is self.client:
                            self.proxy.bytes_up += len(data)
                        else:
                            self.proxy.bytes_down += len(data)
        except (OSError, ValueError):
            return
        finally:
            self.close(reset=False)

    def close(self, reset: bool) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        self.proxy._forget(self)


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host:upstream_port`` with injectable faults."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self._server = socket.create_server((listen_host, 0))
        self._server.settimeout(0.1)
        self.host = listen_host
        self.port: int = self._server.getsockname()[1]
        self.stalled = threading.Event()
        self.stalled_down = threading.Event()
        self._refusing = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self.accepted = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    # ---- lifecycle --------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def url(self, amqp_url: str) -> str:
        """``amqp_url`` with its host and port replaced by the proxy's; credentials, vhost and
        query are kept."""
        u = urllib.parse.urlsplit(amqp_url)
        userinfo, at, _ = u.netloc.rpartition("@")
        return urllib.parse.urlunsplit(u._replace(netloc=f"{userinfo}{at}{self.host}:{self.port}"))

    # ---- faults -----------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection; returns how many were cut. New ones still work."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close(reset=True)
        return len(links)

    def stall(self) -> None:
        """Stop moving bytes on every connection, open and new, until ``resume``."""
        self.stalled.set()

    def stall_downstream(self) -> None:
        """Forward client -> broker but hold broker -> client (e.g. confirms never arrive)."""
        self.stalled_down.set()

    def resume(self) -> None:
        """Move bytes in both directions again."""
        self.stalled.clear()
        self.stalled_down.clear()

    def refuse(self) -> None:
        """Accept new connections and close them at once (open ones are not touched)."""
        self._refusing.set()

    def accept(self) -> None:
        """Undo ``refuse``."""
        self._refusing.clear()

    @property
    def open_links(self) -> int:
        with self._lock:
            return len(self._links)

    # ---- internals ---------------------------------------------------------------

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            if self._refusing.is_set():
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.add(link)
            link.thread.start()
