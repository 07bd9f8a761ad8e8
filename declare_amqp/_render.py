"""How plans and results look: text for reviewers (colour on a terminal), JSON for tools."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._errors import printable
from ._plan import CONFLICT, CREATE, DELETE, MIGRATE, REFUSE, UPDATE, Change, Plan, describe

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


def _line(change: Change, markup: bool) -> str:
    """One plan line; with ``markup`` in rich markup (colour), else plain text."""

    def styled(style: str, text: str) -> str:
        return f"[{style}]{escape(text)}[/]" if markup else text

    sign, style = _SIGN[change.action]
    head = styled(style, f"{sign} {change.kind:<8} {change.name}")
    where = "  " + styled("dim", f"({change.location})") if change.location else ""
    if change.action in (CREATE, DELETE):
        details = _details(change)
        if change.message:
            details = f"{details}; {change.message}" if details else change.message
        return f"  {head}" + ("  " + styled("dim", details) if details else "") + where
    if change.action == UPDATE:
        diffs = "; ".join(
            "password (changed)"
            if d.field == "password"  # never a value
            else f"{d.field}: {_value(d.before)} -> {_value(d.after)}"
            for d in change.differences
        )
        return f"  {head}  {escape(diffs) if markup else diffs}{where}"
    if change.action == MIGRATE:
        return _migrate_lines(change, head, where, markup)
    label = "conflict:" if change.action == CONFLICT else "refused:"
    message = escape(change.message) if markup else change.message
    return f"  {head}  {styled(style, label)} {message}{where}"


def _migrate_lines(change: Change, head: str, where: str, markup: bool) -> str:
    """A migration: what changes and its counts, then its steps and limits, one a line."""
    diffs = "; ".join(
        f"{d.field}: {_value(d.before)} -> {_value(d.after)}" for d in change.differences
    )
    lines = [f"  {head}  {escape(diffs) if markup else diffs}{where}"]
    migration = change.migration or {}
    texts = [change.message]
    texts += [f"step {n}. {s}" for n, s in enumerate(migration.get("steps", ()), 1)]
    texts += [f"limit: {text}" for text in migration.get("limits", ())]
    for text in texts:
        lines.append("      " + (f"[dim]{escape(text)}[/]" if markup else text))
    return "\n".join(lines)


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


def print_plan(console: Console, plan: Plan, target: str) -> None:
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
            out(_line(change, markup))
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
