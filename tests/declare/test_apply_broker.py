"""``declare-amqp apply`` and ``plan`` against the live broker: create, re-apply, update.

Each test runs the command as a subprocess on its own fresh vhost and checks what the broker
really holds through the management API.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pika
import pytest

EXAMPLE_EXCHANGES = {"email", "email-undeliverable", "email.dlx"}
EXAMPLE_QUEUES = {"email.high", "email.default", "email.dead"}
# Derived from the consumer email-sender: one retry delay queue per step (1, 5, 30, 300 s).
EXAMPLE_DELAY_QUEUES = {
    f"{q}.delay.{ms}" for q in ("email.high", "email.default") for ms in (1000, 5000, 30000, 300000)
}


def _publish(url: str, exchange: str, routing_key: str, body: bytes) -> None:
    """Publish one persistent message with publisher confirms (it reached a queue or
    the broker would have said so)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange, routing_key, body, pika.BasicProperties(delivery_mode=2), mandatory=True
        )
    finally:
        connection.close()


def _get(url: str, queue: str) -> bytes | None:
    """Take one message from ``queue`` (None when it is empty)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        _method, _props, body = connection.channel().basic_get(queue, auto_ack=True)
        return body
    finally:
        connection.close()


def test_apply_example_creates_every_object_with_its_arguments(declare: Any) -> None:
    """apply of topology.example.yml exits 0 and the broker has every exchange, queue,
    binding and policy of the file, with the arguments the file gives."""
    f = declare.copy_example()
    result = declare("apply", f, "--vhost", declare.vhost)
    assert result.code == 0, result
    assert "The broker matches the topology" in result.out, result

    defs = declare.definitions()
    assert {x["name"] for x in defs["exchanges"]} == EXAMPLE_EXCHANGES
    assert {q["name"] for q in defs["queues"]} == EXAMPLE_QUEUES | EXAMPLE_DELAY_QUEUES

    email = declare.exchange("email")
    assert email["type"] == "topic" and email["durable"] is True
    assert email["arguments"] == {"alternate-exchange": "email-undeliverable"}
    assert declare.exchange("email-undeliverable")["type"] == "fanout"
    assert declare.exchange("email.dlx")["type"] == "fanout"

    assert declare.queue_arguments("email.high") == {"x-dead-letter-exchange": "email.dlx"}
    assert declare.queue_arguments("email.default") == {
        "x-dead-letter-exchange": "email.dlx",
        "x-max-priority": 5,
    }
    dead = declare.queue("email.dead")
    assert dead["arguments"] == {"x-queue-type": "quorum"} and dead["durable"] is True
    for name in EXAMPLE_QUEUES | EXAMPLE_DELAY_QUEUES:
        assert declare.queue(name)["durable"] is True
    assert declare.queue_arguments("email.high.delay.30000") == {
        "x-message-ttl": 30000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "email.high",
    }

    assert declare.bindings() == {
        ("email", "queue", "email.high", "email.high"),
        ("email", "queue", "email.default", "email.default"),
        ("email-undeliverable", "queue", "email.default", ""),
        ("email.dlx", "queue", "email.dead", ""),
    }
    policy = declare.policy("email-dead-limits")
    assert policy["pattern"] == r"^email\.dead$"
    assert policy["apply-to"] == "queues" and policy["priority"] == 1
    assert policy["definition"] == {"max-length": 100000, "overflow": "reject-publish"}


def test_alternate_exchange_routes_unroutable_email_to_default(declare: Any) -> None:
    """After apply, a routing key no queue is bound for lands in email.default through the
    alternate exchange, and a bound key lands in its own queue."""
    f = declare.copy_example()
    assert declare("apply", f, "--vhost", declare.vhost).code == 0
    url = declare.broker.url_for(declare.vhost)

    _publish(url, "email", "newsletter.weekly", b"unroutable")
    _publish(url, "email", "email.high", b"password reset")

    assert _get(url, "email.default") == b"unroutable"
    assert _get(url, "email.high") == b"password reset"
    assert _get(url, "email.default") is None


def test_reapply_is_a_no_op(declare: Any) -> None:
    """Once applied, plan --detailed-exitcode exits 0, apply says there is nothing to do,
    and the broker is unchanged."""
    f = declare.copy_example()
    assert declare("apply", f, "--vhost", declare.vhost).code == 0
    before = declare.definitions()

    plan = declare("plan", f, "--vhost", declare.vhost, "--detailed-exitcode")
    assert plan.code == 0, plan
    assert "No changes" in plan.out, plan

    again = declare("apply", f, "--vhost", declare.vhost)
    assert again.code == 0, again
    assert "No changes" in again.out, again
    assert "Applied" not in again.out, again
    assert declare.definitions() == before


def test_pending_changes_give_exit_2_only_with_detailed_exitcode(declare: Any) -> None:
    """plan --detailed-exitcode exits 2 when apply would change something, and writes
    nothing; plain plan exits 0."""
    f = declare.copy_example()
    detailed = declare("plan", f, "--vhost", declare.vhost, "--detailed-exitcode")
    assert detailed.code == 2, detailed
    assert "19 to create" in detailed.out, detailed
    line = declare.line_of(f, "name: email.default")
    assert f"{f}:{line}" in detailed.out, detailed  # each change points at its line
    plain = declare("plan", f, "--vhost", declare.vhost)
    assert plain.code == 0, plain
    assert declare.is_empty()


def test_policy_is_updated_in_place(declare: Any) -> None:
    """A changed policy definition is an update (exit 2 in plan), applied in place: the
    queue it governs is not re-created and keeps its messages."""
    f = declare.copy_example()
    assert declare("apply", f, "--vhost", declare.vhost).code == 0
    url = declare.broker.url_for(declare.vhost)
    _publish(url, "", "email.dead", b"kept")

    declare.edit(f, "max-length: 100000", "max-length: 5000")
    plan = declare("plan", f, "--vhost", declare.vhost, "--detailed-exitcode")
    assert plan.code == 2, plan
    assert "1 to update" in plan.out and "0 to create" in plan.out, plan
    assert "email-dead-limits" in plan.out, plan

    result = declare("apply", f, "--vhost", declare.vhost)
    assert result.code == 0, result
    assert declare.policy("email-dead-limits")["definition"] == {
        "max-length": 5000,
        "overflow": "reject-publish",
    }
    assert _get(url, "email.dead") == b"kept"
    assert declare("plan", f, "--vhost", declare.vhost, "--detailed-exitcode").code == 0


def test_exchange_to_exchange_binding(declare: Any) -> None:
    """A top-level binding with destination_type exchange is created and routes."""
    f = declare.write(
        "e2e.yml",
        """
        exchanges:
          - {name: ingress, type: topic}
          - {name: audit, type: fanout}
        queues:
          - name: audit.log
            bindings: [{exchange: audit}]
        bindings:
          - source: ingress
            destination: audit
            destination_type: exchange
            routing_key: "orders.#"
    """,
    )
    result = declare("apply", f)
    assert result.code == 0, result
    assert ("ingress", "exchange", "audit", "orders.#") in declare.bindings()

    url = declare.broker.url_for(declare.vhost)
    _publish(url, "ingress", "orders.created", b"order 1")
    assert _get(url, "audit.log") == b"order 1"
    assert declare("plan", f, "--detailed-exitcode").code == 0


def test_classic_queue_declared_with_explicit_queue_type_matches(declare: Any) -> None:
    """A queue someone declared with x-queue-type: classic spelled out matches a file
    that says type classic (no false conflict)."""
    declare.put(
        f"/api/queues/{declare.quote(declare.vhost)}/legacy",
        {"durable": True, "arguments": {"x-queue-type": "classic"}},
    )
    f = declare.write(
        "q.yml",
        """
        queues:
          - name: legacy
            type: classic
    """,
    )
    result = declare("plan", f, "--detailed-exitcode")
    assert result.code == 0, result


def test_file_creates_the_vhosts_it_lists(declare: Any) -> None:
    """A file listing a new vhost under `vhosts` creates it (with permissions for the
    user) and its objects; a second plan has nothing to do."""
    new = f"test-new-{uuid.uuid4().hex[:10]}"
    f = declare.write(
        "vh.yml",
        f"""
        vhost: {new}
        vhosts: [{new}]
        queues:
          - name: in.new
    """,
    )
    try:
        result = declare("apply", f)
        assert result.code == 0, result
        assert declare.names("queues", new) == {"in.new"}
        assert declare("plan", f, "--detailed-exitcode").code == 0
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/vhosts/{new}")


def test_first_answering_node_of_a_cluster_is_used(declare: Any) -> None:
    """With several --url / --management-url (a cluster), nodes that do not answer are
    skipped and the apply goes to the first one that does."""
    f = declare.write("q.yml", "queues:\n  - name: failover\n")
    dead_amqp, dead_http = declare.closed_port(), declare.closed_port()
    result = declare(
        "apply",
        f,
        "--url",
        declare.url(port=dead_amqp),
        "--url",
        declare.url(),
        "--management-url",
        f"http://127.0.0.1:{dead_http}",
        "--management-url",
        declare.broker.management_url,
        connect=False,
    )
    assert result.code == 0, result
    assert declare.names("queues") == {"failover"}


def test_two_concurrent_applies_both_succeed_and_agree(declare: Any) -> None:
    """Three applies of the same file started at once all exit 0, and the broker ends
    exactly as after one apply."""
    f = declare.copy_example()
    procs = [declare.start("apply", f, "--vhost", declare.vhost) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    concurrent = declare.definitions()

    assert declare("plan", f, "--vhost", declare.vhost, "--detailed-exitcode").code == 0
    assert {x["name"] for x in concurrent["exchanges"]} == EXAMPLE_EXCHANGES
    assert {q["name"] for q in concurrent["queues"]} == EXAMPLE_QUEUES | EXAMPLE_DELAY_QUEUES
    assert len(concurrent["bindings"]) == 4 and len(concurrent["policies"]) == 1


def test_several_files_are_merged(declare: Any) -> None:
    """Two teams' files are applied together; one may bind to the other's exchange, and
    an object both declare identically is fine."""
    a = declare.write(
        "team-a.yml",
        """
        exchanges:
          - {name: events, type: topic}
        queues:
          - name: a.inbox
            bindings: [{exchange: events, routing_key: "a.*"}]
    """,
    )
    b = declare.write(
        "team-b.yml",
        """
        exchanges:
          - {name: events, type: topic}
        queues:
          - name: b.inbox
            max_priority: 3
            bindings: [{exchange: events, routing_key: "b.*"}]
    """,
    )
    result = declare("apply", a, b)
    assert result.code == 0, result
    assert declare.names("queues") == {"a.inbox", "b.inbox"}
    assert declare.names("exchanges") == {"events"}
    assert declare.queue_arguments("b.inbox") == {"x-max-priority": 3}
    assert declare.bindings() == {
        ("events", "queue", "a.inbox", "a.*"),
        ("events", "queue", "b.inbox", "b.*"),
    }
    assert declare("plan", a, b, "--detailed-exitcode").code == 0


def test_same_object_declared_differently_in_two_files_names_both(declare: Any) -> None:
    """The same exchange with two types in two files is an error naming both file:line
    places; nothing is written."""
    a = declare.write(
        "team-a.yml",
        """
        queues:
          - name: a.only
        exchanges:
          - {name: events, type: topic}
    """,
    )
    b = declare.write(
        "team-b.yml",
        """
        exchanges:
          - {name: events, type: fanout}
    """,
    )
    result = declare("apply", a, b)
    declare.assert_clean_failure(result)
    assert "team-a.yml:4" in result.err and "team-b.yml:2" in result.err, result
    assert "events" in result.err, result
    assert declare.is_empty()


def test_original_declare_amqp_format_and_environment(declare: Any) -> None:
    """The original tool's invocation keeps working: `declare-amqp --config FILE` with no
    subcommand, every key written out, nested bindings with binding_key, and the broker
    given by AMQP_HOST / AMQP_USER / AMQP_PASS / AMQP_VHOST."""
    broker = declare.broker
    if broker.port != 5672 or broker.management_url != f"http://{broker.host}:15672":
        pytest.skip("AMQP_HOST implies ports 5672 and 15672; this broker uses others")
    f = declare.write(
        "legacy.yml",
        """
        exchanges:
          - name: legacy.events
            type: topic
            durable: true
            auto_delete: false
            arguments: {}
          - name: legacy.fanout
            type: fanout
            durable: true
            auto_delete: false
        queues:
          - name: legacy.work
            durable: true
            auto_delete: false
            arguments:
              x-max-priority: 4
            bindings:
              - exchange: legacy.events
                binding_key: "work.#"
              - exchange: legacy.fanout
          - name: legacy.idle
            durable: true
            auto_delete: false
            arguments: {}
            bindings: []
    """,
    )
    env = {
        "AMQP_HOST": broker.host,
        "AMQP_USER": broker.user,
        "AMQP_PASS": broker.password,
        "AMQP_VHOST": declare.vhost,
    }
    result = declare("--config", f, connect=False, env=env)
    assert result.code == 0, result
    assert declare.names("exchanges") == {"legacy.events", "legacy.fanout"}
    assert declare.names("queues") == {"legacy.work", "legacy.idle"}
    assert declare.queue_arguments("legacy.work") == {"x-max-priority": 4}
    assert declare.bindings() == {
        ("legacy.events", "queue", "legacy.work", "work.#"),
        # no binding_key in the original format: bound with the queue's name, as the original
        # tool's pika queue_bind(queue, exchange) did (issue 19)
        ("legacy.fanout", "queue", "legacy.work", "legacy.work"),
    }

    again = declare("--config", f, connect=False, env=env)
    assert again.code == 0 and "No changes" in again.out, again


def _check_change_shape(change: dict[str, Any]) -> None:
    for key in ("action", "kind", "vhost", "name", "before", "after"):
        assert key in change, (key, change)


def test_json_output_is_valid_and_describes_each_change(declare: Any) -> None:
    """--format json prints one JSON document whose changes carry action, kind, vhost,
    name and the before/after of what differs (creates, updates, conflicts)."""
    f = declare.copy_example()
    plan = declare("plan", f, "--vhost", declare.vhost, "--format", "json")
    assert plan.code == 0, plan
    doc = json.loads(plan.out)
    assert len(doc["changes"]) == 19  # 10 of the file, 8 delay queues of the consumer, 1 binding
    for change in doc["changes"]:
        _check_change_shape(change)
        assert change["action"] == "create" and change["vhost"] == declare.vhost
        assert change["before"] is None and isinstance(change["after"], dict)
    kinds = {(c["kind"], c["name"]) for c in doc["changes"]}
    assert ("queue", "email.default") in kinds and ("policy", "email-dead-limits") in kinds
    default = next(c for c in doc["changes"] if c["name"] == "email.default")
    assert default["after"]["arguments"]["x-max-priority"] == 5
    delay = next(c for c in doc["changes"] if c["name"] == "email.high.delay.1000")
    assert delay["message"].startswith("derived: retry delay 1 s of email.high")
    assert delay["location"] == f"{f}:{declare.line_of(f, '- name: email-sender')}"

    applied = declare("apply", f, "--vhost", declare.vhost, "--format", "json")
    assert applied.code == 0, applied
    applied_doc = json.loads(applied.out)
    assert applied_doc["applied"] is True and len(applied_doc["changes"]) == 19

    declare.edit(f, "max-length: 100000", "max-length: 7")
    declare.edit(f, "max_priority: 5 ", "max_priority: 9 ")
    changed = declare("plan", f, "--vhost", declare.vhost, "--format", "json")
    assert changed.code == 1, changed
    doc = json.loads(changed.out)
    by_action = {c["action"]: c for c in doc["changes"]}
    for change in doc["changes"]:
        _check_change_shape(change)
    update = by_action["update"]
    assert update["kind"] == "policy" and update["name"] == "email-dead-limits"
    assert update["before"]["definition"]["max-length"] == 100000
    assert update["after"]["definition"]["max-length"] == 7
    conflict = by_action["conflict"]
    assert conflict["kind"] == "queue" and conflict["name"] == "email.default"
    assert conflict["before"] == {"arguments.x-max-priority": 5}
    assert conflict["after"] == {"arguments.x-max-priority": 9}


def test_apply_of_hundreds_of_objects_is_complete(declare: Any) -> None:
    """Hundreds of objects spread over parallel channels (200 queues, half of them priority
    queues, 400 bindings, 20 exchanges with alternate exchanges) are applied completely in
    one run: every object is on the broker and a second plan has nothing to do."""
    lines = ["exchanges:"]
    for i in range(10):
        lines += [
            f"  - {{name: ae.{i}, type: fanout}}",
            f"  - {{name: topic.{i}, type: topic, alternate_exchange: ae.{i}}}",
        ]
    lines.append("queues:")
    for i in range(200):
        lines.append(f"  - name: q.{i}")
        if i % 2:
            lines.append("    max_priority: 5")
        lines.append(
            f"    bindings: [{{exchange: topic.{i % 10}, routing_key: k.{i}}}, "
            f"{{exchange: ae.{i % 10}}}]"
        )
    f = declare.write("big.yml", "\n".join(lines) + "\n")

    result = declare("apply", f)
    assert result.code == 0, result
    defs = declare.definitions()
    assert len(defs["queues"]) == 200 and len(defs["exchanges"]) == 20
    assert len(defs["bindings"]) == 400
    assert sum(1 for q in defs["queues"] if q["arguments"].get("x-max-priority") == 5) == 100
    assert declare("plan", f, "--detailed-exitcode").code == 0
