"""``priority-worker run ... --processes N``: restarts, draining on SIGTERM, one HTTP surface.

The runner is a real subprocess; the handler (worker_handlers.slow_with_pid) writes
``started|done <id> <pid> <redelivered>`` lines, so the test knows which process held what.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from waiting import wait_until_blocking
from worker_support import declare_queues, fill, ids, ready_count

HERE = Path(__file__).resolve().parent
RUNNER = Path(sys.executable).parent / "priority-worker"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines(log: Path) -> list[tuple[str, str, int, bool]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], parts[1], int(parts[2]), parts[3] == "1"))
    return out


@pytest.fixture
def supervised(
    vhost_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    declare_queues(vhost_url, "q")
    log = tmp_path / "handled.log"
    port = free_port()
    env = {**os.environ, "HANDLED_LOG": str(log), "HANDLER_SECONDS": "0.2"}
    proc = subprocess.Popen(
        [
            str(RUNNER),
            "run",
            "worker_handlers:slow_with_pid",
            "--url",
            vhost_url,
            "--queue",
            "q=4",
            "--processes",
            "2",
            "--http-port",
            str(port),
            "--shutdown-timeout",
            "20",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc, log, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for _, _, pid, _ in lines(log):  # children left behind by a failed test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_child_killed_with_minus_9_is_restarted_and_its_deliveries_handled(
    vhost_url: str, supervised: tuple[subprocess.Popen[bytes], Path, int]
) -> None:
    """kill -9 one child while it holds unacked deliveries: the supervisor starts a new one,
    the broker redelivers what the dead one held, and every message ends up handled."""
    proc, log, port = supervised
    fill(vhost_url, "q", ids("m", 120))
    wait_until_blocking(lambda: len({pid for _, _, pid, _ in lines(log)}) == 2, 30, "both children")
    first = {pid for _, _, pid, _ in lines(log)}
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    killed_at = lines(log)
    started = {mid for what, mid, pid, _ in killed_at if what == "started" and pid == victim}
    done = {mid for what, mid, pid, _ in killed_at if what == "done" and pid == victim}
    in_hand = started - done
    assert in_hand, "the victim held no delivery when killed"

    def all_done() -> bool:
        return {mid for what, mid, _, _ in lines(log) if what == "done"} >= set(ids("m", 120))

    wait_until_blocking(all_done, 60, "every message handled")
    after = lines(log)
    pids = {pid for _, _, pid, _ in after}
    assert len(pids - first) >= 1, "no restarted child handled anything"
    redone = {
        mid
        for what, mid, pid, redelivered in after
        if what == "done" and pid != victim and redelivered
    }
    assert in_hand <= redone, (in_hand, redone)
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "priority_worker_process_restarts_total" in metrics
    assert any(
        line.startswith("priority_worker_process_restarts_total") and line.endswith(" 1.0")
        for line in metrics.splitlines()
    ), metrics[:2000]
    assert 'process="0"' in metrics and 'process="1"' in metrics
    assert (
        'priority_worker_acks_total{process="' in metrics
        or "priority_worker_acks_total{" in metrics
    )
    wait_until_blocking(
        lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200,
        30,
        "ready again",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert ready_count(vhost_url, "q") == 0


def test_sigterm_drains_every_child_and_exits_0(
    vhost_url: str, supervised: tuple[subprocess.Popen[bytes], Path, int]
) -> None:
    """SIGTERM: both children stop consuming, finish what runs, requeue the rest; nothing is
    lost or handled twice, and the supervisor exits 0."""
    proc, log, port = supervised
    fill(vhost_url, "q", ids("m", 200))
    wait_until_blocking(lambda: len({pid for _, _, pid, _ in lines(log)}) == 2, 30, "both children")
    wait_until_blocking(
        lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200,
        30,
        "ready",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
    seen = lines(log)
    started = [mid for what, mid, _, _ in seen if what == "started"]
    done = [mid for what, mid, _, _ in seen if what == "done"]
    assert sorted(started) == sorted(done), "a running handler was cut off"
    assert len(done) == len(set(done)), "a message was handled twice"
    assert 0 < len(done) < 200
    assert ready_count(vhost_url, "q") == 200 - len(done)
