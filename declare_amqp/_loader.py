"""Read topology files into the model, keeping file:line for every object.

Every problem in every file is collected before anything is reported, so one run of
``declare-amqp validate`` shows them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

import yaml

from ._access import merge_access, read_access
from ._consumers import read_consumer
from ._definitions import is_definitions, parse_definitions
from ._errors import Location, Problem, TopologyError
from ._errors import dedupe as first_of_each
from ._files import DEFAULT_MAX_FILE_SIZE, read_text
from ._fit import key_problem
from ._format import (
    EXPECT_KEYS,
    Key,
)
from ._gc import paused as paused_gc
from ._model import (
    ConsumerSpec,
    Expectation,
    Topology,
    canonical,
)
from ._yaml import AliasBomb, yaml_document
from .kinds import BINDING, EXCHANGE, POLICY, QUEUE, TOP_KEYS, VHOST, binding


class _FileReader:
    """Turns one parsed file into model objects, collecting problems."""

    def __init__(
        self, path: str, override_vhost: str | None, fallback_vhost: str, original: bool = False
    ) -> None:
        self.path = path
        # the original declare-amqp's file (`--config FILE`): a queue binding without a key
        # is bound with the queue's name, as its pika queue_bind(queue, exchange) did
        self.original = original
        self.override_vhost = override_vhost
        self.fallback_vhost = fallback_vhost
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        # the document's values are unshared (no aliases): the raw queues, most of a large
        # file, are dropped from it one by one as their specs are built (``kinds.queue``)
        self.release = False

    def at(self, line: int) -> Location:
        return Location(self.path, line)

    def problem(self, line: int, message: str, obj: str | None = None) -> None:
        self.problems.append(Problem(message, self.at(line), obj))

    def warn(self, line: int, message: str, obj: str | None = None) -> None:
        """Accepted, with a caveat shown to the user (``--strict`` refuses it)."""
        self.warnings.append(Problem(message, self.at(line), obj))

    def fields(self, raw: Any, keys: Sequence[Key], what: str, line: int) -> dict[str, Any] | None:
        """Check one mapping against its key table; returns the values or None."""
        if not isinstance(raw, dict):
            self.problem(line, f"each entry of {what} must be a mapping, not {raw!r}")
            return None
        by_name = {k.name: k for k in keys}
        label = what
        name = raw.get("name")
        if isinstance(name, str):
            label = f"{what} '{name}'"
        values: dict[str, Any] = {}
        ok = True
        key_lines = getattr(raw, "key_lines", {})
        for key, value in raw.items():
            key_line = key_lines.get(key, line)
            spec = by_name.get(key)
            if spec is None:
                hint = difflib.get_close_matches(str(key), list(by_name), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                allowed = ", ".join(by_name)
                self.problem(
                    key_line, f"unknown key '{key}'{suggestion}; allowed: {allowed}", label
                )
                ok = False
                continue
            if value is None and not spec.required:
                continue
            wrong = key_problem(spec, value, suggest=True)  # the one rule (_fit)
            if wrong is not None:
                self.problem(key_line, f"'{key}' {wrong}", label)
                ok = False
                continue
            values[key] = value
        for spec in keys:
            if spec.required and spec.name not in raw:
                self.problem(line, f"missing required key '{spec.name}'", label)
                ok = False
        return values if ok else None

    def entries(self, doc: dict[str, Any], key: str) -> Iterable[tuple[Any, int]]:
        items = doc.get(key)
        if items is None:
            return []
        if not isinstance(items, list):
            self.problem(
                doc.key_lines.get(key, 1) if hasattr(doc, "key_lines") else 1,
                f"'{key}' must be a list",
            )
            return []
        lines = getattr(items, "item_lines", [0] * len(items))
        return [(item, getattr(item, "line", lines[i])) for i, item in enumerate(items)]

    def read(self, doc: Any) -> Topology:
        if doc is None:
            return Topology()
        if not isinstance(doc, dict):
            self.problem(
                1,
                "a topology file must be a mapping with keys "
                + ", ".join(k.name for k in TOP_KEYS),
            )
            return Topology()
        top = self.fields(doc, TOP_KEYS, "the file", 1)
        if top is None:
            top = {}
        self.vhost = self.override_vhost or top.get("vhost") or self.fallback_vhost
        explicit = self.override_vhost or top.get("vhost")
        top_bindings = tuple(BINDING.read_document(self, doc))
        queue_bindings = tuple(binding.read_queue_bindings(self, doc, self.original))
        unkeyed = [b for b, no_key in queue_bindings if no_key and not self.original]
        bindings = (*top_bindings, *(b for b, _ in queue_bindings))
        exchanges = tuple(EXCHANGE.read_document(self, doc))
        access = read_access(self, doc)  # before the warnings: it adds to them
        return Topology(
            warnings=(*binding.unkeyed_warnings(unkeyed, exchanges), *self.warnings),
            named=(explicit,) if explicit else (),
            vhosts=tuple(VHOST.read_document(self, doc)),
            exchanges=exchanges,
            # the last reader of the raw queues (their bindings were read before)
            queues=tuple(QUEUE.read_document(self, doc, self.release)),
            bindings=bindings,
            policies=tuple(POLICY.read_document(self, doc)),
            consumers=tuple(self._consumers(doc)),
            access=access,
            expectations=tuple(self._expectations(doc)),
        )

    def _expectations(self, doc: dict[str, Any]) -> Iterable[Expectation]:
        for raw, line in self.entries(doc, "expect"):
            f = self.fields(raw, EXPECT_KEYS, "expect entry", line)
            if f is None:
                continue
            yield Expectation(
                vhost=f.get("vhost", self.vhost),
                exchange=f["exchange"],
                routing_key=f.get("routing_key", ""),
                headers=dict(f.get("headers") or {}),
                reaches=tuple(f["reaches"]),
                location=self.at(line),
            )

    def _consumers(self, doc: dict[str, Any]) -> Iterable[ConsumerSpec]:
        for raw, line in self.entries(doc, "consumers"):
            consumer = read_consumer(self, raw, line)
            if consumer is not None:
                yield consumer


def parse_unvalidated(
    text: str, path: str = "<string>", vhost: str | None = None, default_vhost: str = "/"
) -> Topology:
    """Parse one topology document: its syntax and keys are checked, its content is not
    validated (``declare_amqp.load`` does that).

    ``vhost`` overrides the file's ``vhost`` key; ``default_vhost`` applies when the file
    has none.
    """
    topology, problems = _parse(text, path, vhost, default_vhost)
    if problems:
        raise TopologyError(problems)
    return topology


def _parse(
    text: str, path: str, vhost: str | None, default_vhost: str, original: bool = False
) -> tuple[Topology, list[Problem]]:
    try:
        doc, duplicate_keys, unshared = yaml_document(text, path)
    except AliasBomb as exc:
        return Topology(), [exc.problem]
    except RecursionError:
        return Topology(), [Problem("not valid YAML: nested too deeply", Location(path, 1))]
    except yaml.MarkedYAMLError as exc:
        problem, context = exc.problem_mark, exc.context_mark
        line = problem.line + 1 if problem else 1
        detail = exc.problem or str(exc)
        if context is not None and exc.context:
            started = context.line + 1
            if problem is not None and "end of stream" in (exc.problem or ""):
                line = started  # an unclosed quote or bracket: point at where it opened
            detail += f" ({exc.context} that starts at line {started})"
        return Topology(), [Problem(f"not valid YAML: {detail}", Location(path, line))]
    except yaml.YAMLError as exc:
        return Topology(), [Problem(f"not valid YAML: {exc}", Location(path, 1))]
    reader = _FileReader(path, vhost, default_vhost, original)
    reader.release = unshared
    for key, line, first in duplicate_keys:
        reader.problem(line, f"key '{key}' appears twice in one mapping (first at line {first})")
    topology = reader.read(doc)
    return topology, reader.problems


def load_unvalidated(
    paths: Sequence[str],
    vhost: str | None = None,
    default_vhost: str = "/",
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
) -> Topology:
    """Read and merge topology files, not validated (``declare_amqp.load`` validates);
    raises TopologyError listing every problem of syntax, keys and merging.

    ``vhost`` replaces each file's ``vhost`` key (objects naming their own keep it);
    ``default_vhost`` applies to files without one; a file larger than ``max_file_size``
    bytes, or not a regular file, is refused unread (``_files``).
    The same object declared in two places must be declared identically.
    """
    merged, problems = read_unvalidated(paths, vhost, default_vhost, max_file_size)
    if problems:
        raise TopologyError(problems)
    return merged


def read_unvalidated(
    paths: Sequence[str],
    vhost: str | None = None,
    default_vhost: str = "/",
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    original_format: bool = False,
) -> tuple[Topology, list[Problem]]:
    """Like ``load_unvalidated``, but returns what could be read together with the
    problems. ``original_format``: YAML files are the original declare-amqp's (``--config``),
    whose queue bindings without a key are bound with the queue's name."""
    with paused_gc():  # the model of a large file is as acyclic as its values
        return _read_files(paths, vhost, default_vhost, max_file_size, original_format)


