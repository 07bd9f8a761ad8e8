"""Read topology files into the model, keeping file:line for every object.

Every problem in every file is collected before anything is reported, so one run of
``declare-amqp validate`` shows them all.
"""

from __future__ import annotations

import difflib
from array import array
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from dataclasses import fields, replace
from typing import Any

import yaml

from ._access import merge_access, read_access
from ._definitions import is_definitions, parse_definitions
from ._errors import Location, Problem, TopologyError
from ._errors import dedupe as first_of_each
from ._files import DEFAULT_MAX_FILE_SIZE, MAX_INT_DIGITS, read_text
from ._fit import key_problem
from ._format import (
    BINDING_KEYS,
    CONSUMED_QUEUE_KEYS,
    CONSUMER_KEYS,
    EXCHANGE_KEYS,
    EXPECT_KEYS,
    POLICY_KEYS,
    QUEUE_ALIASES,
    QUEUE_BINDING_KEYS,
    QUEUE_KEYS,
    RETRY_KEYS,
    TOP_KEYS,
    VHOST_KEYS,
    Key,
)
from ._gc import paused as paused_gc
from ._model import (
    BindingSpec,
    ConsumedQueue,
    ConsumerSpec,
    ExchangeSpec,
    Expectation,
    PolicySpec,
    QueueSpec,
    Topology,
    VhostSpec,
    canonical,
)


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers the line of itself and of each key.

    A large file makes hundreds of thousands of these, so no instance ``__dict__``
    (``__slots__``), and the keys' lines are an array in the keys' order (8 bytes a key,
    no dict, no int objects), turned into a dict when asked for. Where that order does not
    tell (a key given twice; a copy given its lines) they are kept as a dict. Ask for the
    lines before removing keys (``_convert`` does).
    """

    __slots__ = ("line", "_lines")
    line: int
    _lines: array[int] | dict[Any, int]

    @property
    def key_lines(self) -> dict[Any, int]:
        lines = self._lines
        # keys added since the file was read (convert adds some) have no line: zip stops
        return lines if isinstance(lines, dict) else dict(zip(self, lines, strict=False))

    @key_lines.setter
    def key_lines(self, lines: dict[Any, int]) -> None:
        self._lines = lines


class _List(list[Any]):
    """A YAML list that remembers the line of itself and of each item (``__slots__``)."""

    __slots__ = ("line", "item_lines")
    line: int
    item_lines: list[int]


# libyaml's parser is ~10x faster on large files and keeps the same line marks.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
_SEQ_TAG = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that records lines and refuses duplicate keys."""

    duplicate_keys: list[tuple[Any, int, int]]
    builder: _Builder


