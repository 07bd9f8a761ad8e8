"""declare-amqp against the three-node cluster: quorum queues, failover, any node answers alike.

Runs the real command line (the installed ``declare-amqp`` script) with all three node URLs,
and checks the result on the broker through the management API of another node.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest
from fault_kit import publish_ids, recording_handler, wait_all_handled
from fault_ledger import Ledger
from rabbit_cluster import Cluster, Node
from waiting import run

from priority_worker import Publisher, Queue, Worker

pytestmark = [pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("declare-amqp"))


def _topology(vhost: str) -> str:
    return textwrap.dedent(
        f"""\
        vhost: {vhost}
        exchanges:
          - name: orders
            type: topic
        queues:
          - name: orders.replicated
            type: quorum
            quorum_initial_group_size: 3
            bindings:
              - exchange: orders
                routing_key: "order.#"
          - name: orders.pair
            type: quorum
            arguments:
              x-quorum-initial-group-size: 2
              x-delivery-limit: 5
        """
    )


def _connection_args(nodes: list[Node]) -> list[str]:
    args: list[str] = []
    for node in nodes:
        args += ["--url", node.amqp_url(), "--management-url", node.management_url]
    return args


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)


def _queue(cluster: Cluster, node: Node, vhost: str, name: str) -> dict:
    with cluster.http(node) as http:
        r = http.get(f"/api/queues/{urllib.parse.quote(vhost, safe='')}/{name}")
        r.raise_for_status()
        return r.json()


def test_tools_fail_over_when_the_first_node_is_down(
    cluster: Cluster, cluster_vhost: str, tmp_path: Path
) -> None:
    """With node 1 stopped, plan/apply with URLs 1,2,3 use node 2 and create replicated queues;
    a worker and a publisher given the same three URLs start on node 2 and move messages
    through what declare-amqp made."""
    topology = tmp_path / "topology.yml"
    topology.write_text(_topology(cluster_vhost))
    c1, c2, c3 = cluster.nodes
    cluster.stop_app(c1)
    try:
        plan = _run("plan", str(topology), "--detailed-exitcode", *_connection_args(cluster.nodes))
        assert plan.returncode == 2, plan.stdout + plan.stderr
        # c1 refused the connection: the plan was read from the next node in the list.
        assert f"127.0.0.1:{c2.amqp_port}" in plan.stdout, plan.stdout
        apply = _run("apply", str(topology), *_connection_args(cluster.nodes))
        assert apply.returncode == 0, apply.stdout + apply.stderr
        assert "guest:guest" not in apply.stdout + apply.stderr
        replicated = _queue(cluster, c3, cluster_vhost, "orders.replicated")
        pair = _queue(cluster, c3, cluster_vhost, "orders.pair")
        ledger = Ledger("declare-amqp topology, first node down")
        ids = Ledger.ids("first-down", 200)

        async def flow() -> None:
            urls = cluster.urls(cluster_vhost)
            worker = Worker(
                urls,
                [Queue("orders.replicated", prefetch=10)],
                recording_handler(ledger),
                reconnect_max_delay=1.0,
            )
            await worker.start()
            try:
                async with Publisher(urls) as publisher:
                    await publish_ids(publisher, ledger, ids, "order.created", exchange="orders")
                await wait_all_handled(ledger)
            finally:
                await worker.stop()

        run(flow(), timeout=None)
        assert ledger.handled_ids == set(ids) == ledger.confirmed_ids
    finally:
        cluster.start_app(c1)
    assert replicated["type"] == "quorum"
    assert replicated["arguments"]["x-quorum-initial-group-size"] == 3
    # Declared while c1 was down: c1 is still a member (it catches up when it comes back).
    assert sorted(replicated["members"]) == sorted(n.name for n in cluster.nodes)
    assert pair["type"] == "quorum"
    assert pair["arguments"]["x-quorum-initial-group-size"] == 2
    assert len(pair["members"]) == 2
    v = urllib.parse.quote(cluster_vhost, safe="")
    with cluster.http(c2) as http:
        bindings = http.get(f"/api/bindings/{v}/e/orders/q/orders.replicated").json()
    assert [b["routing_key"] for b in bindings] == ["order.#"]


def test_plan_is_a_noop_against_every_node_after_apply(
    cluster: Cluster, cluster_vhost: str, tmp_path: Path
) -> None:
    """After one apply, a plan through any single node finds nothing to do (exit 0)."""
    topology = tmp_path / "topology.yml"
    topology.write_text(_topology(cluster_vhost))
    # The comma-separated form of the same three addresses.
    apply = _run(
        "apply",
        str(topology),
        "--url",
        ",".join(n.amqp_url() for n in cluster.nodes),
        "--management-url",
        ",".join(n.management_url for n in cluster.nodes),
    )
    assert apply.returncode == 0, apply.stdout + apply.stderr
    for node in cluster.nodes:
        plan = _run("plan", str(topology), "--detailed-exitcode", *_connection_args([node]))
        assert plan.returncode == 0, f"{node.name}: {plan.stdout}{plan.stderr}"
    members = _queue(cluster, cluster.nodes[0], cluster_vhost, "orders.replicated")["members"]
    assert sorted(members) == sorted(n.name for n in cluster.nodes)


def test_export_from_one_node_applies_as_noop_through_another(
    cluster: Cluster, cluster_vhost: str, tmp_path: Path
) -> None:
    """export via node 2 keeps the quorum settings; planning it via node 3 changes nothing."""
    topology = tmp_path / "topology.yml"
    topology.write_text(_topology(cluster_vhost))
    c1, c2, c3 = cluster.nodes
    assert _run("apply", str(topology), *_connection_args([c1])).returncode == 0
    export = _run("export", "--vhost", cluster_vhost, *_connection_args([c2]))
    assert export.returncode == 0, export.stderr
    assert "x-quorum-initial-group-size" in export.stdout or "quorum_initial_group_size" in (
        export.stdout
    )
    exported = tmp_path / "exported.yml"
    exported.write_text(export.stdout)
    plan = _run(
        "plan", str(exported), "--detailed-exitcode", "--format", "json", *_connection_args([c3])
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr
    body = json.loads(plan.stdout)
    assert body["changes"] == []
    assert body["summary"]["create"] == body["summary"]["conflict"] == 0
