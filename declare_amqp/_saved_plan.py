"""Saved plans: ``plan FILE... --out PLAN`` now, ``apply PLAN`` later, as reviewers expect.

A saved plan holds the plan (its ``format: 1`` JSON), a digest of every file it was computed
from, and a fingerprint of the broker state it was computed against: one short digest per
object in the vhosts it read. ``apply PLAN`` re-reads the files and the broker and applies
only when both still match — otherwise it refuses (exit 1, nothing written) and says which
files or which objects changed. It holds no secret: no credentials, only the broker's
``host:port`` and version; the text is also passed through ``redact`` before it is written.

Queue message and consumer counts are not part of the fingerprint (they change all the time);
a prune that was planned as safe is still sent with ``if-empty``/``if-unused``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import DeclareAmqpError, Problem
from ._files import read_bytes, read_text, write_private
from ._model import Topology, canonical
from ._plan import describe

KIND = "declare-amqp saved plan"
FORMAT = 1


class SavedPlanRefused(DeclareAmqpError):
    """The files or the broker no longer match a saved plan; nothing was written."""


@dataclass(frozen=True)
class SavedPlan:
    """What ``plan --out`` writes and ``apply PLAN`` checks."""

    files: tuple[tuple[str, str], ...]  # (path as given, sha256 of its bytes)
    options: Mapping[str, Any]  # vhost, default_vhost, prune, force, strict
    target: str  # amqp://host:port of the node planned against (no credentials)
    version: str  # RabbitMQ version of that broker
    fingerprint: str  # digest of ``objects``
    objects: Mapping[str, str]  # "queue 'name' (vhost v)" -> digest of its properties
    plan: Mapping[str, Any]  # Plan.to_dict()
    tool: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to the plan file."""
        return {
            "kind": KIND,
            "format": FORMAT,
            "tool": self.tool,
            "files": [{"path": p, "sha256": d} for p, d in self.files],
            "options": dict(self.options),
            "broker": {
                "target": self.target,
                "version": self.version,
                "fingerprint": self.fingerprint,
                "objects": dict(self.objects),
            },
            "plan": dict(self.plan),
        }


def file_digests(paths: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """sha256 of each file's bytes (a file that cannot be read digests as "missing")."""
    found = []
    for path in paths:
        data = read_bytes(path)
        digest = "missing" if isinstance(data, Problem) else hashlib.sha256(data).hexdigest()
        found.append((path, digest))
    return tuple(found)


def state_objects(actual: Topology) -> dict[str, str]:
    """One short digest per object the broker holds in the vhosts read."""
    objects: dict[str, str] = {}

    groups = (actual.vhosts, actual.exchanges, actual.queues, actual.bindings, actual.policies)
    for group in (*groups, *(specs for _, specs in actual.others)):
        for spec in group:  # keyed by label: "queue 'q' (vhost v)", read in messages
            objects[spec.label] = hashlib.sha256(canonical(describe(spec)).encode()).hexdigest()[
                :16
            ]
    return dict(sorted(objects.items()))


def fingerprint(objects: Mapping[str, str]) -> str:
    """A SHA-256 of the objects' canonical form (the broker state a saved plan was made against)."""
    return hashlib.sha256(canonical(dict(objects)).encode()).hexdigest()


def is_saved_plan(path: str) -> bool:
    """Whether ``path`` is a saved plan (a JSON object whose ``kind`` says so)."""
    text = read_text(path)
    if isinstance(text, Problem) or '"kind"' not in text[:64]:
        return False
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("kind") == KIND


def read(path: str) -> SavedPlan:
    """Load a saved plan; a file of another format version is refused."""
    text = read_text(path)
    if isinstance(text, Problem):
        raise DeclareAmqpError(f"{path}: cannot read the saved plan: {text.message}")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise DeclareAmqpError(f"{path}: cannot read the saved plan: {exc}") from exc
    if doc.get("format") != FORMAT:
        raise SavedPlanRefused(
            f"{path}: saved plan format {doc.get('format')!r} is not "
            f"{FORMAT}; make the plan again with this declare-amqp"
        )
    broker = doc["broker"]
    return SavedPlan(
        files=tuple((f["path"], f["sha256"]) for f in doc["files"]),
        options=doc["options"],
        target=broker["target"],
        version=broker["version"],
        fingerprint=broker["fingerprint"],
        objects=broker["objects"],
        plan=doc["plan"],
        tool=doc.get("tool", ""),
    )


def write(path: str, saved: SavedPlan, redact: Callable[[str], str]) -> None:
    """Write a saved plan, redacted by ``redact``, readable by its owner only (0600)."""
    text = redact(json.dumps(saved.to_dict(), indent=2, ensure_ascii=False, default=str))
    write_private(path, text + "\n")


def changed_files(saved: SavedPlan) -> list[str]:
    """The files whose bytes differ from the plan's (or that are gone)."""
    now = dict(file_digests([p for p, _ in saved.files]))
    return [
        f"{p} ({'missing' if now[p] == 'missing' else 'changed'})"
        for p, d in saved.files
        if now[p] != d
    ]


def changed_objects(saved: SavedPlan, objects: Mapping[str, str]) -> list[str]:
    """What the broker holds differently from when the plan was made."""
    before = saved.objects
    found = [f"{k} changed" for k in before if k in objects and objects[k] != before[k]]
    found += [f"{k} deleted" for k in before if k not in objects]
    found += [f"{k} added" for k in objects if k not in before]
    return found


def check_files(saved: SavedPlan, path: str) -> None:
    """Refuse (``SavedPlanRefused``) when a file changed since the plan was made."""
    files = changed_files(saved)
    if files:
        raise SavedPlanRefused(
            f"{path}: the files changed since the plan was made: "
            f"{', '.join(files)}; nothing was changed. Make the plan again."
        )


def check_broker(saved: SavedPlan, path: str, objects: Mapping[str, str]) -> None:
    """Refuse (``SavedPlanRefused``) when the broker changed since the plan was made."""
    if fingerprint(objects) != saved.fingerprint:
        what = changed_objects(saved, objects)
        shown = ", ".join(what[:10]) + (f" and {len(what) - 10} more" if len(what) > 10 else "")
        raise SavedPlanRefused(
            f"{path}: the broker changed since the plan was made "
            f"({shown or 'its state differs'}); nothing was changed. Make "
            "the plan again."
        )
