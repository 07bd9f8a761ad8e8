"""The connecting user's configure / write / read permissions against every write of a plan,
checked at plan time, so a refusal (403 ACCESS_REFUSED) is found before the first write.

What each AMQP write needs, as the broker checks it (``rabbit_channel``'s handlers):

=========================================  ==================================================
exchange.declare / exchange.delete          configure on the exchange
  with ``alternate-exchange`` (a new one)   also read on the exchange, write on the alternate
queue.declare / queue.delete                configure on the queue
  with ``x-dead-letter-exchange``           also read on the queue, write on the dead-letter
                                            exchange
queue.bind / queue.unbind                   write on the queue, read on the source exchange
exchange.bind / exchange.unbind             write on the destination, read on the source
=========================================  ==================================================

A permission is a regular expression matched anywhere in the name (the broker's ``re:run``
without anchors); the empty string matches nothing. The default exchange is ``amq.default``
to the check. In a vhost this run creates, the tool grants its user ``.*`` first, so nothing
is checked there.

Only an administrator may read permissions (``GET /api/users/{user}/permissions``). For any
other user (a policymaker) the check is skipped and the plan says so: apply then relies on the
rollback (``_rollback``) should the broker refuse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ._errors import Problem
from ._model import BindingSpec, ExchangeSpec, QueueSpec
from ._plan import CREATE, Change, Kind

ACCESS = ("configure", "write", "read")


@dataclass(frozen=True)
class Permissions:
    """One user's three regular expressions in one vhost."""

    configure: str = ""
    write: str = ""
    read: str = ""

    def allows(self, access: str, name: str) -> bool:
        """Whether ``access`` on the object named ``name`` is permitted."""
        pattern: str = getattr(self, access)
        if pattern == "":
            return False
        return _compiled(pattern).search(name or "amq.default") is not None


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error:  # an Erlang-only construct: match nothing rather than guess
        return re.compile(r"(?!)")


# The argument naming an exchange that a declare of this kind also writes to.
_WRITES_TO = {
    ExchangeSpec: ("exchange", "alternate-exchange"),
    QueueSpec: ("queue", "x-dead-letter-exchange"),
}


def _needs(change: Change) -> Iterable[tuple[str, str, str]]:
    """(access, kind, name) the change needs; for a delete the configure alone."""
    spec = change.spec
    if isinstance(spec, ExchangeSpec | QueueSpec):
        kind, argument = _WRITES_TO[type(spec)]
        yield "configure", kind, spec.name
        target = spec.arguments.get(argument)
        if change.action == CREATE and isinstance(target, str):
            yield "read", kind, spec.name
            yield "write", "exchange", target
    elif isinstance(spec, BindingSpec):
        yield "write", spec.destination_type, spec.destination
        yield "read", "exchange", spec.source


def permission_problems(
    user: str,
    writes: Sequence[Change],
    permissions: Mapping[str, Permissions],
    new_vhosts: Iterable[str] = (),
) -> list[Problem]:
    """Each AMQP write of the plan that ``user``'s permissions (by vhost) do not allow."""
    fresh = set(new_vhosts)
    problems: list[Problem] = []
    for change in writes:
        if change.kind not in (Kind.EXCHANGE, Kind.QUEUE, Kind.BINDING) or change.vhost in fresh:
            continue
        granted = permissions.get(change.vhost, Permissions())
        missing = [
            f"{access} on {kind} '{name}'"
            for access, kind, name in _needs(change)
            if not granted.allows(access, name)
        ]
        if missing:
            pattern_text = ", ".join(f"{a} '{getattr(granted, a)}'" for a in ACCESS)
            problems.append(
                Problem(
                    f"user '{user}' may not {change.action.value} it: it needs "
                    f"{', '.join(missing)} (its permissions in vhost '{change.vhost}': "
                    f"{pattern_text}); nothing was changed",
                    change.location,
                    change.spec.label,
                )
            )
    return problems
