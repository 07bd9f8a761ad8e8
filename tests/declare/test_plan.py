"""The pure planner: plan(desired, actual) -> changes, for every kind of change."""

from __future__ import annotations

import json

import pytest

from declare_amqp import (
    BindingSpec,
    ExchangeSpec,
    PolicySpec,
    QueueSpec,
    QueueStats,
    Topology,
    VhostSpec,
    parse_unvalidated,
    plan,
)
from declare_amqp._broker_json import from_definitions

EMAIL = """
vhost: /
exchanges:
  - {name: email, type: topic, alternate_exchange: email-undeliverable}
  - {name: email-undeliverable, type: fanout}
queues:
  - name: email.high
    bindings: [{exchange: email, routing_key: email.high}]
  - name: email.default
    max_priority: 5
    bindings:
      - {exchange: email, routing_key: email.default}
      - {exchange: email-undeliverable}
policies:
  - {name: ttl, pattern: '^email\\.', apply_to: queues, definition: {message-ttl: 1000}}
"""


def desired() -> Topology:
    return parse_unvalidated(EMAIL, "t.yml")


def live(**changes: object) -> Topology:
    """The broker holding exactly the EMAIL topology, as the management API reports it."""
    definitions = {
        "exchanges": [
            {
                "name": "email",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {"alternate-exchange": "email-undeliverable"},
            },
            {
                "name": "email-undeliverable",
                "type": "fanout",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            },
            {
                "name": "amq.topic",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            },
        ],
        "queues": [
            {"name": "email.high", "durable": True, "auto_delete": False, "arguments": {}},
            {
                "name": "email.default",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-max-priority": 5},
            },
        ],
        "bindings": [
            {
                "source": "email",
                "destination": "email.high",
                "destination_type": "queue",
                "routing_key": "email.high",
                "arguments": {},
            },
            {
                "source": "email",
                "destination": "email.default",
                "destination_type": "queue",
                "routing_key": "email.default",
                "arguments": {},
            },
            {
                "source": "email-undeliverable",
                "destination": "email.default",
                "destination_type": "queue",
                "routing_key": "",
                "arguments": {},
            },
        ],
        "policies": [
            {
                "name": "ttl",
                "pattern": "^email\\.",
                "apply-to": "queues",
                "definition": {"message-ttl": 1000},
                "priority": 0,
            },
        ],
    }
    for key, value in changes.items():
        definitions[key] = value  # type: ignore[assignment]
    return from_definitions("/", definitions)


def actions(p: object) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in p.changes]  # type: ignore[attr-defined]


def test_matching_broker_gives_an_empty_plan() -> None:
    """The same topology on both sides: nothing to do (also: amq.* on the broker is ignored)."""
    assert plan(desired(), live()).is_empty


def test_empty_broker_creates_everything_in_dependency_order() -> None:
    """Exchanges, then policies, then queues, then bindings."""
    p = plan(desired(), Topology(vhosts=(VhostSpec("/"),)))
    kinds = [c.kind for c in p.changes]
    assert kinds == ["exchange"] * 2 + ["policy"] + ["queue"] * 2 + ["binding"] * 3
    assert {c.action for c in p.changes} == {"create"}
    assert p.summary()["create"] == 8


def test_missing_vhost_is_created_first() -> None:
    d = parse_unvalidated("vhosts: [new]\nvhost: new\nqueues: [{name: q}]\n", "t.yml")
    p = plan(d, Topology())
    assert actions(p) == [("create", "vhost", "new"), ("create", "queue", "q")]


def test_changed_queue_argument_is_a_conflict_with_both_values() -> None:
    """x-max-priority cannot change: a conflict naming the file line and both values."""
    d = parse_unvalidated(EMAIL.replace("max_priority: 5", "max_priority: 7"), "t.yml")
    p = plan(d, live())
    assert actions(p) == [("conflict", "queue", "email.default")]
    (c,) = p.conflicts
    assert c.differences[0].field == "arguments.x-max-priority"
    assert (c.differences[0].before, c.differences[0].after) == (5, 7)
    assert "t.yml:9" in c.message and "5" in c.message and "7" in c.message


def test_argument_rabbitmq_does_not_compare_is_still_a_conflict() -> None:
    """rabbitmq-server#12346: the broker accepts a changed custom argument; we do not."""
    owned = "name: email.high\n    arguments: {x-owner: b}\n"
    d = parse_unvalidated(EMAIL.replace("name: email.high\n", owned), "t.yml")
    actual = live(
        queues=[
            {
                "name": "email.high",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-owner": "a"},
            },
            {
                "name": "email.default",
                "durable": True,
                "auto_delete": False,
                "arguments": {"x-max-priority": 5},
            },
        ]
    )
    (c,) = plan(d, actual).conflicts
    assert c.differences[0].field == "arguments.x-owner"


