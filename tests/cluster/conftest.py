"""Fixtures of the cluster tests: see cluster_fixtures.py. The worker tests also use the
fault suite's ledger and kit (tests/faults); the TCP proxy and the waiting helpers are in
tests/ itself."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "faults"))

from cluster_fixtures import cluster, cluster_vhost  # noqa: E402,F401  (fixtures)
