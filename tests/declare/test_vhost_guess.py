"""The vhosts a plan reads before it parses its files (``_vhost_guess``): a guess from the
files' lines, used only when it names exactly the vhosts the parsed files name. Each case is
checked against the loader itself, so the guess and the parse cannot drift apart unnoticed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from declare_amqp._loader import read_unvalidated
from declare_amqp._vhost_guess import file_vhosts


def _parsed(paths: list[str], override: str | None, default: str) -> list[str]:
    topology, _ = read_unvalidated(paths, override, default)
    return topology.vhost_names()


@pytest.mark.parametrize(
    "text",
    [
        "vhost: billing\nqueues:\n  - name: q\n",
        "vhost: 'billing'  # the team's\nqueues:\n  - name: q\n",
        'vhost: "billing"\nexchanges:\n  - name: e\n    type: topic\n',
        "queues:\n  - name: q\n",  # the URL's vhost
        "vhost: a\nqueues:\n  - name: q\n  - name: r\n    vhost: b\n",
        "vhost: a\nqueues:\n  - vhost: b\n    name: r\n",
        "vhost: /\nqueues:\n  - name: q\n    arguments: {x-my-vhost: nothing}\n",
    ],
)
def test_the_guess_is_what_the_loader_reads(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.yml"
    path.write_text(text)
    guess = file_vhosts([str(path)], None, "from-url")
    assert guess == _parsed([str(path)], None, "from-url")


def test_the_override_replaces_the_files_vhost(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("vhost: billing\nqueues:\n  - name: q\n")
    assert file_vhosts([str(path)], "other", "/") == ["other"]
    assert _parsed([str(path)], "other", "/") == ["other"]


def test_several_files_each_with_its_vhost(tmp_path: Path) -> None:
    first, second = tmp_path / "a.yml", tmp_path / "b.yml"
    first.write_text("vhost: a\nqueues:\n  - name: q\n")
    second.write_text("vhost: b\nqueues:\n  - name: q\n")
    paths = [str(first), str(second)]
    assert file_vhosts(paths, None, "/") == ["a", "b"] == _parsed(paths, None, "/")


@pytest.mark.parametrize(
    "text",
    [
        "vhost:\n  billing\n",  # the value on the next line
        'vhost: "bill\\"ing"\n',  # an escape
        "vhost: &v billing\n",  # an anchor
        "vhost: {name: x}\n",  # a flow mapping
        "queues:\n  - name: q\n    vhost: *v\n",  # an alias
    ],
)
def test_what_needs_a_parser_is_not_guessed(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.yml"
    path.write_text(text)
    assert file_vhosts([str(path)], None, "/") is None


def test_definitions_and_missing_files_are_not_guessed(tmp_path: Path) -> None:
    definitions = tmp_path / "d.json"
    definitions.write_text('{"queues": [{"name": "q", "vhost": "x"}]}')
    assert file_vhosts([str(definitions)], None, "/") is None
    assert file_vhosts([str(tmp_path / "absent.yml")], None, "/") is None


def test_a_key_that_only_ends_in_vhost_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("vhost: a\nqueues:\n  - name: q\n    arguments:\n      x-vhost: b\n")
    assert file_vhosts([str(path)], None, "/") == ["a"]


def test_a_plan_reads_early_the_vhost_its_file_names(tmp_path: Path) -> None:
    """The URL names no vhost, the file does: the early read asks for the file's."""
    from declare_amqp import _cli
    from declare_amqp._cli_args import build_parser

    path = tmp_path / "t.yml"
    path.write_text("vhost: billing\nqueues:\n  - name: q\n")
    args = build_parser().parse_args(
        [
            "plan",
            "--url",
            "amqp://guest:guest@127.0.0.1:1",
            "--management-url",
            "http://127.0.0.1:1",
            str(path),
        ]
    )
    early = _cli.early_read(args)
    assert early is not None
    assert early.key == (("billing",), False)
    early.future.exception()  # nothing listens on port 1: the read fails, as it may