def test_conflict_on_a_policy_able_argument_suggests_a_policy() -> None:
    d = parse_unvalidated(
        EMAIL.replace("max_priority: 5", "max_priority: 5\n    message_ttl: 60000"), "t.yml"
    )
    (c,) = plan(d, live()).conflicts
    assert "message-ttl with a policy" in c.message


def test_queue_type_and_durability_changes_are_conflicts() -> None:
    d = parse_unvalidated(
        EMAIL.replace("name: email.high\n", "name: email.high\n    type: quorum\n"), "t.yml"
    )
    (c,) = plan(d, live()).conflicts
    assert [x.field for x in c.differences] == ["type"]
    d = parse_unvalidated(
        EMAIL.replace("name: email.high\n", "name: email.high\n    durable: false\n"), "t.yml"
    )
    (c,) = plan(d, live()).conflicts
    assert [x.field for x in c.differences] == ["durable"]


def test_explicit_classic_type_matches_a_queue_without_x_queue_type() -> None:
    """rabbitmq-common#341: x-queue-type classic is normalised away on both sides."""
    d = parse_unvalidated("queues: [{name: q, arguments: {x-queue-type: classic}}]", "t.yml")
    actual = from_definitions(
        "/", {"queues": [{"name": "q", "durable": True, "auto_delete": False, "arguments": {}}]}
    )
    assert plan(d, actual).is_empty
    actual = from_definitions(
        "/",
        {
            "queues": [
                {
                    "name": "q",
                    "durable": True,
                    "auto_delete": False,
                    "arguments": {"x-queue-type": "classic"},
                }
            ]
        },
    )
    assert plan(d, actual).is_empty


def test_exchange_type_change_is_a_conflict() -> None:
    d = parse_unvalidated(EMAIL.replace("type: fanout", "type: direct"), "t.yml")
    (c,) = plan(d, live()).conflicts
    assert c.kind == "exchange" and c.differences[0].field == "type"


def test_alternate_exchange_change_suggests_the_policy_key() -> None:
    d = parse_unvalidated(
        EMAIL.replace("alternate_exchange: email-undeliverable", "alternate_exchange: other"),
        "t.yml",
    )
    (c,) = plan(d, live()).conflicts
    assert "alternate-exchange with a policy" in c.message


def test_policy_change_is_an_update_in_place() -> None:
    d = parse_unvalidated(EMAIL.replace("message-ttl: 1000", "message-ttl: 2000"), "t.yml")
    p = plan(d, live())
    assert actions(p) == [("update", "policy", "ttl")]
    (c,) = p.changes
    assert c.to_dict()["before"] == {"definition": {"message-ttl": 1000}}
    assert c.to_dict()["after"] == {"definition": {"message-ttl": 2000}}


def test_new_binding_is_created_and_old_one_is_kept_without_prune() -> None:
    d = parse_unvalidated(
        EMAIL.replace("routing_key: email.high}", "routing_key: email.urgent}"), "t.yml"
    )
    p = plan(d, live())
    assert actions(p) == [("create", "binding", "email -> email.high [email.urgent]")]


def test_prune_deletes_undeclared_objects_in_reverse_order() -> None:
    d = parse_unvalidated("exchanges: [{name: email, type: topic}]\n", "t.yml")
    actual = live(
        policies=[],
        exchanges=[
            {
                "name": "email",
                "type": "topic",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            },
            {
                "name": "old",
                "type": "fanout",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            },
        ],
    )
    p = plan(d, actual, prune=True)
    kinds = [c.kind for c in p.changes]
    assert kinds == ["binding"] * 3 + ["queue"] * 2 + ["exchange"]
    assert all(c.action == "delete" for c in p.changes)
    assert ("delete", "exchange", "old") in actions(p)


