"""YAML text to Python values that remember their lines: mappings (``line``, ``key_lines``)
and lists (``line``, ``item_lines``), duplicate keys found, aliases bounded (no "billion
laughs"). Read from libyaml's events when the file has no anchor or alias, from its nodes
otherwise. The loader (``_loader``) turns these values into the model; ``convert`` rewrites
them (``read_document``).
"""

from __future__ import annotations

from array import array
from collections.abc import Container, Hashable, Mapping
from typing import Any, Protocol

import yaml

from ._errors import Location, Problem, TopologyError
from ._files import MAX_INT_DIGITS
from ._gc import paused as paused_gc


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


def one_entry(entry: Any, line: int) -> list[Any]:
    """A list of one streamed entry at ``line``: what a kind's reader reads a section from."""
    result = _List((entry,))
    result.line = line
    result.item_lines = [line]
    return result


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


class NeedsNodes(Exception):
    """The text holds what only the node tree handles: an anchor or alias, an explicit tag,
    a merge key, a mapping or list as a key, or a second document."""


class _Everything:
    def __contains__(self, item: object) -> bool:
        return True


_EVERY_CHARACTER = _Everything()


class Stream(Protocol):
    """Who takes the entries of the top-level lists ``sections`` one by one, as they are
    parsed, instead of the document holding them (``yaml_document``)."""

    @property
    def sections(self) -> Container[str]:
        """The top-level keys whose lists it takes."""

    def take(self, section: str, entry: Any, line: int, doc: Mapping[str, Any]) -> None:
        """One entry of ``section`` at ``line``; ``doc``: the top-level keys read so far."""


# Keys whose values name other objects: thousands of bindings name the same few exchanges,
# so each such name is kept once (a 50 MB file: 550,000 bindings, 110,000 exchanges).
SHARED_VALUES = frozenset(
    ("exchange", "source", "destination", "destination_type", "type", "vhost")
    + ("alternate_exchange", "dead_letter_exchange", "queue_mode", "overflow")
)


_MAX_TAGS = 4096


