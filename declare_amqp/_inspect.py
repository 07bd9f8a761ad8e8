"""The questions ``route`` and ``explain`` answer, from files or from the live broker, and
their text form. The answers themselves come from ``_simulate`` (pure); this module only
gathers the topology and words the result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._effective import Explanation
from ._errors import DeclareAmqpError, Location, Problem, TopologyError
from ._model import Topology
from ._routing import Message, Route, describe_route
from ._simulate import Simulator, UnknownObject


def parse_header(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``: VALUE as JSON when it parses (``size=1`` is the integer 1, ``a=null``
    a header without a value), otherwise as the string it is."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise DeclareAmqpError(f"--header {text!r}: write NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name, value


def read_messages(path: str) -> list[Message]:
    """``--messages FILE``: JSON lines of ``{"exchange", "routing_key", "headers"}``; blank
    lines are skipped. Every bad line is reported with its number."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise DeclareAmqpError(f"{path}: cannot read the file: {exc.strerror or exc}") from exc
    messages: list[Message] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = Location(path, number)
        try:
            raw = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(f"not JSON: {exc}", where))
            continue
        if not isinstance(raw, dict) or not isinstance(raw.get("exchange"), str):
            problems.append(
                Problem('each line must be an object with "exchange" (a string)', where)
            )
            continue
        unknown = sorted(set(raw) - {"exchange", "routing_key", "headers"})
        key, headers = raw.get("routing_key", ""), raw.get("headers") or {}
        if unknown:
            problems.append(Problem(f"unknown key(s) {', '.join(unknown)}", where))
        elif not isinstance(key, str) or not isinstance(headers, dict):
            problems.append(
                Problem('"routing_key" must be a string and "headers" an object', where)
            )
        else:
            messages.append(Message(raw["exchange"], key, headers))
    if problems:
        raise TopologyError(problems)
    return messages


def route_vhost(topology: Topology, given: str | None, default: str) -> str:
    """The vhost to route in: the one given, else the files' only vhost, else ``default``."""
    if given:
        return given
    names = topology.vhost_names()
    return names[0] if len(names) == 1 else default


def route_text(vhost: str, route: Route) -> list[str]:
    """``declare-amqp route`` for people."""
    m = route.message
    key = f", routing key '{m.routing_key}'" if m.routing_key else ", no routing key"
    headers = f", headers {json.dumps(dict(m.headers))}" if m.headers else ""
    lines = [f"exchange '{m.exchange}'{key}{headers} (vhost {vhost}):"]
    if route.refused:
        lines.append(f"  refused: {route.refused}")
        return lines
    lines.append(f"  queues: {', '.join(route.queues) if route.queues else 'none (unroutable)'}")
    for hop in route.path:
        source = hop.exchange or "(default exchange)"
        if hop.via == "alternate-exchange":
            lines.append(f"  {source} -> {hop.destination}: no binding matched, alternate exchange")
            continue
        how = f"binding key '{hop.binding_key}'" if hop.binding_key else "binding"
        if hop.via == "default exchange":
            how = "the queue of that name"
        if hop.arguments:
            how += f" {json.dumps(dict(hop.arguments))}"
        lines.append(f"  {source} -> {hop.destination_type} {hop.destination}: {how}")
    for queue, d in sorted(route.dead_letter.items()):
        target = ", ".join(d.queues) if d.queues else "no queue (dropped)"
        if d.exchange_missing:
            target = f"dropped: exchange '{d.exchange}' does not exist"
        source = (
            f" ({d.exchange_source.replace('_', ' ')})" if d.exchange_source != "argument" else ""
        )
        lines.append(
            f"  dead-lettered from {queue}: exchange '{d.exchange}'{source}, routing key "
            f"'{d.routing_key}' -> {target}"
        )
    return lines


def route_line(route: Route) -> str:
    """One line per message (``--messages`` in text form)."""
    m = route.message
    return f"{m.exchange or '(default)'} [{m.routing_key}] -> {describe_route(route)}"


def _show(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def explain_text(e: Explanation) -> list[str]:
    """``declare-amqp explain`` for people."""
    what = f"{e.kind} '{e.name}'" + (f" ({e.queue_type})" if e.kind == "queue" else "")
    lines = [f"{what} in vhost {e.vhost}"]
    for title, selection in (("policy", e.policy), ("operator policy", e.operator_policy)):
        chosen = selection.chosen
        if chosen is None:
            lines.append(f"  {title}: none")
        else:
            lines.append(
                f"  {title}: {chosen.name} (pattern {chosen.pattern!r}, apply-to "
                f"{chosen.apply_to}, priority {chosen.priority}: the highest of those that match)"
            )
        if selection.tie:
            lines.append(
                f"    TIE: {', '.join(selection.tie)} match with the same priority; which one the "
                "broker applies is not defined: give one a higher priority"
            )
        for c in selection.candidates:
            if c.policy is chosen:
                continue
            state = f"ignored: {c.reason}" if not c.applies else "matches, lower priority"
            lines.append(
                f"    also considered: {c.policy.name} (priority {c.policy.priority}) - {state}"
            )
    if e.effective:
        lines.append("  effective settings:")
        width = max(len(k) for k in e.effective)
        value_width = max(len(_show(s.value)) for s in e.effective.values())
        for key, s in sorted(e.effective.items()):
            source = (
                "the broker's default"
                if s.source == "default"
                else "from the " + s.source.replace("_", " ")
            )
            rule = f"; {s.rule}" if s.rule else ""
            shown = _show(s.value).ljust(value_width)
            lines.append(f"    {key.ljust(width)}  {shown}  ({source}{rule})")
    else:
        lines.append("  effective settings: none (no arguments, no policy)")
    for i in e.ignored:
        lines.append(f"  not in effect: {i.key} ({i.source.replace('_', ' ')}): {i.reason}")
    return lines


def explain_or_error(sim: Simulator, vhost: str, kind: str, name: str) -> Explanation:
    """``Simulator.explain`` with a missing object as a user error."""
    try:
        return sim.explain(vhost, kind, name)
    except UnknownObject as exc:
        raise DeclareAmqpError(f"{exc}; nothing to explain") from exc


def messages_from_args(
    exchange: str | None, routing_key: str, headers: Sequence[str]
) -> list[Message]:
    """The one message the command line describes."""
    if exchange is None:
        raise DeclareAmqpError("route needs --exchange E (or --messages FILE)")
    return [Message(exchange, routing_key, dict(parse_header(h) for h in headers))]
