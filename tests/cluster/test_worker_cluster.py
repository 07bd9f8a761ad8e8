"""priority_worker on the three-node cluster with quorum queues.

- The worker's node stops: it reconnects to another node, each queue's consumer comes back
  at its own prefetch, and every confirmed id is handled.
- The publisher's link dies with messages the broker took but never confirmed: it fails
  over and re-sends them; the duplicates this causes are counted, nothing is lost.
"""

from __future__ import annotations

import asyncio

import pytest
from fault_kit import (
    declare_queues,
    finish,
    metric,
    publish_ids,
    recording_handler,
    wait_all_handled,
    wait_consumer,
)
from fault_ledger import Ledger
from rabbit_cluster import HOST, Cluster
from tcp_proxy import TcpProxy
from waiting import run, wait_until

from priority_worker import Publisher, Queue, Worker

pytestmark = [pytest.mark.slow]


def test_worker_fails_over_and_restores_each_prefetch(cluster: Cluster, cluster_vhost: str) -> None:
    """stop_app on the worker's node while two quorum queues (prefetch 10 and 2) are consumed."""
    ledger = Ledger("C1 worker failover, 2 quorum queues")
    high, low = Ledger.ids("ha-high", 1500), Ledger.ids("ha-low", 500)
    c1, c2, c3 = cluster.nodes
    declare_queues(c2.amqp_url(cluster_vhost), ["high", "low"], quorum=True)

    async def scenario() -> None:
        worker = Worker(
            cluster.urls(cluster_vhost),
            [Queue("high", prefetch=10), Queue("low", prefetch=2)],
            recording_handler(ledger, 0.005),
            reconnect_max_delay=2.0,
        )
        publisher = Publisher(
            [c2.amqp_url(cluster_vhost), c3.amqp_url(cluster_vhost)], resend_unconfirmed=True
        )
        await worker.start()
        await publisher.start()
        try:
            with cluster.http(c2) as http:
                on_c1 = await wait_consumer(http, cluster_vhost, "high", 10)
            assert on_c1["channel_details"]["node"] == c1.name
            sending = asyncio.gather(
                publish_ids(publisher, ledger, high, "high", rate=400),
                publish_ids(publisher, ledger, low, "low", rate=150),
            )
            await wait_until(lambda: ledger.handled_count() >= 300, 60, "300 handled")
            await asyncio.to_thread(cluster.stop_app, c1)
            moved = []
            with cluster.http(c2) as http:
                for queue, prefetch in (("high", 10), ("low", 2)):
                    c = await wait_consumer(
                        http, cluster_vhost, queue, prefetch, not_on_node=c1.name
                    )
                    moved.append(f"{queue}@{c['prefetch_count']} on {c['channel_details']['node']}")
            ledger.note("after stop_app c1: " + ", ".join(moved))
            await sending
            await wait_all_handled(ledger)
            await asyncio.to_thread(cluster.start_app, c1)
        finally:
            await publisher.close()
            await worker.stop()

    run(scenario(), timeout=None)
    assert {i for i in ledger.handled_ids if i.startswith("ha-low")} == set(low)
    finish(ledger, expect_confirmed=len(high) + len(low))


def test_publisher_resends_what_the_dead_link_left_unconfirmed(
    cluster: Cluster, cluster_vhost: str
) -> None:
    """The broker took 300 messages but its confirms never came back (link stalled one way),
    then the link died and node 1 became unreachable. The publisher fails over to node 2 and
    re-sends all 300: every id is confirmed, each of the 300 is handled twice (counted)."""
    ledger = Ledger("C2 publisher re-send after link loss")
    before, stuck = Ledger.ids("resend-a", 200), Ledger.ids("resend-b", 300)
    c1, c2, c3 = cluster.nodes
    declare_queues(c2.amqp_url(cluster_vhost), ["work"], quorum=True)
    with TcpProxy(HOST, c1.amqp_port) as proxy:
        via_proxy = proxy.url(c1.amqp_url(cluster_vhost))

        async def scenario() -> None:
            worker = Worker(
                [c2.amqp_url(cluster_vhost), c3.amqp_url(cluster_vhost)],
                [Queue("work", prefetch=50)],
                recording_handler(ledger),
                reconnect_max_delay=2.0,
            )
            publisher = Publisher(
                [via_proxy, c2.amqp_url(cluster_vhost), c3.amqp_url(cluster_vhost)],
                resend_unconfirmed=True,
                confirm_timeout=120,
                reconnect_max_delay=1.0,
            )
            await worker.start()
            await publisher.start()
            try:
                await publish_ids(publisher, ledger, before, "work")
                proxy.stall_downstream()
                sending = asyncio.ensure_future(publish_ids(publisher, ledger, stuck, "work"))
                # The broker got them all (the worker on node 2 handles them) ...
                await wait_until(
                    lambda: set(stuck) <= ledger.handled_ids,
                    60,
                    "the unconfirmed messages reach the queue",
                )
                # ... but the publisher still waits for every confirm.
                assert publisher.pending == len(stuck)
                proxy.refuse()
                proxy.cut()
                failures = await sending
                assert not failures, failures
                await wait_all_handled(ledger)
                # Both copies of each re-sent message are in the queue: both get handled.
                await wait_until(
                    lambda: ledger.duplicates() >= len(stuck),
                    60,
                    "the re-sent copies are handled as well",
                )
                resent = metric(publisher.metrics, "publish_resent_total")
                ledger.note(f"publisher re-sent {resent:.0f} after the link died")
                assert resent == len(stuck)
            finally:
                proxy.resume()
                await publisher.close()
                await worker.stop()

        run(scenario(), timeout=None)
    finish(ledger, expect_confirmed=len(before) + len(stuck))
