"""The simulator's rules one by one (``declare_amqp._simulate``, ``_routing``, ``_policy_choice``,
``_effective``), without a broker.

Each case is a rule of the server code the module cites; ``test_simulate_broker.py`` checks
the whole against a real broker on random topologies.
"""

from __future__ import annotations

import pytest

from declare_amqp._errors import Location
from declare_amqp._model import (
    Access,
    BindingSpec,
    ExchangeSpec,
    Expectation,
    PolicySpec,
    QueueSpec,
    Topology,
)
from declare_amqp._policy_choice import merge_definitions
from declare_amqp._routing import Message, headers_match, topic_matches
from declare_amqp._simulate import Simulator, after_apply, check_expectations, simulator_for
from declare_amqp.kinds.operator_policy import OperatorPolicySpec

V = "v"


def _topology(
    exchanges: list[tuple[str, str]] = (),  # type: ignore[assignment]
    queues: tuple[str, ...] = (),
    bindings: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    policies: tuple[PolicySpec, ...] = (),
    x_args: dict[str, dict[str, object]] | None = None,
    q_args: dict[str, dict[str, object]] | None = None,
    e2e: tuple[str, ...] = (),
    internal: tuple[str, ...] = (),
) -> Topology:
    x_args, q_args = x_args or {}, q_args or {}
    return Topology(
        exchanges=tuple(
            ExchangeSpec(V, n, t, internal=n in internal, arguments=x_args.get(n, {}))
            for n, t in exchanges
        ),
        queues=tuple(QueueSpec(V, n, arguments=q_args.get(n, {})) for n in queues),
        bindings=tuple(
            BindingSpec(V, s, d, "exchange" if d in e2e else "queue", k) for s, d, k in bindings
        ),
        policies=policies,
        named=(V,),
    )


@pytest.mark.parametrize(
    ("binding", "key", "matches"),
    [
        ("", "", True),
        ("#", "", True),
        ("*", "", False),  # the empty key has no words
        ("*", "a", True),
        ("*.*", ".", True),  # "." is two empty words
        ("a.*", "a.", True),  # '*' matches an empty word
        ("a.*", "a", False),
        ("a.#", "a", True),
        ("#.a", "a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.*.b", "a..b", True),
        ("a.*.b", "a.b", False),
        ("#.#", "a.b.c", True),
        ("a", "A", False),
        ("a.b", "a.b.c", False),
        ("", "a", False),
    ],
)
def test_topic_matching(binding: str, key: str, matches: bool) -> None:
    """rabbit_exchange_type_topic: words split on '.', '*' one word, '#' zero or more."""
    assert topic_matches(binding, key) is matches