def test_prune_never_touches_amq_exchanges_or_other_vhosts() -> None:
    d = parse_unvalidated("vhost: a\nqueues: [{name: q}]\n", "t.yml")
    other = from_definitions(
        "b",
        {"queues": [{"name": "elsewhere", "durable": True, "auto_delete": False, "arguments": {}}]},
    )
    mine = from_definitions(
        "a",
        {
            "queues": [{"name": "q", "durable": True, "auto_delete": False, "arguments": {}}],
            "exchanges": [
                {
                    "name": "amq.direct",
                    "type": "direct",
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
            ],
        },
    )
    actual = Topology(
        vhosts=mine.vhosts + other.vhosts,
        queues=mine.queues + other.queues,
        exchanges=mine.exchanges,
    )
    assert plan(d, actual, prune=True).is_empty


def test_prune_refuses_queues_with_messages_or_consumers_unless_forced() -> None:
    d = parse_unvalidated("queues: [{name: keep}]\n", "t.yml")
    actual = from_definitions(
        "/",
        {
            "queues": [
                {"name": "keep", "durable": True, "auto_delete": False, "arguments": {}},
                {"name": "busy", "durable": True, "auto_delete": False, "arguments": {}},
                {"name": "idle", "durable": True, "auto_delete": False, "arguments": {}},
            ]
        },
    )
    stats = {("/", "busy"): QueueStats(messages=12, consumers=1)}
    p = plan(d, actual, prune=True, stats=stats)
    assert sorted(actions(p)) == [("delete", "queue", "idle"), ("refuse", "queue", "busy")]
    assert "12 messages and 1 consumer" in p.refused[0].message
    forced = plan(d, actual, prune=True, force=True, stats=stats)
    assert {c.action for c in forced.changes} == {"delete"}


@pytest.mark.parametrize("action", ["create", "update", "delete", "conflict"])
def test_json_form_has_the_documented_keys(action: str) -> None:
    base = desired()
    if action == "create":
        p = plan(base, Topology(vhosts=(VhostSpec("/"),)))
    elif action == "update":
        p = plan(parse_unvalidated(EMAIL.replace("1000", "5"), "t.yml"), live())
    elif action == "delete":
        p = plan(parse_unvalidated("queues: [{name: email.high}]", "t.yml"), live(), prune=True)
    else:
        p = plan(
            parse_unvalidated(EMAIL.replace("max_priority: 5", "max_priority: 6"), "t.yml"), live()
        )
    doc = p.to_dict()
    assert doc["format"] == 1 and set(doc["summary"]) >= {"create", "update", "delete"}
    change = next(c for c in doc["changes"] if c["action"] == action)
    assert set(change) == {
        "action",
        "kind",
        "vhost",
        "name",
        "location",
        "before",
        "after",
        "message",
    }


def test_spec_equality_ignores_location() -> None:
    a = QueueSpec("/", "q", location=None)
    b = parse_unvalidated("queues: [{name: q}]", "x.yml").queues[0]
    assert a == b
    assert (
        ExchangeSpec("/", "e", "topic")
        == parse_unvalidated("exchanges: [{name: e, type: topic}]", "x.yml").exchanges[0]
    )
    assert (
        BindingSpec("/", "e", "q").key
        == parse_unvalidated("bindings: [{source: e, destination: q}]", "x.yml").bindings[0].key
    )
    assert (
        PolicySpec("/", "p", ".*", {"max-length": 1})
        == parse_unvalidated(
            "policies: [{name: p, pattern: '.*', definition: {max-length: 1}}]", "x.yml"
        ).policies[0]
    )


def test_action_and_kind_are_enums_that_stay_strings() -> None:
    """``Change.action`` and ``kind`` are ``Action`` / ``Kind`` (also when built from plain
    strings), compare equal to the strings, and the JSON form holds plain strings."""
    from declare_amqp import Action, Change, Kind, Plan

    c = Change("create", "queue", "/", "q", desired=QueueSpec("/", "q"))
    assert c.action is Action.CREATE and c.kind is Kind.QUEUE
    assert c.action == "create" and c.kind == "queue" and f"{c.kind:<6}|" == "queue |"
    assert {"create": 1}[c.action] == 1
    doc = c.to_dict()
    assert type(doc["action"]) is str and type(doc["kind"]) is str
    assert json.loads(json.dumps(doc))["action"] == "create"
    assert all(type(k) is str for k in Plan((c,)).summary())
    with pytest.raises(ValueError):
        Change("make", "queue", "/", "q")


def test_plan_order_follows_the_phases() -> None:
    """The plan lists changes in the order apply writes them (``_plan.PHASES``): creates
    vhost, exchange, policy, queue, binding; deletes binding, queue, policy, exchange."""
    from declare_amqp._plan import PHASES, apply_position

    d = parse_unvalidated(
        "vhosts: [v, new]\nvhost: v\nexchanges: [{name: e, type: topic}]\n"
        "policies: [{name: p, pattern: x, definition: {max-length: 1}}]\n"
        "queues: [{name: q, bindings: [{exchange: e}]}]\n",
        "t.yml",
    )
    live = parse_unvalidated(
        "vhosts: [v]\nvhost: v\nexchanges: [{name: e2, type: topic}]\n"
        "policies: [{name: p2, pattern: x, definition: {max-length: 1}}]\n"
        "queues: [{name: q2, bindings: [{exchange: e2}]}]\n",
        "live.yml",
    )
    p = plan(d, live, prune=True)
    assert [(c.action, c.kind) for c in p.changes] == [
        ("create", "vhost"),
        ("create", "exchange"),
        ("create", "policy"),
        ("create", "queue"),
        ("create", "binding"),
        ("delete", "binding"),
        ("delete", "queue"),
        ("delete", "policy"),
        ("delete", "exchange"),
    ]
    positions = [apply_position(c) for c in p.changes]
    assert positions == sorted(positions)
    assert [PHASES[i].writer for i, _ in positions] == [
        "management",
        "amqp",
        "management",
        "amqp",
        "amqp",
        "amqp",
        "amqp",
        "management",
        "amqp",
    ]
