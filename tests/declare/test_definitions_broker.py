"""Definitions JSON against the live broker (issue 11, part 3).

Files the broker itself exported (``GET /api/definitions/{vhost}``, and the cluster shape of
``GET /api/definitions`` cut down to the test's vhost) plan as a no-op against that broker
and apply into an empty vhost with the same result as the broker's own import
(``POST /api/definitions/{vhost}``) — except that a conflict, which the broker's import
silently keeps, stops the tool before it writes anything. ``export --format definitions``
writes the broker's format, which both the tool and the broker load.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from declare_support import RICH
from declare_support import comparable as _comparable


def _broker_definitions(declare: Any, vhost: str | None = None) -> dict[str, Any]:
    """The broker's own single-vhost export, as served (one line of JSON)."""
    with declare.broker.http() as http:
        response = http.get(f"/api/definitions/{declare.quote(vhost or declare.vhost)}")
        response.raise_for_status()
        return dict(response.json())


def _import(declare: Any, vhost: str, definitions: dict[str, Any]) -> None:
    """The broker's own import, waited for until every queue and binding is there."""
    with declare.broker.http() as http:
        http.post(f"/api/definitions/{declare.quote(vhost)}", json=definitions).raise_for_status()
    want = (len(definitions.get("queues", [])), len(definitions.get("bindings", [])))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d = declare.definitions(vhost)
        if (len(d["queues"]), len(d["bindings"])) >= want:
            return
        time.sleep(0.2)
    raise AssertionError(f"the broker's import into {vhost} did not finish")