@pytest.mark.parametrize(
    ("args", "headers", "matches"),
    [
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
        ({"x-match": "all", "a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "any", "a": 1, "b": "x"}, {"a": 1}, True),
        ({"x-match": "any", "a": 1}, {"a": 2}, False),
        ({"a": 1}, {"a": 1, "extra": 2}, True),  # no x-match: all
        ({"a": 1}, {"a": 1.0}, False),  # 4.0 on: the same kind of number (3.x: see below)
        ({"a": 1}, {"a": "1"}, False),
        ({"a": 1}, {"a": True}, False),
        ({"a": True}, {"a": True}, True),
        ({"a": None}, {"a": "anything"}, True),  # void: presence
        ({"a": None}, {}, False),
        ({"x-match": "all"}, {}, True),  # nothing left to match: all holds
        ({"x-match": "any"}, {"a": 1}, False),
        ({"x-match": "all", "x-k": 1}, {}, True),  # x- arguments ignored by all
        ({"x-match": "all-with-x", "x-k": 1}, {}, False),
        ({"x-match": "all-with-x", "x-k": 1}, {"x-k": 1}, True),
        ({"x-match": "any-with-x", "x-k": 1, "a": 2}, {"x-k": 1}, True),
        ({"x-match": "any", "x-k": 1}, {"x-k": 1}, False),
    ],
)
def test_headers_matching(
    args: dict[str, object], headers: dict[str, object], matches: bool
) -> None:
    """rabbit_exchange_type_headers:headers_match for every x-match kind and value type."""
    assert headers_match(args, headers) is matches


def test_numbers_compare_by_value_up_to_3x_and_by_kind_from_4_0() -> None:
    """Measured: a binding {a: 1.0} takes a message with header a: 1 on 3.10.8, not on 4.0.5."""
    t = Topology(
        exchanges=(ExchangeSpec(V, "h", "headers"),),
        queues=(QueueSpec(V, "q"),),
        bindings=(BindingSpec(V, "h", "q", arguments={"a": 1.0}),),
        named=(V,),
    )
    message = Message("h", "", {"a": 1})
    assert Simulator(t, version=(3, 10, 8)).route(V, message).queues == ("q",)
    assert Simulator(t, version=(4, 0, 5)).route(V, message).queues == ()
    assert Simulator(t).route(V, message).queues == ()


def test_alternate_exchange_only_when_no_destination_at_all() -> None:
    """process_alternate: an e2e binding that matches is a destination, even if that exchange
    routes nowhere, so the first exchange's alternate is not used."""
    t = _topology(
        exchanges=[("x", "direct"), ("y", "direct"), ("ae", "fanout")],
        queues=("q-ae", "q-y"),
        bindings=[("x", "y", "k"), ("ae", "q-ae", ""), ("y", "q-y", "other")],
        x_args={"x": {"alternate-exchange": "ae"}},
        e2e=("y",),
    )
    sim = Simulator(t)
    assert sim.route(V, Message("x", "k")).queues == ()
    assert sim.route(V, Message("x", "nope")).queues == ("q-ae",)


def test_alternate_chains_end_on_loops_and_missing_exchanges() -> None:
    """Every exchange routes at most once; a missing alternate exchange is skipped."""
    t = _topology(
        exchanges=[("a", "direct"), ("b", "direct"), ("c", "direct")],
        queues=("q",),
        bindings=[("c", "q", "k")],
        x_args={"a": {"alternate-exchange": "b"}, "b": {"alternate-exchange": "a"}},
    )
    assert Simulator(t).route(V, Message("a", "k")).queues == ()
    t2 = _topology(exchanges=[("a", "direct")], x_args={"a": {"alternate-exchange": "missing"}})
    assert Simulator(t2).route(V, Message("a", "k")).queues == ()


def test_alternate_exchange_from_policy_and_the_argument_wins() -> None:
    """rabbit_policy:get_arg: the exchange's argument before the policy's key."""
    policy = PolicySpec(V, "p", "^x$", {"alternate-exchange": "ae2"}, "exchanges")
    t = _topology(
        exchanges=[("x", "direct"), ("ae1", "fanout"), ("ae2", "fanout")],
        queues=("q1", "q2"),
        bindings=[("ae1", "q1", ""), ("ae2", "q2", "")],
        policies=(policy,),
    )
    assert Simulator(t).route(V, Message("x", "k")).queues == ("q2",)
    with_arg = _topology(
        exchanges=[("x", "direct"), ("ae1", "fanout"), ("ae2", "fanout")],
        queues=("q1", "q2"),
        bindings=[("ae1", "q1", ""), ("ae2", "q2", "")],
        policies=(policy,),
        x_args={"x": {"alternate-exchange": "ae1"}},
    )
    assert Simulator(with_arg).route(V, Message("x", "k")).queues == ("q1",)


def test_default_internal_missing_exchanges_and_cc() -> None:
    t = _topology(
        exchanges=[("x", "direct"), ("hidden", "fanout")],
        queues=("q1", "q2"),
        bindings=[("x", "q1", "k1"), ("x", "q2", "k2")],
        internal=("hidden",),
    )
    sim = Simulator(t)
    assert sim.route(V, Message("", "q2")).queues == ("q2",)
    assert sim.route(V, Message("", "nope")).queues == ()
    refused = sim.route(V, Message("hidden", ""))
    assert refused.refused is not None and "internal" in refused.refused
    missing = sim.route(V, Message("nowhere", ""))
    assert missing.refused is not None and "404" in missing.refused
    assert sim.route(V, Message("x", "k1", {"CC": ["k2"]})).queues == ("q1", "q2")
    bad = sim.route(V, Message("x", "k1", {"CC": "k2"}))
    assert bad.refused is not None and "CC" in bad.refused


def test_dead_letter_target_and_key() -> None:
    """The queue's argument wins over the policy (res_arg); the dead-letter routing key
    replaces the message's key; a missing exchange drops."""
    t = _topology(
        exchanges=[("x", "direct"), ("dlx", "direct"), ("dlx2", "topic")],
        queues=("q", "dead", "dead2", "r"),
        bindings=[("x", "q", "k"), ("dlx", "dead", "k"), ("dlx2", "dead2", "#"), ("x", "r", "r")],
        q_args={"q": {"x-dead-letter-exchange": "dlx"}, "r": {"x-dead-letter-routing-key": "zz"}},
        policies=(PolicySpec(V, "p", ".*", {"dead-letter-exchange": "dlx2"}, "queues"),),
    )
    route = Simulator(t).route(V, Message("x", "k"))
    d = route.dead_letter["q"]
    assert (d.exchange, d.routing_key, d.queues, d.exchange_source) == (
        "dlx",
        "k",
        ("dead",),
        "argument",
    )
    r = Simulator(t).route(V, Message("x", "r")).dead_letter["r"]
    assert (r.exchange, r.routing_key, r.queues, r.exchange_source) == (
        "dlx2",
        "zz",
        ("dead2",),
        "policy",
    )
    gone = _topology(
        exchanges=[("x", "direct")],
        queues=("q",),
        bindings=[("x", "q", "k")],
        q_args={"q": {"x-dead-letter-exchange": "nope"}},
    )
    lost = Simulator(gone).route(V, Message("x", "k")).dead_letter["q"]
    assert lost.exchange_missing and lost.queues == ()


def _queue_topology(qtype: str, *policies: PolicySpec) -> Topology:
    return Topology(
        queues=(QueueSpec(V, "q", qtype, arguments={"x-message-ttl": 500}),),
        policies=policies,
        named=(V,),
    )


def test_highest_priority_wins_and_ties_are_reported() -> None:
    low = PolicySpec(V, "low", "q", {"max-length": 1}, "queues", 1)
    high = PolicySpec(V, "high", "^q$", {"max-length": 2}, "all", 5)
    e = Simulator(_queue_topology("classic", low, high)).explain(V, "queue", "q")
    assert e.policy.chosen is high and e.policy.tie == ()
    twin = PolicySpec(V, "twin", ".*", {"max-length": 3}, "queues", 5)
    tied = Simulator(_queue_topology("classic", low, high, twin)).explain(V, "queue", "q")
    assert set(tied.policy.tie) == {"high", "twin"}
    assert tied.to_dict()["policy_tie"] == ["high", "twin"]


def test_apply_to_and_unsupported_keys_skip_a_policy() -> None:
    """A policy for exchanges, or with a key the queue type does not support, does not apply
    at all: the next one does (rabbit_policy:matches/3)."""
    exchanges_only = PolicySpec(V, "x", ".*", {"max-length": 1}, "exchanges", 9)
    quorum_key = PolicySpec(V, "qq", ".*", {"delivery-limit": 3}, "queues", 8)
    fallback = PolicySpec(V, "fallback", ".*", {"max-length": 7}, "queues", 1)
    e = Simulator(_queue_topology("classic", exchanges_only, quorum_key, fallback)).explain(
        V, "queue", "q"
    )
    assert e.policy.chosen is fallback
    reasons = {c.policy.name: c.reason for c in e.policy.candidates if not c.applies}
    assert "apply-to" in reasons["x"] and "delivery-limit" in reasons["qq"]
    assert (
        Simulator(_queue_topology("quorum", quorum_key, fallback))
        .explain(V, "queue", "q")
        .policy.chosen
        is quorum_key
    )
    per_type = PolicySpec(V, "cq", ".*", {"max-length": 2}, "quorum_queues", 9)
    assert (
        Simulator(_queue_topology("classic", per_type, fallback))
        .explain(V, "queue", "q")
        .policy.chosen
        is fallback
    )


def test_unsupported_keys_depend_on_the_version() -> None:
    """queue-leader-locator: ignored by classic queues on 3.10, supported on 4.0 (measured)."""
    p = PolicySpec(V, "p", ".*", {"queue-leader-locator": "balanced"}, "queues")
    old = Simulator(_queue_topology("classic", p), version=(3, 10, 8))
    new = Simulator(_queue_topology("classic", p), version=(4, 0, 5))
    assert old.explain(V, "queue", "q").policy.chosen is None
    assert new.explain(V, "queue", "q").policy.chosen is p


def test_operator_policy_merge_and_effective_sources() -> None:
    """merge_operator_definitions: the smaller number of policy and operator policy; then the
    queue's own argument (min for message-ttl on classic queues)."""
    policy = PolicySpec(V, "p", ".*", {"message-ttl": 1000, "max-length": 50, "expires": 9000})
    operator = OperatorPolicySpec(V, "o", ".*", {"max-length": 10, "expires": 99000}, "queues")
    sim = Simulator(_queue_topology("classic", policy), [operator])
    e = sim.explain(V, "queue", "q")
    assert e.operator_policy.chosen is operator
    assert e.effective_policy_definition == {"expires": 9000, "max-length": 10, "message-ttl": 1000}
    d = e.to_dict()
    assert d["policy"] == "p" and d["operator_policy"] == "o"
    assert d["effective"]["max-length"] == {
        "value": 10,
        "source": "operator_policy",
        "rule": "the smaller of policy and operator policy",
    }
    assert d["effective"]["expires"]["source"] == "policy"
    assert d["effective"]["message-ttl"] == {
        "value": 500,
        "source": "argument",
        "rule": "the smaller of argument and policy",
    }
    assert merge_definitions(None, {"max-length": 3}) == {"max-length": 3}


def test_expectations_offline_and_against_a_broker_state() -> None:
    t = _topology(exchanges=[("x", "direct")], queues=("q",), bindings=[("x", "q", "k")])
    good = Expectation(V, "x", "k", reaches=("q",), location=Location("t.yml", 3))
    bad = Expectation(V, "x", "other", reaches=("q",), location=Location("t.yml", 7))
    unknown = Expectation(V, "elsewhere", "k", reaches=(), location=Location("t.yml", 9))
    errors, notes = check_expectations(Simulator(t), [good, bad, unknown], offline=True)
    assert [str(p.location) for p in errors] == ["t.yml:7"]
    assert "expected q, but it reaches no queue (unroutable)" in errors[0].message
    assert [str(p.location) for p in notes] == ["t.yml:9"]
    # on the broker an extra binding (not in the files) also takes the message
    broker = _topology(
        exchanges=[("x", "direct")], queues=("q", "extra"), bindings=[("x", "extra", "k")]
    )
    after = simulator_for(after_apply(t, broker))
    errors, _ = check_expectations(after, [good], offline=False)
    assert len(errors) == 1 and "extra" in errors[0].message
    pruned = simulator_for(after_apply(t, broker, prune=True))
    assert check_expectations(pruned, [good], offline=False) == ([], [])


def test_simulator_for_uses_the_files_operator_policies() -> None:
    operator = OperatorPolicySpec(V, "o", ".*", {"max-length": 10}, "queues")
    t = Topology(
        queues=(QueueSpec(V, "q"),), access=Access(operator_policies=(operator,)), named=(V,)
    )
    assert simulator_for(t).explain(V, "queue", "q").operator_policy.chosen is operator


def test_policy_applicability_rows_come_from_the_versions_table() -> None:
    """max-in-memory-* policies stopped applying to classic queues in 4.0 (measured; a row of
    _versions.POLICY_APPLICABILITY_EDGES); an unknown version takes the newest rules."""
    p = PolicySpec(V, "p", ".*", {"max-in-memory-length": 5}, "queues")
    for version, applies in (((3, 10, 8), True), ((4, 0, 5), False), ((), False)):
        sim = Simulator(_queue_topology("classic", p), version=version)
        assert (sim.explain(V, "queue", "q").policy.chosen is p) is applies, version
    assert Simulator(_queue_topology("quorum", p)).explain(V, "queue", "q").policy.chosen is p
