"""Accounting for the fault suite: which message ids were published, confirmed, handled.

Every scenario publishes a known set of ids (``message_id`` = body = id) and records what
happened to each one. A ``Ledger`` turns that into one ``Row`` of the report:

- published:  ids the scenario tried to publish (each id counted once, re-sends included);
- confirmed:  ids the broker confirmed at least once;
- handled:    distinct ids a handler finished (before its ack);
- duplicates: handler runs beyond the first per id (at-least-once: allowed, counted);
- lost:       confirmed ids that no handler ever finished — must be 0.

Handlers in other processes (the ``kill -9`` and SIGTERM scenarios) append one id per line
to a file; ``Ledger.load_handled`` reads it back.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = ("scenario", "published", "confirmed", "handled", "duplicates", "lost", "notes")


@dataclass(frozen=True)
class Row:
    """One line of the fault report."""

    scenario: str
    published: int
    confirmed: int
    handled: int
    duplicates: int
    lost: int
    notes: str = ""


class Ledger:
    """Thread-safe record of one scenario's message ids."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self._lock = threading.Lock()
        self._published: dict[str, None] = {}  # insertion-ordered set
        self._confirmed: set[str] = set()
        self._handled: Counter[str] = Counter()
        self.notes: list[str] = []

    @staticmethod
    def ids(scenario: str, count: int) -> list[str]:
        """``count`` distinct message ids for ``scenario``."""
        return [f"{scenario}-{i:06d}" for i in range(count)]

    def published(self, message_id: str) -> None:
        with self._lock:
            self._published[message_id] = None

    def confirmed(self, message_id: str) -> None:
        with self._lock:
            self._confirmed.add(message_id)

    def handled(self, message_id: str) -> None:
        with self._lock:
            self._handled[message_id] += 1

    def load_handled(self, path: Path) -> int:
        """Add the ids that handlers in other processes appended to ``path``, one per line.

        A line is ``ID`` or ``ID redelivered``; returns how many lines said redelivered.
        """
        if not path.exists():
            return 0
        redelivered = 0
        for line in path.read_text().splitlines():
            fields = line.split()
            if fields:
                self.handled(fields[0])
                redelivered += "redelivered" in fields[1:]
        return redelivered

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ---- results --------------------------------------------------------------

    @property
    def published_ids(self) -> list[str]:
        with self._lock:
            return list(self._published)

    @property
    def confirmed_ids(self) -> set[str]:
        with self._lock:
            return set(self._confirmed)

    @property
    def handled_ids(self) -> set[str]:
        with self._lock:
            return set(self._handled)

    def handled_count(self) -> int:
        with self._lock:
            return len(self._handled)

    def lost_ids(self) -> list[str]:
        """Confirmed ids that were never handled."""
        with self._lock:
            return sorted(self._confirmed - set(self._handled))

    def unknown_ids(self) -> list[str]:
        """Handled ids that this scenario never published (would mean cross-talk)."""
        with self._lock:
            return sorted(set(self._handled) - set(self._published))

    def unconfirmed_ids(self) -> list[str]:
        with self._lock:
            return [i for i in self._published if i not in self._confirmed]

    def duplicates(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self._handled.values())

    def row(self) -> Row:
        with self._lock:
            handled = set(self._handled)
            return Row(
                scenario=self.scenario,
                published=len(self._published),
                confirmed=len(self._confirmed),
                handled=len(handled),
                duplicates=sum(n - 1 for n in self._handled.values()),
                lost=len(self._confirmed - handled),
                notes="; ".join(self.notes),
            )


# Rows of the scenarios that ran in this pytest session, in order; the terminal summary
# hook in conftest.py prints them and writes bench/faults_results.md.
RESULTS: list[Row] = []


def record(ledger: Ledger) -> Row:
    """Add ``ledger``'s row to the session report and return it."""
    row = ledger.row()
    RESULTS[:] = [r for r in RESULTS if r.scenario != row.scenario] + [row]
    return row


def render_markdown(rows: Iterable[Row]) -> str:
    """The rows as a Markdown table (the format of the README and bench/faults_results.md)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * 5 + ["---"]) + "|",
    ]
    for r in rows:
        cells = [
            r.scenario,
            str(r.published),
            str(r.confirmed),
            str(r.handled),
            str(r.duplicates),
            str(r.lost),
            r.notes.replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# Soak runs of this session (test_soak_broker.py): minutes, confirmed, acked, samples, declared_by.
SOAK: list[dict[str, Any]] = []


def render_soak(run: dict[str, Any]) -> str:
    """One soak run as Markdown: a line of totals and a table of samples over time."""
    lines = [
        f"{run['minutes']:g} minutes of the email example (topology applied by "
        f"{run['declared_by']}): {run['confirmed']} emails confirmed, {run['acked']:.0f} acked.",
        "",
        "| t (s) | acked so far | acks/s since last sample | worker RSS (MB) |",
        "|---:|---:|---:|---:|",
    ]
    for s in run["samples"]:
        lines.append(f"| {s['t']:.0f} | {s['acked']:.0f} | {s['rate']:.0f} | {s['rss_mb']:.1f} |")
    return "\n".join(lines) + "\n"
