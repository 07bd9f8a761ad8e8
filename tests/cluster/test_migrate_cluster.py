"""Queue migration on the three-node 3.x cluster: classic queues mirrored by an ``ha-mode: all``
policy become quorum queues (``convert --to quorum`` then ``apply --migrate`` through node 1)
while a confirmed publisher on node 2 and a priority_worker on node 3 go on: every confirmed
message is handled, every binding is kept, and the new queues have members on every node.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path

import pytest
from fault_kit import publish_ids, recording_handler, wait_all_handled
from fault_ledger import Ledger
from rabbit_cluster import Cluster
from waiting import run

from priority_worker import Publisher, Queue, Worker

pytestmark = [pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("declare-amqp"))
QUEUES = ("orders.a", "orders.b")


def _topology(vhost: str) -> str:
    return textwrap.dedent(
        f"""\
        vhost: {vhost}
        exchanges:
          - name: orders
            type: direct
        queues:
          - name: orders.a
            bindings:
              - exchange: orders
                routing_key: a
          - name: orders.b
            bindings:
              - exchange: orders
                routing_key: b
        policies:
          - name: mirror-orders
            pattern: '^orders\\.'
            apply_to: queues
            definition:
              ha-mode: all
              ha-sync-mode: automatic
        """
    )


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


def test_mirrored_classic_queues_become_quorum_queues_while_clients_go_on(
    cluster: Cluster, cluster_vhost: str, tmp_path: Path
) -> None:
    c1, c2, c3 = cluster.nodes
    classic = tmp_path / "topology.yml"
    classic.write_text(_topology(cluster_vhost))
    target = ["--url", c1.amqp_url(), "--management-url", c1.management_url]
    applied = _run("apply", str(classic), *target)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    converted = _run("convert", "--to", "quorum", str(classic), "-o", str(tmp_path / "q.yml"))
    assert converted.returncode == 0, converted.stderr
    assert "ha-mode removed" in converted.stderr
    v = urllib.parse.quote(cluster_vhost, safe="")

    def bindings() -> set[tuple[str, str, str]]:
        with cluster.http(c2) as http:
            found = http.get(f"/api/bindings/{v}").json()
        return {(b["source"], b["destination"], b["routing_key"]) for b in found if b["source"]}

    before = bindings()
    ledger = Ledger("migrate mirrored -> quorum on the cluster")
    ids = Ledger.ids("migrate", 600)
    result: list[subprocess.CompletedProcess[str]] = []

    async def flow() -> None:
        worker = Worker(
            c3.amqp_url(cluster_vhost),
            [Queue("orders.a", prefetch=10)],
            recording_handler(ledger),
            reconnect_max_delay=1.0,
        )
        await worker.start()
        try:
            async with Publisher(c2.amqp_url(cluster_vhost)) as publisher:
                half = len(ids) // 2
                # Half before the migration (a backlog to move), half during it.
                await publish_ids(publisher, ledger, ids[:half:2], "a", exchange="orders")
                await publish_ids(publisher, ledger, ids[1:half:2], "b", exchange="orders")
                migration = asyncio.ensure_future(
                    asyncio.to_thread(_run, "apply", "--migrate", str(tmp_path / "q.yml"), *target)
                )
                rest = ids[half:]
                await publish_ids(publisher, ledger, rest[::2], "a", exchange="orders", rate=100)
                await publish_ids(publisher, ledger, rest[1::2], "b", exchange="orders", rate=100)
                result.append(await migration)
            # orders.b has no consumer here: take what it holds into the ledger.
            await wait_until_b_drained()
            await wait_all_handled(ledger)
        finally:
            await worker.stop()

    async def wait_until_b_drained() -> None:
        worker_b = Worker(
            c1.amqp_url(cluster_vhost),
            [Queue("orders.b", prefetch=50)],
            recording_handler(ledger),
        )
        await worker_b.start()
        try:
            await wait_all_handled(ledger)
        finally:
            await worker_b.stop()

    run(flow(), timeout=None)
    (migrated,) = result
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert migrated.stdout.count("migrated queue") == 2, migrated.stdout
    assert not ledger.lost_ids(), ledger.lost_ids()[:5]
    assert ledger.confirmed_ids == set(ids)
    assert bindings() == before
    for name in QUEUES:
        with cluster.http(c3) as http:
            q = http.get(f"/api/queues/{v}/{name}").json()
        assert q["type"] == "quorum", q
        assert sorted(q["members"]) == sorted(n.name for n in cluster.nodes)
