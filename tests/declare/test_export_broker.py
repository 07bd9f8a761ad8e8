"""``declare-amqp export``: the live topology as a file, so an existing broker can be adopted.

The contract: planning the export against the broker it came from finds nothing to do, also
with ``--prune`` (so the export left nothing out), and applying it elsewhere rebuilds the
same objects.
"""

from __future__ import annotations

from typing import Any

import pika
import yaml
from declare_support import RICH
from declare_support import comparable as _comparable


def test_export_round_trip_of_a_rich_topology(declare: Any) -> None:
    """Exchange-to-exchange bindings, headers bindings with arguments, quorum and stream
    queues, custom arguments and policies all come out in the export, and a plan of the
    export with --prune finds nothing to do."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0

    exported = declare(
        "export",
        "--vhost",
        declare.vhost,
        connect=False,
        env={
            "AMQP_URL": declare.broker.url_for(declare.vhost),
            "RABBITMQ_MANAGEMENT_URL": declare.broker.management_url,
        },
    )
    assert exported.code == 0, exported
    doc = yaml.safe_load(exported.out)
    assert doc["vhost"] == declare.vhost
    queues = {q["name"]: q for q in doc["queues"]}
    assert queues["work.quorum"]["type"] == "quorum"
    assert queues["log.stream"]["type"] == "stream"
    assert {p["name"] for p in doc["policies"]} == {"limits", "ttl"}
    e2e = [b for b in doc.get("bindings", []) if b.get("destination_type") == "exchange"]
    assert e2e == [
        {
            "source": "ingress",
            "destination": "fan",
            "destination_type": "exchange",
            "routing_key": "events.#",
        }
    ]

    declare.write("exported.yml", exported.out)
    plan = declare("plan", "exported.yml", "--prune", "--detailed-exitcode")
    assert plan.code == 0, plan
    assert "No changes" in plan.out, plan


def test_export_adopts_objects_made_without_the_tool(declare: Any, other_vhost: str) -> None:
    """Objects made through the management API (x-queue-type: classic spelled out, TTLs,
    an alternate exchange, an exchange-to-exchange binding, a policy) export to a file
    that plans to nothing, and that rebuilds the same objects in another vhost."""
    vh = declare.quote(declare.vhost)
    declare.put(
        f"/api/exchanges/{vh}/legacy.in",
        {"type": "direct", "durable": True, "arguments": {"alternate-exchange": "legacy.ae"}},
    )
    declare.put(f"/api/exchanges/{vh}/legacy.ae", {"type": "fanout", "durable": True})
    declare.put(
        f"/api/exchanges/{vh}/legacy.tmp", {"type": "topic", "durable": False, "auto_delete": True}
    )
    declare.put(
        f"/api/queues/{vh}/legacy.q",
        {
            "durable": True,
            "arguments": {
                "x-queue-type": "classic",
                "x-message-ttl": 30000,
                "x-max-length": 50,
                "x-overflow": "reject-publish",
                "x-owner": "ops",
            },
        },
    )
    declare.put(
        f"/api/queues/{vh}/legacy.lazy",
        {"durable": True, "arguments": {"x-queue-mode": "lazy", "x-max-priority": 3}},
    )
    declare.post(f"/api/bindings/{vh}/e/legacy.in/q/legacy.q", {"routing_key": "k"})
    declare.post(f"/api/bindings/{vh}/e/legacy.ae/q/legacy.lazy", {"routing_key": ""})
    declare.post(f"/api/bindings/{vh}/e/legacy.in/e/legacy.tmp", {"routing_key": "copy"})
    declare.put(
        f"/api/policies/{vh}/legacy-p",
        {
            "pattern": "^legacy\\.",
            "apply-to": "exchanges",
            "definition": {"alternate-exchange": "legacy.ae"},
        },
    )

    exported = declare("export", "--vhost", declare.vhost, "-o", "adopted.yml")
    assert exported.code == 0, exported
    plan = declare("plan", "adopted.yml", "--prune", "--detailed-exitcode")
    assert plan.code == 0, plan

    rebuilt = declare("apply", "adopted.yml", "--vhost", other_vhost)
    assert rebuilt.code == 0, rebuilt
    assert _comparable(declare.definitions(other_vhost)) == _comparable(declare.definitions())


def test_export_of_several_vhosts_round_trips(declare: Any, other_vhost: str) -> None:
    """An export of two vhosts names each object's vhost and plans to nothing."""
    a = declare.write(
        "a.yml",
        """
        exchanges: [{name: shared, type: topic}]
        queues:
          - name: in.a
            bindings: [{exchange: shared, routing_key: a}]
    """,
    )
    assert declare("apply", a).code == 0
    b = declare.write(
        "b.yml",
        f"""
        vhost: {other_vhost}
        exchanges: [{{name: shared, type: direct}}]
        queues:
          - name: in.b
            type: quorum
            bindings: [{{exchange: shared, routing_key: b}}]
    """,
    )
    assert declare("apply", b).code == 0

    exported = declare("export", "--vhost", declare.vhost, "--vhost", other_vhost, "-o", "both.yml")
    assert exported.code == 0, exported
    doc = yaml.safe_load((declare.workdir / "both.yml").read_text("utf-8"))
    assert {(q["vhost"], q["name"]) for q in doc["queues"]} == {
        (declare.vhost, "in.a"),
        (other_vhost, "in.b"),
    }
    plan = declare("plan", "both.yml", "--prune", "--detailed-exitcode")
    assert plan.code == 0, plan


def test_export_of_a_broker_with_a_server_named_queue_round_trips(declare: Any) -> None:
    """A durable queue the broker named (amq.gen-...) does not break the round trip: the
    export plans to nothing, with --prune too."""
    connection = pika.BlockingConnection(pika.URLParameters(declare.url()))
    try:
        channel = connection.channel()
        generated = channel.queue_declare("", durable=True).method.queue
        channel.queue_bind(generated, "amq.fanout")
    finally:
        connection.close()
    assert generated.startswith("amq.gen-")
    f = declare.write("topology.yml", "queues:\n  - name: mine\n")
    assert declare("apply", f).code == 0

    assert declare("export", "--vhost", declare.vhost, "-o", "exported.yml").code == 0
    plan = declare("plan", "exported.yml", "--prune", "--detailed-exitcode")
    assert plan.code == 0, plan
