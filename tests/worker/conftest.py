"""Fixtures for the priority_worker tests; helpers live in worker_support.py."""

from __future__ import annotations

import os
import sys

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
