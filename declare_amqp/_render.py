"""How plans and results look: text for reviewers (colour on a terminal), JSON for tools."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.markup import escape

from ._plan import CONFLICT, CREATE, DELETE, REFUSE, UPDATE, Change, Plan, describe

_SIGN = {CREATE: ("+", "green"), UPDATE: ("~", "yellow"), DELETE: ("-", "red"),
         CONFLICT: ("!", "bold red"), REFUSE: ("!", "magenta")}


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
        return f"/{props['pattern']}/ on {props['apply_to']}, priority {props['priority']}: " \
               f"{definition}"
    return ""


def _line(change: Change) -> str:
    sign, style = _SIGN[change.action]
    name = escape(change.name)
    head = f"[{style}]{sign} {change.kind:<8} {name}[/]"
    where = f"  [dim]({change.location})[/]" if change.location else ""
    if change.action in (CREATE, DELETE):
        details = _details(change)
        return f"  {head}" + (f"  [dim]{escape(details)}[/]" if details else "") + where
    if change.action == UPDATE:
        diffs = "; ".join(f"{d.field}: {_value(d.before)} -> {_value(d.after)}"
                          for d in change.differences)
        return f"  {head}  {escape(diffs)}{where}"
    label = "conflict" if change.action == CONFLICT else "refused"
    return f"  {head}  [{style}]{label}:[/] {escape(change.message)}{where}"


def summary_line(plan: Plan) -> str:
    """`Plan: 3 to create, 1 to update, 0 to delete.` plus conflicts and refusals."""
    s = plan.summary()
    text = f"{s[CREATE]} to create, {s[UPDATE]} to update, {s[DELETE]} to delete"
    if s[CONFLICT]:
        text += f", {s[CONFLICT]} conflict{'s' if s[CONFLICT] != 1 else ''}"
    if s[REFUSE]:
        text += f", {s[REFUSE]} refused"
    return text


def print_plan(console: Console, plan: Plan, target: str) -> None:
    """The plan grouped by vhost, one line per change, then a summary line."""
    console.print(f"[bold]Plan[/] for {escape(target)}")
    if plan.is_empty:
        console.print(f"[green]No changes.[/] The broker matches the topology "
                      f"({', '.join(plan.vhosts) or 'no vhosts'}).")
        return
    by_vhost: dict[str, list[Change]] = {}
    for change in plan.changes:
        by_vhost.setdefault(change.vhost, []).append(change)
    for vhost, changes in by_vhost.items():
        console.print(f"\n[bold]vhost {escape(vhost)}[/]")
        for change in changes:
            console.print(_line(change), soft_wrap=True)
    console.print(f"\n[bold]Plan:[/] {summary_line(plan)}.")


def plan_json(plan: Plan, extra: Mapping[str, Any] | None = None) -> str:
    """The JSON contract (``format: 1``); see README "JSON output"."""
    doc = plan.to_dict()
    doc.update(extra or {})
    return json.dumps(doc, indent=2, sort_keys=False, default=str)


def problems_json(messages: Iterable[str], kind: str) -> str:
    return json.dumps({"format": 1, "error": kind, "problems": list(messages)}, indent=2)
