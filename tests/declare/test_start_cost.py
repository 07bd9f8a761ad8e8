"""A command imports what it runs: a plan written to a pipe loads neither rich nor the
simulator, the graph, export, schema or saved-plan modules (issue 22: imports were half of a
no-op plan's CPU). ``LazyConsole`` answers "is this a terminal?" without rich when rich's
answer can only be no, and prints a plan exactly as rich's ``Console`` does.
"""

from __future__ import annotations

import io
import sys

import pytest
from import_probe import loaded_after
from rich.console import Console

from declare_amqp._model import QueueSpec
from declare_amqp._plan import CREATE, DELETE, Change, Plan
from declare_amqp._render import LazyConsole, print_plan

# Loaded only by the commands that use them (route, explain, graph, export, schema, apply PLAN).
NOT_AT_START = (
    "rich",
    "declare_amqp._simulate",
    "declare_amqp._routing",
    "declare_amqp._effective",
    "declare_amqp._inspect",
    "declare_amqp._graph",
    "declare_amqp._export",
    "declare_amqp._schema",
    "declare_amqp._saved_plan",
    "pika",
)

_NO_FORCING = (
    "import os\nfor name in ('FORCE_COLOR', 'TTY_COMPATIBLE'): os.environ.pop(name, None)\n"
)


def test_the_command_line_starts_without_what_a_plan_does_not_run() -> None:
    """Importing ``_cli`` (what every command pays) loads none of ``NOT_AT_START``, nor the
    model and planning modules, which a plan loads while its early read runs; the management
    client that read needs is there."""
    loaded = loaded_after("import declare_amqp._cli")
    assert "declare_amqp._cli" in loaded and "declare_amqp._management" in loaded
    assert loaded.isdisjoint(NOT_AT_START), sorted(loaded & set(NOT_AT_START))
    later = {"declare_amqp._model", "declare_amqp._plan", "declare_amqp._broker_json", "yaml"}
    assert loaded.isdisjoint(later), sorted(loaded & later)


def test_the_probe_sees_the_lazy_modules_when_a_command_loads_them() -> None:
    """The check can fail: the graph command's module does bring the simulator."""
    loaded = loaded_after("import declare_amqp._cli, declare_amqp._graph")
    assert "declare_amqp._simulate" in loaded


def test_a_plan_printed_to_a_pipe_loads_no_rich() -> None:
    """print_plan through the CLI's console on a non-TTY stream never imports rich."""
    statement = _NO_FORCING + (
        "import io, sys\n"
        "from declare_amqp._plan import Plan\n"
        "from declare_amqp._render import LazyConsole, print_plan\n"
        "sys.stdout = io.StringIO()\n"
        "print_plan(LazyConsole(), Plan((), vhosts=('v',)), 'broker')\n"
        "printed, sys.stdout = sys.stdout.getvalue(), sys.__stdout__\n"
        "assert printed.startswith('Plan for broker\\nNo changes.'), printed\n"
    )
    loaded = loaded_after(statement)
    assert "declare_amqp._render" in loaded
    assert not any(name == "rich" or name.startswith("rich.") for name in loaded)


def _plan() -> Plan:
    created = QueueSpec(vhost="v", name="q.[bold]new", arguments={"x-max-priority": 5})
    gone = QueueSpec(vhost="v", name="old\nforged")
    return Plan(
        (
            Change(CREATE, "queue", "v", created.name, desired=created),
            Change(DELETE, "queue", "v", gone.name, actual=gone),
        ),
        vhosts=("v",),
    )


def test_the_lazy_console_prints_a_plan_as_riches_console_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a pipe: the same text as rich's own console writing to that stream."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    expected = io.StringIO()
    print_plan(Console(file=expected, highlight=False, soft_wrap=True), _plan(), "broker")
    piped = io.StringIO()
    monkeypatch.setattr(sys, "stdout", piped)
    lazy = LazyConsole()
    assert lazy.is_terminal is False
    print_plan(lazy, _plan(), "broker")
    assert piped.getvalue() == expected.getvalue()
    assert "q.[bold]new" in piped.getvalue() and "old\\nforged" in piped.getvalue()


def test_a_forcing_variable_leaves_the_answer_to_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """FORCE_COLOR makes rich call a pipe a terminal: the lazy console asks rich then."""
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert LazyConsole().is_terminal is True
    monkeypatch.setenv("FORCE_COLOR", "")
    assert LazyConsole().is_terminal is False


def test_the_lazy_console_on_stderr_writes_to_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``stderr=True``: plain lines and rich's prints both go to stderr."""
    err, out = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    console = LazyConsole(stderr=True, no_color=True)
    console.file.write("plain\n")
    console.print("[yellow]warning:[/] styled")
    assert err.getvalue() == "plain\nwarning: styled\n" and out.getvalue() == ""


def test_a_plan_starts_reading_the_broker_before_importing_the_loader() -> None:
    """``_cli.main`` starts a plan's read right after parsing the arguments: neither the
    loader nor YAML nor the commands module is imported yet, so the read overlaps those
    imports as well as the parse. (Nothing listens on port 1: the read fails, as it may.)"""
    statement = (
        "import sys\n"
        "from declare_amqp import _cli\n"
        "seen = []\n"
        "class Recording(_cli.Prefetch):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        seen.append(sorted({'yaml', 'declare_amqp._loader', 'declare_amqp._commands'}"
        " & set(sys.modules)))\n"
        "        super().__init__(*args, **kwargs)\n"
        "_cli.Prefetch = Recording\n"
        "code = _cli.main(['plan', '--url', 'amqp://guest:guest@127.0.0.1:1/h',"
        " '--management-url', 'http://127.0.0.1:1', 'topology.example.yml'])\n"
        "assert code == 1, code\n"
        "assert seen == [[]], seen\n"
    )
    loaded = loaded_after(statement)
    assert "declare_amqp._loader" in loaded  # the files were parsed afterwards