def test_broker_export_plans_as_a_no_op_in_both_shapes(declare: Any) -> None:
    """The single-vhost export (one line, as the broker serves it) and the cluster shape
    (users, permissions and global parameters included) plan to nothing with --prune; the
    kinds the tool does not manage are named in a warning."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0
    (declare.workdir / "single.json").write_text(json.dumps(_broker_definitions(declare)))
    plan = declare("plan", "single.json", "--prune", "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out, plan

    with declare.broker.http() as http:
        everything = http.get("/api/definitions").json()
    mine = declare.vhost
    cluster = {
        **{k: v for k, v in everything.items() if not isinstance(v, list)},
        "users": [u for u in everything["users"] if u["name"] == declare.broker.user],
        "vhosts": [v for v in everything["vhosts"] if v["name"] == mine],
        "global_parameters": everything.get("global_parameters", []),
        **{
            kind: [o for o in everything[kind] if o.get("vhost") == mine]
            for kind in ("permissions", "queues", "exchanges", "bindings", "policies")
        },
    }
    (declare.workdir / "cluster.json").write_text(json.dumps(cluster, indent=2))
    plan = declare("plan", "cluster.json", "--prune", "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out, plan
    assert f"ignored: 1 users ({declare.broker.user})" in plan.err, plan
    assert "permissions" in plan.err and "password_hash" not in plan.text, plan
    assert cluster["users"][0]["password_hash"] not in plan.text, plan


@pytest.mark.broker_host
def test_rabbitmqctl_export_definitions_plans_as_a_no_op(declare: Any) -> None:
    """The file `rabbitmqctl export_definitions` writes (cluster shape, compact JSON, vhost
    limits and metadata), cut down to the test's vhost, plans to nothing with --prune.
    rabbitmqctl runs on the broker's host (in a container: through its exec)."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0
    output = declare.broker.ctl("export_definitions", "-", "--format", "json", "--silent")
    everything = json.loads(output[output.index("{") :])
    mine = declare.vhost
    cut = {
        **{k: v for k, v in everything.items() if not isinstance(v, list)},
        "vhosts": [v for v in everything["vhosts"] if v["name"] == mine],
        **{
            kind: [o for o in everything[kind] if o.get("vhost") == mine]
            for kind in ("queues", "exchanges", "bindings", "policies")
        },
    }
    assert len(cut["vhosts"]) == 1 and cut["queues"], cut
    (declare.workdir / "export.json").write_text(json.dumps(cut))
    plan = declare("plan", "export.json", "--prune", "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out, plan


def test_apply_into_an_empty_vhost_matches_the_brokers_own_import(
    declare: Any, other_vhost: str
) -> None:
    """The same single-vhost export applied by the tool into one empty vhost and imported by
    the broker into another: the two vhosts hold the same objects."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f, "--vhost", other_vhost).code == 0
    exported = _broker_definitions(declare, other_vhost)
    (declare.workdir / "defs.json").write_text(json.dumps(exported, indent=2))

    with declare.broker.http() as http:  # empty the other vhost, then let the broker import
        for q in exported["queues"]:
            http.delete(f"/api/queues/{declare.quote(other_vhost)}/{declare.quote(q['name'])}")
        for x in exported["exchanges"]:
            http.delete(f"/api/exchanges/{declare.quote(other_vhost)}/{declare.quote(x['name'])}")
        for p in exported["policies"]:
            http.delete(f"/api/policies/{declare.quote(other_vhost)}/{declare.quote(p['name'])}")
    assert declare.is_empty(other_vhost)
    _import(declare, other_vhost, exported)

    applied = declare("apply", "defs.json")
    assert applied.code == 0, applied
    assert _comparable(declare.definitions()) == _comparable(declare.definitions(other_vhost))


def test_conflict_the_brokers_import_ignores_stops_the_tool(declare: Any, other_vhost: str) -> None:
    """A queue with x-max-priority 5 on the broker and 7 in the definitions: the broker's
    import answers success and keeps 5 (rabbitmq-management#627); the tool reports the
    conflict at the file's line, exits 1 and writes nothing, not even the new queue."""
    definitions = {
        "queues": [
            {
                "name": "prio",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-max-priority": 7},
            },
            {"name": "fresh", "durable": True, "auto_delete": False, "arguments": {}},
        ],
        "exchanges": [],
        "bindings": [],
        "policies": [],
    }
    for vhost in (declare.vhost, other_vhost):
        declare.put(
            f"/api/queues/{declare.quote(vhost)}/prio",
            {"durable": True, "arguments": {"x-max-priority": 5}},
        )
    _import(declare, other_vhost, definitions)
    assert declare.queue_arguments("prio", other_vhost) == {"x-max-priority": 5}

    (declare.workdir / "defs.json").write_text(json.dumps(definitions, indent=2))
    result = declare("apply", "defs.json")
    assert result.code == 1, result
    assert "defs.json:3" in result.text and "x-max-priority" in result.text, result
    assert declare.names("queues") == {"prio"}
    assert declare.queue_arguments("prio") == {"x-max-priority": 5}


def test_export_format_definitions_loads_in_the_tool_and_the_broker(
    declare: Any, other_vhost: str
) -> None:
    """`export --format definitions` writes the broker's format: it plans to nothing against
    its broker, and the broker's own import rebuilds the same objects elsewhere."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0
    exported = declare(
        "export", "--vhost", declare.vhost, "--format", "definitions", "-o", "export.json"
    )
    assert exported.code == 0, exported
    doc = json.loads((declare.workdir / "export.json").read_text("utf-8"))
    assert doc["rabbitmq_definition_format"] == "single_virtual_host"
    assert {q["name"] for q in doc["queues"]} == declare.names("queues")
    plan = declare("plan", "export.json", "--prune", "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out, plan

    _import(declare, other_vhost, doc)
    assert _comparable(declare.definitions(other_vhost)) == _comparable(declare.definitions())


def test_yaml_and_definitions_mixed_conflict_writes_nothing(declare: Any) -> None:
    """A queue declared differently in a YAML file and a definitions file: an error naming
    both, exit 1, and the other objects are not created."""
    declare.write("a.yml", "queues:\n  - {name: shared, max_priority: 3}\n  - {name: only}\n")
    (declare.workdir / "b.json").write_text(
        json.dumps(
            {"queues": [{"name": "shared", "durable": True, "arguments": {"x-max-priority": 4}}]},
            indent=2,
        )
    )
    result = declare("apply", "a.yml", "b.json")
    declare.assert_clean_failure(result)
    assert "b.json:3" in result.err and "a.yml:2" in result.err, result
    assert declare.is_empty()


def test_prune_and_validate_take_definitions_files(declare: Any) -> None:
    """`validate` reads a definitions file without a broker; `apply --prune` with one deletes
    what it no longer holds, within its vhost only."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0
    exported = _broker_definitions(declare)
    exported["queues"] = [q for q in exported["queues"] if q["name"] != "fallback"]
    exported["bindings"] = [b for b in exported["bindings"] if b["destination"] != "fallback"]
    (declare.workdir / "defs.json").write_text(json.dumps(exported, indent=2))

    valid = declare("validate", "defs.json", connect=False)
    assert valid.code == 0 and "valid" in valid.out, valid

    pruned = declare("apply", "defs.json", "--prune")
    assert pruned.code == 0, pruned
    assert "fallback" not in declare.names("queues")
    assert "work.quorum" in declare.names("queues")
    again = declare("plan", "defs.json", "--prune", "--detailed-exitcode")
    assert again.code == 0, again


def test_export_format_definitions_of_two_vhosts_is_the_cluster_shape(
    declare: Any, other_vhost: str
) -> None:
    """With two --vhost, the export is the cluster shape (vhosts listed, each object naming
    its vhost), and plans to nothing with --prune."""
    f = declare.write("topology.yml", RICH)
    assert declare("apply", f).code == 0
    assert declare("apply", f, "--vhost", other_vhost).code == 0
    exported = declare(
        "export",
        "--vhost",
        declare.vhost,
        "--vhost",
        other_vhost,
        "--format",
        "definitions",
        "-o",
        "both.json",
    )
    assert exported.code == 0, exported
    doc = json.loads((declare.workdir / "both.json").read_text("utf-8"))
    assert doc["rabbitmq_definition_format"] == "cluster"
    assert [v["name"] for v in doc["vhosts"]] == [declare.vhost, other_vhost]
    assert {q["vhost"] for q in doc["queues"]} == {declare.vhost, other_vhost}
    plan = declare("plan", "both.json", "--prune", "--detailed-exitcode")
    assert plan.code == 0 and "No changes" in plan.out, plan
