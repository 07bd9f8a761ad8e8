"""``--prune`` against the live broker: what it deletes, and what it must never delete.

It deletes the exchanges, queues, bindings and policies the files no longer declare, only in
the vhosts the files name; never ``amq.*`` or the default exchange; and refuses a queue that
holds messages or has consumers (exit 1, listed) unless ``--force``.
"""

from __future__ import annotations

import json
from typing import Any

import pika

FULL = """
exchanges:
  - {name: keep.x, type: topic}
  - {name: gone.x, type: fanout}
  - {name: keep.audit, type: fanout}
queues:
  - name: keep.q
    bindings:
      - {exchange: keep.x, routing_key: a}
      - {exchange: keep.x, routing_key: gone}
  - name: gone.q
    bindings: [{exchange: gone.x}]
bindings:
  - {source: keep.x, destination: keep.audit, destination_type: exchange, routing_key: "#"}
policies:
  - {name: keep-p, pattern: '^keep', apply_to: queues, definition: {max-length: 10}}
  - {name: gone-p, pattern: '^gone', apply_to: queues, definition: {max-length: 10}}
"""

REDUCED = """
exchanges:
  - {name: keep.x, type: topic}
  - {name: keep.audit, type: fanout}
queues:
  - name: keep.q
    bindings:
      - {exchange: keep.x, routing_key: a}
policies:
  - {name: keep-p, pattern: '^keep', apply_to: queues, definition: {max-length: 10}}
"""

SMALL = """
queues:
  - name: keep.q
"""


def _amq_exchanges(declare: Any, vhost: str) -> set[str]:
    with declare.broker.http() as http:
        response = http.get(f"/api/exchanges/{declare.quote(vhost)}?columns=name")
        response.raise_for_status()
    return {x["name"] for x in response.json() if x["name"] == "" or x["name"].startswith("amq.")}


def _put_message(declare: Any, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(declare.broker.url_for(declare.vhost)))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", queue, b"still needed", mandatory=True)
    finally:
        connection.close()


def _ready(declare: Any, queue: str) -> int:
    """Ready messages, from the broker itself (a passive declare), not sampled stats."""
    connection = pika.BlockingConnection(pika.URLParameters(declare.broker.url_for(declare.vhost)))
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return int(frame.method.message_count)
    finally:
        connection.close()


def test_prune_deletes_what_the_file_no_longer_declares(declare: Any) -> None:
    """Exchanges, queues, queue and exchange-to-exchange bindings and policies removed from
    the file are deleted, as are objects created behind the tool's back; the rest stays."""
    f = declare.write("topology.yml", FULL)
    assert declare("apply", f).code == 0
    vh = declare.quote(declare.vhost)
    declare.put(f"/api/queues/{vh}/stray.q", {"durable": True})
    declare.put(f"/api/exchanges/{vh}/stray.x", {"type": "direct", "durable": True})

    declare.write("topology.yml", REDUCED)
    plan = declare("plan", f, "--prune", "--detailed-exitcode")
    assert plan.code == 2, plan
    for name in ("gone.q", "gone.x", "gone-p", "stray.q", "stray.x"):
        assert name in plan.out, (name, str(plan))
    assert "0 to create" in plan.out, plan
    as_json = json.loads(declare("plan", f, "--prune", "--format", "json").out)
    deletes = {(c["kind"], c["name"]): c for c in as_json["changes"]}
    assert {c["action"] for c in as_json["changes"]} == {"delete"}
    assert set(deletes) >= {
        ("queue", "gone.q"),
        ("exchange", "gone.x"),
        ("policy", "gone-p"),
        ("queue", "stray.q"),
        ("exchange", "stray.x"),
    }
    assert deletes[("queue", "gone.q")]["after"] is None
    assert deletes[("queue", "gone.q")]["before"]["name"] == "gone.q"

    result = declare("apply", f, "--prune")
    assert result.code == 0, result
    assert declare.names("exchanges") == {"keep.x", "keep.audit"}
    assert declare.names("queues") == {"keep.q"}
    assert declare.names("policies") == {"keep-p"}
    assert declare.bindings() == {("keep.x", "queue", "keep.q", "a")}
    assert declare("plan", f, "--prune", "--detailed-exitcode").code == 0


def test_prune_never_touches_amq_exchanges_or_their_bindings(declare: Any) -> None:
    """The default exchange and every amq.* exchange survive a prune of a file that
    declares almost nothing; so does a binding from amq.topic to a declared queue."""
    builtin = _amq_exchanges(declare, declare.vhost)
    assert "" in builtin and "amq.topic" in builtin
    f = declare.write("topology.yml", SMALL)
    assert declare("apply", f).code == 0
    declare.post(
        f"/api/bindings/{declare.quote(declare.vhost)}/e/amq.topic/q/keep.q",
        {"routing_key": "ops.#"},
    )

    result = declare("apply", f, "--prune")
    assert result.code == 0, result
    assert _amq_exchanges(declare, declare.vhost) == builtin
    assert ("amq.topic", "queue", "keep.q", "ops.#") in declare.bindings()


