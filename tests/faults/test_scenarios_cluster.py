"""Broker-wide fault scenarios, on the local three-node cluster (never on the shared broker).

Queues are quorum queues replicated on all three nodes, so stopping one node loses nothing
that was confirmed.
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
from rabbit_cluster import Cluster
from waiting import run, wait_until

from priority_worker import Publisher, Queue, Worker

pytestmark = [pytest.mark.slow]


def test_worker_node_stopped_during_backlog(cluster: Cluster, cluster_vhost: str) -> None:
    """stop_app on the node the worker consumes from, with a backlog; start_app later.

    The worker fails over to the next URL, its consumer comes back at prefetch 10 on
    another node, and every confirmed id is handled.
    """
    ledger = Ledger("2 worker's node stop_app/start_app")
    ids = Ledger.ids("nodestop", 3000)
    c1, c2, c3 = cluster.nodes
    declare_queues(c2.amqp_url(cluster_vhost), ["work"], quorum=True)

    async def scenario() -> None:
        async with Publisher([c2.amqp_url(cluster_vhost), c3.amqp_url(cluster_vhost)]) as pub:
            await publish_ids(pub, ledger, ids, "work")
        worker = Worker(
            cluster.urls(cluster_vhost),  # c1 first: that is the node we stop
            [Queue("work", prefetch=10)],
            recording_handler(ledger, 0.01),
            reconnect_max_delay=2.0,
        )
        await worker.start()
        try:
            await wait_until(lambda: ledger.handled_count() >= 300, 60, "300 handled")
            before = ledger.handled_count()
            await asyncio.to_thread(cluster.stop_app, c1)
            with cluster.http(c2) as http:
                consumer = await wait_consumer(http, cluster_vhost, "work", 10, not_on_node=c1.name)
            await wait_until(
                lambda: ledger.handled_count() > before + 200, 60, "handling goes on without c1"
            )
            await asyncio.to_thread(cluster.start_app, c1)
            await wait_all_handled(ledger)
            reconnects = metric(worker.metrics, "reconnects_total", connection="consumer")
            ledger.note(
                f"stopped after {before} handled; consumer back on "
                f"{consumer['channel_details']['node']}; worker reconnects {reconnects:.0f}"
            )
        finally:
            await worker.stop()

    run(scenario(), timeout=None)
    finish(ledger, expect_confirmed=len(ids))


def test_memory_alarm_while_publishing(cluster: Cluster, cluster_vhost: str) -> None:
    """A memory alarm (watermark 0 on one node) blocks the publisher cluster-wide while the
    worker keeps consuming its backlog; after the watermark is restored everything is
    confirmed and handled.
    """
    ledger = Ledger("4 memory alarm while publishing")
    backlog = Ledger.ids("memalarm-backlog", 500)
    stream = Ledger.ids("memalarm-stream", 1000)
    during = Ledger.ids("memalarm-during", 200)
    c1, c2, c3 = cluster.nodes
    declare_queues(c2.amqp_url(cluster_vhost), ["work"], quorum=True)

    async def scenario() -> None:
        worker = Worker(
            [c2.amqp_url(cluster_vhost), c3.amqp_url(cluster_vhost)],
            [Queue("work", prefetch=10)],
            recording_handler(ledger, 0.05),
            reconnect_max_delay=2.0,
        )
        publisher = Publisher(cluster.urls(cluster_vhost), resend_unconfirmed=True)
        await publisher.start()
        try:
            await publish_ids(publisher, ledger, backlog, "work")
            await worker.start()
            sending = asyncio.ensure_future(
                publish_ids(publisher, ledger, stream, "work", rate=300, window=200)
            )
            await wait_until(lambda: ledger.handled_count() >= 50, 60, "50 handled")
            await asyncio.to_thread(cluster.ctl, c1, "set_vm_memory_high_watermark", "0")
            try:
                sending_during = asyncio.ensure_future(
                    publish_ids(publisher, ledger, during, "work")
                )
                await wait_until(lambda: publisher.blocked, 30, "publisher blocked by the alarm")
                handled_blocked = ledger.handled_count()
                # Consuming connections are not blocked: the backlog keeps draining.
                await wait_until(
                    lambda: ledger.handled_count() >= handled_blocked + 50,
                    30,
                    "handling goes on during the alarm",
                )
                confirmed_during = set(during) & ledger.confirmed_ids
            finally:
                await asyncio.to_thread(cluster.ctl, c1, "set_vm_memory_high_watermark", "0.4")
            await wait_until(lambda: not publisher.blocked, 30, "publisher unblocked")
            failures = await sending
            failures.update(await sending_during)
            await wait_all_handled(ledger)
            blocked_s = publisher.metrics.blocked_seconds()
            ledger.note(
                f"publisher blocked {blocked_s:.1f} s; worker handled "
                f"{ledger.handled_count() - handled_blocked} from then on; "
                f"{len(confirmed_during)} of {len(during)} sent during the alarm were confirmed "
                "before it cleared"
            )
            if failures:
                ledger.note(f"publish failures {dict(failures)}")
        finally:
            await publisher.close()
            await worker.stop()

    run(scenario(), timeout=None)
    finish(ledger, expect_confirmed=len(backlog) + len(stream) + len(during))
