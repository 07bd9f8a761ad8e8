"""rabbit_cluster.py itself: three clustered nodes, idempotent start, main broker untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pika
from rabbit_cluster import Cluster

SCRIPT = Path(__file__).with_name("rabbit_cluster.py")


def test_three_nodes_run_as_one_cluster_each_on_its_own_ports(cluster: Cluster) -> None:
    """cluster_status lists the three nodes as running; each takes AMQP on its own port."""
    assert cluster.running_nodes() == sorted(n.name for n in cluster.nodes)
    for node in cluster.nodes:
        conn = pika.BlockingConnection(pika.URLParameters(node.amqp_url()))
        try:
            assert conn.is_open
        finally:
            conn.close()
    with cluster.http() as http:
        names = sorted(n["name"] for n in http.get("/api/nodes").json() if n["running"])
    assert names == sorted(n.name for n in cluster.nodes)


def test_start_of_a_running_cluster_restarts_nothing(cluster: Cluster) -> None:
    """A second start returns the same nodes without restarting them (same VM processes)."""
    before = {n.name: cluster.pid(n) for n in cluster.nodes}
    assert all(before.values())
    status = subprocess.run(
        [sys.executable, str(SCRIPT), "start"], capture_output=True, text=True, timeout=300
    )
    assert status.returncode == 0, status.stderr
    assert {n.name: cluster.pid(n) for n in cluster.nodes} == before
    assert cluster.is_ready()


def test_status_command_reports_the_running_cluster(cluster: Cluster) -> None:
    """``rabbit_cluster.py status`` exits 0 and names the three running nodes."""
    status = subprocess.run(
        [sys.executable, str(SCRIPT), "status"], capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "running: " + ", ".join(sorted(n.name for n in cluster.nodes)) in status.stdout


def test_the_machines_own_broker_stays_a_single_node(cluster: Cluster, broker) -> None:
    """The cluster never joins the broker of the other tests (5672): none of our nodes is in it."""
    with broker.http() as http:
        nodes = [n["name"] for n in http.get("/api/nodes").json()]
    assert nodes
    assert not set(nodes) & {n.name for n in cluster.nodes}
