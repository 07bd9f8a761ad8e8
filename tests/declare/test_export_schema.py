"""Export (live topology -> YAML) round-trips through the loader; the schema matches it."""

from __future__ import annotations

import json

import yaml

from declare_amqp import json_schema, load, parse_unvalidated, plan, to_yaml
from declare_amqp._broker_json import from_definitions

DEFINITIONS = {
    "exchanges": [
        {
            "name": "e",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {"alternate-exchange": "ae"},
        },
        {
            "name": "ae",
            "type": "fanout",
            "durable": True,
            "auto_delete": False,
            "internal": True,
            "arguments": {},
        },
    ],
    "queues": [
        {
            "name": "c",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-max-priority": 5, "x-custom": [1, 2], "x-message-ttl": 10},
        },
        {
            "name": "qq",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "quorum", "x-delivery-limit": 3},
        },
        {
            "name": "s",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-queue-type": "stream", "x-max-age": "7D"},
        },
    ],
    "bindings": [
        {
            "source": "e",
            "destination": "c",
            "destination_type": "queue",
            "routing_key": "k",
            "arguments": {},
        },
        {
            "source": "e",
            "destination": "ae",
            "destination_type": "exchange",
            "routing_key": "#",
            "arguments": {"x": 1},
        },
    ],
    "policies": [
        {
            "name": "p",
            "pattern": "^c$",
            "apply-to": "queues",
            "definition": {"max-length": 10},
            "priority": 2,
        }
    ],
}


def test_export_of_a_live_topology_plans_to_nothing() -> None:
    live = from_definitions("v", DEFINITIONS)
    text = to_yaml(live, ["v"])
    again = parse_unvalidated(text, "export.yml")
    assert plan(again, live, prune=True).is_empty
    doc = yaml.safe_load(text)
    assert doc["vhost"] == "v"
    c = next(q for q in doc["queues"] if q["name"] == "c")
    assert c["max_priority"] == 5 and c["message_ttl"] == 10
    assert c["arguments"] == {"x-custom": [1, 2]}
    assert c["bindings"] == [{"exchange": "e", "routing_key": "k"}]


def test_schema_is_json_and_knows_every_object() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert set(schema["$defs"]) == {
        "exchange",
        "queue",
        "binding",
        "policy",
        "consumer",
        "user",
        "permission",
        "topic_permission",
        "operator_policy",
        "federation_upstream",
        "shovel",
        "expectation",
    }
    assert "max_priority" in schema["$defs"]["queue"]["properties"]
    assert schema["$defs"]["exchange"]["required"] == ["name", "type"]


def test_example_validates_against_the_schema() -> None:
    import pytest

    jsonschema = pytest.importorskip("jsonschema")
    with open("topology.example.yml") as fh:
        jsonschema.validate(yaml.safe_load(fh), json_schema())
    load(["topology.example.yml"])
