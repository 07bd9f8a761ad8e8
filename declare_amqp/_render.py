"""How plans and results look: text for reviewers (colour on a terminal), JSON for tools.

rich is imported only for styled output: a plan written to a pipe or a file (CI) never loads
it (its import is 40-50 ms of a no-op plan's start; issue 22). ``LazyConsole`` is the command
line's console; ``print_plan`` takes it or rich's own ``Console``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any, Protocol

from ._errors import printable
from ._plan import CONFLICT, CREATE, DELETE, MIGRATE, REFUSE, UPDATE, Change, Plan, describe

if TYPE_CHECKING:
    from rich.console import Console


def escape(text: str) -> str:
    """rich's markup escape (rich is imported on first use: only styled output calls this)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Screen(Protocol):
    """What printing a plan needs of a console: rich's ``Console`` or a ``LazyConsole``."""

    @property
    def is_terminal(self) -> bool:
        """Whether output is styled for a terminal."""

    @property
    def no_color(self) -> bool:
        """Whether colour is off (``--no-color``, ``NO_COLOR``)."""

    @property
    def file(self) -> IO[str]:
        """The stream plain lines are written to."""

    def print(self, *objects: Any, soft_wrap: bool | None = None) -> None:
        """Print rich markup."""


# The variables with which rich may call a stream that is not a TTY a terminal.
_FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE")


class LazyConsole:
    """rich's ``Console`` for the command line, made (and rich imported) only when needed.

    ``is_terminal`` answers without rich when the stream is no TTY and none of the variables
    that make rich treat a pipe as a terminal is set: rich's own answer then is False too.
    """

    def __init__(self, *, stderr: bool = False, no_color: bool = False) -> None:
        """The arguments of rich's ``Console`` that differ between stdout and stderr."""
        self._stderr = stderr
        self._no_color = no_color
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        """rich's console (made on first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                stderr=self._stderr, no_color=self._no_color, highlight=False, soft_wrap=True
            )
        return self._console

    def _stream(self) -> IO[str]:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        """rich's ``Console.is_terminal``, without rich for a plain pipe or file."""
        if self._console is None and not any(name in os.environ for name in _FORCING):
            isatty = getattr(self._stream(), "isatty", None)
            try:
                tty = bool(isatty is not None and isatty())
            except ValueError:  # a closed stream
                tty = False
            if not tty:
                return False
        return self.console.is_terminal

    @property
    def no_color(self) -> bool:
        """rich's ``Console.no_color``."""
        return self.console.no_color

    @property
    def file(self) -> IO[str]:
        """The stream written to (rich's, once it is made)."""
        return self._stream() if self._console is None else self._console.file

    def print(self, *objects: Any, **options: Any) -> None:
        """rich's ``Console.print``."""
        self.console.print(*objects, **options)


_SIGN = {
    CREATE: ("+", "green"),
    UPDATE: ("~", "yellow"),
    DELETE: ("-", "red"),
    CONFLICT: ("!", "bold red"),
    REFUSE: ("!", "magenta"),
    MIGRATE: (">", "cyan"),
}


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def _details(change: Change) -> str:
    spec = change.spec
    props = describe(spec)
    if change.kind == "exchange":
        flags = [props["type"]]
        flags += [k for k in ("auto_delete", "internal") if props[k]]
        flags += [] if props["durable"] else ["transient"]
        flags += [f"{k}={_value(v)}" for k, v in sorted(props["arguments"].items())]
        return ", ".join(flags)
    if change.kind == "queue":
        flags = [props["type"]]
        flags += ["auto_delete"] if props["auto_delete"] else []
        flags += [] if props["durable"] else ["transient"]
        flags += [f"{k}={_value(v)}" for k, v in sorted(props["arguments"].items())]
        return ", ".join(flags)
    if change.kind == "policy":
        definition = ", ".join(f"{k}={_value(v)}" for k, v in sorted(props["definition"].items()))
        return (
            f"/{props['pattern']}/ on {props['apply_to']}, priority {props['priority']}: "
            f"{definition}"
        )
    shown = getattr(spec, "shown", None)  # the access objects describe themselves
    return shown if isinstance(shown, str) else ""


