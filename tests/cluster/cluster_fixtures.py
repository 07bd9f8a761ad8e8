"""pytest fixtures for the local three-node cluster, shared by tests/cluster and tests/faults.

Both conftest.py files import these names. The session fixture starts the cluster once
(``rabbit_cluster.Cluster.start`` is idempotent) and stops it at the end when it started it;
a cluster that was already running (``python tests/cluster/rabbit_cluster.py start``) is left
running for the next session. Under ``CI`` a cluster that cannot start fails the tests.
"""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
from rabbit_cluster import Cluster, ClusterError, Node, _port_open

# How long the session's cluster start took (None when no test asked for the cluster).
START_SECONDS: list[float] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The running three-node cluster (rabbit-c1..c3@localhost on AMQP 5681-5683)."""
    c = Cluster()
    was_running = c.is_ready()
    try:
        c.start()
    except ClusterError as exc:
        reason = f"the local RabbitMQ cluster did not start: {exc}"
        if _in_ci():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    if c.start_seconds is not None:
        START_SECONDS.append(c.start_seconds)
    yield c
    if not was_running and not os.environ.get("RABBIT_CLUSTER_KEEP"):
        c.stop()


def heal(cluster: Cluster) -> None:
    """Start the app on any node a previous test left stopped, and clear memory alarms."""
    for node in cluster.nodes:
        if not _port_open(node.amqp_port):
            cluster.start_app(node)
    with cluster.http() as http:
        nodes = {n["name"]: n for n in http.get("/api/nodes").json()}
    for node in cluster.nodes:
        info = nodes.get(node.name, {})
        if info.get("mem_alarm") or info.get("mem_limit") == 0:
            cluster.ctl(node, "set_vm_memory_high_watermark", "0.4")


@pytest.fixture
def cluster_vhost(cluster: Cluster) -> Iterator[str]:
    """A fresh vhost on the cluster for one test (all nodes up at the start), deleted after."""
    heal(cluster)
    name = f"ctest-{uuid.uuid4().hex[:10]}"
    quoted = urllib.parse.quote(name, safe="")
    with cluster.http() as http:
        http.put(f"/api/vhosts/{quoted}").raise_for_status()
        http.put(
            f"/api/permissions/{quoted}/guest",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    try:
        yield name
    finally:
        heal(cluster)
        with cluster.http() as http:
            http.delete(f"/api/vhosts/{quoted}")


__all__ = ["START_SECONDS", "Cluster", "Node", "cluster", "cluster_vhost", "heal"]
