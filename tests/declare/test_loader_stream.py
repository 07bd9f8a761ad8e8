"""Large files read entry by entry (issue 19: a 50 MB file in at most 8x its size).

The loader hands each entry of a file's ``exchanges``, ``queues`` and ``bindings`` to the
kinds' readers while libyaml parses it (``_loader._Sections``), instead of building the
whole file's values first. These tests pin that this changes nothing a user sees — the same
model, the same problems with the same lines, in the same order, the same warnings as the
whole-document read — and that the memory it saves stays saved.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from declare_amqp import _loader
from declare_amqp._model import Topology, table

# Each document streams at least one section; the comment says what else it exercises.
DOCUMENTS = {
    "plain": """\
vhost: billing
exchanges:
  - {name: email, type: topic, alternate_exchange: email.ae}
  - {name: email.ae, type: fanout}
queues:
  - name: email.high
    max_priority: 5
    bindings:
      - {exchange: email, routing_key: email.high}
      - exchange: email.ae
  - name: email.low
    type: quorum
    arguments: {x-delivery-limit: 5}
bindings:
  - {source: email, destination: email.ae, destination_type: exchange, routing_key: '#'}
""",
    "problems in every section, in an order of their own": """\
queues:
  - name: q1
    durabel: true
    bindings:
      - {exchange: x, routing_kye: a}
      - just a string
  - name: q2
    name: q2-again
    max_priority: lots
  - 17
exchanges:
  - {name: x}
  - {name: y, type: direct, alternate_exchange: z, arguments: {alternate-exchange: w}}
bindings:
  - {source: x, destination: q1, routing_key: a, binding_key: b}
  - {source: x}
vhost: [not, a, name]
colour: blue
""",
    "the vhost key after the lists": """\
queues:
  - {name: q1, bindings: [{exchange: x}]}
exchanges:
  - {name: x, type: direct}
vhost: late
""",
    "a list given twice": """\
queues:
  - {name: q1}
queues:
  - {name: q2}
""",
    "aliases": """\
exchanges:
  - &x {name: x, type: topic}
queues:
  - {name: q1, arguments: &args {x-max-length: 10}}
  - {name: q2, arguments: *args}
""",
    "YAML 1.1 values": """\
queues:
  - {name: on, durable: off, auto_delete: yes}
  - {name: '1:20', message_ttl: 1:20}
  - {name: q3, durable: no, arguments: {x-owner: null, x-flag: True}}
""",
    "a queue binding without a key, to a topic exchange": """\
exchanges:
  - {name: t, type: topic}
queues:
  - {name: q, bindings: [{exchange: t}, {exchange: amq.direct}]}
""",
    "not a list": """\
queues: {name: q}
exchanges: []
bindings:
""",
}


def _read(
    text: str, stream: bool, original: bool = False, vhost: str | None = None
) -> tuple[Topology, list[str]]:
    topology, problems = _loader._parse(text, "t.yml", vhost, "dflt", original, stream=stream)
    return topology, [str(p) for p in problems]


@pytest.mark.parametrize(("original", "vhost"), [(False, None), (True, None), (False, "over")])
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_streamed_read_is_the_whole_document_read(
    name: str, original: bool, vhost: str | None
) -> None:
    """The same model, problems (text, file:line, object, order) and warnings either way: in
    this project's format and the original tool's (``--config``), with ``--vhost`` too."""
    text = DOCUMENTS[name]
    streamed, streamed_problems = _read(text, stream=True, original=original, vhost=vhost)
    whole, whole_problems = _read(text, stream=False, original=original, vhost=vhost)
    assert streamed_problems == whole_problems
    assert streamed == whole
    assert [str(w) for w in streamed.warnings] == [str(w) for w in whole.warnings]
    for kind in ("exchanges", "queues", "bindings"):
        assert [o.location for o in getattr(streamed, kind)] == [
            o.location for o in getattr(whole, kind)
        ]


def test_the_problem_document_has_problems_in_every_section() -> None:
    """The comparison above is not vacuous: every streamed section reports something, and
    the sections' problems come in the whole read's order (bindings, queue bindings,
    exchanges, queues), not the file's."""
    _, problems = _read(DOCUMENTS["problems in every section, in an order of their own"], True)
    joined = "\n".join(problems)
    for expected in (
        "t.yml:15: binding: routing_key and binding_key disagree",
        "t.yml:5: binding of queue 'q1': unknown key 'routing_kye'",
        "t.yml:12: exchange 'x': missing required key 'type'",
        "t.yml:3: queue 'q1': unknown key 'durabel'",
        "t.yml:8: key 'name' appears twice in one mapping (first at line 7)",
    ):
        assert expected in joined
    order = [next(i for i, p in enumerate(problems) if f"t.yml:{n}:" in p) for n in (15, 5, 12, 3)]
    assert order == sorted(order)


