"""Queue migrations against the live broker: ``apply --migrate`` changes what RabbitMQ calls
immutable (here classic -> quorum, and a new argument) and keeps every message and binding.

Messages are checked by ``message_id`` (and body, headers, priority) after consuming the
migrated queue with an independent client; bindings are read through the management API.
A confirmed publisher sends through the exchange during every migration: each message it
had confirmed must be in the queue afterwards. The tool is SIGKILLed at every step
(``DECLARE_AMQP_MIGRATE_KILL``) and rerun: nothing is lost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pika
import pytest
from broker_support import drain, ready_count
from confirmed_publisher import ConfirmedPublisher
from waiting import wait_until_blocking as wait_until

from declare_amqp._migrate import KILL_POINTS
from declare_amqp._migration import HOLD_PREFIX, LOCK_QUEUE

HERE = Path(__file__).resolve().parent
HOLD = HOLD_PREFIX + "orders.work"

BEFORE = """\
exchanges:
  - name: orders
    type: topic
  - name: audit
    type: headers
queues:
  - name: orders.work
    bindings:
      - exchange: orders
        routing_key: "work.#"
      - exchange: orders
        routing_key: urgent
      - exchange: audit
        arguments: {x-match: all, team: a}
"""
AFTER = BEFORE.replace("  - name: orders.work\n", "  - name: orders.work\n    type: quorum\n")
AFTER_MARKED = AFTER.replace("    type: quorum\n", "    type: quorum\n    migrate: true\n")


def _props(i: int) -> pika.BasicProperties:
    return pika.BasicProperties(
        message_id=f"m-{i}",
        delivery_mode=2,
        priority=i % 3,
        content_type="application/json",
        headers={"n": i, "tag": "x" * (i % 7)},
        correlation_id=f"c-{i}",
    )


def _fill(url: str, count: int) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(count):
            ch.basic_publish("orders", "work.a", json.dumps({"i": i}).encode(), _props(i))
    finally:
        conn.close()


def _publisher(url: str) -> ConfirmedPublisher:
    """A confirmed publisher through the exchange (about 200 msg/s), started."""
    publisher = ConfirmedPublisher(url, "orders", ["work.live"], rate=200)
    publisher.start()
    return publisher


def _confirmed(publisher: ConfirmedPublisher) -> list[str]:
    """Stop ``publisher``; the ids the broker confirmed (at least one)."""
    confirmed = publisher.finish()
    assert confirmed, "the publisher confirmed nothing"
    return confirmed


def _bindings(declare: Any, queue: str) -> set[tuple[str, str, str]]:
    with declare.broker.http() as http:
        found = http.get(
            f"/api/queues/{declare.quote(declare.vhost)}/{declare.quote(queue)}/bindings"
        ).json()
    return {
        (b["source"], b["routing_key"], json.dumps(b["arguments"], sort_keys=True))
        for b in found
        if b["source"]
    }


def _queue_names(declare: Any) -> set[str]:
    return declare.names("queues")


def _shovels_enabled(declare: Any) -> bool:
    with declare.broker.http() as http:
        return bool(http.get("/api/shovels").status_code == 200)


def _setup(declare: Any, count: int = 300) -> tuple[str, set[tuple[str, str, str]]]:
    declare.write("topology.yml", BEFORE)
    assert declare("apply", "topology.yml").code == 0
    url = declare.url()
    _fill(url, count)
    return url, _bindings(declare, "orders.work")


def _check_migrated(
    declare: Any,
    url: str,
    bindings: set[tuple[str, str, str]],
    count: int,
    confirmed: list[str] = (),  # type: ignore[assignment]
) -> dict[str, int]:
    """The queue is quorum with the same bindings; every message is there, intact."""
    queue = declare.queue("orders.work")
    assert queue["arguments"].get("x-queue-type") == "quorum", queue
    assert _bindings(declare, "orders.work") == bindings
    assert HOLD not in _queue_names(declare)
    taken = drain(url, "orders.work")
    seen: dict[str, int] = {}
    for props, body in taken:
        seen[props.message_id] = seen.get(props.message_id, 0) + 1
        if props.message_id.startswith("m-"):
            i = int(props.message_id[2:])
            want = _props(i)
            assert json.loads(body) == {"i": i}
            assert props.headers is not None
            assert props.headers["n"] == i and props.headers["tag"] == want.headers["tag"]
            assert props.priority == want.priority
            assert props.correlation_id == want.correlation_id
            assert props.content_type == "application/json"
            assert props.delivery_mode == 2
    missing = {f"m-{i}" for i in range(count)} - set(seen)
    assert not missing, f"{len(missing)} messages lost: {sorted(missing)[:5]}"
    lost = set(confirmed) - set(seen)
    assert not lost, f"{len(lost)} confirmed messages lost: {sorted(lost)[:5]}"
    return seen


def test_migrate_classic_to_quorum_keeps_messages_bindings_and_properties(declare: Any) -> None:
    """The flagship: same name, new type, every binding (with arguments) and every message
    (body, headers, priority, ids) kept, also what was published during the migration."""
    url, bindings = _setup(declare)
    assert len(bindings) == 3
    declare.write("topology.yml", AFTER)
    publisher = _publisher(url)
    wait_until(lambda: len(publisher.confirmed) > 20, timeout=10, what="publishing")
    result = declare("apply", "--migrate", "topology.yml")
    confirmed = _confirmed(publisher)
    assert result.code == 0, result
    assert "migrated queue 'orders.work'" in result.out, result
    assert "The broker matches the topology" in result.out
    seen = _check_migrated(declare, url, bindings, 300, confirmed)
    dups = sum(n - 1 for n in seen.values())
    reported = int(result.out.split("at most ")[1].split(" duplicates")[0])
    assert dups <= reported, (dups, reported)
    # Nothing left over: no lock, no holding queue; a second plan has nothing to do.
    assert LOCK_QUEUE not in _queue_names(declare)
    again = declare("plan", "--detailed-exitcode", "topology.yml")
    assert again.code == 0, again


def test_without_opt_in_a_conflict_changes_nothing(declare: Any) -> None:
    """No --migrate and no ``migrate: true``: exit 1, the queue and its messages untouched."""
    url, bindings = _setup(declare, 50)
    declare.write("topology.yml", AFTER)
    before = declare.definitions()
    for command in ("plan", "apply"):
        result = declare(command, "topology.yml")
        assert result.code == 1, result
        assert "conflict" in result.text and "to migrate" not in result.text
    assert declare.definitions() == before
    assert len(drain(url, "orders.work")) == 50


def test_migrate_true_in_the_file_migrates_on_a_plain_apply(declare: Any) -> None:
    """``migrate: true`` on the queue: an unattended ``apply`` (Chef) migrates it."""
    url, bindings = _setup(declare, 100)
    declare.write("topology.yml", AFTER_MARKED)
    result = declare("apply", "topology.yml")
    assert result.code == 0, result
    _check_migrated(declare, url, bindings, 100)


def test_plan_json_describes_the_migration(declare: Any) -> None:
    """``"action": "migrate"``, a migrate count, and the migration object's fields."""
    _setup(declare, 10)
    declare.write("topology.yml", AFTER)
    result = declare("plan", "--migrate", "--mover", "auto", "--format", "json", "topology.yml")
    assert result.code == 0, result
    doc = json.loads(result.out)
    assert doc["summary"]["migrate"] == 1 and doc["summary"]["conflict"] == 0
    (change,) = [c for c in doc["changes"] if c["action"] == "migrate"]
    m = change["migration"]
    assert set(m) >= {"changes", "messages", "consumers", "bindings", "steps", "limits"}
    assert m["changes"] == {"type": {"before": "classic", "after": "quorum"}}
    assert {(b["source"], b["routing_key"]) for b in m["bindings"]} == {
        ("orders", "work.#"),
        ("orders", "urgent"),
        ("audit", ""),
    }
    assert len(m["steps"]) == 7 and m["in_progress"] is None
    assert any("default exchange" in text for text in m["limits"])
    # The mover, said: with auto the broker's shovel where the plugin runs, else the tool's
    # own; the tool's own by default.
    assert m["mover"] == ("shovel" if _shovels_enabled(declare) else "amqp")
    own = declare("plan", "--migrate", "topology.yml")
    assert "moved by: the tool's own confirmed consumer and publisher" in own.out, own


