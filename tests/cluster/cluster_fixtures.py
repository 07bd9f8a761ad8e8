"""pytest fixtures for the local three-node cluster, shared by tests/cluster and tests/faults.

Both conftest.py files import these names. The session fixture starts the cluster once
(``rabbit_cluster.Cluster.start`` is idempotent) and stops it at the end when it started it;
a cluster that was already running (``python tests/cluster/rabbit_cluster.py start``) is left
running for the next session. Under ``CI`` a cluster that cannot start fails the tests.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker_support import temporary_vhost
from rabbit_cluster import Cluster, ClusterError, Node
from rabbit_node import port_open

# How long the session's cluster start took (None when no test asked for the cluster).
START_SECONDS: list[float] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


LOCK_WAIT_SECONDS = 1200
_HELD: list[int] = []  # the lock's fd while this process holds it (both conftests share it)


def _lock_cluster(c: Cluster) -> int | None:
    """One pytest session at a time uses the cluster (its tests stop nodes and raise alarms).

    The lock lives beside the state dir (``stop`` deletes the dir) and is released when the
    session's process exits. A second session on the same tree waits for the first.
    Returns None when this process holds it already (tests/cluster and tests/faults).
    """
    if _HELD:
        return None
    fd = os.open(
        Path(tempfile.gettempdir()) / f"{c.state_dir.name}-{c.nodes[0].amqp_port}.lock",
        os.O_RDWR | os.O_CREAT,
        0o666,
    )
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _HELD.append(fd)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise ClusterError(
                    f"another test session held the cluster for {LOCK_WAIT_SECONDS} s"
                ) from None
            time.sleep(1)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The running three-node cluster (rabbit-c1..c3@localhost on AMQP 5681-5683)."""
    c = Cluster()
    try:
        lock = _lock_cluster(c)
        was_running = c.is_ready()
        c.start()
    except ClusterError as exc:
        reason = f"the local RabbitMQ cluster did not start: {exc}"
        if _in_ci():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    if c.start_seconds is not None:
        START_SECONDS.append(c.start_seconds)
    try:
        yield c
    finally:
        if not was_running and not os.environ.get("RABBIT_CLUSTER_KEEP"):
            c.stop()
        if lock is not None:
            _HELD.remove(lock)
            os.close(lock)


def heal(cluster: Cluster) -> None:
    """Start the app on any node a previous test left stopped, and clear memory alarms."""
    for node in cluster.nodes:
        if not port_open(node.amqp_port):
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
    with temporary_vhost(cluster.http, "guest", "ctest") as name:
        try:
            yield name
        finally:
            heal(cluster)


__all__ = ["START_SECONDS", "Cluster", "Node", "cluster", "cluster_vhost", "heal"]
