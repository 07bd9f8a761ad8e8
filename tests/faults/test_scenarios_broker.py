"""Fault scenarios on the machine's own broker, each in its own fresh vhost.

Only vhost-scoped faults here (shared-broker etiquette): connections of our vhost closed,
our link cut or stalled through a proxy, our worker killed, our queue deleted. Broker-wide
faults (a node stopped, a memory alarm) run on the local cluster: test_scenarios_cluster.py.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_kit import (
    WorkerProcess,
    declare_queues,
    finish,
    main_broker_ctl,
    metric,
    publish_backlog,
    publish_ids,
    recording_handler,
    wait_all_handled,
    wait_consumer,
)
from fault_ledger import Ledger
from tcp_proxy import TcpProxy
from waiting import run, wait_until

from priority_worker import Publisher, Queue, Worker

pytestmark = [pytest.mark.slow]


def test_close_all_connections_mid_stream(broker, vhost: str, vhost_url: str) -> None:
    """The broker closes every connection of the vhost while publishing and consuming.

    Publisher re-sends what was unconfirmed; the worker reconnects with its prefetch back;
    every confirmed id is handled.
    """
    ledger = Ledger("1 close_all_connections")
    ids = Ledger.ids("close", 2000)
    declare_queues(vhost_url, ["work"])

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("work", prefetch=20)],
            recording_handler(ledger, 0.002),
            reconnect_max_delay=2.0,
        )
        publisher = Publisher(vhost_url, resend_unconfirmed=True, reconnect_max_delay=2.0)
        await worker.start()
        await publisher.start()
        try:
            sending = asyncio.ensure_future(publish_ids(publisher, ledger, ids, "work", rate=1000))
            await wait_until(lambda: ledger.handled_count() >= 300, 60, "300 handled")
            await asyncio.to_thread(
                main_broker_ctl, "close_all_connections", "--vhost", vhost, "fault test"
            )
            failures = await sending
            await wait_all_handled(ledger)
            with broker.http() as http:
                await wait_consumer(http, vhost, "work", 20)
            reconnects = metric(worker.metrics, "reconnects_total", connection="consumer")
            resent = metric(publisher.metrics, "publish_resent_total")
            ledger.note(f"worker reconnects {reconnects:.0f}, publisher re-sent {resent:.0f}")
            if failures:
                ledger.note(f"publish failures {dict(failures)}")
            assert reconnects >= 1
        finally:
            await publisher.close()
            await worker.stop()

    run(scenario(), timeout=None)
    finish(ledger, expect_confirmed=len(ids))


def test_link_cut_and_stalled_through_proxy(broker, vhost: str, vhost_url: str) -> None:
    """Worker and publisher go through a TCP proxy: the link is cut, then stalled.

    With a 2 s heartbeat the clients notice the stall themselves (they dial again while it
    lasts); after resume everything confirmed is handled.
    """
    ledger = Ledger("3 link cut + stall (proxy)")
    ids = Ledger.ids("proxy", 1500)
    declare_queues(vhost_url, ["work"])
    with TcpProxy(broker.host, broker.port) as proxy:
        url = proxy.url(vhost_url) + "?heartbeat=2"
        assert f":{proxy.port}/" in url

        async def scenario() -> None:
            worker = Worker(
                url,
                [Queue("work", prefetch=10)],
                recording_handler(ledger, 0.004),
                reconnect_max_delay=1.0,
            )
            publisher = Publisher(url, resend_unconfirmed=True, reconnect_max_delay=1.0)
            await worker.start()
            await publisher.start()
            try:
                sending = asyncio.ensure_future(
                    publish_ids(publisher, ledger, ids, "work", rate=500)
                )
                await wait_until(lambda: ledger.handled_count() >= 300, 60, "300 handled")
                cut = proxy.cut()
                await wait_until(lambda: ledger.handled_count() >= 700, 60, "700 handled")
                accepted = proxy.accepted
                proxy.stall()
                # Only a client that detected the dead link by missing heartbeats dials again.
                await wait_until(
                    lambda: proxy.accepted >= accepted + 2,
                    30,
                    "both clients reconnect while the link is stalled",
                )
                redials = proxy.accepted - accepted
                proxy.resume()
                failures = await sending
                await wait_all_handled(ledger)
                ledger.note(
                    f"cut {cut} links; then stalled until heartbeats (2 s) made the clients "
                    f"re-dial ({redials} dials during the stall)"
                )
                if failures:
                    ledger.note(f"publish failures {dict(failures)}")
            finally:
                proxy.resume()
                await publisher.close()
                await worker.stop()

        run(scenario(), timeout=None)
    finish(ledger, expect_confirmed=len(ids))


def test_kill_9_with_deliveries_in_flight(vhost: str, vhost_url: str, tmp_path: Path) -> None:
    """``kill -9`` of a worker holding 50 unacked deliveries; a new worker gets them all."""
    ledger = Ledger("5 kill -9 worker")
    ids = Ledger.ids("kill", 1000)
    declare_queues(vhost_url, ["work"])
    out = tmp_path / "handled.txt"
    first = WorkerProcess(vhost_url, "work", 50, out, delay=0.1)
    second: WorkerProcess | None = None
    try:
        publish_backlog(vhost_url, ledger, ids, "work")
        assert first.proc.poll() is None, first.log_text()
        deadline_ok = _wait_sync(lambda: first.handled_lines() >= 200, 60)
        assert deadline_ok, first.log_text()
        first.kill9()
        killed_at = first.handled_lines()
        second = WorkerProcess(vhost_url, "work", 50, out, delay=0.0)
        assert _wait_sync(lambda: _all_handled(ledger, out), 90), second.log_text()
        second.sigterm()
        assert second.wait(60) == 0, second.log_text()
    finally:
        first.ensure_stopped()
        if second is not None:
            second.ensure_stopped()
    redelivered = ledger.load_handled(out)
    ledger.note(f"killed after {killed_at} handled, prefetch 50; {redelivered} redelivered")
    finish(ledger, expect_confirmed=len(ids))
    # The killed worker held unacked deliveries: the broker gave them to the next worker.
    assert redelivered >= 1


def test_sigterm_with_work_in_flight(vhost: str, vhost_url: str, tmp_path: Path) -> None:
    """SIGTERM while 20 slow handlers run: they finish and are acked, exit 0, nothing redone."""
    ledger = Ledger("6 SIGTERM drain")
    ids = Ledger.ids("term", 400)
    declare_queues(vhost_url, ["work"])
    out = tmp_path / "handled.txt"
    first = WorkerProcess(vhost_url, "work", 20, out, delay=0.2, shutdown_timeout=20)
    second: WorkerProcess | None = None
    try:
        publish_backlog(vhost_url, ledger, ids, "work")
        assert _wait_sync(lambda: first.handled_lines() >= 60, 60), first.log_text()
        first.sigterm()
        code = first.wait(60)
        assert code == 0, first.log_text()
        stopped_at = first.handled_lines()
        second = WorkerProcess(vhost_url, "work", 50, out)
        assert _wait_sync(lambda: _all_handled(ledger, out), 90), second.log_text()
        second.sigterm()
        assert second.wait(60) == 0, second.log_text()
    finally:
        first.ensure_stopped()
        if second is not None:
            second.ensure_stopped()
    redelivered = ledger.load_handled(out)
    ledger.note(f"first worker exit 0 after {stopped_at} handled; {redelivered} redelivered")
    finish(ledger, expect_confirmed=len(ids))
    # A drained worker acks everything it handled: nothing it finished comes back.
    assert ledger.duplicates() == 0, ledger.row()


def test_queue_deleted_under_live_consumer(broker, vhost: str, vhost_url: str) -> None:
    """The broker cancels the consumer of a deleted queue; the other queue keeps moving,
    and once the queue is declared again the worker consumes it again."""
    ledger = Ledger("7 queue deleted under consumer")
    first = Ledger.ids("qdel-a1", 300)
    other = Ledger.ids("qdel-b", 1500)
    second = Ledger.ids("qdel-a2", 300)
    declare_queues(vhost_url, ["a", "b"])

    async def scenario() -> None:
        worker = Worker(
            vhost_url,
            [Queue("a", prefetch=10), Queue("b", prefetch=10)],
            recording_handler(ledger, 0.004),
            reconnect_max_delay=1.0,
        )
        await worker.start()
        try:
            async with Publisher(vhost_url, resend_unconfirmed=True) as publisher:
                await publish_ids(publisher, ledger, first, "a")
                await wait_all_handled(ledger)
                sending = asyncio.ensure_future(publish_ids(publisher, ledger, other, "b"))
                await wait_until(
                    lambda: ledger.handled_count() >= len(first) + 200, 60, "b is being consumed"
                )
                with broker.http() as http:
                    # Empty when deleted: no confirmed message goes down with it.
                    r = http.delete(f"/api/queues/{_q(vhost)}/a")
                    assert r.status_code == 204, r.text
                await sending
                await wait_all_handled(ledger)
                declare_queues(vhost_url, ["a"])
                await publish_ids(publisher, ledger, second, "a")
                await wait_all_handled(ledger)
                with broker.http() as http:
                    await wait_consumer(http, vhost, "a", 10)
                    await wait_consumer(http, vhost, "b", 10)
        finally:
            await worker.stop()

    run(scenario(), timeout=None)
    ledger.note("queue a deleted (empty) while b was consumed, then re-declared")
    finish(ledger, expect_confirmed=len(first) + len(other) + len(second))


# ---- helpers ----------------------------------------------------------------------------------


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _wait_sync(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _all_handled(ledger: Ledger, out: Path) -> bool:
    try:
        seen = set(out.read_text().split())
    except FileNotFoundError:
        return False
    return ledger.confirmed_ids <= seen
