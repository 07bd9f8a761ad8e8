"""``declare-amqp schema``: a JSON Schema of the file format that editors can use.

No broker needed: the command prints the schema, and the example file must satisfy it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _schema() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "declare_amqp", "schema"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def _example() -> Any:
    return yaml.safe_load((ROOT / "topology.example.yml").read_text("utf-8"))


def test_schema_is_json_describing_the_file_format() -> None:
    """The output is one JSON document, a draft 2020-12 schema of an object whose keys are
    the top-level keys of the format, and which knows every key the example uses."""
    schema = _schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert set(schema["properties"]) >= {
        "vhost",
        "vhosts",
        "exchanges",
        "queues",
        "bindings",
        "policies",
    }
    example = _example()
    defs = schema["$defs"]
    assert set(example) <= set(schema["properties"])
    for kind, items in (
        ("exchange", example["exchanges"]),
        ("queue", example["queues"]),
        ("policy", example["policies"]),
    ):
        for item in items:
            assert set(item) <= set(defs[kind]["properties"]), (kind, item)
            assert set(defs[kind]["required"]) <= set(item), (kind, item)
    nested = defs["queue"]["properties"]["bindings"]["items"]["properties"]
    for queue in example["queues"]:
        for binding in queue.get("bindings", []):
            assert set(binding) <= set(nested), binding


def test_example_validates_against_the_schema() -> None:
    """With the jsonschema package: the example is valid, and a misspelt key is not."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    example = _example()
    errors = [e.message for e in validator.iter_errors(example)]
    assert errors == []

    example["exchanges"][0]["durabel"] = True
    assert list(validator.iter_errors(example)), "an unknown key must not validate"
