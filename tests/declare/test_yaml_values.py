"""The loader's YAML values: the same as PyYAML's SafeLoader builds, plus the lines.

``_loader`` builds plain mappings, lists and strings itself (for speed, issue 22) and leaves
every other node to PyYAML's constructors; these tests pin that the values, the aliases, the
merge keys and the errors are what ``yaml.safe_load`` gives.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
import yaml

from declare_amqp import _loader, _yaml

DOCUMENTS = [
    "a: 1\nb: [x, 'y', \"z\"]\n",
    "n: null\nt: true\nf: off\ni: 0x1f\no: 0o17\nfl: 1.5e3\ninf: .inf\nd: 2024-01-02\n",
    "ts: 2024-01-02 03:04:05\nbin: !!binary aGVsbG8=\ns: !!str 5\nint_key: {1: one, 2.5: x}\n",
    "set: !!set {a, b}\nomap: !!omap [{a: 1}, {b: 2}]\npairs: !!pairs [{a: 1}, {a: 2}]\n",
    "base: &b {x: 1, y: [1, 2]}\nuse: *b\nmerged: {<<: *b, y: 3}\n",
    "base: &b {x: 1}\nmore: &m {z: 2}\nboth: {<<: [*b, *m], x: 9}\n",
    "- plain\n- 'quoted'\n- |\n  block\n  text\n- >-\n  folded\n  text\n- ''\n- ~\n",
    "key with spaces: value\n'': empty key\n~: null key\n",
    "",
    "# only a comment\n",
    "just a string",
    "[1, [2, [3, {a: [4]}]]]",
]


def plain(value: Any) -> Any:
    """``value`` as built-in types (the loader's mappings and lists are subclasses)."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("text", DOCUMENTS)
def test_values_are_safeloaders(text: str) -> None:
    """Every kind of scalar, tag and collection gives the value SafeLoader gives."""
    ours, duplicates = _yaml.yaml_value(text)
    assert duplicates == []
    try:
        expected = yaml.safe_load(text)
    except yaml.constructor.ConstructorError:  # a list as a mapping key: both refuse it
        with pytest.raises(yaml.constructor.ConstructorError):
            plain(ours)
        return
    assert plain(ours) == expected
    assert type(plain(ours)) is type(expected)


def test_complex_key_is_refused_like_safeloader() -> None:
    """A list as a mapping key is refused with the key's line, as SafeLoader refuses it, and
    says why in words (SafeLoader: "found unhashable key")."""
    text = "a: 1\n? [complex, key]\n: value\n"
    with pytest.raises(yaml.constructor.ConstructorError) as ours:
        _yaml.yaml_value(text)
    with pytest.raises(yaml.constructor.ConstructorError) as theirs:
        yaml.safe_load(text)
    assert theirs.value.problem == "found unhashable key"
    assert ours.value.problem == "a mapping key must be a plain value, not a list or mapping"
    assert ours.value.problem_mark is not None
    assert ours.value.problem_mark.line + 1 == 2


def test_alias_is_the_anchors_object_and_lines_are_kept() -> None:
    """An alias is the very object of its anchor (as in PyYAML); every mapping, key and list
    item keeps its line."""
    doc, _ = _yaml.yaml_value("base: &b\n  x: 1\nitems:\n  - *b\n  - y: 2\n")
    assert doc["items"][0] is doc["base"]
    assert doc.line == 1
    assert doc.key_lines == {"base": 1, "items": 3}
    assert doc["items"].item_lines[1] == 5
    assert doc["items"][1].line == 5


def test_merge_keys_keep_the_explicit_value_and_lines() -> None:
    """A key that overrides a merged one is not "declared twice"; two explicit ones are."""
    doc, duplicates = _yaml.yaml_value("b: &b {x: 1, y: 1}\nm:\n  <<: *b\n  y: 2\n")
    assert plain(doc["m"]) == {"x": 1, "y": 2}
    assert doc["m"].key_lines["y"] == 4
    assert duplicates == []
    _, duplicates = _yaml.yaml_value("b: &b {x: 1}\nm:\n  <<: *b\n  y: 2\n  y: 3\n")
    assert duplicates == [("y", 5, 4)]


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    _, duplicates = _yaml.yaml_value("a: 1\nb: 2\na: 3\n")
    assert duplicates == [("a", 3, 1)]


def test_recursive_alias_is_an_error_with_its_line() -> None:
    """A mapping that contains itself cannot be a topology; SafeLoader would build a cycle."""
    with pytest.raises(yaml.constructor.ConstructorError) as info:
        _yaml.yaml_value("a: &a\n  b: *a\n")
    assert "recursive" in str(info.value)


def test_collector_state_is_restored() -> None:
    """The loader pauses the cyclic collector while it builds, and restores it after, also
    after an error."""
    assert gc.isenabled()
    _yaml.yaml_value("a: [1, 2]\n")
    assert gc.isenabled()
    with pytest.raises(yaml.YAMLError):
        _yaml.yaml_value("a: [1, 2\n")
    assert gc.isenabled()
    gc.disable()
    try:
        _yaml.yaml_value("a: 1\n")
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("text", DOCUMENTS)
def test_events_and_node_tree_agree(text: str) -> None:
    """The values built straight from the parse events equal those built through the node
    tree, lines and duplicates included; what only the tree handles says so."""
    try:
        from_events = _yaml.read_yaml(text, "t.yml", nodes=False)
    except _yaml.NeedsNodes:
        assert any(mark in text for mark in ("&", "!!", "<<", "? [", "---")), text
        return
    from_nodes = _yaml.read_yaml(text, "t.yml", nodes=True)
    assert plain(from_events[0]) == plain(from_nodes[0])
    assert from_events[1] == from_nodes[1]
    lines = [
        (getattr(v, "line", None), getattr(v, "key_lines", None)) for v in _walk(from_events[0])
    ]
    assert lines == [
        (getattr(v, "line", None), getattr(v, "key_lines", None)) for v in _walk(from_nodes[0])
    ]


def _walk(value: Any) -> list[Any]:
    """Every mapping and list in ``value``, depth first."""
    found = []
    if isinstance(value, dict):
        found.append(value)
        for v in value.values():
            found += _walk(v)
    elif isinstance(value, list):
        found.append(value)
        for v in value:
            found += _walk(v)
    return found


def test_a_plain_topology_is_read_from_the_events() -> None:
    """A file without anchors, tags or merge keys never builds the node tree (its memory is
    what the events path saves); duplicates and lines are found there too."""
    text = (
        "vhost: v\nqueues:\n  - name: a\n    durable: true\n    name: b\n"
        "  - {name: c, max_priority: 5}\n"
    )
    doc, duplicates = _yaml.read_yaml(text, "t.yml", nodes=False)
    assert duplicates == [("name", 5, 3)]
    assert doc["queues"].item_lines == [3, 6]
    assert doc["queues"][1] == {"name": "c", "max_priority": 5}
    assert doc["queues"][0]["durable"] is True


@pytest.mark.parametrize(
    "text",
    ["a: &x 1\nb: *x\n", "a: !!str 1\n", "<<: {a: 1}\n", "? [a]\n: 1\n", "a: 1\n---\nb: 2\n"],
)
def test_what_only_the_node_tree_handles_goes_there(text: str) -> None:
    with pytest.raises(_yaml.NeedsNodes):
        _yaml.read_yaml(text, "t.yml", nodes=False)


def test_releasing_read_queues_keeps_every_object_and_line() -> None:
    """A file without aliases has its raw queues released as their specs are built; with
    an alias (read through the node tree) nothing is released, so a value a queue shares
    with a later section is still there. Both give every queue, binding and line."""
    plain = (
        "vhost: v\nqueues:\n  - name: a\n    arguments: {x-max-length: 5}\n"
        "    bindings: [{exchange: e, routing_key: a}]\n  - name: b\n"
        "exchanges:\n  - {name: e, type: direct}\n"
    )
    aliased = (
        "vhost: v\nqueues:\n  - name: a\n    arguments: &limits {x-max-length: 5}\n"
        "    bindings: [{exchange: e, routing_key: a}]\n  - name: b\n"
        "exchanges:\n  - {name: e, type: direct}\n"
        "policies:\n  - {name: p, pattern: '^a$', definition: *limits}\n"
    )
    for text in (plain, aliased):
        topology, problems = _loader._parse(text, "t.yml", None, "/")
        assert problems == []
        lines = [q.location.line if q.location else 0 for q in topology.queues]
        assert [(q.name, dict(q.arguments)) for q in topology.queues] == [
            ("a", {"x-max-length": 5}),
            ("b", {}),
        ]
        assert lines == [3, 6]
        assert [(b.source, b.destination, b.routing_key) for b in topology.bindings] == [
            ("e", "a", "a")
        ]
    topology, _ = _loader._parse(aliased, "t.yml", None, "/")
    assert [dict(p.definition) for p in topology.policies] == [{"x-max-length": 5}]