def test_prune_stays_within_the_vhosts_the_files_name(declare: Any, other_vhost: str) -> None:
    """Objects in another vhost are never pruned by a file that does not name it."""
    other = declare.quote(other_vhost)
    declare.put(f"/api/queues/{other}/elsewhere.q", {"durable": True})
    declare.put(f"/api/exchanges/{other}/elsewhere.x", {"type": "fanout", "durable": True})
    declare.put(
        f"/api/policies/{other}/elsewhere-p", {"pattern": ".*", "definition": {"max-length": 5}}
    )
    before = declare.definitions(other_vhost)

    f = declare.write("topology.yml", SMALL)
    result = declare("apply", f, "--prune")
    assert result.code == 0, result
    assert declare.names("queues") == {"keep.q"}
    assert declare.definitions(other_vhost) == before


def test_prune_refuses_a_queue_with_messages_unless_forced(declare: Any) -> None:
    """A queue that holds a message is not deleted: exit 1 and the queue is named; the
    message is still there. With --force it is deleted."""
    f = declare.write("topology.yml", FULL)
    assert declare("apply", f).code == 0
    _put_message(declare, "gone.q")
    declare.write("topology.yml", REDUCED)

    refused = declare("apply", f, "--prune")
    assert refused.code == 1, refused
    assert "gone.q" in refused.err, refused
    assert "Traceback" not in refused.text, refused
    assert "gone.q" in declare.names("queues")
    assert _ready(declare, "gone.q") == 1

    forced = declare("apply", f, "--prune", "--force")
    assert forced.code == 0, forced
    assert declare.names("queues") == {"keep.q"}


def test_prune_refuses_a_queue_with_a_consumer_unless_forced(declare: Any) -> None:
    """An empty queue with a live consumer is not deleted (exit 1, named) unless --force."""
    f = declare.write("topology.yml", FULL)
    assert declare("apply", f).code == 0
    declare.write("topology.yml", REDUCED)
    connection = pika.BlockingConnection(pika.URLParameters(declare.broker.url_for(declare.vhost)))
    try:
        channel = connection.channel()
        channel.basic_consume("gone.q", lambda *_: None)
        connection.process_data_events(0)

        refused = declare("apply", f, "--prune")
        assert refused.code == 1, refused
        assert "gone.q" in refused.err, refused
        assert "gone.q" in declare.names("queues")

        forced = declare("apply", f, "--prune", "--force")
        assert forced.code == 0, forced
        assert "gone.q" not in declare.names("queues")
    finally:
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass


def test_prune_keeps_what_the_files_reference(declare: Any) -> None:
    """An exchange the file does not declare but binds to (and uses as alternate exchange)
    is not pruned, or the apply is refused before anything is written; either way it
    survives, with its binding."""
    vh = declare.quote(declare.vhost)
    declare.put(f"/api/exchanges/{vh}/shared.x", {"type": "topic", "durable": True})
    f = declare.write(
        "topology.yml",
        """
        exchanges:
          - {name: team.in, type: direct, alternate_exchange: shared.x}
        queues:
          - name: team.q
            bindings: [{exchange: shared.x, routing_key: team}]
    """,
    )
    assert declare("apply", f).code == 0

    result = declare("apply", f, "--prune")
    assert "Traceback" not in result.text, result
    assert "shared.x" in declare.names("exchanges"), result
    assert ("shared.x", "queue", "team.q", "team") in declare.bindings(), result


def test_prune_with_an_emptied_file_empties_its_vhost(declare: Any) -> None:
    """A team that removes its last queue from its file and applies with --prune gets
    that queue deleted."""
    f = declare.write("topology.yml", SMALL)
    assert declare("apply", f).code == 0
    declare.write("topology.yml", f"vhost: {declare.vhost}\nqueues: []\n")
    result = declare("apply", f, "--prune")
    assert result.code == 0, result
    assert declare.names("queues") == set(), result


def test_two_concurrent_prunes_both_succeed(declare: Any) -> None:
    """Two applies with --prune of the same file at once both exit 0 (deleting what the
    other already deleted is not an error) and leave the broker matching the file."""
    f = declare.write("topology.yml", FULL)
    assert declare("apply", f).code == 0
    vh = declare.quote(declare.vhost)
    for i in range(20):
        declare.put(f"/api/queues/{vh}/stray.q{i}", {"durable": True})
        declare.put(f"/api/exchanges/{vh}/stray.x{i}", {"type": "fanout", "durable": True})
    declare.write("topology.yml", REDUCED)

    procs = [declare.start("apply", f, "--prune") for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    assert declare.names("queues") == {"keep.q"}
    assert declare.names("exchanges") == {"keep.x", "keep.audit"}
    assert declare("plan", f, "--prune", "--detailed-exitcode").code == 0
