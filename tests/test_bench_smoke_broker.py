"""The benchmarks stay runnable: each one's --quick mode measures every contender and prints
its tables (targets may be missed on a busy machine: that is reported, not failed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "topology_bench.py",
            [
                "| cold apply / import_definitions |",
                "| no-op plan / re-POST |",
                "| no-op plan: definitions JSON / YAML |",
            ],
        ),
        (
            "worker_bench.py",
            [
                "| consume: Worker / bare pika |",
                "| publish: Publisher / bare pika |",
                "| 10/2 |",
                "| consume: Worker tracing on / off |",
                "| consume: Worker / FastStream |",
            ],
        ),
        (
            "latency_bench.py",
            ["| priority_worker | weighted | 1 |", "| priority_worker | strict | 1 |"],
        ),
        ("processes_bench.py", ["| 1 |", "| 2 |"]),
        ("health_bench.py", ["| sync 500 ms |", "| async 50 ms CPU |"]),
    ],
)
def test_quick_benchmark_runs(broker: object, script: str, expected: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--output", "-"],
        capture_output=True,
        text=True,
        timeout=420,  # worker_bench: tracing and FastStream rows too
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for line in expected:
        assert line in result.stdout, (line, result.stdout[-2000:])
