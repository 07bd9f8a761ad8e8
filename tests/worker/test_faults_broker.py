"""Faults against the real broker: closed connections, deleted queues, SIGTERM, kill -9,
memory alarm. Every test publishes known message ids and accounts for each of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pika
import pytest
from waiting import wait_until_blocking
from worker_support import (
    Recorder,
    declare_queues,
    drain,
    fill,
    global_fault_lock,
    ids,
    noted,
    ready_count,
    run,
    start_runner,
    vhost_path,
    wait_until,
)

from priority_worker import Queue, Worker


@pytest.mark.broker_host
def test_close_all_connections_mid_run_loses_nothing_and_restores_prefetch(
    broker: Any, vhost: str, vhost_url: str, queues2: object
) -> None:
    """The broker closes the worker's connections mid-run: it reconnects, every message is
    handled, none is left, and each queue is consumed at its own prefetch again."""
    all_ids = ids("h", 300) + ids("l", 100)
    fill(vhost_url, "high", ids("h", 300))
    fill(vhost_url, "low", ids("l", 100))
    rec = Recorder(delay=0.01)

    def consumer_prefetches() -> dict[str, int]:
        with broker.http() as http:  # type: ignore[attr-defined]
            found = http.get(f"/api/consumers/{vhost_path(vhost)}").json()
        return {c["queue"]["name"]: int(c["prefetch_count"]) for c in found}

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec, reconnect_max_delay=2)
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) >= 60, 30, "60 handled")
            await asyncio.to_thread(
                broker.ctl, "close_all_connections", "--vhost", vhost, "test: closed mid-run"
            )
            await wait_until(lambda: rec.ids() == set(all_ids), 60, "every id handled")
            await wait_until(
                lambda: (
                    worker.metrics.reconnects.labels("consumer")._value.get() >= 1 and worker.ready
                ),
                30,
                "reconnected and ready",
            )
            deadline = time.monotonic() + 20  # the management API samples every 5 s
            while await asyncio.to_thread(consumer_prefetches) != {"high": 10, "low": 2}:
                assert time.monotonic() < deadline, await asyncio.to_thread(consumer_prefetches)
                await asyncio.sleep(1)
        finally:
            await worker.stop()

    run(scenario())
    assert ready_count(vhost_url, "high") == ready_count(vhost_url, "low") == 0
    assert sorted(set(rec.ids())) == sorted(all_ids)


def test_consumer_cancelled_by_broker_when_its_queue_is_deleted(
    vhost_url: str, queues2: object
) -> None:
    """Deleting a consumed queue cancels that consumer only (high goes on); 8 s later (when a
    reconnect backoff would have grown to seconds) the queue is declared again, and the worker
    consumes it within 3 s: it looks for the queue every 0.5 s instead of backing off."""
    rec = Recorder()

    def delete_low() -> None:
        conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
        conn.channel().queue_delete("low")
        conn.close()

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)  # default backoff
        await worker.start()
        try:
            await wait_until(lambda: worker.ready, 10, "ready")
            await asyncio.to_thread(delete_low)
            await wait_until(lambda: not worker.ready, 10, "not ready without low")
            await asyncio.to_thread(fill, vhost_url, "high", ids("h", 5))
            await wait_until(lambda: rec.ids("high") == set(ids("h", 5)), 10, "high goes on")
            await asyncio.sleep(8)
            await asyncio.to_thread(declare_queues, vhost_url, "low")
            await asyncio.to_thread(fill, vhost_url, "low", ids("l", 5))
            back = time.monotonic()
            await wait_until(lambda: rec.ids("low") == set(ids("l", 5)), 10, "low back")
            assert time.monotonic() - back < 3.0, time.monotonic() - back
            await wait_until(lambda: worker.ready, 5, "ready again")
        finally:
            await worker.stop()

    run(scenario())


def _quorum_member(vhost: str, queue: str, action: str) -> str:
    """An ``rabbitmqctl eval`` expression: ``action`` "replace" deletes the classic ``queue``,
    declares it again as a quorum queue and stops its Raft member (held, the moment of a
    migration's swap to quorum in which the queue exists before its member runs); "restart"
    starts that member again."""
    assert all(c.isalnum() or c in "-_." for c in vhost + queue), (vhost, queue)
    name = f'rabbit_misc:r(<<"{vhost}">>, queue, <<"{queue}">>)'
    if action == "restart":
        return f"{{ok, Q}} = rabbit_amqqueue:lookup({name}), " + (
            "ra:restart_server(quorum_queues, amqqueue:get_pid(Q))."
        )
    return (
        f"{{ok, Old}} = rabbit_amqqueue:lookup({name}), "
        '_ = rabbit_amqqueue:delete(Old, false, false, <<"test">>), '
        # The worker looks for the queue at its cancel, then every 0.5 s: declared and
        # stopped in between, it is first seen with its member stopped.
        "timer:sleep(150), "
        f"{{new, New}} = rabbit_amqqueue:declare({name}, true, false, "
        '[{<<"x-queue-type">>, longstr, <<"quorum">>}], none, <<"test">>), '
        "ra:stop_server(quorum_queues, amqqueue:get_pid(New))."
    )


@pytest.mark.broker_host
def test_a_queue_back_before_it_takes_a_consumer_costs_the_other_queues_nothing(
    broker: Any, vhost: str, vhost_url: str, queues2: object, caplog: pytest.LogCaptureFixture
) -> None:
    """``low`` is deleted and declared again as a quorum queue whose Raft member is not running
    yet (as for a moment in every ``apply --migrate`` swap to quorum). The broker would close
    the whole connection on a basic.consume of it (541), requeueing ``high``'s deliveries,
    handled ones among them; the worker tries the queue on a connection of its own first and
    waits. Its link stays up, each ``high`` message is handled once, and ``low`` is consumed
    once its member runs."""
    caplog.set_level(logging.INFO, logger="priority_worker.worker")
    high = ids("h", 150)
    fill(vhost_url, "high", high)
    rec = Recorder(delay=0.2)  # ~10 of high's deliveries are being handled at any moment

    def logged(event: str) -> int:
        return sum(getattr(r, "event", "") == event for r in caplog.records)

    worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)

    async def scenario() -> None:
        await worker.start()
        try:
            await wait_until(lambda: worker.ready and len(rec.seen) >= 20, 30, "handling high")
            await asyncio.to_thread(broker.ctl, "eval", _quorum_member(vhost, "low", "replace"))
            # Declined twice, or (before the fix) consumed: the broker then closes the link
            # (541) and requeues high's deliveries, the ones being handled among them.
            await wait_until(
                lambda: logged("queue_not_ready") >= 2 or logged("connection_lost") > 0,
                60,
                "low declined twice, or the link lost",
            )
            await asyncio.to_thread(broker.ctl, "eval", _quorum_member(vhost, "low", "restart"))
            await asyncio.to_thread(fill, vhost_url, "low", ids("l", 5))
            await wait_until(lambda: rec.ids("low") == set(ids("l", 5)), 90, "low consumed")
            await wait_until(lambda: rec.ids("high") == set(high), 90, "high handled")
        finally:
            await worker.stop()

    run(scenario())
    handled = Counter(mid for _, mid, _, _ in rec.seen)
    assert [mid for mid, n in handled.items() if n > 1] == [], "handled twice"
    assert logged("connection_lost") == 0, "the consumer link was closed"
    assert ready_count(vhost_url, "high") == ready_count(vhost_url, "low") == 0


def test_sigterm_with_work_in_flight_finishes_acks_and_requeues(
    vhost_url: str, queues2: object, handled_log: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    """SIGTERM: running handlers finish and are acked, the rest is requeued, exit code 0."""
    all_ids = ids("h", 30) + ids("l", 10)
    fill(vhost_url, "high", ids("h", 30))
    fill(vhost_url, "low", ids("l", 10))
    # 12 prefetched, 4 running at once: 8 received but not started when SIGTERM arrives.
    proc = start_runner(
        vhost_url, handled_log, 1.0, "--shutdown-timeout", "20", "--concurrency", "4"
    )
    reaper.append(proc)
    wait_until_blocking(lambda: len(noted(handled_log, "started")) >= 5, 30, "work in flight")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]
    started, done = noted(handled_log, "started"), noted(handled_log, "done")
    assert sorted(started) == sorted(done), "every started handler finished"
    left = [p.message_id for q in ("high", "low") for p, _ in drain(vhost_url, q)]
    assert not set(done) & set(left), "handled messages were acked, not requeued"
    assert sorted(done + left) == sorted(all_ids), "nothing lost, nothing duplicated"
    assert b'"event": "stopped"' in stderr
    draining = next(json.loads(line) for line in stderr.splitlines() if b'"draining"' in line)
    assert draining["requeued"] > 0 and draining["running"] > 0, draining


def test_sigterm_with_a_handler_past_the_shutdown_timeout_requeues_it(
    vhost_url: str, queues2: object, handled_log: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    """A handler still running when the shutdown timeout ends is abandoned, not acked: its
    message goes back to the queue and the runner exits promptly with 3, the documented code
    for "handlers were abandoned" (before: 0, as if every handler had finished)."""
    fill(vhost_url, "high", ids("h", 3))
    proc = start_runner(vhost_url, handled_log, 120.0, "--shutdown-timeout", "1")
    reaper.append(proc)
    wait_until_blocking(lambda: len(noted(handled_log, "started")) == 3, 30, "3 in flight")
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3, stderr.decode()[-2000:]
    assert time.monotonic() - began < 20
    assert b"shutdown_timeout" in stderr
    assert sorted(p.message_id for p, _ in drain(vhost_url, "high")) == ids("h", 3)


def test_kill_9_unacked_deliveries_go_to_the_next_worker(
    vhost_url: str, queues2: object, handled_log: Path, reaper: list[subprocess.Popen[bytes]]
) -> None:
    """kill -9 with deliveries in flight: the broker redelivers them to the next worker."""
    all_ids = ids("h", 20) + ids("l", 5)
    fill(vhost_url, "high", ids("h", 20))
    fill(vhost_url, "low", ids("l", 5))
    proc = start_runner(vhost_url, handled_log, 120.0)
    reaper.append(proc)
    wait_until_blocking(lambda: len(noted(handled_log, "started")) >= 12, 30, "12 in flight")
    in_flight = set(noted(handled_log, "started"))
    proc.kill()
    proc.wait(timeout=10)
    wait_until_blocking(
        lambda: ready_count(vhost_url, "high") + ready_count(vhost_url, "low") == 25,
        30,
        "all 25 back in their queues",
    )
    rec = Recorder()

    async def next_worker() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)
        await worker.start()
        try:
            await wait_until(lambda: rec.ids() == set(all_ids), 30, "all handled")
        finally:
            await worker.stop()

    run(next_worker())
    redelivered = {mid for _, mid, _, again in rec.seen if again}
    assert redelivered == in_flight


@pytest.mark.broker_host
def test_memory_alarm_blocks_publishing_while_consuming_goes_on(
    broker: Any, vhost_url: str, queues2: object
) -> None:
    """Under a memory alarm publishes wait (blocked, counted in metrics) while the backlog is
    still consumed; after the alarm every publish is confirmed and handled."""
    # Big enough to last through a slow rabbitmqctl on a busy machine (~120 handled/s): with
    # 200 the backlog was sometimes gone before the alarm was seen, and nothing was left to
    # show that consuming goes on.
    backlog = ids("b", 1000)
    fill(vhost_url, "high", backlog)
    rec = Recorder(delay=0.1)

    async def scenario() -> None:
        worker = Worker(vhost_url, [Queue("high", 10), Queue("low", 2)], rec)
        await worker.start()
        try:
            await wait_until(lambda: len(rec.seen) >= 10, 20, "consuming")
            await asyncio.to_thread(broker.ctl, "set_vm_memory_high_watermark", "0")
            try:
                futures = [
                    worker.publisher.publish("", "high", b"x", properties=None, headers={"n": i})
                    for i in range(20)
                ]
                await wait_until(lambda: worker.publisher.blocked, 20, "publisher blocked")
                handled_at_block = len(rec.seen)
                await asyncio.sleep(1.5)
                assert not any(f.done() for f in futures), "confirms wait for the alarm"
                assert len(rec.seen) > handled_at_block, "consuming goes on"
            finally:
                await asyncio.to_thread(broker.ctl, "set_vm_memory_high_watermark", "0.4")
            await asyncio.wait_for(asyncio.gather(*futures), 30)
            await wait_until(lambda: len(rec.seen) >= 1020, 60, "backlog and new work handled")
            assert worker.metrics.blocked_seconds() >= 1.0
            assert not worker.publisher.blocked
        finally:
            await worker.stop()

    with global_fault_lock():
        try:
            run(scenario())
        finally:
            broker.ctl("set_vm_memory_high_watermark", "0.4")
    assert rec.ids("high") >= set(backlog)
