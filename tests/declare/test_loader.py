"""Loading and validating topology files: every problem found, each with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

import declare_amqp
from declare_amqp import TopologyError, load, load_unvalidated, parse_unvalidated


def problems_of(text: str, tmp_path: Path, name: str = "t.yml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TopologyError) as info:
        load([str(path)])
    return [str(p).replace(f"{tmp_path}/", "") for p in info.value.problems]


def test_example_topology_loads_with_aliases_resolved() -> None:
    t = load(["topology.example.yml"])
    by_name = {q.name: q for q in t.queues}
    assert by_name["email.default"].arguments == {
        "x-max-priority": 5,
        "x-dead-letter-exchange": "email.dlx",
    }
    assert by_name["email.dead"].type == "quorum"
    email = next(x for x in t.exchanges if x.name == "email")
    assert email.alternate_exchange == "email-undeliverable"
    assert {(b.source, b.destination, b.routing_key) for b in t.bindings} == {
        ("email", "email.high", "email.high"),
        ("email", "email.default", "email.default"),
        ("email-undeliverable", "email.default", ""),
        ("email.dlx", "email.dead", ""),
    }
    (consumer,) = t.consumers
    assert [(q.queue, q.prefetch) for q in consumer.queues] == [
        ("email.high", 10),
        ("email.default", 2),
    ]


def test_every_object_keeps_its_line() -> None:
    t = parse_unvalidated(
        "queues:\n  - name: a\n  - name: b\n    bindings:\n      - exchange: x\n", "f.yml"
    )
    assert [str(q.location) for q in t.queues] == ["f.yml:2", "f.yml:3"]
    assert str(t.bindings[0].location) == "f.yml:5"


def test_unknown_key_suggests_the_close_one(tmp_path: Path) -> None:
    (p,) = problems_of("exchanges:\n  - name: e\n    type: topic\n    durabel: true\n", tmp_path)
    assert "t.yml:4" in p and "'durabel'" in p and "did you mean 'durable'" in p
    assert "exchange 'e'" in p


def test_wrong_types_and_missing_keys_are_all_reported(tmp_path: Path) -> None:
    found = problems_of(
        "exchanges:\n  - name: e\n  - name: f\n    type: topic\n    durable: 'yes'\n"
        "queues:\n  - name: q\n    max_priority: high\n",
        tmp_path,
    )
    assert len(found) == 3
    assert any("t.yml:2" in p and "missing required key 'type'" in p for p in found)
    assert any("t.yml:5" in p and "'durable' must be true or false" in p for p in found)
    assert any("t.yml:8" in p and "'max_priority' must be a whole number" in p for p in found)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    (p,) = problems_of("queues:\n  - name: a\n   bad: [\n", tmp_path)
    assert p.startswith("t.yml:3: not valid YAML")


def test_duplicate_key_in_one_mapping(tmp_path: Path) -> None:
    (p,) = problems_of("queues:\n  - name: a\n    name: b\n", tmp_path)
    assert "t.yml:3" in p and "appears twice" in p


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("queues: [{name: q, type: stream, durable: false}]", "stream queues must be durable"),
        (
            "queues: [{name: q, type: quorum, max_priority: 5}]",
            "max_priority (x-max-priority) is not supported by quorum queues",
        ),
        ("queues: [{name: q, type: stream, message_ttl: 5}]", "not supported by stream"),
        ("queues: [{name: q, max_priority: 256}]", "must be at most 255"),
        ("queues: [{name: q, queue_version: 3}]", "must be at most 2"),
        ("queues: [{name: q, type: stream, max_age: forever}]", "not in the expected form"),
        ("queues: [{name: q, max_priority: -1}]", "at least 0"),
        ("queues: [{name: q, dead_letter_routing_key: r}]", "needs dead_letter_exchange"),
        ("queues: [{name: amq.q}]", "reserved"),
        ("queues: [{name: q, type: lazy}]", "'type' must be one of classic, quorum, stream"),
        (
            "queues: [{name: q, arguments: {x-max-priority: '5'}}]",
            "argument x-max-priority must be a whole number",
        ),
        ("exchanges: [{name: e, type: topik}]", "unknown exchange type 'topik'"),
        ("bindings: [{source: '', destination: q}]", "default exchange cannot be bound"),
        (
            "policies: [{name: p, pattern: '(', definition: {max-length: 1}}]",
            "not a valid regular expression",
        ),
        (
            "policies: [{name: p, pattern: '.', definition: {max-lenght: 1}}]",
            "did you mean 'max-length'",
        ),
        (
            "policies: [{name: p, pattern: '.', definition: {max-priority: 1}}]",
            "cannot be set by a policy",
        ),
    ],
)
def test_semantic_rules(yaml_text: str, expected: str, tmp_path: Path) -> None:
    found = problems_of(yaml_text, tmp_path)
    assert any(expected in p for p in found), found
    assert all(p.startswith("t.yml:1") for p in found)


def test_files_are_merged_and_identical_duplicates_are_fine(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("exchanges: [{name: e, type: topic}]\nqueues: [{name: a}]\n")
    (tmp_path / "b.yml").write_text("exchanges: [{name: e, type: topic}]\nqueues: [{name: b}]\n")
    t = load_unvalidated([str(tmp_path / "a.yml"), str(tmp_path / "b.yml")])
    assert len(t.exchanges) == 1 and {q.name for q in t.queues} == {"a", "b"}


def test_same_object_declared_differently_names_both_places(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("exchanges: [{name: e, type: topic}]\n")
    (tmp_path / "b.yml").write_text("\nexchanges: [{name: e, type: fanout}]\n")
    with pytest.raises(TopologyError) as info:
        load_unvalidated([str(tmp_path / "a.yml"), str(tmp_path / "b.yml")])
    (p,) = info.value.problems
    assert str(p.location).endswith("b.yml:2") and "a.yml:1" in p.message


def test_original_declare_amqp_format_loads(tmp_path: Path) -> None:
    """All keys given, nested bindings with binding_key: the format of the original tool."""
    t = parse_unvalidated(
        "exchanges:\n"
        "  - {name: jobs, type: direct, durable: true, auto_delete: false}\n"
        "queues:\n"
        "  - name: work\n    durable: true\n    auto_delete: false\n"
        "    arguments: {x-max-priority: 3}\n"
        "    bindings:\n      - {exchange: jobs, binding_key: work}\n",
        "old.yml",
    )
    assert t.bindings[0].routing_key == "work"
    assert t.queues[0].arguments == {"x-max-priority": 3}


def test_vhost_override_and_default(tmp_path: Path) -> None:
    text = "vhost: prod\nqueues: [{name: a}, {name: b, vhost: other}]\n"
    t = parse_unvalidated(text, "t.yml")
    assert [q.vhost for q in t.queues] == ["prod", "other"]
    t = parse_unvalidated(text, "t.yml", vhost="test")
    assert [q.vhost for q in t.queues] == ["test", "other"]
    t = parse_unvalidated("queues: [{name: a}]", "t.yml", default_vhost="fallback")
    assert t.queues[0].vhost == "fallback"


def test_public_api_is_pinned() -> None:
    """Everything in __all__ exists, and nothing private leaks into it."""
    for name in declare_amqp.__all__:
        assert hasattr(declare_amqp, name), name
        assert not name.startswith("_") or name == "__version__"
    assert "plan" in declare_amqp.__all__ and "Session" in declare_amqp.__all__


def test_only_load_validates_and_the_names_say_so(tmp_path: Path) -> None:
    """``load`` validates; ``parse_unvalidated`` / ``load_unvalidated`` check syntax and keys
    only. The names before 0.2.1 (``parse``, ``load_files``) stay importable for callers."""
    text = "queues: [{name: q, type: quorum, durable: false}]"  # quorum must be durable
    path = tmp_path / "t.yml"
    path.write_text(text)
    assert parse_unvalidated(text, "t.yml").queues[0].durable is False
    assert load_unvalidated([str(path)]).queues[0].durable is False
    with pytest.raises(TopologyError, match="quorum queues must be durable"):
        load([str(path)])
    assert declare_amqp.parse is declare_amqp.parse_unvalidated
    assert declare_amqp.load_files is declare_amqp.load_unvalidated
    assert "parse" not in declare_amqp.__all__ and "load_files" not in declare_amqp.__all__


def test_an_object_in_several_files_must_be_declared_the_same_way(tmp_path: Path) -> None:
    """The same queue (and the same user) in two files: identical is one object; different
    settings are a problem at the second place naming the first, for topology and access alike."""
    a, b, c = tmp_path / "a.yml", tmp_path / "b.yml", tmp_path / "c.yml"
    a.write_text(
        "queues:\n  - {name: q, arguments: {x-max-priority: 5}}\n"
        "users:\n  - {name: app, tags: [management]}\n"
    )
    b.write_text("queues:\n  - {name: q, arguments: {x-max-priority: 5}}\n")
    c.write_text(
        "queues:\n  - {name: q, arguments: {x-max-priority: 9}}\n"
        "users:\n  - {name: app, tags: [monitoring]}\n"
    )
    same = load([str(a), str(b)])
    assert [q.name for q in same.queues] == ["q"]
    with pytest.raises(TopologyError) as caught:
        load([str(a), str(c)])
    found = sorted(str(p) for p in caught.value.problems)
    assert len(found) == 2
    assert found[0].startswith(f"{c}:2: queue 'q'")
    assert f"declared twice with different settings (also at {a}:2)" in found[0]
    assert found[1].startswith(f"{c}:4: user 'app'")
    assert f"(also at {a}:4)" in found[1]
