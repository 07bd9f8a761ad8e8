"""Warnings for references the broker accepts (issue 11, part 1), and ``--strict``.

An alternate exchange or dead-letter exchange that no file declares and the broker lacks is
accepted by RabbitMQ; the original declare-amqp applied such files. So it is a warning with
``file:line`` that says messages are dropped or lost, in plan, apply and the JSON; ``--strict``
makes every warning an error (exit 1, nothing written). A binding to a missing exchange stays
an error, because the broker refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "example_config.yml"

DANGLING = """
exchanges:
  - name: events
    type: topic
    alternate_exchange: nowhere
queues:
  - name: work
    dead_letter_exchange: graveyard
    bindings: [{exchange: events, routing_key: "work.#"}]
policies:
  - {name: dl, pattern: '^work$', apply_to: queues, definition: {dead-letter-exchange: void}}
"""


def _legacy_env(declare: Any) -> dict[str, str]:
    broker = declare.broker
    if broker.port != 5672 or broker.management_url != f"http://{broker.host}:15672":
        pytest.skip("AMQP_HOST implies ports 5672 and 15672; this broker uses others")
    return {
        "AMQP_HOST": broker.host,
        "AMQP_USER": broker.user,
        "AMQP_PASS": broker.password,
        "AMQP_VHOST": declare.vhost,
    }


def test_original_example_config_applies_with_a_warning(declare: Any) -> None:
    """The original tool's example file, run the original way (`--config`, AMQP_* variables),
    applies every object, exits 0, and warns at the exchange's line that messages no binding
    routes are dropped; the alternate exchange itself is not invented."""
    env = _legacy_env(declare)
    (declare.workdir / "example_config.yml").write_text(FIXTURE.read_text("utf-8"), "utf-8")
    line = declare.line_of("example_config.yml", "- name: events")
    result = declare("--config", "example_config.yml", connect=False, env=env)
    assert result.code == 0, result
    assert f"warning: example_config.yml:{line}: exchange 'events'" in result.err, result
    assert "alternate exchange 'unrouted'" in result.err and "dropped" in result.err, result
    assert declare.names("exchanges") == {"events", "broadcast"}
    assert declare.names("queues") == {"events.orders", "events.audit"}
    assert declare.exchange("events")["arguments"] == {"alternate-exchange": "unrouted"}
    assert declare.queue_arguments("events.orders") == {"x-max-priority": 10}
    assert ("events", "queue", "events.orders", "orders.*") in declare.bindings()

    again = declare("--config", "example_config.yml", connect=False, env=env)
    assert again.code == 0 and "No changes" in again.out, again
    assert "alternate exchange 'unrouted'" in again.err, again  # still warned: still missing


def test_original_example_config_with_strict_exits_1_and_writes_nothing(declare: Any) -> None:
    """`--strict` turns the same warning into an error: exit 1, one paragraph, nothing
    written."""
    env = _legacy_env(declare)
    (declare.workdir / "example_config.yml").write_text(FIXTURE.read_text("utf-8"), "utf-8")
    result = declare("--config", "example_config.yml", "--strict", connect=False, env=env)
    declare.assert_clean_failure(result)
    assert "alternate exchange 'unrouted'" in result.err and "--strict" in result.err, result
    assert declare.is_empty()

    plan = declare("plan", "example_config.yml", "--strict")
    declare.assert_clean_failure(plan)
    assert declare.is_empty()


def test_dangling_references_warn_in_plan_text_and_json(declare: Any) -> None:
    """Alternate exchange, dead-letter exchange and a policy's dead-letter-exchange: one
    warning each with file:line in the text plan; the JSON plan carries them in `warnings`
    (format 1 kept) and the apply in JSON writes everything and exits 0."""
    f = declare.write("topology.yml", DANGLING)
    plan = declare("plan", f)
    assert plan.code == 0, plan
    assert f"topology.yml:{declare.line_of(f, '- name: events')}" in plan.err, plan
    assert f"topology.yml:{declare.line_of(f, '- name: work')}" in plan.err, plan
    assert "dead-letter exchange 'graveyard'" in plan.err and "lost" in plan.err, plan
    assert "dead-letter-exchange 'void'" in plan.err, plan

    as_json = declare("apply", f, "--format", "json")
    assert as_json.code == 0, as_json
    doc = json.loads(as_json.out)
    assert doc["format"] == 1 and doc["applied"] is True
    warnings = doc["warnings"]
    assert all(isinstance(w, str) and w.startswith("topology.yml:") for w in warnings), warnings
    for name in (
        "alternate exchange 'nowhere'",
        "dead-letter exchange 'graveyard'",
        "dead-letter-exchange 'void'",
    ):
        assert (
            sum(
                f"{name} is declared in no file and does not exist on the broker" in w
                for w in warnings
            )
            == 1
        ), (name, warnings)
    assert len(warnings) == 3, warnings
    assert declare.names("queues") == {"work"} and declare.names("policies") == {"dl"}


def test_an_exchange_on_the_broker_or_in_another_file_is_no_warning(declare: Any) -> None:
    """The reference resolves on the broker (made behind the tool's back) or in a second
    file: no warning at all."""
    vh = declare.quote(declare.vhost)
    declare.put(f"/api/exchanges/{vh}/graveyard", {"type": "fanout", "durable": True})
    f = declare.write(
        "a.yml",
        "exchanges: [{name: events, type: topic, "
        "alternate_exchange: nowhere}]\n"
        "queues: [{name: work, dead_letter_exchange: graveyard}]\n",
    )
    g = declare.write("b.yml", "exchanges: [{name: nowhere, type: fanout}]\n")
    result = declare("apply", f, g, "--strict")
    assert result.code == 0, result
    assert "warning" not in result.err, result


def test_binding_to_a_missing_exchange_stays_an_error(declare: Any) -> None:
    """The broker refuses a binding whose exchange does not exist, so that is an error even
    without --strict, and nothing is written."""
    f = declare.write(
        "topology.yml", "queues:\n  - name: fine\n    bindings: [{exchange: nowhere}]\n"
    )
    result = declare("apply", f)
    declare.assert_clean_failure(result)
    assert "topology.yml:3" in result.err and "source exchange 'nowhere'" in result.err, result
    assert declare.is_empty()


def test_validate_lists_dangling_references_as_notes(declare: Any) -> None:
    """Without a broker `validate` cannot know; it notes them and exits 0."""
    f = declare.write("topology.yml", DANGLING)
    result = declare("validate", f, connect=False)
    assert result.code == 0, result
    assert "note:" in result.out and "alternate exchange 'nowhere'" in result.out, result