class _EventReader:
    """Builds the values straight from libyaml's parse events, without a node tree.

    The node tree of a large file takes about twice the memory of the values (20,000 queues:
    90 MB against 55 MB) and held both at once at its peak; built from the events, only the
    values exist. Plain scalars are resolved and constructed as the composer and
    ``SafeLoader`` do them; whatever needs more (``NeedsNodes``) is read again through the
    node tree by ``_Builder``, which a topology file rarely needs and a large one hardly ever.

    With a ``Stream``, the entries of its top-level lists are handed over one at a time and
    the document keeps an empty list in their place: a 50 MB file's value tree (about 1 KB
    a queue) never exists whole, only the model its entries are read into. Strings repeated
    inside one entry (a queue's name as its binding's routing key) are one object, and so
    are the values of ``SHARED_VALUES`` keys across the file (exchange names referred to by
    thousands of bindings).
    """

    def __init__(self, loader: _Loader, stream: Stream | None = None) -> None:
        self.loader = loader
        self.stream = stream
        # each mapping key's text once: libyaml makes a new string for every occurrence
        self.keys: dict[str, str] = {}
        self.shared: dict[str, str] = {}  # the values of SHARED_VALUES keys, once each
        self.local: dict[str, str] | None = None  # the strings of the streamed entry, once each
        # the tag of plain scalars the resolver was asked about (keys such as `name` and
        # `type`, values such as `topic`: its regular expressions ran for each occurrence)
        self.tags: dict[str, str] = {}
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
        first = loader.get_event()
        if (
            self.stream is not None
            and type(first) is yaml.MappingStartEvent
            and first.anchor is None
            and first.tag in (None, "!")
        ):
            value: Any = self.mapping(first, self.stream)
        else:
            value = self.value(first)
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            raise NeedsNodes  # the composer's error names the second document
        return value

    # Events are typed Any: libyaml's marks are not the classes PyYAML's stubs name.
    def value(self, event: Any) -> Any:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return self.scalar(event)
        if event.anchor is not None or getattr(event, "tag", None) not in (None, "!"):
            raise NeedsNodes
        if kind is yaml.MappingStartEvent:
            return self.mapping(event)
        if kind is yaml.SequenceStartEvent:
            return self.sequence(event)
        raise NeedsNodes  # an alias

    def scalar(self, event: Any) -> Any:
        if event.anchor is not None or event.tag not in (None, "!"):
            raise NeedsNodes
        value = event.value
        if not event.implicit[0]:  # quoted: always a string
            return value
        if value and value[0] not in self.typed_starts:  # no resolver matches: a string
            return value
        tag = self.tags.get(value)
        if tag is None:
            tag = self.loader.resolve(yaml.ScalarNode, value, event.implicit)
            if len(self.tags) < _MAX_TAGS:
                self.tags[value] = tag
        if tag == _STR_TAG:
            return value
        if tag == _MERGE_TAG:
            raise NeedsNodes
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        return self.loader.yaml_constructors[tag](self.loader, node)

    def mapping(self, start: Any, stream: Stream | None = None) -> _Map:
        # The loops below inline ``value`` and ``scalar`` for the plain strings that make
        # up most of a file (a call per event was a tenth of the parse).
        loader = self.loader
        result = _Map()
        result.line = start.start_mark.line + 1
        lines = array("q")  # each key's line, in the keys' order
        by_key: dict[Any, int] | None = None  # after a key given twice, where order no longer tells
        keys = self.keys
        typed = self.typed_starts
        tags = self.tags
        str_tag = _STR_TAG
        duplicates = loader.duplicate_keys
        get_event = loader.get_event
        end = yaml.MappingEndEvent
        scalar = yaml.ScalarEvent
        while True:
            event: Any = get_event()
            if type(event) is end:
                break
            line = event.start_mark.line + 1
            if type(event) is not scalar:
                raise NeedsNodes
            key = event.value
            if (
                event.anchor is not None
                or event.tag is not None
                or (event.implicit[0] and (not key or key[0] in typed) and tags.get(key) != str_tag)
            ):
                key = self.scalar(event)  # may be other than a string
            if type(key) is str:
                key = keys.setdefault(key, key)
            if stream is not None and key in stream.sections and self._streams(key, result):
                value: Any = self.entries(key, result, stream)
            else:
                if key in result:
                    if by_key is None:
                        by_key = dict(zip(result, lines, strict=True))
                    duplicates.append((key, line, by_key[key]))
                event = get_event()
                plain = type(event) is scalar and event.anchor is None and event.tag is None
                value = event.value if plain else None
                if not (
                    plain
                    and (
                        not event.implicit[0]
                        or (value and (value[0] not in typed or tags.get(value) == str_tag))
                    )
                ):
                    value = self.value(event)  # not a plain string
                if type(value) is str:
                    if key in SHARED_VALUES:
                        value = self.shared.setdefault(value, value)
                    elif self.local is not None:
                        value = self.local.setdefault(value, value)
            result[key] = value
            if by_key is None:
                lines.append(line)
            else:
                by_key[key] = line
        result._lines = lines if by_key is None else by_key
        return result

    def _streams(self, key: str, doc: _Map) -> bool:
        """The value of the top-level ``key`` is a plain list to hand over entry by entry."""
        event = self.loader.peek_event()
        if type(event) is not yaml.SequenceStartEvent:
            return False
        if event.anchor is not None or event.tag not in (None, "!") or key in doc:
            raise NeedsNodes  # the node tree reads what streaming cannot (a list given twice)
        return True

    def entries(self, key: str, doc: _Map, stream: Stream) -> _List:
        """Hands the entries of the list at ``key`` to ``stream``; an empty list in its place."""
        get_event = self.loader.get_event
        start = get_event()
        while True:
            event: Any = get_event()
            if type(event) is yaml.SequenceEndEvent:
                break
            self.local = {}
            stream.take(key, self.value(event), event.start_mark.line + 1, doc)
        self.local = None
        placeholder = _List()
        placeholder.line = start.start_mark.line + 1
        placeholder.item_lines = []
        return placeholder

    def sequence(self, start: Any) -> _List:
        loader = self.loader
        items: list[Any] = []
        lines: list[int] = []
        get_event = loader.get_event
        end = yaml.SequenceEndEvent
        while True:
            event: Any = get_event()
            if type(event) is end:
                break
            lines.append(event.start_mark.line + 1)
            items.append(self.value(event))
        result = _List(items)
        result.line = start.start_mark.line + 1
        result.item_lines = lines
        return result