def test_entries_are_handed_over_as_they_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain document is read through ``_Sections`` (each entry once); a document
    with aliases, or whose vhost comes after the lists, falls back to the whole read."""
    taken: list[tuple[str, int]] = []
    original_take = _loader._Sections.take

    def take(self: _loader._Sections, section: str, entry: Any, line: int, doc: Any) -> None:
        taken.append((section, line))
        original_take(self, section, entry, line, doc)

    monkeypatch.setattr(_loader._Sections, "take", take)
    topology, problems = _read(DOCUMENTS["plain"], stream=True)
    assert problems == []
    assert taken == [
        ("exchanges", 3),
        ("exchanges", 4),
        ("queues", 6),
        ("queues", 11),
        ("bindings", 15),
    ]
    assert [q.vhost for q in topology.queues] == ["billing", "billing"]
    late, _ = _read(DOCUMENTS["the vhost key after the lists"], stream=True)
    assert {o.vhost for o in (*late.queues, *late.exchanges, *late.bindings)} == {"late"}


def test_argument_tables_are_shared_and_read_only() -> None:
    """Equal tables of plain values are one object; a table refuses changes; 1, True and
    1.0 are different tables."""
    assert table({"x-max-priority": 5}) is table({"x-max-priority": 5})
    assert table({}) is table(None)
    assert table({"a": 1}) is not table({"a": True})
    assert type(table({"a": 1.0})["a"]) is float
    with pytest.raises(TypeError, match="read-only"):
        table({"a": 1})["a"] = 2  # type: ignore[index]
    nested = table({"a": [1, 2]})
    assert nested == {"a": [1, 2]} and nested is not table({"a": [1, 2]})


def _bench_like_file(path: Path, queues: int, exchanges: int) -> int:
    """A topology shaped like ``bench/topology_bench.py``'s (topic exchanges with a fanout
    alternate exchange, every second queue with a priority, one binding a queue); returns
    the number of objects."""
    lines = ["vhost: /", "exchanges:"]
    for e in range(exchanges):
        lines += [f"- name: bx.{e:03d}.ae", "  type: fanout"]
        lines += [f"- name: bx.{e:03d}", "  type: topic", f"  alternate_exchange: bx.{e:03d}.ae"]
    lines.append("queues:")
    for q in range(queues):
        lines.append(f"- name: bq.{q:04d}")
        if q % 2 == 0:
            lines.append("  max_priority: 5")
        lines += ["  bindings:", f"  - exchange: bx.{q % exchanges:03d}"]
        if q % 10 != 9:
            lines.append(f"    routing_key: bq.{q:04d}")
    path.write_text("\n".join(lines) + "\n")
    return 2 * exchanges + 2 * queues


def test_memory_per_object_stays_bounded(tmp_path: Path) -> None:
    """Loading a 0.7 MB file (17,600 objects) peaks at under 450 bytes an object and keeps
    under 330 (Python's allocations, tracemalloc; measured 313 and 267). Before issue 19's
    streaming it peaked at 3,813 (a 64 MiB read buffer; about 1,500 without it: the whole
    file's values built first) and kept 409: either regression fails this. The 50 MB file's
    8x target is its peak RSS, measured by ``bench/topology_bench.py --memory-file``; this
    is its broker-free guard."""
    path = tmp_path / "large.yml"
    objects = _bench_like_file(path, queues=8_000, exchanges=800)
    gc.collect()
    tracemalloc.start()
    try:
        topology, problems = _loader.read_unvalidated([str(path)])
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert problems == []
    assert len(topology.queues) + len(topology.exchanges) + len(topology.bindings) == objects
    assert peak / objects < 450, f"peak {peak / objects:.0f} bytes an object"
    assert kept / objects < 330, f"kept {kept / objects:.0f} bytes an object"
