"""``apply --amqp-only``: the fallback when the management API does not answer.

It declares after a passive check, as the original tool did, finds conflicts on what the
broker compares (durable, type, known arguments) before it writes anything, and says what it
cannot check. The management API of the real broker is only used by the test to look.
"""

from __future__ import annotations

from typing import Any

TOPOLOGY = """
exchanges:
  - {name: ao.events, type: topic}
queues:
  - name: ao.work
    durable: true
    max_priority: 4
    bindings: [{exchange: ao.events, routing_key: "work.#"}]
"""

CHANGED = """
exchanges:
  - {name: ao.events, type: topic}
  - {name: ao.unrelated, type: fanout}
queues:
  - name: ao.work
    durable: false
    max_priority: 4
    bindings: [{exchange: ao.events, routing_key: "work.#"}]
  - name: ao.unrelated
    bindings: [{exchange: ao.unrelated}]
"""


def _amqp_only(declare: Any, *args: str) -> Any:
    """apply --amqp-only with the management URL pointing at a closed port."""
    return declare(
        "apply",
        *args,
        "--amqp-only",
        "--url",
        declare.url(),
        "--management-url",
        f"http://127.0.0.1:{declare.closed_port()}",
        connect=False,
    )


def test_amqp_only_apply_on_a_fresh_vhost(declare: Any) -> None:
    """Exchanges, queues (with arguments) and bindings are created over AMQP alone; the
    warning says what is not checked; a second run also exits 0."""
    f = declare.write("topology.yml", TOPOLOGY)
    result = _amqp_only(declare, f)
    assert result.code == 0, result
    assert "AMQP-only" in result.err and "not checked" in result.err, result
    assert declare.names("exchanges") == {"ao.events"}
    assert declare.queue_arguments("ao.work") == {"x-max-priority": 4}
    assert declare.bindings() == {("ao.events", "queue", "ao.work", "work.#")}

    again = _amqp_only(declare, f)
    assert again.code == 0, again
    assert declare.bindings() == {("ao.events", "queue", "ao.work", "work.#")}


def test_amqp_only_conflict_on_durable_writes_nothing(declare: Any) -> None:
    """A queue whose durability differs is a conflict found by the redeclare: exit 1, both
    values shown, and the unrelated new exchange, queue and binding are not created."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert _amqp_only(declare, f).code == 0
    before = declare.definitions()

    declare.write("topology.yml", CHANGED)
    result = _amqp_only(declare, f)
    assert result.code == 1, result
    assert "Traceback" not in result.text, result
    assert "ao.work" in result.out and "durable" in result.text, result
    assert "'false'" in result.text and "'true'" in result.text, result
    assert declare.definitions() == before
    assert declare.queue("ao.work")["durable"] is True


def test_amqp_only_conflict_names_file_and_line(declare: Any) -> None:
    """Like every conflict, an AMQP-only one names where the object is written."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert _amqp_only(declare, f).code == 0
    declare.write("topology.yml", CHANGED)
    line = declare.line_of(f, "name: ao.work")
    result = _amqp_only(declare, f)
    assert result.code == 1, result
    assert f"{f}:{line}" in result.text, result


def test_amqp_only_refuses_policies_plainly(declare: Any) -> None:
    """A file with a policy cannot be applied over AMQP: exit 1, says why, writes nothing."""
    f = declare.copy_example()
    result = _amqp_only(declare, f, "--vhost", declare.vhost)
    declare.assert_clean_failure(result)
    assert "--amqp-only" in result.err and "polic" in result.err, result
    assert declare.is_empty()


def test_amqp_only_with_prune_is_refused(declare: Any) -> None:
    """--prune cannot work without the management API, so asking for it must fail (exit 1)
    instead of succeeding without pruning."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert _amqp_only(declare, f).code == 0
    declare.put(f"/api/queues/{declare.quote(declare.vhost)}/stray", {"durable": True})
    result = _amqp_only(declare, f, "--prune")
    assert result.code == 1, result
    assert "--prune" in result.err, result
    assert "stray" in declare.names("queues")