def _line(change: Change, markup: bool) -> list[str]:
    """A change's plan lines (one, or a migration's several); with ``markup`` in rich
    markup (colour), else plain text."""

    def styled(style: str, text: str) -> str:
        return f"[{style}]{escape(text)}[/]" if markup else text

    sign, style = _SIGN[change.action]
    head = styled(style, f"{sign} {change.kind:<8} {change.name}")
    where = "  " + styled("dim", f"({change.location})") if change.location else ""
    if change.action in (CREATE, DELETE):
        details = _details(change)
        if change.message:
            details = f"{details}; {change.message}" if details else change.message
        return [f"  {head}" + ("  " + styled("dim", details) if details else "") + where]
    if change.action == UPDATE:
        diffs = "; ".join(
            "password (changed)"
            if d.field == "password"  # never a value
            else f"{d.field}: {_value(d.before)} -> {_value(d.after)}"
            for d in change.differences
        )
        return [f"  {head}  {escape(diffs) if markup else diffs}{where}"]
    if change.action == MIGRATE:
        return _migrate_lines(change, head, where, markup)
    label = "conflict:" if change.action == CONFLICT else "refused:"
    message = escape(change.message) if markup else change.message
    return [f"  {head}  {styled(style, label)} {message}{where}"]


def _migrate_lines(change: Change, head: str, where: str, markup: bool) -> list[str]:
    """A migration: what changes and its counts, then its steps and limits, one a line
    (each printed on its own: a name's "\n" inside one is escaped, never a line break)."""
    diffs = "; ".join(
        f"{d.field}: {_value(d.before)} -> {_value(d.after)}" for d in change.differences
    )
    lines = [f"  {head}  {escape(diffs) if markup else diffs}{where}"]
    migration = change.migration or {}
    texts = [change.message]
    if migration.get("mover_text"):
        texts.append(f"moved by: {migration['mover_text']}")
    texts += [f"step {n}. {s}" for n, s in enumerate(migration.get("steps", ()), 1)]
    texts += [f"limit: {text}" for text in migration.get("limits", ())]
    for text in texts:
        lines.append("      " + (f"[dim]{escape(text)}[/]" if markup else text))
    return lines


def summary_line(plan: Plan) -> str:
    """`Plan: 3 to create, 1 to update, 0 to delete.` plus conflicts and refusals."""
    s = plan.summary()
    text = f"{s[CREATE]} to create, {s[UPDATE]} to update, {s[DELETE]} to delete"
    if s[CONFLICT]:
        text += f", {s[CONFLICT]} conflict{'s' if s[CONFLICT] != 1 else ''}"
    if s[REFUSE]:
        text += f", {s[REFUSE]} refused"
    if s[MIGRATE]:
        text += f", {s[MIGRATE]} to migrate"
    return text


def print_plan(console: Screen, plan: Plan, target: str) -> None:
    """The plan grouped by vhost, one line per change, then a summary line.

    On a terminal it is coloured through rich; otherwise plain lines are written directly
    (rendering markup for thousands of lines costs more CPU than the broker round trips).
    """
    markup = console.is_terminal and not console.no_color

    def out(text: str) -> None:
        text = printable(text)  # one line each: a name's "\n" must not forge another
        if markup:
            console.print(text, soft_wrap=True)
        else:
            console.file.write(text + "\n")

    out(("[bold]Plan[/]" if markup else "Plan") + f" for {escape(target) if markup else target}")
    if plan.is_empty:
        vhosts = ", ".join(plan.vhosts) or "no vhosts"
        out(
            ("[green]No changes.[/]" if markup else "No changes.")
            + f" The broker matches the topology ({escape(vhosts) if markup else vhosts})."
        )
        _kept(out, plan, markup)
        return
    by_vhost: dict[str, list[Change]] = {}
    for change in plan.changes:
        by_vhost.setdefault(change.vhost, []).append(change)
    for vhost, changes in by_vhost.items():
        out("")
        title = f"vhost {vhost}" if vhost else "users (cluster-wide)"
        out(f"[bold]{escape(title)}[/]" if markup else title)
        for change in changes:
            for line in _line(change, markup):  # several for a migration
                out(line)
    out("")
    out(("[bold]Plan:[/]" if markup else "Plan:") + f" {summary_line(plan)}.")
    _kept(out, plan, markup)


def _kept(out: Callable[[str], object], plan: Plan, markup: bool) -> None:
    """What prune spares on purpose, one line each (after the plan: they are no changes);
    then the checks the plan could not make."""
    for note in plan.notes:
        out(f"[yellow]note:[/] {escape(note)}" if markup else f"note: {note}")
    for c in plan.kept:
        text = f"  = {c.kind:<8} {c.name}  {c.message} (vhost {c.vhost})"
        out(f"[dim]{escape(text)}[/]" if markup else text)


def plan_json(plan: Plan, extra: Mapping[str, Any] | None = None) -> str:
    """The JSON contract (``format: 1``); see README "JSON output"."""
    doc = plan.to_dict()
    doc.update(extra or {})
    return json.dumps(doc, indent=2, sort_keys=False, default=str)
