"""What the wire refuses, checked before the first write (pure), and names shown safely.

AMQP 0-9-1 carries a vhost, exchange or queue name and a routing key as a *short string*: at
most 255 bytes of UTF-8, not characters. A longer name passed validation before; the apply then
wrote other objects first and failed on it with a bytes dump, and an over-long vhost was created
over HTTP and then "does not exist" over AMQP. A table (``arguments``) carries integers as signed
64-bit values (AMQP's ``l``): ``x-max-length: 18446744073709551616`` ended in "int too large to
convert" after earlier writes. A control character in a name is printed raw by a terminal (an
escape sequence; a ``\\n`` forges a plan line) and RabbitMQ strips some of them, so the object
never matches and every apply fails. All three are input errors here, naming file, line and
object, so nothing is written.

Names are shown through ``_errors.printable`` (in every ``Problem`` and plan line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ._errors import Location, Problem, escaped_char, unsafe_char
from ._model import BindingSpec, ExchangeSpec, QueueSpec, Topology, VhostSpec

SHORTSTR_BYTES = 255
INT64 = (-(2**63), 2**63 - 1)


def _name_problem(what: str, name: str, shortstr: bool) -> str | None:
    size = len(name) if name.isascii() else len(name.encode("utf-8", "surrogatepass"))
    if shortstr and size > SHORTSTR_BYTES:
        return (
            f"{what} is {size} bytes long; AMQP allows at most {SHORTSTR_BYTES} bytes "
            "(of UTF-8, not characters)"
        )
    if name.isprintable():  # no C0/C1 control, separator or bidi override: the common case
        return None
    bad = sorted({escaped_char(c) for c in name if unsafe_char(c)})
    if bad:
        return (
            f"{what} holds control characters ({', '.join(bad)}); RabbitMQ strips some of them "
            "(the object would never match) and a terminal acts on them"
        )
    return None


def _table_problems(value: Any, path: str) -> Iterator[str]:
    """Integers beyond signed 64 bits and over-long field names, anywhere in a table."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            yield (
                f"{path} is {value}, beyond the signed 64-bit range of an AMQP table "
                f"({INT64[0]}..{INT64[1]})"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            if len(str(key).encode("utf-8", "surrogatepass")) > SHORTSTR_BYTES:
                yield f"{path}: a field name is longer than {SHORTSTR_BYTES} bytes"
            yield from _table_problems(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _table_problems(item, f"{path}[{i}]")


def wire_problems(desired: Topology) -> list[Problem]:
    """Names and tables of ``desired`` that AMQP cannot carry or the broker would mangle."""
    problems: list[Problem] = []

    def check(
        names: Iterable[tuple[str, str]], location: Location | None, label: str, shortstr: bool
    ) -> None:
        for what, name in names:
            wrong = _name_problem(what, name, shortstr)
            if wrong is not None:
                problems.append(Problem(wrong, location, label))

    vhosts: set[str] = set()
    placed: list[VhostSpec | ExchangeSpec | QueueSpec | BindingSpec] = [
        *desired.vhosts,
        *desired.exchanges,
        *desired.queues,
        *desired.bindings,
    ]
    for obj in placed:
        vhost = obj.name if isinstance(obj, VhostSpec) else obj.vhost
        if vhost not in vhosts:  # once per vhost, at the first object in it
            vhosts.add(vhost)
            check([("the vhost name", vhost)], obj.location, obj.label, True)
    for x in desired.exchanges:
        check([("the name", x.name)], x.location, x.label, True)
    for q in desired.queues:
        check([("the name", q.name)], q.location, q.label, True)
    for b in desired.bindings:
        names = [("the source", b.source), ("the destination", b.destination)]
        check([*names, ("the routing key", b.routing_key)], b.location, b.label, True)
    for p in desired.policies:
        check([("the name", p.name)], p.location, p.label, False)  # HTTP only: no 255 limit
    for obj in placed:
        if isinstance(obj, VhostSpec):
            continue
        for wrong in _table_problems(dict(obj.arguments), "arguments"):
            problems.append(Problem(wrong, obj.location, obj.label))
    return problems
