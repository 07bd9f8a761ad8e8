"""Conflicts against the live broker: an immutable property differs, so nothing is written.

A conflict must be found for every immutable property, also the arguments RabbitMQ itself
does not compare on redeclare (``x-owner``), be reported with file:line and both values,
and stop the whole apply: no unrelated new object, policy change or prune may happen.
"""

from __future__ import annotations

import json
from typing import Any

import pytest


def _topology(
    *,
    xtype: str = "topic",
    qtype: str = "classic",
    durable: str = "true",
    qarg: str = "x-owner: team-a",
    maxlen: int = 100,
    extra: bool = False,
) -> str:
    """One exchange, one queue bound to it, one policy; ``extra`` adds unrelated objects."""
    text = f"""\
exchanges:
  - name: orders
    type: {xtype}
queues:
  - name: orders.work
    type: {qtype}
    durable: {durable}
    arguments:
      {qarg}
    bindings:
      - exchange: orders
        routing_key: work
policies:
  - name: orders-limits
    pattern: '^orders\\.'
    apply_to: queues
    definition:
      max-length: {maxlen}
"""
    if extra:
        text += """\
  - name: unrelated-policy
    pattern: '^unrelated'
    definition:
      message-ttl: 1000
bindings:
  - source: orders
    destination: unrelated.q
    routing_key: new
"""
        text = text.replace("queues:\n", "queues:\n  - name: unrelated.q\n", 1)
        text = text.replace(
            "exchanges:\n", "exchanges:\n  - name: unrelated.x\n    type: fanout\n", 1
        )
    return text


# (id, base settings, changed settings, what the message must show)
CASES = [
    (
        "x-max-priority",
        {"qarg": "x-max-priority: 5"},
        {"qarg": "x-max-priority: 7"},
        ("x-max-priority", "5", "7"),
    ),
    (
        "custom-argument",
        {"qarg": "x-owner: team-a"},
        {"qarg": "x-owner: team-b"},
        ("x-owner", "team-a", "team-b"),
    ),
    ("queue-type", {"qtype": "classic"}, {"qtype": "quorum"}, ("type", "classic", "quorum")),
    ("durable", {"durable": "true"}, {"durable": "false"}, ("durable", "true", "false")),
    (
        "argument-removed",
        {"qarg": "x-owner: team-a"},
        {"qarg": ""},
        ("x-owner", "team-a", "absent"),
    ),
    ("exchange-type", {"xtype": "topic"}, {"xtype": "direct"}, ("type", "topic", "direct")),
]


@pytest.mark.parametrize(
    ("base", "changed", "shown"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_conflict_exits_1_names_file_line_and_writes_nothing(
    declare: Any, base: dict[str, Any], changed: dict[str, Any], shown: tuple[str, ...]
) -> None:
    """The conflicting object is named with file:line and both values; the unrelated new
    exchange, queue, binding and policy of the same file, and the policy update, are not
    written."""
    f = declare.write("topology.yml", _topology(**base))
    assert declare("apply", f).code == 0
    before = declare.definitions()

    declare.write("topology.yml", _topology(**changed, maxlen=999, extra=True))
    kind = "exchange" if "xtype" in changed else "queue"
    line = declare.line_of(f, "name: orders" if kind == "exchange" else "name: orders.work")

    plan = declare("plan", f, "--detailed-exitcode")
    assert plan.code == 1, plan

    result = declare("apply", f)
    assert result.code == 1, result
    assert "Traceback" not in result.text, result
    assert f"{f}:{line}" in result.text, result
    named = "queue    orders.work " if kind == "queue" else "exchange orders "
    assert named in result.out, result  # the plan line of the conflicting object
    for value in shown:
        assert value in result.text, (value, str(result))
    assert "nothing was changed" in result.err, result

    assert declare.definitions() == before  # not even the unrelated objects


def test_conflict_on_a_policy_settable_argument_suggests_a_policy(declare: Any) -> None:
    """Changing a queue's x-message-ttl is a conflict whose message recommends a policy,
    since a policy can change the TTL at any time."""
    f = declare.write("topology.yml", _topology(qarg="x-message-ttl: 1000"))
    assert declare("apply", f).code == 0
    declare.write("topology.yml", _topology(qarg="x-message-ttl: 2000"))
    result = declare("apply", f)
    assert result.code == 1, result
    assert "message-ttl" in result.text and "policy" in result.text, result
    assert declare.queue_arguments("orders.work") == {"x-message-ttl": 1000}


def test_conflict_stops_prune_too(declare: Any) -> None:
    """With --prune, a conflict also stops the deletions: the stray queue the file does
    not declare survives."""
    f = declare.write("topology.yml", _topology(qarg="x-owner: team-a"))
    assert declare("apply", f).code == 0
    declare.put(f"/api/queues/{declare.quote(declare.vhost)}/stray", {"durable": True})
    declare.write("topology.yml", _topology(qarg="x-owner: team-b"))

    result = declare("apply", f, "--prune")
    assert result.code == 1, result
    assert "stray" in declare.names("queues")
    assert declare.queue_arguments("orders.work") == {"x-owner": "team-a"}


def test_conflict_in_json_format(declare: Any) -> None:
    """apply --format json on a conflict prints valid JSON saying nothing was applied."""
    f = declare.write("topology.yml", _topology(qarg="x-max-priority: 5"))
    assert declare("apply", f).code == 0
    declare.write("topology.yml", _topology(qarg="x-max-priority: 7", extra=True))
    result = declare("apply", f, "--format", "json")
    assert result.code == 1, result
    doc = json.loads(result.out)
    assert doc["applied"] is False
    conflicts = [c for c in doc["changes"] if c["action"] == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0]["name"] == "orders.work" and conflicts[0]["location"].startswith(f)
    assert conflicts[0]["before"] == {"arguments.x-max-priority": 5}
    assert conflicts[0]["after"] == {"arguments.x-max-priority": 7}
    assert "unrelated.q" not in declare.names("queues")
