"""One file for the broker and its applications: declare-amqp and priority_worker agree.

Against the real broker: prune never deletes or refuses the worker's queues while retries
wait in them; the delay queues from the file and those the worker makes are the same queue in
either order of start; a worker started from the topology refuses a broker that lacks (or
differs in) one of its queues; command-line flags win over the file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pika
from broker_support import fill, ready_count
from waiting import wait_until

from priority_worker import Message, Queue, Retry, RetryPolicy, Worker

RUNNER = Path(sys.executable).parent / "priority-worker"

TOPOLOGY = """\
queues:
  - name: high
  - name: low
consumers:
  - name: app
    queues:
      - {queue: high, prefetch: 10}
      - {queue: low, prefetch: 2}
    mode: weighted
    concurrency: 4
    retry: {max_retries: 3, delays: [1, 2]}
"""

HANDLERS = """\
import os
from priority_worker import Retry

async def retry_once(message):
    if message.attempts == 0:
        raise Retry(delay=2)

async def ok(message):
    pass
"""


def retry_one_message(url: str) -> None:
    """A worker with the consumer's steps (1, 2 s) retries one message once after 1 s."""
    back: list[str] = []

    async def handler(message: Message) -> None:
        if message.attempts == 0:
            raise Retry(delay=1)
        back.append(str(message.message_id))

    async def scenario() -> None:
        worker = Worker(
            url,
            [Queue("high", 10), Queue("low", 2)],
            handler,
            retry=RetryPolicy(max_retries=3, delays=(1, 2)),
        )
        await worker.start()
        try:
            await asyncio.to_thread(fill, url, "high", ["a"])
            await wait_until(lambda: back == ["a"], 20, "the retried message")
        finally:
            await worker.stop()

    asyncio.run(scenario())


def test_apply_prune_while_retries_wait_in_derived_delay_queues(declare: Any) -> None:
    """Retries wait in the derived delay queue while `apply --prune` runs: exit 0, nothing
    deleted or refused, and every retried message comes back and is handled."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("apply", f).code == 0
    assert {
        "high.delay.1000",
        "high.delay.2000",
        "low.delay.1000",
        "low.delay.2000",
        "high.dead",
        "low.dead",
    } <= declare.names("queues")
    url = declare.broker.url_for(declare.vhost)
    ids = [f"m{i}" for i in range(5)]
    handled: dict[str, int] = {}

    async def handler(message: Message) -> None:
        if message.attempts == 0:
            raise Retry(delay=1.5)  # rounded up to the 2 s step
        handled[str(message.message_id)] = message.attempts

    async def scenario() -> None:
        worker = Worker.from_topology(str(declare.workdir / f), "app", url, handler)
        await worker.start()
        try:
            await asyncio.to_thread(fill, url, "high", ids)
            await wait_until(
                lambda: worker.metrics.retries.labels("high")._value.get() == 5,
                20,
                "5 retries scheduled",
            )
            assert await asyncio.to_thread(ready_count, url, "high.delay.2000") == 5
            pruned = await asyncio.to_thread(declare, "apply", "--prune", f)
            assert pruned.code == 0, pruned
            assert "refused" not in pruned.text and "- queue" not in pruned.out, pruned
            await wait_until(lambda: len(handled) == 5, 20, "the retried messages back")
        finally:
            await worker.stop()

    asyncio.run(scenario())
    assert handled == dict.fromkeys(ids, 1)
    assert "high.delay.2000" in declare.names("queues")


def test_delay_queues_from_the_file_and_from_the_worker_agree_file_first(
    declare: Any, caplog: Any
) -> None:
    """Applied first, then used by a worker: the worker's declare matches (no 406, no
    'other arguments' warning) and the plan stays a no-op."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("apply", f).code == 0
    caplog.set_level("INFO")
    retry_one_message(declare.broker.url_for(declare.vhost))
    assert "queue_exists_with_other_arguments" not in caplog.text
    again = declare("plan", "--prune", "--detailed-exitcode", f)
    assert again.code == 0 and "No changes" in again.out, again


def test_delay_queues_from_the_worker_and_from_the_file_agree_worker_first(declare: Any) -> None:
    """The worker made its delay queue before the file had a consumers section: applying
    the section finds that queue identical (no conflict, not created again)."""
    plain = declare.write("plain.yml", "queues:\n  - name: high\n  - name: low\n")
    assert declare("apply", plain).code == 0
    retry_one_message(declare.broker.url_for(declare.vhost))
    assert "high.delay.1000" in declare.names("queues")
    f = declare.write("topology.yml", TOPOLOGY)
    planned = declare("plan", f)
    assert planned.code == 0, planned
    assert "high.delay.1000" not in planned.out and "conflict" not in planned.out, planned
    assert "+ queue    high.delay.2000" in planned.out, planned
    assert declare("apply", f).code == 0
    assert declare("plan", "--detailed-exitcode", f).code == 0


