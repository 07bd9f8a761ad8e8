"""The ``priority-worker run`` subprocess without any broker: it still stops cleanly."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from waiting import wait_until_blocking
from worker_support import start_runner


def test_sigterm_while_no_broker_answers_exits_0(
    handled_log: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    """A runner still retrying its connection stops cleanly on SIGTERM."""
    errors = handled_log.with_suffix(".stderr")
    with errors.open("wb") as sink:
        proc = start_runner("amqp://guest:guest@127.0.0.1:1/", handled_log, 1.0, stderr=sink)
    reaper.append(proc)
    wait_until_blocking(
        lambda: errors.exists() and b"connect_failed" in errors.read_bytes(),
        20,
        "a failed connection attempt",
    )
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 0, errors.read_text()[-2000:]
