"""RabbitMQ definitions JSON as a topology file (issue 11, part 3), without a broker.

Both shapes the broker writes load into the same model as YAML files, each object with the
line it starts on; kinds the tool does not manage are named in warnings; errors name
``file:line``; JSON and YAML files merge with the same duplicate detection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from declare_amqp import TopologyError, load, load_unvalidated
from declare_amqp._definitions import parse_definitions, to_definitions
from declare_amqp._json_lines import load_json
from declare_amqp._planning import plan

SINGLE = """{
  "rabbit_version": "3.10.8",
  "rabbitmq_version": "3.10.8",
  "product_name": "RabbitMQ",
  "product_version": "3.10.8",
  "parameters": [],
  "policies": [
    {"name": "ttl", "pattern": "^work$", "apply-to": "queues",
     "definition": {"message-ttl": 1000}, "priority": 0}
  ],
  "queues": [
    {"name": "work", "durable": true, "auto_delete": false,
     "arguments": {"x-max-priority": 5}},
    {"name": "votes", "durable": true, "auto_delete": false,
     "arguments": {"x-queue-type": "quorum", "x-delivery-limit": -1}}
  ],
  "exchanges": [
    {"name": "events", "type": "topic", "durable": true, "auto_delete": false,
     "internal": false, "arguments": {"alternate-exchange": "unrouted"}},
    {"name": "unrouted", "type": "fanout", "durable": true, "auto_delete": false,
     "internal": false, "arguments": {}}
  ],
  "bindings": [
    {"source": "events", "vhost": "/", "destination": "work", "destination_type": "queue",
     "routing_key": "work.#", "arguments": {}},
    {"source": "events", "destination": "unrouted", "destination_type": "exchange",
     "routing_key": "", "arguments": {"x-match": "all"}}
  ]
}
"""

CLUSTER = {
    "rabbitmq_version": "4.0.5",
    "rabbitmq_definition_format": "cluster",
    "users": [{"name": "admin", "password_hash": "SECRETHASH", "tags": ["administrator"]}],
    "vhosts": [
        {"name": "billing", "limits": [], "metadata": {"description": "", "tags": []}},
        {"name": "mail", "metadata": {"default_queue_type": "quorum"}},
    ],
    "permissions": [
        {"user": "admin", "vhost": "billing", "configure": ".*", "write": ".*", "read": ".*"}
    ],
    "parameters": [
        {
            "vhost": "billing",
            "component": "shovel",
            "name": "move",
            "value": {"src-uri": "amqp://u:SECRETPASS@host"},
        }
    ],
    "global_parameters": [{"name": "cluster_name", "value": "rabbit@x"}],
    "queues": [
        {
            "name": "invoices",
            "vhost": "billing",
            "durable": True,
            "auto_delete": False,
            "arguments": {},
        },
        {
            "name": "outbox",
            "vhost": "mail",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "quorum"},
        },
    ],
    "exchanges": [],
    "bindings": [],
    "policies": [],
}


def test_single_vhost_shape_loads_with_lines_into_the_file_vhost() -> None:
    """GET /api/definitions/{vhost}: objects go to the file's vhost, x-queue-type becomes the
    queue type, every object keeps the line it starts on."""
    t, problems = parse_definitions(SINGLE, "defs.json", vhost="prod")
    assert problems == []
    assert {q.name: q.type for q in t.queues} == {"work": "classic", "votes": "quorum"}
    assert all(o.vhost == "prod" for o in (*t.queues, *t.exchanges, *t.policies))
    assert t.policies[0].vhost == "prod"
    lines = SINGLE.splitlines()
    for obj, needle in (
        (t.queues[0], '"name": "work"'),
        (t.queues[1], '"name": "votes"'),
        (t.exchanges[1], '"name": "unrouted"'),
        (t.policies[0], '"name": "ttl"'),
    ):
        assert needle in lines[obj.location.line - 1], (obj, obj.location)
    # a vhost field in the single-vhost shape is not a destination (the broker's own import
    # of such a file also puts everything into the vhost it imports into)
    assert {b.vhost for b in t.bindings} == {"prod"}
    assert t.bindings[1].destination_type == "exchange"
    assert t.named == ("prod",)
    assert t.warnings == ()


def test_cluster_shape_refuses_secrets_with_file_and_line() -> None:
    """The cluster shape creates its vhosts; a malformed password hash is a problem at its
    object's line and a shovel URI with a password a warning there (accepted since issue 19,
    as the broker's import accepts it), both named without the secret; global parameters
    are named in a warning."""
    text = json.dumps(CLUSTER, indent=2)
    t, problems = parse_definitions(text, "all.json")
    assert [v.name for v in t.vhosts] == ["billing", "mail"]
    assert {(q.vhost, q.name, q.type) for q in t.queues} == {
        ("billing", "invoices", "classic"),
        ("mail", "outbox", "quorum"),
    }
    assert set(t.named) == {"billing", "mail"}
    lines = text.splitlines()
    shown = [str(p) for p in problems]
    # the shovel is otherwise incomplete (no queues, no dest-uri): those are problems too
    assert all(p.object in ("user 'admin'", "shovel 'move'") for p in problems), shown
    assert not any("holds a password" in p.message for p in problems), shown
    (hash_problem,) = [p for p in problems if p.object == "user 'admin'"]
    assert hash_problem.location is not None
    assert lines[hash_problem.location.line - 1].strip() == "{"  # the object starts here
    assert '"name": "admin"' in lines[hash_problem.location.line]
    assert "password_hash is not a base64" in hash_problem.message
    (uri_warning,) = [w for w in t.warnings if w.object == "shovel 'move'"]
    assert "'src-uri' holds a password" in uri_warning.message
    assert "src-uri-env" in uri_warning.message
    joined = "\n".join(shown + [str(w) for w in t.warnings])
    assert "SECRET" not in joined
    assert "1 global parameters (cluster_name)" in joined


def test_json_errors_name_file_and_line(tmp_path: Path) -> None:
    """Malformed JSON, a wrong type and a missing key: every problem with file:line."""
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{\n  "queues": [\n    {"name": "a",\n     "durable": "yes"},\n'
        '    {"durable": true}\n  ]\n}\n'
    )
    with pytest.raises(TopologyError) as info:
        load_unvalidated([str(bad)])
    shown = [str(p) for p in info.value.problems]
    assert any(
        s.startswith(f"{bad}:3: queue 'a': 'durable' must be true or false") for s in shown
    ), shown
    assert any(s.startswith(f"{bad}:5: queue: missing required key 'name'") for s in shown)

    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "queues": [\n    {"name": "a",}\n  ]\n}\n')
    with pytest.raises(TopologyError) as info:
        load_unvalidated([str(broken)])
    (p,) = info.value.problems
    assert p.location is not None and p.location.line == 3 and "not valid JSON" in p.message


def test_duplicate_keys_in_json_are_problems() -> None:
    _, problems = load_json('{"a": 1,\n "b": {"x": 1, "x": 2}}', "d.json")
    assert [str(p) for p in problems] == ["d.json:2: key 'x' appears twice in one object"]


def test_object_lines_survive_braces_and_quotes_inside_strings() -> None:
    text = '{"queues": [\n{"name": "a{\\"}", "arguments": {"k": "}{"}},\n{"name": "b"}]}'
    doc, problems = load_json(text, "x.json")
    assert problems == []
    assert [q.line for q in doc["queues"]] == [2, 3]


def test_json_and_yaml_files_merge_with_duplicate_detection(tmp_path: Path) -> None:
    """The same queue in a YAML and a JSON file: identical is fine, different is an error
    naming both places."""
    (tmp_path / "defs.json").write_text(SINGLE)
    (tmp_path / "same.yml").write_text("queues:\n  - {name: work, max_priority: 5}\n")
    t = load([str(tmp_path / "defs.json"), str(tmp_path / "same.yml")])
    assert [q.name for q in t.queues].count("work") == 1
    (tmp_path / "other.yml").write_text("queues:\n  - {name: work, max_priority: 7}\n")
    with pytest.raises(TopologyError) as info:
        load([str(tmp_path / "defs.json"), str(tmp_path / "other.yml")])
    (p,) = info.value.problems
    assert str(p.location).endswith("other.yml:2") and "defs.json:" in p.message


def test_written_definitions_load_back_to_the_same_topology() -> None:
    """to_definitions -> parse_definitions is the identity on the model, in both shapes."""
    t, _ = parse_definitions(SINGLE, "a.json", vhost="v1")
    for vhosts in (["v1"], ["v1", "v2"]):
        text = json.dumps(to_definitions(t, vhosts, "3.10.8"), indent=2)
        back, problems = parse_definitions(text, "b.json", vhost="v1")
        assert problems == []
        # (the cluster shape lists its vhosts, which the source topology does not)
        assert [c for c in plan(back, t).changes if c.kind != "vhost"] == []
        assert plan(t, back).is_empty
    assert (
        json.loads(json.dumps(to_definitions(t, ["v1"])))["rabbitmq_definition_format"]
        == "single_virtual_host"
    )


def test_a_declare_amqp_topology_named_json_is_not_read_silently() -> None:
    """Fields and keys that RabbitMQ's format lacks are named in warnings (with a hint to
    name such a file .yml), never dropped silently."""
    text = '{"vhost": "prod",\n "queues": [\n  {"name": "q", "max_priority": 5}]}'
    t, problems = parse_definitions(text, "mine.json")
    assert problems == []
    shown = [str(w) for w in t.warnings]
    assert any(s.startswith("mine.json:1: ignored key 'vhost'") for s in shown), shown
    assert any(
        s.startswith("mine.json:3: queue 'q': ignored field max_priority") and ".yml" in s
        for s in shown
    ), shown


def test_single_virtual_host_format_marker_wins() -> None:
    """4.x writes rabbitmq_definition_format; single_virtual_host puts every object into the
    file's vhost even when objects carry a vhost field."""
    doc = {
        "rabbitmq_definition_format": "single_virtual_host",
        "queues": [
            {
                "name": "q",
                "vhost": "elsewhere",
                "durable": True,
                "auto_delete": False,
                "arguments": {},
            }
        ],
    }
    t, problems = parse_definitions(json.dumps(doc), "one.json", default_vhost="here")
    assert problems == [] and t.queues[0].vhost == "here" and t.named == ("here",)
