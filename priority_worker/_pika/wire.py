"""Wire shortcuts: our Properties as pika's and back, the publish tag spliced into an encoded
header. (Joined socket writes are ``declare_amqp.socket_writes``, shared with the migration
mover.)

These are the publish and ack hot path's shortcuts past pika's generic encoding and write loop.
Each relies on pika internals and is checked against pika's own result at import (or falls back
to the plain way when the internals are not there); ``tests/worker/test_hot_path.py`` pins the
pika version's internals.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Mapping
from typing import Protocol

import pika

from .._model import Properties, with_headers

# On every mandatory publish: matches a basic.return to its publish (see _channels).
PUBLISH_TAG_HEADER = "x-publish-tag"

_PROPERTY_NAMES = tuple(Properties.__dataclass_fields__)
_get_properties = operator.attrgetter(*_PROPERTY_NAMES)
# pika.BasicProperties takes the same 13 properties in the same order (then cluster_id).
assert _PROPERTY_NAMES == (
    "content_type",
    "content_encoding",
    "headers",
    "delivery_mode",
    "priority",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "timestamp",
    "type",
    "user_id",
    "app_id",
)
_HEADERS = _PROPERTY_NAMES.index("headers")
EMPTY_PROPERTIES = Properties()


def to_properties(props: pika.BasicProperties) -> Properties:
    """pika's BasicProperties as our frozen value."""
    return Properties(*_get_properties(props))


def to_pika(
    props: Properties | None,
    extra_headers: Mapping[str, object] | None = None,
) -> pika.BasicProperties:
    """Our Properties as pika's BasicProperties (headers copied, ``extra_headers`` added)."""
    if props is None:
        return pika.BasicProperties(headers=dict(extra_headers) if extra_headers else None)
    values = list(_get_properties(props))
    headers = values[_HEADERS]
    if extra_headers:
        values[_HEADERS] = {**headers, **extra_headers} if headers else dict(extra_headers)
    elif headers is not None:
        values[_HEADERS] = dict(headers)
    return pika.BasicProperties(*values)


class _TaggedProperties(pika.BasicProperties):  # type: ignore[misc]
    """pika properties whose headers table also carries ``x-publish-tag: <tag>``.

    The tag goes on every mandatory publish (to match a basic.return to its publish); adding
    it to a copy of the headers dict and letting pika encode the table costs more than the
    rest of our publish path, so it is spliced into the encoded table instead. pika encodes a
    properties header as ``[flags, (len, bytes) per shortstr present before the table,
    table size, entries...]``; :func:`_check_tagged_encoding` verifies at import that the
    result is byte for byte what pika itself produces, else plain dict merging is used.
    """

    publish_tag = 0

    def encode(self) -> list[bytes]:
        pieces: list[bytes] = super().encode()
        i = _table_index(self)
        entry = _tag_entry(self.publish_tag)
        pieces[i] = _TABLE_SIZE.pack(_TABLE_SIZE.unpack(pieces[i])[0] + len(entry))
        pieces.insert(i + 1, entry)
        return pieces


class _PreEncodedProperties(pika.BasicProperties):  # type: ignore[misc]
    """What pika needs to write a header frame (``encode()``, ``INDEX``) from the cached
    encoding of a :class:`Properties` value plus the publish tag and any headers (see
    :func:`tagged_pika`).
    Only ``encode()`` is meant to be used: the property attributes are not set."""

    def __init__(
        self,
        parts: tuple[list[bytes], int, list[bytes]],
        tag: int,
        entries: tuple[list[bytes], int] = ([], 0),
    ) -> None:
        # Deliberately not BasicProperties.__init__: nothing but encode() reads this object.
        self._parts = parts
        self._entries = entries
        self.publish_tag = tag

    def encode(self) -> list[bytes]:
        prefix, size, suffix = self._parts
        entries, entries_size = self._entries
        entry = _tag_entry(self.publish_tag)
        size += len(entry) + entries_size
        return [*prefix, _TABLE_SIZE.pack(size), entry, *entries, *suffix]


def _tag_entry(tag: int) -> bytes:
    # As pika encodes an int: "I" (signed 32 bits) when it fits, else "l" (64 bits).
    return _TAG_ENTRY_KEY + (_TAG_INT.pack(b"I", tag) if tag < 2**31 else _TAG_LONG.pack(b"l", tag))


_ENCODED: dict[Properties, tuple[list[bytes], int, list[bytes]]] = {}
_ENCODED_MAX = 512  # distinct Properties values whose encoding is kept


