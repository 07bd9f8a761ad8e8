"""The command line's own rules, no broker: options before or after the command, and a
closed stdout (``declare-amqp schema | head``) is not reported as a bug."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from declare_amqp._cli_args import _VALUE_OPTIONS, COMMANDS, build_parser, command_in

EXE = Path(sys.executable).with_name("declare-amqp")


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "amqp://a/", "--tls-ca-file", "ca.pem", "--no-color", "plan", "f.yml"],
        ["plan", "--url", "amqp://a/", "--tls-ca-file", "ca.pem", "--no-color", "f.yml"],
        ["--url", "amqp://a/", "plan", "--tls-ca-file", "ca.pem", "--no-color", "f.yml"],
    ],
)
def test_common_options_count_before_and_after_the_command(argv: list[str]) -> None:
    """Before, an option given before the command was overwritten by the subcommand's default."""
    args = build_parser().parse_args(argv)
    assert (args.command, args.files) == ("plan", ["f.yml"])
    assert args.url == ["amqp://a/"]
    assert args.tls_ca_file == "ca.pem"
    assert args.no_color is True


def test_defaults_without_the_options() -> None:
    args = build_parser().parse_args(["apply", "f.yml"])
    assert (args.url, args.management_url, args.config) == ([], [], [])
    assert (args.no_color, args.strict, args.tls_ca_file, args.auth_mechanism) == (
        False,
        False,
        None,
        None,
    )


@pytest.mark.parametrize(
    "argv", [["--strict", "--config", "a.yml", "plan"], ["plan", "--strict", "--config", "a.yml"]]
)
def test_strict_and_config_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.strict, args.config) == (True, ["a.yml"])


def test_url_before_the_command_is_the_one_contacted(tmp_path: Path) -> None:
    """End to end: the unreachable address given before `plan` is the one the error names
    (before the fix the plan went to the default 127.0.0.1:5672)."""
    topology = tmp_path / "t.yml"
    topology.write_text("queues:\n  - name: q1\n")
    result = subprocess.run(
        [
            str(EXE),
            "--url",
            "amqp://app:s3cret-pw@127.0.0.1:1/x",
            "--management-url",
            "http://127.0.0.1:1",
            "plan",
            str(topology),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "127.0.0.1:1" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr


def test_a_closed_stdout_is_not_an_internal_error() -> None:
    """The reader's end of stdout is closed before the tool writes: exit 1, and no
    "internal error ... This is a bug" on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [str(EXE), "schema"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr


def test_command_in_knows_every_command_and_every_top_level_option_with_a_value() -> None:
    """``command_in`` reads the command before the parser is built, from its own lists: they
    must be the whole parser's, or a run builds the parser of the wrong command."""
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(COMMANDS) == set(sub.choices)
    valued = {
        option
        for action in parser._actions
        if action.nargs != 0 and action.option_strings
        for option in action.option_strings
        if option.startswith("--")
    }
    assert valued == _VALUE_OPTIONS
    for command in COMMANDS:
        assert command_in(["--url", command, command]) == command
        assert build_parser(command).parse_args([command, *_required(command)]).command == command


def _required(command: str) -> list[str]:
    return {"convert": ["--to", "quorum", "f.yml"], "explain": ["queue", "q"]}.get(command, [])
