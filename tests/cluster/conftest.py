"""Fixtures of the cluster tests: see cluster_fixtures.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cluster_fixtures import cluster, cluster_vhost  # noqa: E402,F401  (fixtures)