def test_saved_plan_then_apply_plan(declare: Any) -> None:
    """``plan --migrate --out PLAN`` then ``apply PLAN`` migrates (counts may change between)."""
    url, bindings = _setup(declare, 40)
    declare.write("topology.yml", AFTER)
    saved = declare("plan", "--migrate", "--out", "plan.json", "topology.yml")
    assert saved.code == 0, saved
    _fill(url, 0)
    result = declare("apply", "plan.json")
    assert result.code == 0, result
    _check_migrated(declare, url, bindings, 40)


@pytest.mark.parametrize("mover", ["amqp", "shovel"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_at_every_step_then_rerun_loses_nothing(
    declare: Any, point: str, mover: str
) -> None:
    """SIGKILL at each step, with either mover; ``plan`` shows the migration in progress and
    keeps the holding queue under prune; a rerun (the default mover, the tool's own)
    finishes it: every message, confirmed publish and binding."""
    if mover == "shovel" and not _shovels_enabled(declare):
        pytest.skip("the broker does not run the rabbitmq_shovel plugin")
    # A shovel moves 400 messages before the tool sees it half way (the kill then lands
    # right after it): more give the kill a chance to land while the shovel still runs.
    count = 3000 if mover == "shovel" and point in ("drain", "fill") else 400
    url, bindings = _setup(declare, count)
    declare.write("topology.yml", AFTER)
    publisher = _publisher(url)
    wait_until(lambda: len(publisher.confirmed) > 20, timeout=10, what="publishing")
    killed = declare(
        "apply",
        "--migrate",
        "--mover",
        mover,
        "topology.yml",
        env={"DECLARE_AMQP_MIGRATE_KILL": point},
    )
    assert killed.code == -9, killed
    assert HOLD in _queue_names(declare)
    shown = declare("plan", "--prune", "--format", "json", "topology.yml")
    doc = json.loads(shown.out)
    (change,) = [c for c in doc["changes"] if c["action"] == "migrate"]
    assert change["message"].startswith("migration in progress: step "), change
    assert change["migration"]["in_progress"] in (
        "divert",
        "drain",
        "swap",
        "restore",
        "fill",
    )
    assert not [c for c in doc["changes"] if c["action"] in ("delete", "refuse")], doc
    assert any(k["name"] == HOLD for k in doc["kept"]), doc["kept"]
    text = declare("plan", "topology.yml")
    assert "migration in progress: step" in text.out, text
    rerun = declare("apply", "topology.yml")  # a migration in progress always finishes
    confirmed = _confirmed(publisher)
    assert rerun.code == 0, rerun
    _check_migrated(declare, url, bindings, count, confirmed)


def test_retries_due_during_the_swap_are_held_not_dropped(declare: Any) -> None:
    """Messages of a delay queue that dead-letters into the queue through the default
    exchange, falling due while the queue is gone (the window widened to 1.5 s here), are
    held and then delivered: none is dropped."""
    url, bindings = _setup(declare, 20)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(
        "orders.work.delay.300",
        durable=True,
        arguments={
            "x-message-ttl": 300,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "orders.work",
        },
    )
    conn.close()
    declare.write("topology.yml", AFTER)
    stop = threading.Event()
    sent: list[str] = []

    def retries() -> None:
        c = pika.BlockingConnection(pika.URLParameters(url))
        rch = c.channel()
        rch.confirm_delivery()
        n = 0
        while not stop.is_set():
            mid = f"r-{n}"
            rch.basic_publish("", "orders.work.delay.300", mid.encode(), _plain(mid))
            sent.append(mid)
            n += 1
            time.sleep(0.01)
        c.close()

    thread = threading.Thread(target=retries, daemon=True)
    thread.start()
    wait_until(lambda: len(sent) > 50, timeout=10, what="retries")
    result = declare(
        "apply", "--migrate", "topology.yml", env={"DECLARE_AMQP_MIGRATE_PAUSE": "swap:1.5"}
    )
    stop.set()
    thread.join(10)
    assert result.code == 0, result
    assert "held orders.work.delay.300" in result.out, result
    wait_until(
        lambda: ready_count(url, "orders.work.delay.300") == 0,
        timeout=10,
        what="the delay queue empty",
    )
    seen = _check_migrated(declare, url, bindings, 20)
    lost = set(sent) - set(seen)
    assert not lost, f"{len(lost)} retries dropped: {sorted(lost)[:5]}"


def _plain(mid: str) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=mid, delivery_mode=2)


def test_a_second_migration_is_refused_while_one_runs(declare: Any) -> None:
    """The vhost's lock (an exclusive queue) refuses a concurrent ``apply --migrate``."""
    url, bindings = _setup(declare, 50)
    declare.write("topology.yml", AFTER)
    first = declare.start(
        "apply", "--migrate", "topology.yml", env={"DECLARE_AMQP_MIGRATE_PAUSE": "divert:15"}
    )
    try:
        wait_until(lambda: HOLD in _queue_names(declare), timeout=20, what="the first migration")
        second = declare("apply", "--migrate", "topology.yml")
        assert second.code == 1, second
        assert "another migration runs" in second.err, second
        assert "Traceback" not in second.text
    finally:
        out, err = first.communicate(timeout=90)
    assert first.returncode == 0, out + err
    _check_migrated(declare, url, bindings, 50)


def test_a_lock_left_by_a_dead_process_is_recognised(declare: Any) -> None:
    """A lock whose connection names a process of this host that is gone is taken over; one
    held by a live process is not."""
    import socket

    url, bindings = _setup(declare, 30)
    declare.write("topology.yml", AFTER)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    def hold_lock(pid: int) -> pika.BlockingConnection:
        params = pika.URLParameters(url)
        params.client_properties = {
            "connection_name": f"declare-amqp migrate pid={pid} host={socket.gethostname()}"
        }
        conn = pika.BlockingConnection(params)
        conn.channel().queue_declare(LOCK_QUEUE, exclusive=True)
        return conn

    alive = hold_lock(os.getpid())
    refused = declare("apply", "--migrate", "topology.yml")
    assert refused.code == 1 and "another migration runs" in refused.err, refused
    alive.close()
    stale = hold_lock(gone.pid)
    try:
        result = declare("apply", "--migrate", "topology.yml")
        assert result.code == 0, result
    finally:
        try:
            stale.close()
        except pika.exceptions.AMQPError:
            pass  # the tool closed it
    _check_migrated(declare, url, bindings, 30)


def test_priority_worker_keeps_consuming_across_the_swap(declare: Any, tmp_path: Path) -> None:
    """A priority_worker consuming the queue (retrying every tenth message through its delay
    queue) is cancelled when the old queue goes and consumes the new one: every message is
    handled."""
    url, bindings = _setup(declare, 0)
    log = tmp_path / "handled.log"
    log.write_text("")
    env = {
        **os.environ,
        "HANDLED_LOG": str(log),
        "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}",
    }
    runner = Path(sys.executable).parent / "priority-worker"
    worker = subprocess.Popen(
        [
            str(runner),
            "run",
            "migrate_handlers:record",
            "--url",
            url,
            "--queue",
            "orders.work=20",
            "--retry-delay",
            "0.3",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def handled() -> set[str]:
            return {line.split()[1] for line in log.read_text().splitlines() if line}

        _fill(url, 300)
        wait_until(lambda: len(handled()) >= 20, timeout=30, what="the worker handling")
        declare.write("topology.yml", AFTER)
        publisher = _publisher(url)
        result = declare("apply", "--migrate", "topology.yml")
        _fill_more = [f"m-{i}" for i in range(300)]
        confirmed = _confirmed(publisher)
        assert result.code == 0, result
        want = set(_fill_more) | set(confirmed)
        wait_until(lambda: want <= handled(), timeout=60, what="every message handled")
        assert declare.queue("orders.work")["arguments"].get("x-queue-type") == "quorum"
        assert _bindings(declare, "orders.work") == bindings
    finally:
        worker.terminate()
        worker.communicate(timeout=30)


def test_mover_shovel_uses_the_brokers_shovel_or_refuses_without_it(declare: Any) -> None:
    """``--mover shovel``: with the shovel plugin the broker's dynamic shovels move the
    messages (and delete themselves); without it the apply refuses and changes nothing."""
    url, bindings = _setup(declare, 200)
    declare.write("topology.yml", AFTER)
    with declare.broker.http() as http:
        enabled = http.get("/api/shovels").status_code == 200
    before = declare.definitions()
    result = declare("apply", "--migrate", "--mover", "shovel", "topology.yml")
    if not enabled:
        declare.assert_clean_failure(result)
        assert "rabbitmq_shovel plugin" in result.err, result
        assert declare.definitions() == before
        assert len(drain(url, "orders.work")) == 200
        return
    assert result.code == 0, result
    with declare.broker.http() as http:
        left = http.get(f"/api/parameters/shovel/{declare.quote(declare.vhost)}").json()
    assert left == []
    _check_migrated(declare, url, bindings, 200)


def test_a_quorum_queue_gets_a_new_argument(declare: Any) -> None:
    """quorum -> quorum with another x-delivery-limit (a quorum queue cannot be deleted with
    if-empty: the drained count is the check)."""
    start = AFTER.replace("    type: quorum\n", "    type: quorum\n    delivery_limit: 5\n")
    declare.write("topology.yml", start)
    assert declare("apply", "topology.yml").code == 0
    url = declare.url()
    _fill(url, 150)
    bindings = _bindings(declare, "orders.work")
    declare.write("topology.yml", start.replace("delivery_limit: 5", "delivery_limit: 10"))
    result = declare("apply", "--migrate", "topology.yml")
    assert result.code == 0, result
    assert declare.queue("orders.work")["arguments"]["x-delivery-limit"] == 10
    _check_migrated(declare, url, bindings, 150)


def _with_mover(broker: Any, vhost_url: str, body: Any) -> Any:
    """``body(session, wire)`` awaited on a session and a mover connection (``_wire``) to the
    test's vhost, both closed after."""
    import asyncio

    from declare_amqp._address import resolve_address
    from declare_amqp._amqp import AmqpSession
    from declare_amqp._wire import WireConnection

    async def scenario() -> Any:
        address = resolve_address([vhost_url], [broker.management_url])
        session = AmqpSession(address, address.url_vhost or "/")
        await session.open()
        assert session.node is not None
        wire = await WireConnection.open(address, session.node, session.vhost, "test mover")
        try:
            return await body(session, wire)
        finally:
            await wire.close()
            await session.close()

    return asyncio.run(scenario())


def test_the_mover_counts_redelivered_moves_as_possible_resends(
    broker: Any, vhost_url: str
) -> None:
    """Messages a consumer took and left unacknowledged when its connection closed (as a
    killed run leaves its in-flight moves) come back ``redelivered``: the mover moves them
    all and counts each as a possible re-send; the others it does not count."""
    from declare_amqp._movers import move

    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    ch = conn.channel()
    for q in ("src", "dst"):
        ch.queue_declare(q, durable=True)
    for i in range(30):
        ch.basic_publish("", "src", b"x", _plain(f"m-{i}"))
    ch.basic_qos(prefetch_count=12)
    taken = [ch.basic_get("src", auto_ack=False) for _ in range(12)]
    assert all(method is not None for method, _, _ in taken)
    conn.close()  # the 12 unacknowledged ones go back, flagged redelivered

    result = _with_mover(broker, vhost_url, lambda session, wire: move(session, wire, "src", "dst"))
    assert (result.moved, result.resent_at_most) == (30, 12)
    assert ready_count(vhost_url, "src") == 0 and ready_count(vhost_url, "dst") == 30


def test_the_mover_forwards_every_property_and_long_bodies_unchanged(
    broker: Any, vhost_url: str
) -> None:
    """The own mover publishes each delivery's header and body frames as the broker framed
    them (``_wire``): every basic property, header tables of every type, and a body of several
    frames (over the 128 KiB frame size) arrive as they were published."""
    import datetime
    import decimal

    from declare_amqp._movers import move

    stamp = datetime.datetime(2026, 12, 7, 23, 59, tzinfo=datetime.timezone.utc)
    full = pika.BasicProperties(
        content_type="application/octet-stream",
        content_encoding="gzip",
        headers={
            "int": -7,
            "big": 2**40,
            "decimal": decimal.Decimal("1.25"),
            "bool": True,
            "none": None,
            "list": [1, "two", {"three": 3}],
            "table": {"nested": {"deep": b"bytes"}},
            "when": stamp,
        },
        delivery_mode=2,
        priority=9,
        correlation_id="corr",
        reply_to="replies",
        expiration="3600000",
        message_id="full",
        timestamp=1_700_000_000,
        type="kind",
        user_id="guest",
        app_id="app",
    )
    bodies = {"empty": b"", "small": b"s", "long": bytes(range(256)) * 2100}  # ~525 KiB
    conn = pika.BlockingConnection(pika.URLParameters(vhost_url))
    ch = conn.channel()
    for q in ("src", "dst"):
        ch.queue_declare(q, durable=True, arguments={"x-max-priority": 10})
    ch.confirm_delivery()
    for name, body in bodies.items():
        props = pika.BasicProperties(**{**vars(full), "message_id": name})
        ch.basic_publish("", "src", body, props)
    conn.close()

    result = _with_mover(broker, vhost_url, lambda session, wire: move(session, wire, "src", "dst"))
    assert result.moved == 3
    taken = drain(vhost_url, "dst")
    assert sorted(props.message_id for props, _ in taken) == sorted(bodies)
    for props, body in taken:
        assert body == bodies[props.message_id]
        want = vars(pika.BasicProperties(**{**vars(full), "message_id": props.message_id}))
        got = vars(props)
        assert got["headers"] == want["headers"], [
            (k, got["headers"].get(k), v)
            for k, v in want["headers"].items()
            if got["headers"].get(k) != v
        ]
        assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert ready_count(vhost_url, "src") == 0


def test_the_mover_names_a_refused_login(broker: Any, vhost_url: str) -> None:
    """A password the broker refuses ends the mover's handshake with the broker's reason
    (it asks for authentication_failure_close), not a hang or a bare broken pipe."""
    import asyncio
    import dataclasses

    from declare_amqp._address import resolve_address
    from declare_amqp._wire import WireConnection, WireError

    address = resolve_address([vhost_url], [broker.management_url])
    wrong = dataclasses.replace(address, password="not-the-password")

    async def scenario() -> None:
        await WireConnection.open(wrong, address.nodes[0], address.url_vhost or "/", "t")

    with pytest.raises(WireError) as caught:
        asyncio.run(scenario())
    assert "403" in str(caught.value) or "ACCESS_REFUSED" in str(caught.value), caught.value
    assert "not-the-password" not in str(caught.value)


def test_the_mover_names_a_missing_source_as_a_failed_move(broker: Any, vhost_url: str) -> None:
    """A source that is not there (deleted by someone else) stops the move with
    ``MigrationFailed`` naming it (the command's one-line error), not a pika exception that
    the command line would show as an internal error."""
    from declare_amqp._movers import MigrationFailed, move

    with pytest.raises(MigrationFailed) as caught:
        _with_mover(
            broker, vhost_url, lambda session, wire: move(session, wire, "not-there", "dst")
        )
    assert "not-there" in str(caught.value) and "404" in str(caught.value), caught.value
