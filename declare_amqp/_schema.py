"""A JSON Schema of the topology format, built from the same tables the loader uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._format import (
    CONSUMED_QUEUE_KEYS,
    CONSUMER_KEYS,
    EXPECT_KEYS,
    RETRY_KEYS,
    Key,
)
from .kinds import ACCESS_KINDS, TOP_KEYS, TOPOLOGY_KINDS

# The topology kinds in the order a file lists them (the schema's definitions too).
_IN_FILE_ORDER = sorted(TOPOLOGY_KINDS, key=lambda k: k.top_rank)

_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", dict: "object", list: "array"}


def _property(key: Key) -> dict[str, Any]:
    types = [_JSON_TYPES[t] for t in key.types]
    prop: dict[str, Any] = {"description": key.doc}
    prop["type"] = types[0] if len(types) == 1 else types
    if key.choices:
        prop["enum"] = list(key.choices)
    if key.default is not None:
        prop["default"] = key.default
    if key.minimum is not None:
        prop["minimum"] = key.minimum
    if key.items:
        items = [_JSON_TYPES[t] for t in key.items]
        prop["items"] = {"type": items[0] if len(items) == 1 else items}
    if key.min_items is not None:
        prop["minItems"] = key.min_items
    return prop


def _object(
    keys: Sequence[Key], description: str, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    props = {k.name: _property(k) for k in keys}
    props.update(overrides or {})
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": [k.name for k in keys if k.required],
        "properties": props,
    }


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a topology file."""
    top = _object(
        TOP_KEYS,
        "A declare-amqp topology file.",
        {
            **{k.key: k.schema_property(_object) for k in _IN_FILE_ORDER},
            "consumers": {"type": "array", "items": {"$ref": "#/$defs/consumer"}},
            "expect": {"type": "array", "items": {"$ref": "#/$defs/expectation"}},
            **{
                k.key: {"type": "array", "items": {"$ref": f"#/$defs/{k.schema_name}"}}
                for k in ACCESS_KINDS
                if k.top_level
            },
        },
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://declare-amqp.invalid/topology.schema.json",
        "title": "declare-amqp topology",
        **top,
        "$defs": {
            **{n: d for k in _IN_FILE_ORDER for n, d in k.schema_definitions(_object).items()},
            "expectation": _object(EXPECT_KEYS, "A routing expectation."),
            "consumer": _object(
                CONSUMER_KEYS,
                "An application consuming with priority_worker.",
                {
                    "queues": {
                        "type": "array",
                        "minItems": 1,
                        "items": _object(CONSUMED_QUEUE_KEYS, "A consumed queue."),
                    },
                    "retry": _object(
                        RETRY_KEYS,
                        "Retries after handler errors.",
                        {
                            "delays": {
                                "type": "array",
                                "items": {"type": "number", "exclusiveMinimum": 0},
                            },
                        },
                    ),
                },
            ),
            **{k.schema_name: _object(k.keys, k.schema_doc) for k in ACCESS_KINDS if k.top_level},
        },
    }