class _Builder:
    """Turns libyaml's node tree into values in one pass: ``_Map``, ``_List`` and strings.

    PyYAML's generic ``construct_object`` costs more than libyaml's parsing itself (on a
    20,000-queue file, 2.4 s against 2.8 s for the parse on a loaded machine): it looks up a
    constructor, tracks recursion and caches every node, scalars included. Nearly every node
    of a topology file is a plain mapping, list or string; those are built here directly,
    and anything else (numbers, booleans, null, ``!!set``, an unknown tag: an error with its
    mark) goes to PyYAML's own constructors, so the values are the same as ``SafeLoader``'s.
    An alias yields the very object its anchor built, as in PyYAML.
    """

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.built: dict[int, Any] = {}  # id(node) of each collection -> its value
        self.building: set[int] = set()

    def value(self, node: yaml.Node) -> Any:
        tag = node.tag
        if type(node) is yaml.ScalarNode and tag == _STR_TAG:
            return node.value
        if type(node) is yaml.MappingNode and tag == _MAP_TAG:
            return self.mapping(node)
        if type(node) is yaml.SequenceNode and tag == _SEQ_TAG:
            return self.sequence(node)
        return self.loader.construct_object(node, deep=True)

    def _start(self, node: yaml.Node) -> None:
        if id(node) in self.building:  # an alias inside its own anchor
            raise yaml.constructor.ConstructorError(
                None, None, "found unconstructable recursive node", node.start_mark
            )
        self.building.add(id(node))

    def mapping(self, node: yaml.MappingNode) -> _Map:
        if id(node) in self.built:
            return self.built[id(node)]  # type: ignore[no-any-return]
        merged = 0  # how many pairs a `<<: *base` merge key put first
        if any(key_node.tag == _MERGE_TAG for key_node, _ in node.value):
            explicit = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
            self.loader.flatten_mapping(node)  # as SafeLoader does
            merged = len(node.value) - explicit
        self._start(node)
        result = _Map()
        result.line = node.start_mark.line + 1
        key_lines: dict[Any, int] = {}
        result.key_lines = key_lines
        value = self.value
        duplicates = self.loader.duplicate_keys
        from_merge: set[Any] = set()
        for index, (key_node, value_node) in enumerate(node.value):
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: no name is a list
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "a mapping key must be a plain value, not a list or mapping",
                    key_node.start_mark,
                )
            key = value(key_node)
            if type(key) is not str and not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found unhashable key",
                    key_node.start_mark,
                )
            line = key_node.start_mark.line + 1
            if index < merged:
                from_merge.add(key)
            elif key in from_merge:
                from_merge.discard(key)  # overriding a merged key is what merging is for
            elif key in key_lines:
                duplicates.append((key, line, key_lines[key]))
            result[key] = value(value_node)
            key_lines[key] = line
        self.building.discard(id(node))
        self.built[id(node)] = result
        return result

    def sequence(self, node: yaml.SequenceNode) -> _List:
        if id(node) in self.built:
            return self.built[id(node)]  # type: ignore[no-any-return]
        self._start(node)
        children = node.value
        value = self.value
        result = _List([value(child) for child in children])
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in children]
        self.building.discard(id(node))
        self.built[id(node)] = result
        return result


# Mappings and lists that PyYAML's constructors meet (inside `!!set`, `!!omap`...) are built
# by the same builder.
_Loader.add_constructor(_MAP_TAG, lambda loader, node: loader.builder.mapping(node))
_Loader.add_constructor(_SEQ_TAG, lambda loader, node: loader.builder.sequence(node))


def _construct_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    if sum(c.isdigit() for c in str(node.value)) > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of more than {MAX_INT_DIGITS} digits", node.start_mark
        )
    value: int = loader.construct_yaml_int(node)
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


class _NeedsNodes(Exception):
    """The text holds what only the node tree handles: an anchor or alias, an explicit tag,
    a merge key, a mapping or list as a key, or a second document."""


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


_EVERY_CHARACTER = _Everything()


