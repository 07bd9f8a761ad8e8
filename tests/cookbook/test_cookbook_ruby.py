"""The cookbook's Ruby: syntax of every file, its minitest suite, and the YAML it renders.

No broker needed; ``ruby`` is required (these tests fail under CI when it is missing).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import COOKBOOK, Converge

RUBY_FILES = sorted(COOKBOOK.rglob("*.rb"))
MINITEST_SUMMARY = re.compile(
    r"^(\d+) runs, (\d+) assertions, (\d+) failures, (\d+) errors, (\d+) skips$", re.MULTILINE
)


def test_the_cookbook_has_ruby_files() -> None:
    """Pins that the syntax check below has something to check."""
    names = {p.relative_to(COOKBOOK).as_posix() for p in RUBY_FILES}
    assert {
        "metadata.rb",
        "attributes/default.rb",
        "recipes/default.rb",
        "recipes/email.rb",
        "resources/topology.rb",
    } <= names


@pytest.mark.parametrize("path", RUBY_FILES, ids=lambda p: p.relative_to(COOKBOOK).as_posix())
def test_ruby_syntax(ruby: str, path: Path) -> None:
    """Every .rb file of the cookbook passes ``ruby -c`` (with warnings on)."""
    proc = subprocess.run(
        [ruby, "-wc", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Syntax OK"
    assert proc.stderr == "", f"ruby warns:\n{proc.stderr}"


def test_minitest_suite(ruby: str) -> None:
    """The stub-Chef minitest suite runs at least one test and all of them pass."""
    proc = subprocess.run(
        [ruby, "-w", "test/all.rb"],
        cwd=COOKBOOK,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    summary = MINITEST_SUMMARY.findall(proc.stdout)
    assert len(summary) == 1, f"no minitest summary line:\n{output}"
    runs, assertions, failures, errors, skips = map(int, summary[0])
    assert proc.returncode == 0, output
    assert (failures, errors, skips) == (0, 0, 0), output
    assert runs > 0 and assertions >= runs, output


# Values whose YAML spelling another parser could read as something else.
TRICKY_VALUES: dict[str, Any] = {
    "yaml11_booleans": ["yes", "no", "on", "off", "y", "n", "true", "False", "Y", "NO"],
    "nulls": ["null", "~", "", "Null"],
    "numbers_as_strings": [
        "1_000",
        "0x1F",
        "0o17",
        "017",
        "1e3",
        "1.5",
        ".inf",
        "-.inf",
        ".nan",
        "12:30",
        "1:20:30",
        "+1",
        "0b101",
    ],
    "dates_as_strings": ["2026-01-01", "2026-01-01 10:00:00", "2026-01-01T10:00:00Z"],
    "syntax": [
        "#no comment",
        "key: value",
        "- dash",
        "*alias",
        "&anchor",
        "!tag",
        "@at",
        "`tick",
        "'single",
        '"double',
        "%percent",
        "{a: 1}",
        "[1, 2]",
        "a #b",
        "|",
        ">",
        "? q",
        " leading",
        "trailing ",
        "multi\nline\n",
        "tab\there",
        "back\\slash",
        "ünïcödé ✉",
    ],
    "real_numbers": [0, -1, 5, 100000, 2**63, 1.5, -0.25, 1e20, 1e-05],
    "real_booleans_and_null": [True, False, None],
    "empties": [[], {}],
    "yes": "keys that look like booleans stay strings too",
    "123": "and numeric-looking keys",
    "x-message-ttl": 60000,
}


def test_rendered_yaml_round_trips_through_python(converge: Converge) -> None:
    """The resource's YAML (Ruby's to_yaml of the node Hash) reads back in Python unchanged."""
    topology = {
        "exchanges": [{"name": "e", "type": "topic", "arguments": TRICKY_VALUES}],
        "policies": [{"name": "p", "pattern": r"^email\.dead$", "definition": {"max-length": 10}}],
    }
    report = converge(
        "declare_amqp::topologies",
        attributes={
            "declare_amqp": {"topologies": {"tricky": {"topology": topology, "vhost": "on"}}}
        },
    )
    assert report["error"] is None, report
    (rendered,) = [f for f in report["files"] if f["path"] == "/etc/declare-amqp/tricky.yml"]
    assert yaml.safe_load(rendered["content"]) == {"vhost": "on", **topology}


def test_email_example_renders_topology_example_yml(converge: Converge) -> None:
    """The cookbook's email example is the repository's topology.example.yml, object for object."""
    report = converge("declare_amqp::email")
    (rendered,) = report["files"]
    assert (rendered["path"], rendered["mode"], rendered["owner"], rendered["group"]) == (
        "/etc/declare-amqp/email.yml",
        "0600",
        "root",
        "root",
    )
    example = yaml.safe_load((COOKBOOK.parents[1] / "topology.example.yml").read_text())
    assert yaml.safe_load(rendered["content"]) == example
