"""Read topology files into the model, keeping file:line for every object.

Every problem in every file is collected before anything is reported, so one run of
``declare-amqp validate`` shows them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

import yaml

from ._access import merge_access, read_access
from ._consumers import read_consumer
from ._definitions import parse_definitions
from ._errors import Location, Problem, TopologyError
from ._errors import dedupe as first_of_each
from ._files import DEFAULT_MAX_FILE_SIZE, decode, is_definitions, read_bytes
from ._fit import key_problem
from ._format import (
    EXPECT_KEYS,
    Key,
)
from ._gc import paused as paused_gc
from ._model import (
    BindingSpec,
    ConsumerSpec,
    ExchangeSpec,
    Expectation,
    QueueSpec,
    Topology,
    canonical,
)
from ._yaml import AliasBomb, one_entry, yaml_document
from .kinds import BINDING, EXCHANGE, QUEUE, TOP_KEYS, TOPOLOGY_KINDS, binding

# The topology kinds in the order a file lists them (the order their problems are found).
_IN_FILE_ORDER = sorted(TOPOLOGY_KINDS, key=lambda k: k.top_rank)
# The kinds ``_links`` reads (bindings before the queues' raw entries are released, and the
# exchanges their warnings need), and the queues, read after them.
_LINKED, _QUEUES = frozenset((BINDING.key, EXCHANGE.key)), QUEUE.key

# each key table by name, and its required keys, made once (``fields`` runs per entry)
_TABLES: dict[int, tuple[Sequence[Key], dict[str, Key], tuple[str, ...]]] = {}


def _table(keys: Sequence[Key]) -> tuple[dict[str, Key], tuple[str, ...]]:
    made = _TABLES.get(id(keys))
    if made is None or made[0] is not keys:
        made = (keys, {k.name: k for k in keys}, tuple(k.name for k in keys if k.required))
        if len(_TABLES) >= 256:  # the tables are constants: only a caller's own lists go
            _TABLES.clear()
        _TABLES[id(keys)] = made
    return made[1], made[2]


def _label(raw: Mapping[str, Any], what: str) -> str:
    """How a problem names an entry: by its name where it has one."""
    name = raw.get("name")
    return f"{what} '{name}'" if isinstance(name, str) else what


def _key_line(raw: Any, key: Any, line: int) -> int:
    """The line of ``key`` in ``raw`` (``line``, the entry's, where it has none)."""
    key_lines: dict[Any, int] = getattr(raw, "key_lines", {})
    return key_lines.get(key, line)


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
        # the exchanges, queues and bindings, read entry by entry while the file was parsed
        self.streamed: _Sections | None = None

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
        by_name, required = _table(keys)
        values: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            spec = by_name.get(key)
            if spec is None:
                hint = difflib.get_close_matches(str(key), list(by_name), n=1)
                suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
                allowed = ", ".join(by_name)
                self.problem(
                    _key_line(raw, key, line),
                    f"unknown key '{key}'{suggestion}; allowed: {allowed}",
                    _label(raw, what),
                )
                ok = False
                continue
            if value is None and not spec.required:
                continue
            wrong = key_problem(spec, value, suggest=True)  # the one rule (_fit)
            if wrong is not None:
                self.problem(_key_line(raw, key, line), f"'{key}' {wrong}", _label(raw, what))
                ok = False
                continue
            values[key] = value
        for name in required:
            if name not in raw:
                self.problem(line, f"missing required key '{name}'", _label(raw, what))
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
        lines = getattr(items, "item_lines", None)
        if lines is None:
            lines = [0] * len(items)
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
        bindings, unkeyed, exchanges = self._links(doc)
        access = read_access(self, doc)  # before the warnings: it adds to them
        # every other topology kind by its reader, in the order a file lists the kinds; the
        # queues where they come, the last readers of the raw queues
        by_key: dict[str, tuple[Any, ...]] = {}
        for kind in _IN_FILE_ORDER:
            if kind.key == _QUEUES:
                by_key[kind.key] = self._queues(doc)
            elif kind.key not in _LINKED:
                by_key[kind.key] = tuple(kind.read_document(self, doc))
        return Topology(
            warnings=(*binding.unkeyed_warnings(unkeyed, exchanges), *self.warnings),
            named=(explicit,) if explicit else (),
            exchanges=exchanges,
            bindings=bindings,
            consumers=tuple(self._consumers(doc)),
            access=access,
            expectations=tuple(self._expectations(doc)),
        ).holding(**by_key)

    def _links(
        self, doc: dict[str, Any]
    ) -> tuple[tuple[BindingSpec, ...], list[BindingSpec], tuple[ExchangeSpec, ...]]:
        """The bindings (top-level, then the queues'), those of queues given no key (where
        they get a warning), and the exchanges."""
        if (took := self._took("bindings")) is not None:
            top_bindings: tuple[BindingSpec, ...] = self._hand_over(took, "bindings")
        else:
            top_bindings = tuple(BINDING.read_document(self, doc))
        if (took := self._took("queues")) is not None:  # their bindings, first
            queue_bindings: tuple[BindingSpec, ...] = self._hand_over(took, "queue bindings")
            unkeyed = [] if self.original else took.unkeyed
        else:
            read = tuple(binding.read_queue_bindings(self, doc, self.original))
            queue_bindings = tuple(b for b, _ in read)
            unkeyed = [b for b, no_key in read if no_key and not self.original]
            del read
        if (took := self._took("exchanges")) is not None:
            exchanges: tuple[ExchangeSpec, ...] = self._hand_over(took, "exchanges")
        else:
            exchanges = tuple(EXCHANGE.read_document(self, doc))
        return (*top_bindings, *queue_bindings), unkeyed, exchanges

    def _took(self, section: str) -> _Sections | None:
        """The entries of ``section``, if they were read while the file was parsed."""
        streamed = self.streamed
        return streamed if streamed is not None and section in streamed.taken else None

    def _hand_over(self, took: _Sections, section: str) -> tuple[Any, ...]:
        """The specs ``took`` read for ``section`` (its list then dropped), with the problems
        and warnings of its reader taken here, where a whole read would have made them."""
        part = took.readers[section]
        self.problems += part.problems
        self.warnings += part.warnings
        return tuple(took.specs.pop(section))

    def _queues(self, doc: dict[str, Any]) -> tuple[QueueSpec, ...]:
        took = self._took("queues")
        if took is None:
            # the last reader of the raw queues (their bindings were read before)
            return tuple(QUEUE.read_document(self, doc, self.release))
        return self._hand_over(took, "queues")

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


class _Sections:
    """The top-level lists a large file is made of (exchanges, queues, bindings), read into
    the model entry by entry while the file is parsed (a ``_yaml.Stream``): the values of
    one entry exist only until its specs are built, so a 50 MB file never holds its whole
    value tree (about 1 KB a queue) beside the model.

    Each section is read by the kind's own reader, as ``_FileReader.read`` reads it, through
    a reader of its own whose problems ``read`` takes in its usual order. Read before the
    file's ``vhost`` key is known for sure: ``_parse`` reads the file again, whole, in the
    rare case that the vhost ``read`` settles on differs (a ``vhost`` key after the lists).
    """

    sections = frozenset(("exchanges", "queues", "bindings"))

    def __init__(self, path: str, override: str | None, fallback: str, original: bool) -> None:
        self.original = original
        self.readers = {
            name: _FileReader(path, override, fallback, original)
            for name in ("bindings", "queue bindings", "exchanges", "queues", "scratch")
        }
        self.vhost: str | None = None  # the vhost the entries were read with
        # what each reader read: binding, queue binding, exchange and queue specs
        self.specs: dict[str, list[Any]] = {name: [] for name in self.readers}
        self.unkeyed: list[BindingSpec] = []  # queue bindings given no key
        self.taken: set[str] = set()  # the sections whose entries it read (a list of some)

    def take(self, section: str, entry: Any, line: int, doc: Mapping[str, Any]) -> None:
        """Reads one entry of ``section`` into specs (``_yaml.Stream``)."""
        if self.vhost is None:
            self.vhost = self._vhost(doc)
            for reader in self.readers.values():
                reader.vhost = self.vhost
        self.taken.add(section)
        one = {section: one_entry(entry, line)}
        readers = self.readers
        if section == "queues":  # its bindings first, as ``read`` does
            kept = self.specs["queue bindings"].append
            for spec, no_key in binding.read_queue_bindings(
                readers["queue bindings"], one, self.original
            ):
                kept(spec)
                if no_key:
                    self.unkeyed.append(spec)
            self.specs["queues"].extend(QUEUE.read_document(readers["queues"], one))
        elif section == "exchanges":
            self.specs["exchanges"].extend(EXCHANGE.read_document(readers["exchanges"], one))
        else:
            self.specs["bindings"].extend(BINDING.read_document(readers["bindings"], one))

    def _vhost(self, doc: Mapping[str, Any]) -> str:
        """The file's vhost as ``read`` settles it, from the top-level keys read so far."""
        scratch = self.readers["scratch"]
        given = scratch.fields({"vhost": doc["vhost"]} if "vhost" in doc else {}, TOP_KEYS, "", 1)
        return scratch.override_vhost or (given or {}).get("vhost") or scratch.fallback_vhost


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
    text: str | bytes,
    path: str,
    vhost: str | None,
    default_vhost: str,
    original: bool = False,
    stream: bool = True,
) -> tuple[Topology, list[Problem]]:
    sections = _Sections(path, vhost, default_vhost, original) if stream else None
    try:
        doc, duplicate_keys, unshared, streamed = yaml_document(text, path, sections)
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
    if streamed:
        reader.streamed = sections
    for key, line, first in duplicate_keys:
        reader.problem(line, f"key '{key}' appears twice in one mapping (first at line {first})")
    topology = reader.read(doc)
    if sections is not None and sections.vhost not in (None, reader.vhost):
        del topology, doc, sections, reader  # read with the wrong vhost: read it again, whole
        return _parse(text, path, vhost, default_vhost, original, stream=False)
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
        read = _read_file(path, vhost, default_vhost, max_file_size, original_format)
        if isinstance(read, Problem):
            problems.append(read)
            continue
        topology, found = read
        problems.extend(found)
        parts.append(topology)
    merged, merge_problems = _merge(parts)
    problems.extend(merge_problems)
    return merged, problems