class AliasBomb(Exception):
    """The file's aliases repeat more values than it may (``alias_problem``)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def yaml_value(text: str, path: str = "<text>") -> tuple[Any, list[tuple[Any, int, int]]]:
    """The one document in ``text`` and its duplicate keys (key, line, first line);
    raises ``yaml.YAMLError``, or ``AliasBomb``."""
    value, duplicates, _, _ = yaml_document(text, path)
    return value, duplicates


def yaml_document(
    text: str | bytes, path: str, stream: Stream | None = None
) -> tuple[Any, list[tuple[Any, int, int]], bool, bool]:
    """``yaml_value``, whether every value in it is its own (read from the events, with no
    anchor or alias, so no value appears twice: the reader may then release what it has
    read), and whether ``stream`` took the entries of its sections (from the events; a file
    that needs the node tree is read whole, and what ``stream`` took so far is void).

    ``text`` may be the file's UTF-8 bytes (checked by ``_files.decode``): libyaml reads
    them as they are, where a ``str`` is first copied to UTF-8 (50 MB more for a 50 MB file).
    """
    with paused_gc():
        try:
            value, duplicates = read_yaml(text, path, nodes=False, stream=stream)
            return value, duplicates, True, stream is not None
        except NeedsNodes:
            value, duplicates = read_yaml(text, path, nodes=True)
            return value, duplicates, False, False


def read_yaml(
    text: str | bytes, path: str, *, nodes: bool, stream: Stream | None = None
) -> tuple[Any, list[tuple[Any, int, int]]]:
    """The document and its duplicate keys, from libyaml's events (``nodes`` False: raises
    ``NeedsNodes`` at the first anchor or alias; ``stream`` takes its sections' entries) or
    from its node graph (aliases counted first: ``AliasBomb``)."""
    loader = _Loader(text)
    loader.duplicate_keys = []
    loader.builder = _Builder(loader)
    try:
        if not nodes:  # no anchor or alias (NeedsNodes): nothing to count
            return _EventReader(loader, stream).document(), loader.duplicate_keys
        node = loader.get_single_node()
        # an alias needs an anchor (&name) and a reference (*name): without both in the text
        # there is nothing to count, and large files skip the walk
        amp, star = ("&", "*") if isinstance(text, str) else (b"&", b"*")
        bomb = alias_problem(node, path) if amp in text and star in text else None  # type: ignore[operator]
        if bomb is not None:
            raise AliasBomb(bomb)
        return (None if node is None else loader.builder.value(node)), loader.duplicate_keys
    finally:
        loader.dispose()
        # the builder refers back to the loader: with the collector paused, that cycle would
        # keep the loader's copy of the text alive until the whole load ends
        del loader.builder


MAX_ALIAS_NODES = 100_000


def alias_problem(root: yaml.Node | None, path: str) -> Problem | None:
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


def read_document(text: str, path: str = "<string>") -> Any:
    """One YAML document as plain data whose mappings and lists remember their lines
    (``line``, ``key_lines``, ``item_lines``): for tools that rewrite a file (``convert``)."""
    try:
        return yaml_value(text, path)[0]
    except AliasBomb as exc:
        raise TopologyError([exc.problem]) from exc
    except yaml.YAMLError as exc:
        raise TopologyError([Problem(f"not valid YAML: {exc}", Location(path, 1))]) from exc
