"""Fixtures for the priority_worker tests; helpers live in worker_support.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# --import-mode=importlib puts no test directory on sys.path; the helpers and the handler
# module of the runner subprocess tests live next to this file.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from worker_support import declare_queues


@pytest.fixture
def queues2(vhost_url: str) -> tuple[str, str]:
    """Two durable queues ``high`` and ``low`` in the test vhost."""
    declare_queues(vhost_url, "high", "low")
    return "high", "low"


@pytest.fixture
def handled_log(tmp_path: Path) -> Path:
    """The file the runner's handler notes started/done message ids in."""
    return tmp_path / "handled.log"


@pytest.fixture
def reaper() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Kill any runner subprocess a failed test left behind."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
