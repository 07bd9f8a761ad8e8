"""``declare-amqp graph``: Mermaid and DOT of a topology, every object named, and the picture
the README shows (docs/topology.dot and .svg, made by docs/topology.sh) kept current."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from declare_amqp import load
from declare_amqp._cli import main
from declare_amqp._graph import graph

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "topology.example.yml")


def _dot_binary() -> str:
    found = shutil.which("dot")
    if found is None:
        reason = "Graphviz is not installed (tests/run.sh installs Debian's graphviz)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _svg_texts(svg: str) -> list[str]:
    """The text of every label in an SVG Graphviz made (it writes '-' as &#45;)."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def _names(topology_path: str) -> set[str]:
    t = load([topology_path])
    return (
        {x.name for x in t.exchanges} | {q.name for q in t.queues} | {c.name for c in t.consumers}
    )


def test_mermaid_names_every_object_and_edge_kind() -> None:
    text = graph(load([EXAMPLE]))
    assert text.startswith("flowchart LR\n")
    for name in _names(EXAMPLE):
        assert f'"{name}' in text, name
    assert '-->|"email.high"|' in text  # a binding with its key
    assert '-.->|"alternate"|' in text
    assert '-.->|"dead letters"|' in text
    assert '==>|"prefetch 10"|' in text
    assert '-.->|"retry 30 s"|' in text


def test_dot_of_the_example_renders_with_graphviz(tmp_path: Path) -> None:
    """The issue's bar: `graph --format dot` of the example renders with `dot -Tsvg`, every
    object named in the picture."""
    dot = _dot_binary()
    source = tmp_path / "t.dot"
    assert main(["graph", "--format", "dot", EXAMPLE, "-o", str(source)]) == 0
    svg = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, check=True
    ).stdout
    texts = set(_svg_texts(svg))
    missing = _names(EXAMPLE) - texts
    assert not missing, missing
    assert {"email.high", "alternate", "prefetch 2"} <= texts


def test_labels_are_escaped(tmp_path: Path) -> None:
    f = tmp_path / "q.yml"
    f.write_text(
        'vhost: "v\\"1"\nexchanges:\n  - {name: "ex\\"q", type: headers}\n'
        'queues:\n  - name: q\n    bindings:\n      - exchange: "ex\\"q"\n'
        '        arguments: {x-match: any, kind: "a\\"b"}\n'
    )
    t = load([str(f)])
    assert '"' not in graph(t).split("ex", 1)[1].split("<br/>")[0].replace('"}}', "")
    dot_text = graph(t, "dot")
    assert 'label="ex\\"q\\n(headers)"' in dot_text
    assert 'kind=a\\"b' in dot_text
    if shutil.which("dot"):
        subprocess.run(["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, check=True)


def test_the_readme_picture_is_current() -> None:
    """docs/topology.dot is what the tool prints now, and docs/topology.svg shows the same
    labels as a fresh rendering of it (coordinates may differ between Graphviz versions).
    Regenerate both with `bash docs/topology.sh`."""
    committed = (ROOT / "docs" / "topology.dot").read_text("utf-8")
    assert committed == graph(load([EXAMPLE]), "dot"), "run: bash docs/topology.sh"
    dot = _dot_binary()
    fresh = subprocess.run(
        [dot, "-Tsvg"], input=committed, capture_output=True, text=True, check=True
    ).stdout

    committed_svg = (ROOT / "docs" / "topology.svg").read_text("utf-8")
    assert sorted(_svg_texts(committed_svg)) == sorted(_svg_texts(fresh))
