"""``priority-worker run`` flags, no broker: each is checked against its range before
anything starts (exit 2, the flag named), and a busy HTTP port is a one-line error (exit 1),
not a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from worker_support import start_runner

from priority_worker._cli import build_parser

BASE = ["run", "mod:handler", "--url", "amqp://127.0.0.1:1/"]


def _refused(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([*BASE, *flags])
    assert stop.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--http-port", "70000"], "--http-port: 70000 is out of range (0..65535)"),
        (["--http-port", "-1"], "--http-port: -1 is out of range"),
        (["--http-port", "http"], "--http-port: 'http' is not a int"),
        (["--queue", "q=70000"], "prefetch must be in 1..65535"),
        (["--queue", "q=0"], "prefetch must be in 1..65535"),
        (["--queue", "q=ten"], "prefetch is not a number"),
        (["--queue", "q"], "expected NAME=PREFETCH"),
        (["--concurrency", "0"], "--concurrency: 0 is out of range (>= 1)"),
        (["--max-retries", "-1"], "--max-retries: -1 is out of range"),
        (["--retry-delay", "-0.5"], "--retry-delay: -0.5 is out of range"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout: nan is out of range"),
        (["--blocked-loop-warning", "-1"], "--blocked-loop-warning: -1 is out of range"),
        (["--processes", "0"], "--processes: 0 is out of range (1..1024)"),
    ],
)
def test_out_of_range_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """Before: --http-port 70000 served on 4464 (70000 mod 65536) and --queue q=70000 said
    "prefetch is not a number"."""
    err = _refused(capsys, "--queue", "a=1", *flags)
    assert message in err, err


def test_flags_in_range_parse() -> None:
    args = build_parser().parse_args(
        [*BASE, "--queue", "a=65535", "--http-port", "0", "--shutdown-timeout", "0"]
    )
    assert [(q.name, q.prefetch) for q in args.queues] == [("a", 65535)]
    assert (args.http_port, args.shutdown_timeout) == (0, 0.0)


def test_a_busy_http_port_is_a_clear_error(tmp_path: Path) -> None:
    """Before: a traceback (OSError: Address already in use)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_runner(
            "amqp://guest:guest@127.0.0.1:1/", tmp_path / "log", 1.0, "--http-port", str(port)
        )
        _, err = proc.communicate(timeout=60)
    text = err.decode()
    assert proc.returncode == 1, text
    assert f"cannot serve HTTP on 127.0.0.1:{port}: Address already in use" in text, text
    assert "Traceback" not in text


def test_exit_codes_are_documented() -> None:
    from priority_worker import _cli

    doc = _cli.__doc__ or ""
    for code, what in (
        (0, "graceful"),
        (1, "could not run"),
        (2, "bad arguments"),
        (3, "abandoned"),
    ):
        assert f"- {code} " in doc and what in doc
    assert _cli.EXIT_ABANDONED == 3
