"""Shapes taken from real files that the broker (or the original tool) accepts and this tool
refused or got wrong; each test writes its own small file of that shape.

- the original declare-amqp's format: a queue binding without ``binding_key`` is bound with
  the queue's name under ``--config`` (its pika ``queue_bind(queue, exchange)``), and with
  ``''`` plus a warning naming the difference in this project's own format;
- an export holding a server-named ``amq.gen-...`` queue: that queue (and its bindings) is
  skipped with a warning, the rest applied, as the broker's own import does;
- a runtime parameter of a component the tool does not model (``federation-upstream-set``,
  whose value is a list) is ignored with a warning instead of refused.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pika
import pika.exceptions
import pytest

ORIGINAL = """
exchanges:
  - name: example_exchange
    type: direct
    durable: True
    auto_delete: False
queues:
  - name: test_queue
    bindings:
      - exchange: example_exchange
        binding_key: test_binding
  - name: test_queue_2
    bindings:
      - exchange: example_exchange
"""


def test_the_original_invocation_binds_an_unkeyed_binding_with_the_queue_name(
    declare: Any,
) -> None:
    f = declare.write("example_config.yml", ORIGINAL)
    result = declare("--config", f)
    assert result.code == 0, result
    assert declare.bindings() == {
        ("example_exchange", "queue", "test_queue", "test_binding"),
        ("example_exchange", "queue", "test_queue_2", "test_queue_2"),
    }
    assert "no binding_key" not in result.err, result
    again = declare("--config", f)  # converges: nothing left to do
    assert again.code == 0 and "Applied" not in again.out, again


def test_the_own_format_binds_with_empty_key_and_warns(declare: Any) -> None:
    f = declare.write("topology.yml", ORIGINAL)
    result = declare("apply", f)
    assert result.code == 0, result
    assert ("example_exchange", "queue", "test_queue_2", "") in declare.bindings()
    line = declare.line_of(f, "- exchange: example_exchange") + 4  # the second binding
    assert f"topology.yml:{line}: binding example_exchange -> test_queue_2" in result.err, result
    assert "the original declare-amqp bound it with the queue's name 'test_queue_2'" in result.err
    strict = declare("plan", "--strict", f)
    assert strict.code == 1, strict


def _definitions(declare: Any, doc: dict[str, Any]) -> str:
    (declare.workdir / "defs.json").write_text(json.dumps(doc, indent=1))
    return "defs.json"


def test_a_server_named_queue_in_an_export_is_skipped_with_a_warning(declare: Any) -> None:
    queue = {"durable": False, "auto_delete": False, "arguments": {}}
    f = _definitions(
        declare,
        {
            "exchanges": [
                {
                    "name": "events",
                    "type": "topic",
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
            ],
            "queues": [
                {"name": "amq.gen-7EZF7WjGIQFDoXexVF-e8w", **queue},
                {"name": "kept", **queue, "durable": True},
            ],
            "bindings": [
                {
                    "source": "events",
                    "destination": "amq.gen-7EZF7WjGIQFDoXexVF-e8w",
                    "destination_type": "queue",
                    "routing_key": "#",
                    "arguments": {},
                },
                {
                    "source": "events",
                    "destination": "kept",
                    "destination_type": "queue",
                    "routing_key": "k",
                    "arguments": {},
                },
            ],
        },
    )
    result = declare("apply", f)
    assert result.code == 0, result
    assert "queue 'amq.gen-7EZF7WjGIQFDoXexVF-e8w'" in result.err, result
    assert "skipped" in result.err
    assert declare.names("queues") == {"kept"}
    assert declare.bindings() == {("events", "queue", "kept", "k")}


def test_an_unmodelled_parameter_component_is_ignored_with_a_warning(declare: Any) -> None:
    f = _definitions(
        declare,
        {
            "queues": [{"name": "fine", "durable": True, "auto_delete": False, "arguments": {}}],
            "parameters": [
                {
                    "component": "federation-upstream-set",
                    "name": "location-1",
                    "value": [{"upstream": "up-1"}, {"upstream": "up-2"}],
                }
            ],
        },
    )
    result = declare("apply", f)
    assert result.code == 0, result
    assert "ignored: 1 runtime parameters of other components" in result.err, result
    assert "federation-upstream-set/location-1" in result.err
    assert "a parameter needs a 'name'" not in result.err
    assert declare.names("queues") == {"fine"}


def test_a_literal_password_is_accepted_with_a_warning_hashed_and_never_printed(
    declare: Any,
) -> None:
    """Before: refused (the broker's import accepts it). Now: a warning, --strict refuses,
    the user can log in with it, and neither plan, apply nor a re-plan prints it."""
    user = f"h19-literal-{uuid.uuid4().hex[:8]}"
    secret = f"Lit3ral-{uuid.uuid4().hex[:8]}"
    f = _definitions(
        declare,
        {
            "users": [{"name": user, "password": secret, "tags": ""}],
            "permissions": [
                {"user": user, "vhost": "/", "configure": "", "write": "", "read": ".*"}
            ],
            "queues": [{"name": "fine", "durable": True, "auto_delete": False, "arguments": {}}],
        },
    )
    try:
        strict = declare("plan", "--strict", f)
        assert strict.code == 1, strict
        assert secret not in strict.text
        result = declare("apply", f)
        assert result.code == 0, result
        assert "a literal password in a topology file" in result.err, result
        assert secret not in result.text
        again = declare("plan", "--detailed-exitcode", f)
        assert again.code == 0, again  # the password matches by re-hashing: converged
        assert secret not in again.text
        with declare.broker.http() as http:
            stored = http.get(f"/api/users/{user}").json()
        assert stored["password_hash"] and secret not in json.dumps(stored)
        # the user logs in with the file's password (over AMQP, to the test vhost), and
        # not with another
        connection = pika.BlockingConnection(
            pika.URLParameters(declare.url(user=user, password=secret))
        )
        connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(
                pika.URLParameters(declare.url(user=user, password=secret + "-wrong"))
            )
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/users/{user}")
