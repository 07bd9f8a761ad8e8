"""The net under apply: a write the broker refuses part-way makes apply undo what this run
wrote ("rolled back: the broker is as it was"), or list by name what it could not undo.

Two refusals injected mid-apply, each with its own input:
- the broker changes between plan and apply (another client declares a queue of the file with
  other arguments), through the library, so the plan is made before the change;
- a user whose configure permission does not cover every queue and who cannot read its own
  permissions (a policymaker), through the command line.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from declare_amqp import Session, load
from declare_amqp._address import resolve_address

TOPOLOGY = """
exchanges:
  - name: e1
    type: direct
queues:
  - name: q-ok
    bindings:
      - exchange: e1
        binding_key: ok
  - name: q-late
    max_length: 100
    bindings:
      - exchange: e1
        binding_key: late
policies:
  - name: p-new
    pattern: "^q-ok$"
    apply_to: queues
    definition: {message-ttl: 60000}
  - name: p-old
    pattern: "^nothing$"
    apply_to: queues
    definition: {max-length: 20}
"""


def _state(declare: Any) -> dict[str, Any]:
    """What the broker holds in the test vhost, comparable before and after."""
    d = declare.definitions()
    return {
        "exchanges": sorted(x["name"] for x in d["exchanges"]),
        "queues": sorted((q["name"], sorted(q["arguments"].items())) for q in d["queues"]),
        "bindings": sorted(declare.bindings()),
        "policies": sorted(
            (p["name"], sorted(p["definition"].items())) for p in d.get("policies", [])
        ),
    }


def test_a_refusal_between_plan_and_apply_is_rolled_back(declare: Any) -> None:
    declare.put(
        f"/api/policies/{declare.quote(declare.vhost)}/p-old",
        {"pattern": "^nothing$", "definition": {"max-length": 10}, "apply-to": "queues"},
    )
    f = declare.write("topology.yml", TOPOLOGY)
    address = resolve_address(
        [declare.broker.url_for(declare.vhost)], [declare.broker.management_url]
    )
    with Session(address) as session:
        desired = load([str(declare.workdir / f)], default_vhost=declare.vhost)
        plan = session.plan(desired)
        assert len(plan.writes) == 7  # e1, p-new, p-old (update), 2 queues, 2 bindings
        # another client declares q-late first, with other arguments: the broker refuses ours
        with pika.BlockingConnection(
            pika.URLParameters(declare.broker.url_for(declare.vhost))
        ) as c:
            c.channel().queue_declare("q-late", durable=True, arguments={"x-max-length": 5})
        before = _state(declare)
        result = session.apply(desired, plan)
    assert not result.ok
    assert [f.change.name for f in result.failures] == ["q-late"], result.failures
    assert result.rollback is not None and result.rollback.complete, result.rollback
    assert _state(declare) == before  # p-old back to 10, e1, q-ok, p-new, bindings gone
    assert ("p-old", [("max-length", 10)]) in before["policies"]
    assert result.to_dict()["rolled_back"] is True


@pytest.fixture
def policymaker(declare: Any) -> Iterator[tuple[str, str]]:
    """A policymaker who may configure e1 and q-ok only (not q-late), in the test vhost."""
    name, password = f"h19-pm-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    declare.put(f"/api/users/{name}", {"password": password, "tags": "policymaker"})
    declare.put(
        f"/api/permissions/{declare.quote(declare.vhost)}/{name}",
        {"configure": "^(e1|q-ok)$", "write": ".*", "read": ".*"},
    )
    try:
        yield name, password
    finally:
        with declare.broker.http() as http:
            http.delete(f"/api/users/{name}")


def test_a_permission_refusal_mid_apply_is_rolled_back(
    declare: Any, policymaker: tuple[str, str]
) -> None:
    user, password = policymaker
    f = declare.write("topology.yml", TOPOLOGY)
    before = _state(declare)
    result = declare(
        "apply",
        f,
        "--url",
        declare.url(user=user, password=password),
        "--management-url",
        declare.broker.management_url,
        connect=False,
    )
    assert result.code == 1, result
    assert "q-late" in result.err and "403" in result.err, result
    assert "rolled back: the broker is as it was" in result.err, result
    assert password not in result.text
    assert _state(declare) == before
    # and a rerun by an administrator converges as usual
    assert declare("apply", f).code == 0
    assert declare.names("queues") == {"q-ok", "q-late"}
