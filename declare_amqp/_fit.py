"""Does this value fit this key? The one place that decides, for loader, validator and exporter.

The rule is the broker's own: a value fits a queue argument when RabbitMQ accepts it on a
declare (the key tables in ``_format`` carry the types, choices, ranges and forms, measured
on RabbitMQ 3.10.8: ``x-max-priority`` 0-255, ``x-delivery-limit`` any whole number, TTLs
and ``x-expires`` up to 315,360,000,000 ms, ``x-stream-max-segment-size-bytes`` 0 and up,
``x-max-age`` a number and one of YMDhms). So:

- the loader refuses an alias value the broker would refuse (``value_problem``),
- the validator refuses the same values inside ``arguments:`` (``type_fits`` and
  ``value_problem`` on the same key),
- the exporter writes the readable alias only for a value that fits, and
- whatever the broker holds therefore loads again: an export never fails to load.

What the broker accepts but does not honour is a *warning* (``fit_warnings``), never an error.
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from typing import Any

from ._errors import Problem
from ._format import ARGUMENT_TYPES, Key, describe_types
from ._model import Topology


def type_fits(value: Any, types: tuple[type, ...]) -> bool:
    """``value`` has one of ``types``; a boolean is never a number (YAML ``true`` is not 1)."""
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def value_problem(key: Key, value: Any, suggest: bool = False) -> str | None:
    """Why ``value`` (of the right type) is not acceptable for ``key``, or None.

    ``suggest``: name the closest choice of a misspelt one (``did you mean 'quorum'?``).
    """
    if key.choices and value not in key.choices:
        hint = difflib.get_close_matches(str(value), list(key.choices), n=1) if suggest else []
        suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
        return f"must be one of {', '.join(key.choices)}, not {value!r}{suggestion}"
    if isinstance(value, int) and not isinstance(value, bool):
        if key.minimum is not None and value < key.minimum:
            return f"must be at least {key.minimum}, not {value}"
        if key.maximum is not None and value > key.maximum:
            return f"must be at most {key.maximum}, not {value}"
    if isinstance(value, list):
        if key.min_items is not None and len(value) < key.min_items:
            if key.min_items == 1:
                return "must not be an empty list"
            return f"must list at least {key.min_items} items, not {len(value)}"
        for i, item in enumerate(value, 1):
            if key.items and not type_fits(item, key.items):
                return f"item {i} must be {describe_types(key.items)}, not {item!r}"
    if (
        key.pattern is not None
        and isinstance(value, str)
        and _compiled(key.pattern).fullmatch(value) is None
    ):
        return f"{value!r} is not in the expected form ({key.doc})"
    return None


def key_problem(key: Key, value: Any, suggest: bool = False) -> str | None:
    """Why ``value`` does not fit ``key`` at all (type included), or None."""
    if not type_fits(value, key.types):
        return f"must be {describe_types(key.types)}, not {value!r}"
    return value_problem(key, value, suggest)


def argument_problem(argument: str, value: Any) -> str | None:
    """Why the broker would refuse ``value`` for the queue argument ``argument``, or None.

    Arguments the tool does not know (``x-owner``, a plugin's) always fit: RabbitMQ stores
    them as they are.
    """
    key = ARGUMENT_TYPES.get(argument)
    return None if key is None else key_problem(key, value)


def fits(argument: str, value: Any) -> bool:
    """``argument_problem`` is None: the broker takes it, and so does the loader."""
    return argument_problem(argument, value) is None


def _policy_key(name: str, types: tuple[type, ...], **rule: Any) -> Key:
    return Key(name, types, f"policy key {name}", **rule)


# Policy values as the broker validates them (RabbitMQ 3.10.8, measured: a policy's
# delivery-limit must be 0 or more, unlike the queue argument; message-ttl has no upper
# bound). A refused policy would stop an apply half-way, after the exchanges were written.
_LOCATORS = ("client-local", "balanced")
POLICY_VALUES: dict[str, Key] = {
    k.name: k
    for k in (
        _policy_key("message-ttl", (int,), minimum=0),
        _policy_key("expires", (int,), minimum=1),
        _policy_key("max-length", (int,), minimum=0),
        _policy_key("max-length-bytes", (int,), minimum=0),
        _policy_key("max-in-memory-length", (int,), minimum=0),
        _policy_key("max-in-memory-bytes", (int,), minimum=0),
        _policy_key("delivery-limit", (int,), minimum=0),
        _policy_key("stream-max-segment-size-bytes", (int,), minimum=0),
        _policy_key("queue-version", (int,), minimum=1, maximum=2),
        _policy_key(
            "overflow", (str,), choices=("drop-head", "reject-publish", "reject-publish-dlx")
        ),
        _policy_key("dead-letter-strategy", (str,), choices=("at-most-once", "at-least-once")),
        _policy_key("queue-mode", (str,), choices=("default", "lazy")),
        _policy_key("queue-leader-locator", (str,), choices=_LOCATORS),
        _policy_key("max-age", (str,), pattern=r"[0-9]+[YMDhms]"),
        _policy_key("dead-letter-exchange", (str,)),
        _policy_key("dead-letter-routing-key", (str,)),
        _policy_key("alternate-exchange", (str,)),
    )
}


def policy_value_problem(name: str, value: Any, *, operator: bool = False) -> str | None:
    """Why the broker would refuse ``value`` for the policy key ``name``, or None (also for
    keys the tool does not know). ``operator``: in an operator policy, where RabbitMQ 4.x
    takes ``delivery-limit: -1`` (no limit; measured on 4.0.5, refused by 3.10.8 — the
    version is checked when the broker is known, ``_access.refusal_problems``)."""
    if operator and name == "delivery-limit" and value == -1 and not isinstance(value, bool):
        return None
    key = POLICY_VALUES.get(name)
    return None if key is None else key_problem(key, value)


def policy_problems(topology: Topology) -> list[Problem]:
    """Policy values the broker would refuse (errors: nothing is written)."""
    found: list[Problem] = []
    for p in topology.policies:
        for name in sorted(p.definition):
            wrong = policy_value_problem(name, p.definition[name])
            if wrong is not None:
                found.append(Problem(f"policy key '{name}' {wrong}", p.location, p.label))
    return found


def fit_warnings(topology: Topology) -> list[Problem]:
    """Values the broker accepts but does not act on as written (warnings, not errors)."""
    found: list[Problem] = []
    for x in topology.exchanges:
        if x.alternate_exchange == x.name:
            found.append(
                Problem(
                    "the exchange is its own alternate exchange: RabbitMQ accepts this, but "
                    "messages that no binding routes are dropped (the broker stops at the loop)",
                    x.location,
                    x.label,
                )
            )
    for q in topology.queues:
        if q.type == "quorum" and q.arguments.get("x-overflow") == "reject-publish-dlx":
            found.append(
                Problem(
                    "overflow reject-publish-dlx is not supported by quorum queues: RabbitMQ "
                    "accepts the argument, but quorum queues implement only drop-head and "
                    "reject-publish, so over max-length messages are not dead-lettered as "
                    "written",
                    q.location,
                    q.label,
                )
            )
    return found