def _read_files(
    paths: Sequence[str],
    vhost: str | None,
    default_vhost: str,
    max_file_size: int,
    original_format: bool,
) -> tuple[Topology, list[Problem]]:
    problems: list[Problem] = []
    parts: list[Topology] = []
    for path in paths:
        text = read_text(path, max_file_size)
        if isinstance(text, Problem):
            problems.append(text)
            continue
        if is_definitions(path):  # RabbitMQ definitions JSON, mixed freely with YAML
            topology, found = parse_definitions(text, path, vhost, default_vhost)
        else:
            topology, found = _parse(text, path, vhost, default_vhost, original_format)
        problems.extend(found)
        parts.append(topology)
    merged, merge_problems = _merge(parts)
    problems.extend(merge_problems)
    return merged, problems


def _merge(parts: Sequence[Topology]) -> tuple[Topology, list[Problem]]:
    problems: list[Problem] = []

    def same(a: Any, b: Any) -> bool:
        return canonical(_settings(a)) == canonical(_settings(b))

    def dedupe(items: Iterable[Any], key: Callable[[Any], Hashable]) -> tuple[Any, ...]:
        return first_of_each(items, key, problems, same)

    merged = Topology(
        vhosts=dedupe((v for p in parts for v in p.vhosts), lambda v: v.name),
        exchanges=dedupe((x for p in parts for x in p.exchanges), lambda x: (x.vhost, x.name)),
        queues=dedupe((q for p in parts for q in p.queues), lambda q: (q.vhost, q.name)),
        bindings=dedupe((b for p in parts for b in p.bindings), lambda b: b.key),
        policies=dedupe((po for p in parts for po in p.policies), lambda p: (p.vhost, p.name)),
        warnings=tuple(w for p in parts for w in p.warnings),
        named=tuple(dict.fromkeys(n for p in parts for n in p.named)),
        consumers=dedupe((c for p in parts for c in p.consumers), lambda c: (c.vhost, c.name)),
        expectations=tuple(e for p in parts for e in p.expectations),
    )
    access, access_problems = merge_access(p.access for p in parts if p.access is not None)
    problems.extend(access_problems)
    if access.size or access.managed:
        merged = replace(merged, access=access)
    return merged, problems


def _settings(obj: Any) -> dict[str, Any]:
    return {
        f.name: getattr(obj, f.name)
        for f in fields(obj)
        if f.name not in ("location", "type_given", "origin")
    }
