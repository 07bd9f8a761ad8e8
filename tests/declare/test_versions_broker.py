"""declare-amqp knows the broker version it talks to (run against 3.x and 4.x in CI).

Tests of what only a 4.x broker does are skipped, with the reason, on older brokers; the
others hold on every version.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

MIRRORED = """\
queues:
  - name: work
policies:
  - name: ha-all
    pattern: '.*'
    definition: {ha-mode: all}
"""


def test_mirroring_policy_on_4_x_stops_before_any_write(declare: Any) -> None:
    """4.x refuses ha-* policy keys: plan and apply exit 1 naming file:line, the removal and
    quorum queues; the queue beside the policy is not created."""
    declare.broker.require(4, 0, why="classic queue mirroring was removed in 4.0")
    f = declare.write("topology.yml", MIRRORED)
    for command in ("plan", "apply"):
        result = declare(command, f)
        declare.assert_clean_failure(result)
        assert f"topology.yml:{declare.line_of(f, 'ha-all')}: policy 'ha-all'" in result.err
        assert "mirroring was removed in RabbitMQ 4.0" in result.err and "quorum" in result.err
        assert "&lt;" not in result.err
    assert declare.is_empty()


def test_transient_queue_on_4_0_applies_with_a_warning(declare: Any) -> None:
    """durable: false is deprecated on 4.0-4.2: a warning with file:line, in text and JSON,
    and the queue is made."""
    declare.broker.require(4, 0, why="transient queues are deprecated from 4.0")
    f = declare.write("topology.yml", "queues:\n  - name: scratch\n    durable: false\n")
    result = declare("apply", f)
    if declare.broker.at_least(4, 3):
        declare.assert_clean_failure(result)
        assert "denied by default" in result.err
        assert declare.is_empty()
        return
    assert result.code == 0, result
    assert "warning: topology.yml:2: queue 'scratch'" in result.err, result
    assert declare.queue("scratch")["durable"] is False
    doc = json.loads(declare("plan", f, "--format", "json").out)
    assert len(doc["warnings"]) == 1 and "transient" in doc["warnings"][0]


def _set_default_queue_type(declare: Any, queue_type: str) -> None:
    quoted = urllib.parse.quote(declare.vhost, safe="")
    with declare.broker.http() as http:
        http.put(
            f"/api/vhosts/{quoted}", json={"default_queue_type": queue_type}
        ).raise_for_status()


def test_vhost_default_queue_type_is_honoured(declare: Any) -> None:
    """In a vhost whose default is quorum, a queue that names no type is created as the broker
    makes it (quorum), re-plans as a no-op, and the plan shows its delivery limit."""
    declare.broker.require(4, 0, why="vhosts have default_queue_type from 3.13/4.0 on")
    _set_default_queue_type(declare, "quorum")
    f = declare.write(
        "topology.yml", "queues:\n  - name: orders\n  - name: scratch\n    durable: false\n"
    )
    first = declare("plan", f)
    assert first.code == 0, first
    assert "orders  quorum" in first.out and "delivery limit 20" in first.out, first
    assert declare("apply", f).code == 0
    assert declare.queue_arguments("orders") == {"x-queue-type": "quorum"}
    assert declare.queue_arguments("scratch") == {}
    again = declare("plan", f, "--detailed-exitcode")
    assert again.code == 0 and "No changes" in again.out, again


def test_priority_queue_without_a_type_in_a_quorum_vhost_is_refused(declare: Any) -> None:
    """x-max-priority on a queue the vhost would make quorum: exit 1, file:line, the way out
    (type: classic), nothing written."""
    declare.broker.require(4, 0, why="vhosts have default_queue_type from 3.13/4.0 on")
    _set_default_queue_type(declare, "quorum")
    f = declare.write(
        "topology.yml",
        "queues:\n  - name: fine\n    type: classic\n  - name: prio\n    max_priority: 5\n",
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "topology.yml:4: queue 'prio'" in result.err and "type: classic" in result.err
    assert declare.is_empty()


def test_broker_refusal_is_shown_as_plain_text_with_its_object(declare: Any) -> None:
    """A value only the broker checks (a policy's initial-cluster-size, which the tool does
    not check in advance yet): its refusal reads as text, entities decoded and Erlang binaries
    shown as strings, and names the policy."""
    f = declare.write(
        "topology.yml",
        """\
policies:
  - name: limits
    pattern: '.*'
    definition: {initial-cluster-size: abc}
""",
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "policy 'limits'" in result.err, result
    assert '"abc" is not a valid cluster size' in result.err, result
    assert "&lt;" not in result.err and "<<" not in result.err, result