class _EventReader:
    """Builds the values straight from libyaml's parse events, without a node tree.

    The node tree of a large file takes about twice the memory of the values (20,000 queues:
    90 MB against 55 MB) and held both at once at its peak; built from the events, only the
    values exist. Plain scalars are resolved and constructed as the composer and
    ``SafeLoader`` do them; whatever needs more (``_NeedsNodes``) is read again through the
    node tree by ``_Builder``, which a topology file rarely needs and a large one hardly ever.
    """

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        # each mapping key's text once: libyaml makes a new string for every occurrence
        self.keys: dict[str, str] = {}
        # The first characters of plain scalars that may resolve to something other than a
        # string (numbers, booleans, null, timestamps, merge): the resolver tries its regular
        # expressions by first character, so any other start is a string without asking it.
        resolvers = loader.yaml_implicit_resolvers
        if None in resolvers or loader.yaml_path_resolvers:
            self.typed_starts: Container[str] = _EVERY_CHARACTER
        else:
            self.typed_starts = frozenset(key for key in resolvers if key)

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        value = self.value(loader.get_event())
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            raise _NeedsNodes  # the composer's error names the second document
        return value

    # Events are typed Any: libyaml's marks are not the classes PyYAML's stubs name.
    def value(self, event: Any) -> Any:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return self.scalar(event)
        if event.anchor is not None or getattr(event, "tag", None) not in (None, "!"):
            raise _NeedsNodes
        if kind is yaml.MappingStartEvent:
            return self.mapping(event)
        if kind is yaml.SequenceStartEvent:
            return self.sequence(event)
        raise _NeedsNodes  # an alias

    def scalar(self, event: Any) -> Any:
        if event.anchor is not None or event.tag not in (None, "!"):
            raise _NeedsNodes
        value = event.value
        if not event.implicit[0]:  # quoted: always a string
            return value
        if value and value[0] not in self.typed_starts:  # no resolver matches: a string
            return value
        tag = self.loader.resolve(yaml.ScalarNode, value, event.implicit)
        if tag == _STR_TAG:
            return event.value
        if tag == _MERGE_TAG:
            raise _NeedsNodes
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        return self.loader.yaml_constructors[tag](self.loader, node)

    def mapping(self, start: Any) -> _Map:
        loader = self.loader
        result = _Map()
        result.line = start.start_mark.line + 1
        lines = array("q")  # each key's line, in the keys' order
        by_key: dict[Any, int] | None = None  # after a key given twice, where order no longer tells
        keys = self.keys
        duplicates = loader.duplicate_keys
        get_event = loader.get_event
        while not loader.check_event(yaml.MappingEndEvent):
            key_event: Any = get_event()
            line = key_event.start_mark.line + 1
            if type(key_event) is not yaml.ScalarEvent:
                raise _NeedsNodes
            key = self.scalar(key_event)
            if type(key) is str:
                key = keys.setdefault(key, key)
            if key in result:
                if by_key is None:
                    by_key = dict(zip(result, lines, strict=True))
                duplicates.append((key, line, by_key[key]))
            result[key] = self.value(get_event())
            if by_key is None:
                lines.append(line)
            else:
                by_key[key] = line
        get_event()
        result._lines = lines if by_key is None else by_key
        return result

    def sequence(self, start: Any) -> _List:
        loader = self.loader
        items: list[Any] = []
        lines: list[int] = []
        get_event = loader.get_event
        while not loader.check_event(yaml.SequenceEndEvent):
            event: Any = get_event()
            lines.append(event.start_mark.line + 1)
            items.append(self.value(event))
        get_event()
        result = _List(items)
        result.line = start.start_mark.line + 1
        result.item_lines = lines
        return result


