"""The registry of kinds (``declare_amqp.kinds``): the topology kinds in the apply order, each
kind's key table read by the loader and the JSON schema, and how far a kind reaches into the
rest of the package (the witness of issue 17: topic permissions)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from declare_amqp import TopologyError, json_schema, parse_unvalidated
from declare_amqp._model import Topology
from declare_amqp._plan import PHASES, Kind
from declare_amqp._planning import plan
from declare_amqp.kinds import (
    ACCESS_KINDS,
    KINDS,
    TOP_KEYS,
    TOPOLOGY_KINDS,
    TopologyKind,
    topology_kind_of,
)

PACKAGE = Path(__file__).resolve().parents[2] / "declare_amqp"


def test_the_registry_lists_the_topology_kinds_in_the_apply_order() -> None:
    """kinds.TOPOLOGY_KINDS is the order PHASES creates the topology kinds in; every kind's
    list is a top-level key of a file once, and a field of Topology."""
    created = [
        kind
        for phase in PHASES
        if not phase.deletes
        for kind in phase.kinds
        if kind in (Kind.VHOST, Kind.EXCHANGE, Kind.POLICY, Kind.QUEUE, Kind.BINDING)
    ]
    assert [k.kind for k in TOPOLOGY_KINDS] == list(dict.fromkeys(created))
    top = [k.name for k in TOP_KEYS]
    fields = {f.name for f in dataclasses.fields(Topology)}
    for kind in TOPOLOGY_KINDS:
        assert top.count(kind.key) == 1, kind.key
        assert kind.key in fields, kind.key
        assert topology_kind_of(kind.kind) is kind
    assert list(KINDS) == [*TOPOLOGY_KINDS, *ACCESS_KINDS]


@pytest.mark.parametrize("kind", [k for k in TOPOLOGY_KINDS if k.schema_name], ids=str)
def test_each_kind_key_table_is_what_the_loader_and_the_schema_read(
    kind: TopologyKind[Any],
) -> None:
    """An unknown key in an entry of the kind is refused by the loader naming exactly the
    kind's keys, and the JSON schema's definition of the kind has the same keys."""
    names = [k.name for k in kind.keys]
    assert list(json_schema()["$defs"][kind.schema_name]["properties"]) == names
    text = f"{kind.key}:\n  - {{bogus_key: 1}}\n"
    with pytest.raises(TopologyError) as info:
        parse_unvalidated(text, "t.yml")
    (problem,) = [p for p in info.value.problems if "unknown key 'bogus_key'" in p.message]
    assert problem.message.endswith("allowed: " + ", ".join(names))
    assert str(problem.location) == "t.yml:2"


def test_a_policy_differs_in_place_and_an_exchange_conflicts() -> None:
    """The kinds' ``mutable``: the same difference is an update of a policy and a conflict
    of an exchange; a binding (all fields its identity) is never updated."""
    files = parse_unvalidated(
        "exchanges: [{name: x, type: direct}]\n"
        "queues: [{name: q, bindings: [{exchange: x, routing_key: a}]}]\n"
        "policies: [{name: p, pattern: '^q', definition: {max-length: 5}}]\n",
        "t.yml",
    )
    broker = parse_unvalidated(
        "exchanges: [{name: x, type: fanout}]\n"
        "queues: [{name: q, bindings: [{exchange: x, routing_key: b}]}]\n"
        "policies: [{name: p, pattern: '^q', definition: {max-length: 6}}]\n",
        "broker.yml",
    )
    found = {(c.kind.value, c.action.value, c.name) for c in plan(files, broker).changes}
    assert found == {
        ("exchange", "conflict", "x"),
        ("policy", "update", "p"),
        ("binding", "create", "x -> q [a]"),
    }


_WITNESS = re.compile(r"TopicPermission|topic_permission")


def test_a_kind_lives_in_its_module_the_registry_and_the_client() -> None:
    """Issue 17's witness: the identifiers of topic permissions appear in at most three
    production modules: the kind's own, the registry and the management client."""
    found = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if _WITNESS.search(path.read_text("utf-8"))
    )
    assert found == ["_management.py", "kinds/__init__.py", "kinds/topic_permission.py"]


def test_a_topology_kind_key_table_is_named_in_its_own_module_only() -> None:
    """Each topology kind's YAML key table lives in its kinds/ module, and every other module
    reads it through the kind (``kind.keys``); only the queue kind names the table of the
    bindings nested in a queue, for its schema."""
    owners = {
        "VHOST_KEYS": {"kinds/vhost.py"},
        "EXCHANGE_KEYS": {"kinds/exchange.py"},
        "QUEUE_KEYS": {"kinds/queue.py"},
        "BINDING_KEYS": {"kinds/binding.py"},
        "QUEUE_BINDING_KEYS": {"kinds/binding.py", "kinds/queue.py"},
        "POLICY_KEYS": {"kinds/policy.py"},
    }
    sources = {str(p.relative_to(PACKAGE)): p.read_text("utf-8") for p in PACKAGE.rglob("*.py")}
    for table, expected in owners.items():
        named = {path for path, text in sources.items() if re.search(rf"\b{table}\b", text)}
        assert named == expected, table
