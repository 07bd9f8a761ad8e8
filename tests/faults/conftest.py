"""Fixtures and the report of the fault suite.

Each scenario adds one row (``fault_ledger.record``); at the end of the session the table is
printed in the terminal summary and written to ``$FAULTS_REPORT`` (to refresh the tracked
``bench/faults_results.md``: ``FAULTS_REPORT=bench/faults_results.md``), else to a file under
``$TMPDIR``, so the tests leave a clone clean.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "cluster"))

import fault_ledger  # noqa: E402
from cluster_fixtures import START_SECONDS, cluster, cluster_vhost  # noqa: E402,F401

# The tracked report is rewritten only when asked (FAULTS_REPORT=bench/faults_results.md), so a
# clone stays clean after the tests; by default the table goes to the terminal and to a file
# outside the tree.
REPORT = Path(
    os.environ.get("FAULTS_REPORT")
    or Path(os.environ.get("TMPDIR", "/tmp")) / "declare-amqp-faults_results.md"
)


def _rabbitmq_version() -> str:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "version"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
        return out or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


SOAK_HEADING = "\n## Soak\n"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Scenarios 1-7 in order, then the cluster tests' rows (C1, C2).
    rows = sorted(fault_ledger.RESULTS, key=lambda r: (not r.scenario[0].isdigit(), r.scenario))
    soak = fault_ledger.SOAK
    if not rows and not soak:
        return
    previous = REPORT.read_text() if REPORT.exists() else ""
    faults_part, _, soak_part = previous.partition(SOAK_HEADING)
    command = "python -m pytest " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = (
        f"{when} on {platform.node()} ({os.cpu_count()} CPUs), "
        f"RabbitMQ {_rabbitmq_version()}, by `{command}`"
    )
    if rows:
        table = fault_ledger.render_markdown(rows)
        terminalreporter.section("fault suite: every confirmed message must be handled")
        terminalreporter.write(table)
        if START_SECONDS:
            terminalreporter.write_line(f"cluster start: {START_SECONDS[0]:.1f} s")
        faults_part = (
            "# Fault suite results\n\n"
            f"Measured {where}.\n\n"
            "Each scenario publishes a known set of message ids with publisher confirms. "
            "published = ids sent (re-sends counted once), confirmed = ids the broker confirmed, "
            "handled = distinct ids a handler finished, duplicates = extra handler runs "
            "(at-least-once), lost = confirmed but never handled (asserted 0). Rows starting "
            "with C come from tests/cluster.\n\n" + table
        )
    if soak:
        text = "\n".join(fault_ledger.render_soak(run) for run in soak)
        terminalreporter.section("soak")
        terminalreporter.write(text)
        soak_part = f"Measured {where}.\n\n" + text
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        faults_part.rstrip("\n") + "\n" + (SOAK_HEADING + soak_part if soak_part else "")
    )
    terminalreporter.write_line(f"written to {REPORT}")