def _read_file(
    path: str, vhost: str | None, default_vhost: str, max_file_size: int, original: bool
) -> tuple[Topology, list[Problem]] | Problem:
    """One file read (its text gone when this returns: a large file's 50 MB are not kept
    while the files are merged)."""
    data = read_bytes(path, max_file_size)
    if isinstance(data, Problem):
        return data
    text = decode(data, path)
    if isinstance(text, Problem):
        return text
    if is_definitions(path):  # RabbitMQ definitions JSON, mixed freely with YAML
        return parse_definitions(text, path, vhost, default_vhost)
    del text  # libyaml reads the checked bytes: no str and no UTF-8 copy of it beside them
    return _parse(data, path, vhost, default_vhost, original)


def _merge(parts: Sequence[Topology]) -> tuple[Topology, list[Problem]]:
    problems: list[Problem] = []

    def same(a: Any, b: Any) -> bool:
        return canonical(_settings(a)) == canonical(_settings(b))

    def dedupe(items: Iterable[Any], key: Callable[[Any], Hashable]) -> tuple[Any, ...]:
        return first_of_each(items, key, problems, same)

    # each topology kind by its identity, in the order a file lists the kinds
    by_key = {
        kind.key: dedupe((s for p in parts for s in kind.specs(p)), kind.identity_function())
        for kind in _IN_FILE_ORDER
    }
    merged = Topology(
        warnings=tuple(w for p in parts for w in p.warnings),
        named=tuple(dict.fromkeys(n for p in parts for n in p.named)),
        consumers=dedupe((c for p in parts for c in p.consumers), lambda c: (c.vhost, c.name)),
        expectations=tuple(e for p in parts for e in p.expectations),
    ).holding(**by_key)
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
