"""The simulator against the real broker: random topologies and messages (route), random
policy sets (explain), and the commands reading the live broker (route and explain without
files, plan checking the ``expect`` section). ``bench/simulate_bench.py`` runs the issue's
full counts (10,000 messages, 1,000 policy sets)."""

from __future__ import annotations

import json
import random
from typing import Any

from simulate_agreement import PolicyStats, policy_agreement, routing_agreement
from waiting import wait_until_blocking


def test_route_agrees_with_where_the_broker_puts_messages(broker: Any, vhost: str) -> None:
    """300 random messages through 3 random topologies: the queues `route` names are the
    queues the broker filled, every time."""
    seed = random.randrange(1 << 30)
    result = routing_agreement(
        broker.url_for(vhost),
        vhost,
        seed=seed,
        topologies=3,
        messages_per_topology=100,
        version=broker.version_tuple,
    )
    assert result.total == 300
    assert result.agreed == result.total, (seed, result.differences[:3])


def test_explain_agrees_with_the_brokers_policy_fields(broker: Any, vhost: str) -> None:
    """50 random sets of policies and operator policies (no ties), 25 at a time on disjoint
    names: every queue's policy, operator_policy and effective_policy_definition (and every
    exchange's policy) as the management API reports them equal what `explain` says."""
    seed = random.randrange(1 << 30)
    stats = PolicyStats()
    with broker.http() as http:
        result = policy_agreement(
            http, [vhost], seed=seed, sets=50, slots=25, version=broker.version_tuple, stats=stats
        )
    assert result.total == 50
    # the sets did exercise the rules: policies, operator policies, merges, skipped keys
    assert stats.with_policy and stats.with_operator_policy and stats.skipped_unsupported
    assert result.agreed == result.total, (seed, result.differences[:3])


def test_route_and_explain_without_files_read_the_broker(declare: Any) -> None:
    f = declare.copy_example()
    assert declare("apply", f, "--vhost", declare.vhost).code == 0
    for key in ("email.high", "email.default", "newsletter.weekly"):
        argv = ("route", "--exchange", "email", "--routing-key", key, "--format", "json")
        from_files = declare(*argv[:1], f, *argv[1:], "--vhost", declare.vhost)
        live = declare(*argv, "--vhost", declare.vhost)
        assert from_files.code == live.code == 0, (from_files, live)
        assert json.loads(live.out) == json.loads(from_files.out)
    explained = declare(
        "explain", "queue", "email.dead", "--vhost", declare.vhost, "--format", "json"
    )
    assert explained.code == 0, explained
    e = json.loads(explained.out)
    policy: dict[str, Any] = {}

    def broker_reports_policy() -> bool:
        # the management API's queue details lag up to 5 s behind a policy's application
        with declare.broker.http() as http:
            queues = http.get(f"/api/queues/{declare.quote(declare.vhost)}?columns=name,policy")
            policy.update({q["name"]: q.get("policy") for q in queues.json()})
        return policy.get("email.dead") is not None

    wait_until_blocking(broker_reports_policy, 15, "the broker to report email.dead's policy")
    assert e["policy"] == policy["email.dead"] == "email-dead-limits"
    assert e["effective"]["max-length"] == {"value": 100000, "source": "policy"}
    missing = declare("route", "--exchange", "email", "--vhost", "h21-no-such-vhost")
    assert missing.code == 1 and "does not exist" in missing.err


EXPECTING = """\
vhost: {vhost}
exchanges:
  - {{name: orders, type: topic}}
queues:
  - name: eu
    bindings:
      - {{exchange: orders, routing_key: "eu.#"}}
expect:
  - {{exchange: orders, routing_key: eu.created, reaches: [eu]}}
"""


def test_plan_checks_expectations_against_the_broker(declare: Any) -> None:
    """A binding the files do not declare (made on the broker by someone else) changes where
    a message goes: plan says which expectation breaks, file and line; apply writes nothing."""
    f = declare.write("t.yml", EXPECTING.format(vhost=declare.vhost))
    assert declare("apply", f).code == 0
    assert declare("plan", f).code == 0
    v = declare.quote(declare.vhost)
    declare.put(f"/api/queues/{v}/audit", {"durable": True})
    declare.post(f"/api/bindings/{v}/e/orders/q/audit", {"routing_key": "#"})
    before = declare.definitions()
    result = declare("plan", f)
    assert result.code == 1, result
    assert (
        "t.yml:9: expect: a message to exchange 'orders' with routing key 'eu.created'"
        in result.err
    )
    assert "expected eu, but it reaches audit, eu" in result.err
    assert declare("apply", f).code == 1
    assert declare.definitions() == before
    assert declare("plan", f, "--prune", "--force").code == 0  # pruned, the extra binding goes


def test_plan_reports_what_an_upgrade_breaks(declare: Any) -> None:
    """plan reads the broker's version; --broker-version checks the same files against the
    release an upgrade goes to, and names each problem with its file, line and release."""
    lazy = "queue_mode: lazy" if not declare.broker.at_least(4, 3) else ""
    f = declare.write(
        "t.yml",
        f"""
        vhost: {declare.vhost}
        queues:
          - {{name: legacy, {lazy}}}
          - {{name: work, type: quorum}}
        """,
    )
    assert declare("apply", f).code == 0
    assert declare("plan", f).code == 0
    upgrade = declare("plan", f, "--broker-version", "4.3.0")
    if lazy:
        assert upgrade.code == 1, upgrade
        assert "t.yml:3: queue 'legacy'" in upgrade.err
        assert "queue_mode (x-queue-mode) is refused from RabbitMQ 4.3 on" in upgrade.err
    explained = declare("explain", "queue", "work", "--vhost", declare.vhost, "--format", "json")
    limit = json.loads(explained.out)["effective"].get("delivery-limit")
    if declare.broker.at_least(4, 0):
        assert limit == {
            "value": 20,
            "source": "default",
            "rule": "for quorum queues since RabbitMQ 4.0; set delivery_limit, -1 for none",
        }
    else:
        assert limit is None