def _run_worker(
    declare: Any,
    *args: str,
    seconds: float | None = None,
) -> subprocess.CompletedProcess[str]:
    (declare.workdir / "handlers.py").write_text(HANDLERS)
    argv = [
        str(RUNNER),
        "run",
        "handlers:ok",
        "--url",
        declare.broker.url_for(declare.vhost),
        *args,
    ]
    proc = subprocess.Popen(
        argv,
        cwd=declare.workdir,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if seconds is not None:
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def test_worker_from_the_topology_exits_1_naming_a_missing_or_different_queue(declare: Any) -> None:
    """`low` deleted behind the tool's back: the worker exits 1 naming it with file:line;
    re-created with other arguments: exit 1 naming the difference; nothing consumed."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("apply", f).code == 0
    quoted = urllib.parse.quote(declare.vhost, safe="")
    with declare.broker.http() as http:
        http.delete(f"/api/queues/{quoted}/low").raise_for_status()
    result = _run_worker(declare, "--topology", f, "--consumer", "app", seconds=30)
    assert result.returncode == 1, result
    assert (
        f"topology.yml:{declare.line_of(f, 'name: low')}: queue 'low' does not exist"
        in result.stderr
    ), result.stderr
    assert "Traceback" not in result.stderr
    conn = pika.BlockingConnection(pika.URLParameters(declare.broker.url_for(declare.vhost)))
    conn.channel().queue_declare("low", durable=True, arguments={"x-max-priority": 3})
    conn.close()
    fill(declare.broker.url_for(declare.vhost), "high", ["kept"])
    result = _run_worker(declare, "--topology", f, "--consumer", "app", seconds=30)
    assert result.returncode == 1, result
    assert "queue 'low' exists with other settings" in result.stderr, result.stderr
    assert "x-max-priority" in result.stderr
    assert ready_count(declare.broker.url_for(declare.vhost), "high") == 1  # never consumed


def test_flags_override_the_file_and_the_startup_log_says_where(declare: Any) -> None:
    """--queue and --mode win over the consumer; concurrency and retries still come from
    the file; the log names each source; the broker sees the flag's prefetch."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("apply", f).code == 0
    quoted = urllib.parse.quote(declare.vhost, safe="")
    (declare.workdir / "handlers.py").write_text(HANDLERS)
    argv = [
        str(RUNNER),
        "run",
        "handlers:ok",
        "--url",
        declare.broker.url_for(declare.vhost),
        "--topology",
        f,
        "--consumer",
        "app",
        "--queue",
        "high=3",
        "--queue",
        "low=1",
        "--mode",
        "strict",
    ]
    proc = subprocess.Popen(
        argv, cwd=declare.workdir, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 20  # the management API samples every 5 s
        prefetches: dict[str, int] = {}
        while prefetches.get("high") != 3:
            assert time.monotonic() < deadline, prefetches
            time.sleep(1)
            with declare.broker.http() as http:
                found = http.get(f"/api/consumers/{quoted}").json()
            prefetches = {c["queue"]["name"]: int(c["prefetch_count"]) for c in found}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    settings = {}
    for line in err.splitlines():
        if line.startswith("{") and '"setting"' in line:
            record = json.loads(line)
            settings[record["setting"]] = record["source"]
    consumer_line = f"topology.yml:{declare.line_of(f, '- name: app')} (consumer app)"
    assert settings["queues"] == "--queue" and settings["mode"] == "--mode", settings
    assert settings["concurrency"] == consumer_line and settings["retry"] == consumer_line
    assert '"mode": "strict"' in err or '"mode":"strict"' in err, err


def test_prune_keeps_queues_the_worker_made_without_a_consumers_section(declare: Any) -> None:
    """No consumers section: a worker-made delay queue with messages (and its Q.dead) is kept
    by prune — exit 0, a 'kept' line naming the queue it serves — and still there after."""
    f = declare.write("topology.yml", "queues:\n  - name: work\n")
    assert declare("apply", f).code == 0
    url = declare.broker.url_for(declare.vhost)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    # As a worker before 0.3 made it (x-expires), and as the current one does.
    ch.queue_declare(
        "work.delay.30000",
        durable=True,
        arguments={
            "x-message-ttl": 30000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "work",
            "x-expires": 150000,
        },
    )
    ch.queue_declare(
        "work.delay.1000",
        durable=True,
        arguments={
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "work",
        },
    )
    ch.queue_declare("work.dead", durable=True)
    ch.queue_declare("stray", durable=True)
    conn.close()
    fill(url, "work.delay.30000", ["waiting"])
    planned = declare("plan", "--prune", f)
    assert planned.code == 0, planned
    assert "kept: made by priority_worker for work" in planned.out, planned
    assert "- queue    stray" in planned.out, planned
    applied = declare("apply", "--prune", f, "--format", "json")
    assert applied.code == 0, applied
    doc = json.loads(applied.out)
    assert {c["name"] for c in doc["kept"]} == {"work.delay.30000", "work.delay.1000", "work.dead"}
    assert declare.names("queues") == {"work", "work.delay.30000", "work.delay.1000", "work.dead"}
