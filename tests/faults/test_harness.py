"""The fault suite's own tools, without a broker: the ledger, the table, the TCP proxy."""

from __future__ import annotations

import socket
import threading

import pytest
from fault_ledger import Ledger, Row, render_markdown
from tcp_proxy import TcpProxy


def test_ledger_counts_duplicates_and_lost_against_confirmed_only() -> None:
    """lost = confirmed and never handled; unconfirmed and unhandled ids are not lost."""
    ledger = Ledger("s")
    ids = Ledger.ids("s", 5)
    for i in ids:
        ledger.published(i)
    for i in ids[:4]:
        ledger.confirmed(i)
    for i in [ids[0], ids[0], ids[0], ids[1], ids[3]]:
        ledger.handled(i)
    row = ledger.row()
    assert row == Row("s", published=5, confirmed=4, handled=3, duplicates=2, lost=1)
    assert ledger.lost_ids() == [ids[2]]
    assert ledger.unconfirmed_ids() == [ids[4]]
    assert ledger.unknown_ids() == []


def test_ledger_republish_counts_once_and_finds_foreign_ids() -> None:
    """A re-sent id is one published id; a handled id nobody published is reported."""
    ledger = Ledger("s")
    ledger.published("a")
    ledger.published("a")
    ledger.confirmed("a")
    ledger.handled("a")
    ledger.handled("zzz")
    assert ledger.row().published == 1
    assert ledger.unknown_ids() == ["zzz"]


def test_ledger_reads_ids_handled_by_other_processes(tmp_path) -> None:
    """Handlers in a subprocess append ids to a file; blank lines are ignored."""
    path = tmp_path / "handled.txt"
    path.write_text("a\nb\na redelivered\n\n")
    ledger = Ledger("s")
    assert ledger.load_handled(path) == 1
    assert ledger.load_handled(tmp_path / "missing.txt") == 0
    assert ledger.handled_ids == {"a", "b"}
    assert ledger.duplicates() == 1


def test_markdown_table_has_one_line_per_row() -> None:
    """The report table: header, alignment line, one row per scenario, pipes escaped."""
    text = render_markdown([Row("close", 10, 10, 10, 2, 0, "a|b"), Row("kill", 5, 5, 5, 0, 0)])
    lines = text.splitlines()
    assert lines[0].startswith("| scenario | published")
    assert lines[2] == "| close | 10 | 10 | 10 | 2 | 0 | a/b |"
    assert len(lines) == 4


@pytest.fixture
def echo_server():
    """A TCP echo server on a free port (stands in for the broker)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return

            def echo(c: socket.socket) -> None:
                with c:
                    try:
                        while data := c.recv(4096):
                            c.sendall(data)
                    except OSError:
                        pass  # the proxy reset the link: that is what the test does

            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def _roundtrip(port: int, payload: bytes, timeout: float = 5) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return sock, got


def test_proxy_forwards_bytes_both_ways(echo_server: int) -> None:
    """What goes in comes back through the proxy unchanged."""
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        sock, got = _roundtrip(proxy.port, b"hello" * 1000)
        sock.close()
        assert got == b"hello" * 1000


def test_proxy_cut_resets_open_connections_and_accepts_new_ones(echo_server: int) -> None:
    """After cut() the old socket is dead; a new connection works."""
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        sock, _ = _roundtrip(proxy.port, b"x")
        assert proxy.cut() == 1
        with pytest.raises(OSError):
            # A reset connection fails on recv (or reads EOF, which we turn into an error).
            if sock.recv(10) == b"":
                raise ConnectionResetError("EOF")
        sock.close()
        sock2, got = _roundtrip(proxy.port, b"again")
        sock2.close()
        assert got == b"again"


def test_proxy_stall_holds_bytes_until_resume(echo_server: int) -> None:
    """While stalled nothing arrives; on resume the held bytes are delivered."""
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        sock, _ = _roundtrip(proxy.port, b"warm")
        proxy.stall()
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.resume()
        sock.settimeout(5)
        assert sock.recv(10) == b"held"
        sock.close()


def test_proxy_refuse_closes_new_connections(echo_server: int) -> None:
    """refuse() makes the proxy look like a node that is down; accept() undoes it."""
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        proxy.refuse()
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                data = sock.recv(10)
        except OSError:  # the reset may already hit connect()
            data = b""
        assert data == b""
        proxy.accept()
        sock2, got = _roundtrip(proxy.port, b"ok")
        sock2.close()
        assert got == b"ok"


def test_proxy_stall_downstream_forwards_only_towards_the_server(echo_server: int) -> None:
    """With the downstream stalled the server still receives (and echoes) what the client
    sends, but the echo reaches the client only after resume."""
    with TcpProxy("127.0.0.1", echo_server) as proxy:
        sock, _ = _roundtrip(proxy.port, b"warm")
        proxy.stall_downstream()
        up = proxy.bytes_up
        sock.sendall(b"up")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        assert proxy.bytes_up == up + 2  # the server got it
        proxy.resume()
        sock.settimeout(5)
        assert sock.recv(10) == b"up"
        sock.close()


def test_proxy_url_points_a_broker_url_at_the_proxy() -> None:
    """Host and port become the proxy's; credentials (quoted), vhost and query stay."""
    with TcpProxy("127.0.0.1", 5672) as proxy:
        assert proxy.url("amqp://u:p%40ss@rabbit.example:5672/v%2F1?heartbeat=2") == (
            f"amqp://u:p%40ss@127.0.0.1:{proxy.port}/v%2F1?heartbeat=2"
        )
        assert proxy.url("amqp://broker/") == f"amqp://127.0.0.1:{proxy.port}/"