class _AliasBomb(Exception):
    """The file's aliases repeat more values than it may (``_alias_problem``)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _yaml_value(text: str, path: str = "<text>") -> tuple[Any, list[tuple[Any, int, int]]]:
    """The one document in ``text`` and its duplicate keys (key, line, first line);
    raises ``yaml.YAMLError``, or ``_AliasBomb``."""
    value, duplicates, _ = _yaml_document(text, path)
    return value, duplicates


def _yaml_document(text: str, path: str) -> tuple[Any, list[tuple[Any, int, int]], bool]:
    """``_yaml_value``, and whether every value in it is its own: read from the events,
    with no anchor or alias, so no value appears twice (the reader may then release
    what it has read)."""
    with paused_gc():
        try:
            value, duplicates = _read(text, path, nodes=False)
            return value, duplicates, True
        except _NeedsNodes:
            value, duplicates = _read(text, path, nodes=True)
            return value, duplicates, False


def _read(text: str, path: str, *, nodes: bool) -> tuple[Any, list[tuple[Any, int, int]]]:
    loader = _Loader(text)
    loader.duplicate_keys = []
    loader.builder = _Builder(loader)
    try:
        if not nodes:  # no anchor or alias (_NeedsNodes): nothing to count
            return _EventReader(loader).document(), loader.duplicate_keys
        node = loader.get_single_node()
        # an alias needs an anchor (&name) and a reference (*name): without both in the text
        # there is nothing to count, and large files skip the walk
        bomb = _alias_problem(node, path) if "&" in text and "*" in text else None
        if bomb is not None:
            raise _AliasBomb(bomb)
        return (None if node is None else loader.builder.value(node)), loader.duplicate_keys
    finally:
        loader.dispose()


class _FileReader:
    """Turns one parsed file into model objects, collecting problems."""

    def __init__(
        self, path: str, override_vhost: str | None, fallback_vhost: str, original: bool = False
    ) -> None:
        self.path = path
        # the original declare-amqp's file (`--config FILE`): a queue binding without a key
        # is bound with the queue's name, as its pika queue_bind(queue, exchange) did
        self.original = original
        self.unkeyed: list[tuple[BindingSpec, str]] = []
        self.override_vhost = override_vhost
        self.fallback_vhost = fallback_vhost
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        # the document's values are unshared (no aliases): the raw queues, most of a large
        # file, are dropped from it one by one as their specs are built (``_queues``)
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
                doc.key_lines.get(key, 1) if isinstance(doc, _Map) else 1, f"'{key}' must be a list"
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
        bindings = tuple(self._top_bindings(doc)) + tuple(self._queue_bindings(doc))
        exchanges = tuple(self._exchanges(doc))
        access = read_access(self, doc)  # before the warnings: it adds to them
        return Topology(
            warnings=(*self._unkeyed_warnings(exchanges), *self.warnings),
            named=(explicit,) if explicit else (),
            vhosts=tuple(self._vhosts(doc)),
            exchanges=exchanges,
            queues=tuple(self._queues(doc)),
            bindings=bindings,
            policies=tuple(self._policies(doc)),
            consumers=tuple(self._consumers(doc)),
            access=access,
            expectations=tuple(self._expectations(doc)),
        )

    def _vhosts(self, doc: dict[str, Any]) -> Iterable[VhostSpec]:
        for raw, line in self.entries(doc, "vhosts"):
            if isinstance(raw, str):
                yield VhostSpec(raw, self.at(line))
                continue
            f = self.fields(raw, VHOST_KEYS, "vhost", line)
            if f is not None:
                yield VhostSpec(f["name"], self.at(line))

    def _exchanges(self, doc: dict[str, Any]) -> Iterable[ExchangeSpec]:
        for raw, line in self.entries(doc, "exchanges"):
            f = self.fields(raw, EXCHANGE_KEYS, "exchange", line)
            if f is None:
                continue
            arguments = dict(f.get("arguments") or {})
            label = f"exchange '{f['name']}'"
            ae = f.get("alternate_exchange")
            if ae is not None:
                if arguments.get("alternate-exchange", ae) != ae:
                    self.problem(
                        line, "alternate_exchange and arguments.alternate-exchange disagree", label
                    )
                arguments["alternate-exchange"] = ae
            yield ExchangeSpec(
                vhost=f.get("vhost", self.vhost),
                name=f["name"],
                type=f["type"],
                durable=f.get("durable", True),
                auto_delete=f.get("auto_delete", False),
                internal=f.get("internal", False),
                arguments=arguments,
                location=self.at(line),
            )

    def _queues(self, doc: dict[str, Any]) -> Iterable[QueueSpec]:
        entries = list(self.entries(doc, "queues"))
        # the last reader of the raw queues (their bindings were read before): each one is
        # released as its spec is built, so the values and the model of a large file are
        # not both held whole (on a file of aliases a value may be read again elsewhere)
        held = doc["queues"] if self.release and entries else None
        for index, (raw, line) in enumerate(entries):
            if held is not None:
                entries[index] = held[index] = None  # type: ignore[call-overload]
            f = self.fields(raw, QUEUE_KEYS, "queue", line)
            if f is None:
                continue
            label = f"queue '{f['name']}'"
            arguments = dict(f.get("arguments") or {})
            for alias in QUEUE_ALIASES:
                if alias.name in f and alias.argument:
                    if alias.argument in arguments and arguments[alias.argument] != f[alias.name]:
                        self.problem(
                            raw.key_lines.get(alias.name, line),
                            f"'{alias.name}' and arguments.{alias.argument} disagree",
                            label,
                        )
                    arguments[alias.argument] = f[alias.name]
            queue_type = f.get("type", "classic")
            type_given = "type" in f or "x-queue-type" in arguments
            if "x-queue-type" in arguments:
                declared = arguments.pop("x-queue-type")
                if "type" in f and declared != queue_type:
                    self.problem(
                        line,
                        f"'type: {queue_type}' and arguments.x-queue-type '{declared}' disagree",
                        label,
                    )
                elif "type" not in f:
                    queue_type = declared
            yield QueueSpec(
                vhost=f.get("vhost", self.vhost),
                name=f["name"],
                type=queue_type,
                durable=f.get("durable", True),
                auto_delete=f.get("auto_delete", False),
                arguments=arguments,
                location=self.at(line),
                type_given=type_given,
                migrate=bool(f.get("migrate", False)),
            )

    def _routing_key(self, f: dict[str, Any], line: int, label: str) -> str:
        rk = f.get("routing_key")
        bk = f.get("binding_key")
        if rk is not None and bk is not None and rk != bk:
            self.problem(
                line, "routing_key and binding_key disagree (they are the same thing)", label
            )
        return str(rk if rk is not None else bk if bk is not None else "")

    def _queue_bindings(self, doc: dict[str, Any]) -> Iterable[BindingSpec]:
        for raw_queue, _ in self.entries(doc, "queues"):
            if not isinstance(raw_queue, dict) or not isinstance(raw_queue.get("bindings"), list):
                continue
            queue = raw_queue.get("name")
            vhost = raw_queue.get("vhost", self.vhost)
            for raw, line in self.entries(raw_queue, "bindings"):
                f = self.fields(raw, QUEUE_BINDING_KEYS, f"binding of queue '{queue}'", line)
                if f is None or not isinstance(queue, str) or not isinstance(vhost, str):
                    continue
                unkeyed = f.get("routing_key") is None and f.get("binding_key") is None
                binding = BindingSpec(
                    vhost=vhost,
                    source=f["exchange"],
                    destination=queue,
                    destination_type="queue",
                    routing_key=queue
                    if unkeyed and self.original
                    else self._routing_key(f, line, f"binding of queue '{queue}'"),
                    arguments=dict(f.get("arguments") or {}),
                    location=self.at(line),
                )
                if unkeyed and not self.original:
                    self.unkeyed.append((binding, queue))
                yield binding

    def _unkeyed_warnings(self, exchanges: Sequence[ExchangeSpec]) -> Iterable[Problem]:
        """A queue binding without a key to a direct or topic exchange is bound with '' here
        (as in definitions JSON); the original declare-amqp bound it with the queue's name,
        so messages routed by that name would become unroutable after switching tools."""
        types = {(x.vhost, x.name): x.type for x in exchanges}
        for binding, queue in self.unkeyed:
            builtin = binding.source[4:] if binding.source.startswith("amq.") else None
            kind = types.get((binding.vhost, binding.source), builtin)
            if kind in ("direct", "topic"):
                yield Problem(
                    f"no binding_key: bound with '' (only messages published with an empty "
                    f"routing key match); the original declare-amqp bound it with the queue's "
                    f"name '{queue}' (write binding_key: {queue} to keep that)",
                    binding.location,
                    binding.label,
                )

    def _top_bindings(self, doc: dict[str, Any]) -> Iterable[BindingSpec]:
        for raw, line in self.entries(doc, "bindings"):
            f = self.fields(raw, BINDING_KEYS, "binding", line)
            if f is None:
                continue
            yield BindingSpec(
                vhost=f.get("vhost", self.vhost),
                source=f["source"],
                destination=f["destination"],
                destination_type=f.get("destination_type", "queue"),
                routing_key=self._routing_key(f, line, "binding"),
                arguments=dict(f.get("arguments") or {}),
                location=self.at(line),
            )

    def _policies(self, doc: dict[str, Any]) -> Iterable[PolicySpec]:
        for raw, line in self.entries(doc, "policies"):
            f = self.fields(raw, POLICY_KEYS, "policy", line)
            if f is None:
                continue
            yield PolicySpec(
                vhost=f.get("vhost", self.vhost),
                name=f["name"],
                pattern=f["pattern"],
                definition=dict(f["definition"]),
                apply_to=f.get("apply_to", "all"),
                priority=f.get("priority", 0),
                location=self.at(line),
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
            consumer = self._consumer(raw, line)
            if consumer is not None:
                yield consumer

    def _consumer(self, raw: Any, line: int) -> ConsumerSpec | None:
        f = self.fields(raw, CONSUMER_KEYS, "consumer", line)
        # Its queues and retry are checked even when a key above is wrong, so that one run
        # reports every problem.
        top: dict[str, Any] = f if f is not None else raw if isinstance(raw, dict) else {}
        name = top.get("name")
        label = f"consumer '{name if isinstance(name, str) else '?'}'"
        queues: list[ConsumedQueue] = []
        if isinstance(top.get("queues"), list):
            for item, item_line in self.entries(top, "queues"):
                q = self.fields(item, CONSUMED_QUEUE_KEYS, f"queue of {label}", item_line)
                if q is None:
                    continue
                if any(seen.queue == q["queue"] for seen in queues):
                    self.problem(item_line, f"queue '{q['queue']}' is listed twice", label)
                queues.append(ConsumedQueue(q["queue"], q["prefetch"], self.at(item_line)))
            if not top["queues"]:
                self.problem(line, "a consumer needs at least one queue", label)
        retry_line = raw.key_lines.get("retry", line) if isinstance(raw, _Map) else line
        retry: dict[str, Any] = {}
        if isinstance(top.get("retry"), dict):
            retry = self.fields(top["retry"], RETRY_KEYS, f"retry of {label}", retry_line) or {}
        delays: list[float] = []
        for value in retry.get("delays") or []:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                self.problem(
                    retry_line,
                    f"retry delays must be positive numbers of seconds, not {value!r}",
                    label,
                )
                continue
            delays.append(float(value))
        if delays != sorted(delays):
            self.problem(
                retry_line,
                "retry delays must be in ascending order (the n-th retry waits the n-th delay)",
                label,
            )
        if f is None:
            return None
        return ConsumerSpec(
            vhost=f.get("vhost", self.vhost),
            name=f["name"],
            queues=tuple(queues),
            mode=f.get("mode", "weighted"),
            concurrency=f.get("concurrency"),
            max_retries=retry.get("max_retries", 5),
            delays=tuple(delays),
            dead_letter_exchange=f.get("dead_letter_exchange"),
            location=self.at(line),
        )


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
        doc, duplicate_keys, unshared = _yaml_document(text, path)
    except _AliasBomb as exc:
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


MAX_ALIAS_NODES = 100_000


def _alias_problem(root: yaml.Node | None, path: str) -> Problem | None:
    """Aliases may repeat at most as many nodes as the file holds, and never fewer than
    ``MAX_ALIAS_NODES``: a 614-byte file whose aliases nest nine deep expands to more than a
    billion values (a "billion laughs"), which every later step would walk.

    The count runs over the graph of distinct nodes (each sized once, bottom-up), so
    counting costs what parsing did."""
    if root is None:
        return None
    size: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being sized
    distinct = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: a deeply nested file must not exhaust the call stack here
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        # an alias inside its own anchor is no expansion to count: the builder refuses it
        # ("found unconstructable recursive node", with its line)
        kids = [k for k in _children(node) if id(k) not in open_]
        if not children_done:
            if id(node) in open_:
                continue
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in size)
            continue
        open_.discard(id(node))
        distinct += 1
        size[id(node)] = 1 + sum(size.get(id(k), 0) for k in kids)
    repeated = size[id(root)] - distinct
    limit = max(MAX_ALIAS_NODES, distinct)
    if repeated <= limit:
        return None
    return Problem(
        f"its aliases (*name) repeat {repeated:,} values, more than the limit of {limit:,}; "
        "nothing was read (an alias bomb?)",
        Location(path, 1),
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


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


def read_document(text: str, path: str = "<string>") -> Any:
    """One YAML document as plain data whose mappings and lists remember their lines
    (``line``, ``key_lines``, ``item_lines``): for tools that rewrite a file (``convert``)."""
    try:
        return _yaml_value(text, path)[0]
    except _AliasBomb as exc:
        raise TopologyError([exc.problem]) from exc
    except yaml.YAMLError as exc:
        raise TopologyError([Problem(f"not valid YAML: {exc}", Location(path, 1))]) from exc