def _encoded_parts(props: Properties) -> tuple[list[bytes], int, list[bytes]] | None:
    """pika's encoding of ``props`` with an empty headers table, split around the table's
    size; None when ``props`` is not hashable (it has headers, or another unhashable value)."""
    try:
        parts = _ENCODED.get(props)
    except TypeError:
        return None
    if parts is None:
        values = list(_get_properties(props))
        values[_HEADERS] = {}
        pieces = pika.BasicProperties(*values).encode()
        i = _table_index(props)
        parts = (pieces[:i], _TABLE_SIZE.unpack(pieces[i])[0], pieces[i + 1 :])
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[props] = parts
    return parts


class _HasEncodedFields(Protocol):
    @property
    def content_type(self) -> str | None: ...

    @property
    def content_encoding(self) -> str | None: ...


def _table_index(props: _HasEncodedFields) -> int:
    """Where pika puts the headers table's size: after the flags and the (length, bytes)
    pieces of content_type and content_encoding when present."""
    return 1 + (props.content_type is not None) * 2 + (props.content_encoding is not None) * 2


_TABLE_SIZE = struct.Struct(">I")
_TAG_ENTRY_KEY = bytes([len(PUBLISH_TAG_HEADER)]) + PUBLISH_TAG_HEADER.encode()
_TAG_INT = struct.Struct(">ci")
_TAG_LONG = struct.Struct(">cq")


def _encoded_entries(headers: Mapping[str, object]) -> tuple[list[bytes], int]:
    """pika's encoding of a headers table's entries (without the table's size), and their
    size in bytes."""
    pieces: list[bytes] = []
    size: int = pika.data.encode_table(pieces, headers) - _TABLE_SIZE.size
    return pieces[1:], size


def _pre_encoded(properties: Properties, tag: int) -> _PreEncodedProperties | None:
    """The fast encoding of :func:`tagged_pika` (None for properties it cannot cache).

    The encoding of everything but the headers' entries is cached per distinct value (see
    :func:`_encoded_parts`); headers (a traced publish's ``traceparent``, say) are encoded per
    publish and spliced in after the tag, as pika orders the entries of ``{tag, **headers}``.
    """
    headers = properties.headers
    if headers is None:
        parts = _encoded_parts(properties)
        return None if parts is None else _PreEncodedProperties(parts, tag)
    parts = _encoded_parts(with_headers(properties, None))
    if parts is None:
        return None
    if not headers:
        return _PreEncodedProperties(parts, tag)
    return _PreEncodedProperties(parts, tag, _encoded_entries(headers))


def tagged_pika(properties: Properties, tag: int) -> pika.BasicProperties:
    """pika properties for a mandatory publish: ``properties`` plus the publish tag header."""
    if _TAGGED_ENCODING_OK:
        pre = _pre_encoded(properties, tag)
        if pre is not None:
            return pre
    values = list(_get_properties(properties))
    headers = values[_HEADERS]
    if _TAGGED_ENCODING_OK:
        values[_HEADERS] = dict(headers) if headers else {}
        props = _TaggedProperties(*values)
        props.publish_tag = tag
        return props
    values[_HEADERS] = (
        {PUBLISH_TAG_HEADER: tag, **headers} if headers else {PUBLISH_TAG_HEADER: tag}
    )
    return pika.BasicProperties(*values)


def _check_tagged_encoding() -> bool:
    samples = [
        Properties(),
        Properties(content_type="application/json", delivery_mode=2),
        Properties(
            content_encoding="gzip",
            headers={"a": 1, "b": "x"},
            message_id="m",
            priority=3,
            app_id="app",
            timestamp=5,
            type="t",
            expiration="100",
        ),
        Properties(
            headers={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
            delivery_mode=2,
            message_id="m",
        ),
        Properties(
            content_type="text/plain",
            content_encoding="utf-8",
            headers={},
            correlation_id="c",
            reply_to="r",
            user_id="guest",
        ),
    ]
    try:
        for props in samples:
            for tag in (1, 2**40):
                values = list(_get_properties(props))
                plain = dict(values[_HEADERS] or {})
                values[_HEADERS] = {PUBLISH_TAG_HEADER: tag, **plain}
                expected = b"".join(pika.BasicProperties(*values).encode())
                values[_HEADERS] = plain
                tagged = _TaggedProperties(*values)
                tagged.publish_tag = tag
                if b"".join(tagged.encode()) != expected:
                    return False
                pre = _pre_encoded(props, tag)
                if pre is None or b"".join(pre.encode()) != expected:
                    return False
    except Exception:  # any surprise in pika's internals: use the plain path
        return False
    finally:
        _ENCODED.clear()
    return True


_TAGGED_ENCODING_OK = _check_tagged_encoding()
