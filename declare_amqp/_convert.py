"""``declare-amqp convert --to quorum``: a topology file rewritten for quorum queues.

Every classic queue becomes a quorum queue; each argument, alias and policy key that quorum
queues refuse, ignore or name differently is dropped, renamed or given another value as the
one table of version edges says (``_versions.QUORUM_REWRITES``), and every change is listed
with its file, line and reason. Pure: text in, text and changes out (the CLI reads and writes
the files). Comments are not kept (the file is written again from its data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ._errors import Location
from ._format import QUEUE_ALIASES
from ._versions import Rewrite, Subject, quorum_rewrite
from ._yaml import read_document

_ALIAS_OF = {k.argument: k.name for k in QUEUE_ALIASES if k.argument}
_ARGUMENT_OF = {k.name: k.argument for k in QUEUE_ALIASES if k.argument}


@dataclass(frozen=True)
class Conversion:
    """One change ``convert`` made: where, to what, and why."""

    location: Location
    subject: str  # "queue 'q'" or "policy 'p'"
    change: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.subject}: {self.change} ({self.reason})"


def to_quorum(text: str, path: str, version: tuple[int, ...] = ()) -> tuple[str, list[Conversion]]:
    """``text`` (a topology file) with its classic queues made quorum queues; the changes.

    ``version``: the target broker's (reasons that differ by version, e.g. priorities before
    4.0); unknown means the newest.
    """
    doc = read_document(text, path)
    changes: list[Conversion] = []
    if not isinstance(doc, dict):
        return text, changes
    for q in doc.get("queues") or []:
        if isinstance(q, dict):
            changes += _queue(q, path, version)
    policies = doc.get("policies")
    if isinstance(policies, list):
        kept = []
        for p in policies:
            if isinstance(p, dict):
                found, empty = _policy(p, path, version)
                changes += found
                if empty:
                    changes.append(
                        Conversion(
                            Location(path, getattr(p, "line", 0)),
                            f"policy '{p.get('name')}'",
                            "removed",
                            "nothing is left in its definition",
                        )
                    )
                    continue
            kept.append(p)
        doc["policies"] = kept
    out = yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True, width=100)
    return out, changes


def _plain(value: Any) -> Any:
    """The document as plain dicts and lists (safe_dump refuses the line-keeping types)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _yaml(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _mapped(values: Mapping[object, object], value: object) -> object:
    return values.get(value, value) if isinstance(value, str | bool | int) else value


def _queue(q: dict[str, Any], path: str, version: tuple[int, ...]) -> list[Conversion]:
    lines = getattr(q, "key_lines", {})
    here = getattr(q, "line", 0)
    subject = f"queue '{q.get('name')}'"
    found = q.get("arguments")
    arguments: dict[str, Any] = found if isinstance(found, dict) else {}
    queue_type = q.get("type") or arguments.get("x-queue-type") or "classic"
    if queue_type != "classic":
        return []
    changes = [
        Conversion(
            Location(path, lines.get("type", here)),
            subject,
            "type classic -> quorum",
            "quorum queues are the replicated queue type (classic mirroring is gone in 4.0)",
        )
    ]
    # "type" right after "name", as people write it.
    items = [(k, v) for k, v in q.items() if k != "type"]
    q.clear()
    q.update(items[:1] + [("type", "quorum")] + items[1:])
    arguments.pop("x-queue-type", None)
    for prop, default in (("durable", True), ("auto_delete", False)):
        value = q.get(prop, default)
        r = quorum_rewrite(Subject.QUEUE, prop, value)
        if r is not None:
            q[prop] = _mapped(r.values, value)
            changes.append(
                Conversion(
                    Location(path, lines.get(prop, here)),
                    subject,
                    f"{prop}: {_yaml(value)} -> {_yaml(q[prop])}",
                    r.reason_at(version),
                )
            )
    # Aliases (max_priority: 5) and arguments (x-max-priority: 5) alike.
    for key in list(q):
        argument = _ARGUMENT_OF.get(key)
        if argument is not None:
            changes += _argument(q, key, argument, q, lines.get(key, here), path, version, subject)
    arg_lines = getattr(arguments, "key_lines", {})
    for key in list(arguments):
        changes += _argument(
            arguments, key, key, q, arg_lines.get(key, here), path, version, subject
        )
    if "arguments" in q and not arguments:
        del q["arguments"]
    return changes


def _argument(
    holder: dict[str, Any],
    key: str,
    argument: str,
    q: dict[str, Any],
    line: int,
    path: str,
    version: tuple[int, ...],
    subject: str,
) -> list[Conversion]:
    value = holder[key]
    r = quorum_rewrite(Subject.QUEUE_ARGUMENT, argument, value)
    if r is None:
        return []
    where = Location(path, line)
    if r.rewrite is Rewrite.DROP:
        del holder[key]
        return [Conversion(where, subject, f"{key} removed", r.reason_at(version))]
    new_value = _mapped(r.values, value)
    if r.rewrite is Rewrite.RENAME and r.to is not None:
        del holder[key]
        alias = _ALIAS_OF.get(r.to)
        if holder is q and alias is not None:
            new_key = alias
            q[alias] = new_value
        else:
            new_key = r.to
            q.setdefault("arguments", {})[r.to] = new_value
        return [
            Conversion(
                where, subject, f"{key}: {value} -> {new_key}: {new_value}", r.reason_at(version)
            )
        ]
    holder[key] = new_value
    return [Conversion(where, subject, f"{key}: {value} -> {new_value}", r.reason_at(version))]


def _policy(
    p: dict[str, Any], path: str, version: tuple[int, ...]
) -> tuple[list[Conversion], bool]:
    """The policy's rewritten keys, and whether its definition is now empty."""
    definition = p.get("definition")
    if not isinstance(definition, dict) or p.get("apply_to", "all") == "exchanges":
        return [], False
    lines = getattr(definition, "key_lines", {})
    subject = f"policy '{p.get('name')}'"
    changes = []
    for key in list(definition):
        value = definition[key]
        r = quorum_rewrite(Subject.POLICY_KEY, key, value)
        if r is None:
            continue
        where = Location(path, lines.get(key, getattr(p, "line", 0)))
        if r.rewrite is Rewrite.DROP:
            del definition[key]
            changes.append(Conversion(where, subject, f"{key} removed", r.reason_at(version)))
            continue
        new_value = _mapped(r.values, value)
        new_key = r.to if r.rewrite is Rewrite.RENAME and r.to else key
        del definition[key]
        definition[new_key] = new_value
        changes.append(
            Conversion(
                where, subject, f"{key}: {value} -> {new_key}: {new_value}", r.reason_at(version)
            )
        )
    return changes, bool(changes) and not definition
