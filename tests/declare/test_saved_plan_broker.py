"""Saved plans (issue 11): ``plan FILE... --out PLAN`` then ``apply PLAN``.

``apply PLAN`` applies exactly the saved plan, and refuses — exit 1, nothing written, a
message naming what changed — when the files or the broker no longer match. The plan file
holds no secret.
"""

from __future__ import annotations

import json
from typing import Any

from declare_support import PASSWORD, QUOTED_PASSWORD

TOPOLOGY = """
exchanges:
  - {name: orders, type: topic}
queues:
  - name: orders.new
    max_priority: 5
    bindings: [{exchange: orders, routing_key: "new.#"}]
  - name: orders.old
policies:
  - {name: limits, pattern: '^orders\\.', apply_to: queues, definition: {max-length: 100}}
"""


def _saved(declare: Any, name: str = "plan.json") -> dict[str, Any]:
    return dict(json.loads((declare.workdir / name).read_text("utf-8")))


def test_saved_plan_applies_exactly_what_was_planned(declare: Any) -> None:
    """`plan --out` writes the plan, digests and fingerprint (and the JSON plan says
    `saved`); `apply PLAN` applies it and the broker then matches the files."""
    f = declare.write("topology.yml", TOPOLOGY)
    planned = declare("plan", f, "--out", "plan.json", "--format", "json")
    assert planned.code == 0, planned
    doc = json.loads(planned.out)
    assert doc["format"] == 1 and doc["saved"] == "plan.json"
    saved = _saved(declare)
    assert saved["kind"] == "declare-amqp saved plan"
    assert [x["path"] for x in saved["files"]] == ["topology.yml"]
    assert saved["plan"]["summary"]["create"] == 5, saved["plan"]
    assert declare.is_empty()  # planning wrote nothing

    applied = declare("apply", "plan.json")
    assert applied.code == 0, applied
    assert declare.names("queues") == {"orders.new", "orders.old"}
    assert declare.policy("limits")["definition"] == {"max-length": 100}
    again = declare("plan", f, "--detailed-exitcode")
    assert again.code == 0, again


def test_saved_plan_refuses_a_changed_broker(declare: Any) -> None:
    """A queue created behind the tool's back after the plan: apply PLAN exits 1, names the
    queue, and writes nothing of the plan."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("plan", f, "--out", "plan.json").code == 0
    declare.put(f"/api/queues/{declare.quote(declare.vhost)}/intruder", {"durable": True})
    result = declare("apply", "plan.json")
    declare.assert_clean_failure(result)
    assert "broker changed" in result.err, result
    assert f"queue 'intruder' (vhost {declare.vhost}) added" in result.err, result
    assert declare.names("queues") == {"intruder"}
    assert declare.names("exchanges") == set() and declare.names("policies") == set()


def test_saved_plan_refuses_a_changed_object_on_the_broker(declare: Any) -> None:
    """The plan was made against a broker with policy `limits` at 50; it is changed to 70
    before the apply: refused, naming the policy; the broker keeps 70."""
    vh = declare.quote(declare.vhost)
    declare.put(
        f"/api/policies/{vh}/limits",
        {"pattern": "^orders\\.", "apply-to": "queues", "definition": {"max-length": 50}},
    )
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("plan", f, "--out", "plan.json").code == 0
    declare.put(
        f"/api/policies/{vh}/limits",
        {"pattern": "^orders\\.", "apply-to": "queues", "definition": {"max-length": 70}},
    )
    result = declare("apply", "plan.json")
    declare.assert_clean_failure(result)
    assert f"policy 'limits' (vhost {declare.vhost}) changed" in result.err, result
    assert declare.policy("limits")["definition"] == {"max-length": 70}
    assert declare.names("queues") == set()


def test_saved_plan_refuses_changed_files(declare: Any) -> None:
    """A file edited after the plan: refused, naming the file; nothing written."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("plan", f, "--out", "plan.json").code == 0
    declare.edit(f, "max_priority: 5", "max_priority: 6")
    result = declare("apply", "plan.json")
    declare.assert_clean_failure(result)
    assert "files changed" in result.err and "topology.yml (changed)" in result.err, result
    assert declare.is_empty()


def test_saved_plan_holds_no_secret(declare: Any, secret_user: str) -> None:
    """Planned with a user whose password is unusual: the password (plain or URL-quoted)
    is nowhere in the plan file, nor the user's credentials in its target."""
    f = declare.write("topology.yml", TOPOLOGY)
    url = declare.url(user=secret_user, password=PASSWORD)
    result = declare(
        "plan",
        f,
        "--out",
        "plan.json",
        "--url",
        url,
        "--management-url",
        declare.broker.management_url,
        connect=False,
    )
    assert result.code == 0, result
    text = (declare.workdir / "plan.json").read_text("utf-8")
    assert PASSWORD not in text and QUOTED_PASSWORD not in text and "Zq9" not in text
    assert "@" not in _saved(declare)["broker"]["target"]
    applied = declare(
        "apply",
        "plan.json",
        "--url",
        url,
        "--management-url",
        declare.broker.management_url,
        connect=False,
    )
    assert applied.code == 0, applied


def test_saved_plan_with_conflicts_is_never_applied(declare: Any) -> None:
    """A conflict at plan time stays a conflict: `plan --out` exits 1, and `apply PLAN`
    writes nothing."""
    declare.put(
        f"/api/queues/{declare.quote(declare.vhost)}/orders.new",
        {"durable": True, "arguments": {"x-max-priority": 9}},
    )
    f = declare.write("topology.yml", TOPOLOGY)
    planned = declare("plan", f, "--out", "plan.json")
    assert planned.code == 1, planned
    result = declare("apply", "plan.json")
    assert result.code == 1, result
    assert declare.names("queues") == {"orders.new"} and declare.names("exchanges") == set()


def test_a_tampered_saved_plan_is_refused(declare: Any) -> None:
    """Someone edits the plan inside the file (files and broker unchanged): what would be
    applied is no longer what the files and broker give, so nothing is written."""
    f = declare.write("topology.yml", TOPOLOGY)
    assert declare("plan", f, "--out", "plan.json").code == 0
    saved = _saved(declare)
    saved["plan"]["changes"] = saved["plan"]["changes"][:1]
    (declare.workdir / "plan.json").write_text(json.dumps(saved), "utf-8")
    result = declare("apply", "plan.json")
    declare.assert_clean_failure(result)
    assert "differs from the saved one" in result.err, result
    assert declare.is_empty()
