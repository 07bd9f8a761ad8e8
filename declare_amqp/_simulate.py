"""What the broker would do, answered from a topology alone: where a message goes and which
policy settings an object really has. Pure: no I/O, no broker.

``Simulator`` serves ``route``, the ``expect`` section, ``explain``, ``graph`` and the version
checks, so each broker rule is written once, in one of four modules: ``_routing`` (how each
exchange type matches, routing keys, the route values), ``_policy_choice`` (which policy applies,
the operator-policy merge), ``_effective`` (an object's effective settings, for ``explain``) and
this one (walking exchanges, alternate exchanges, dead letters, expectations). Every rule names
the server code it follows (rabbitmq-server, ``deps/rabbit/src/``); where 3.10 and 4.x differ,
both were measured (RabbitMQ 3.10.8 and 4.0.5, see ``tests/declare/test_simulate_broker.py``
and ``bench/simulate_bench.py``, which compare the simulator with a real broker on random
topologies).

Routing (``Simulator.route``):

- ``rabbit_exchange:route/2``: the exchange routes, then each exchange it reached routes in
  turn, every exchange at most once (a set of exchanges seen: cycles end), and the queues
  found are one set. An exchange that is missing is skipped (``cons_if_present``).
- ``process_alternate/2``: an exchange whose own bindings give *no destination at all* (no
  queue and no exchange) hands the message to its alternate exchange: the
  ``alternate-exchange`` argument, else the policy key of that name
  (``rabbit_policy:get_arg/3``: the argument wins). An exchange-to-exchange binding that
  matches counts as a destination even when that exchange then routes nowhere.
- The default exchange (``""``) routes to the queue named by each routing key when it exists;
  it has no bindings and no alternate exchange.
- Each exchange type's matching: ``_routing``.
- Internal exchanges (``rabbit_channel``: ``check_internal_exchange``) refuse a publish
  (403) and only receive from other exchanges; a missing exchange refuses it (404).

Dead-lettering (``rabbit_dead_letter:make_msg``, ``rabbit_amqqueue_process`` /
``rabbit_quorum_queue`` ``args_policy_lookup``): a queue's dead-letter exchange and key are
the queue argument, else the effective policy's (argument wins: ``res_arg``). The message is
republished to that exchange with the dead-letter routing key when one is set, else with its
own routing keys.

Policies (``rabbit_policy``): see ``_policy_choice``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ._effective import Explanation, explanation
from ._errors import Problem
from ._model import BindingSpec, ExchangeSpec, Expectation, PolicySpec, QueueSpec, Topology
from ._policy_choice import Selection, merge_value, select_policy
from ._routing import (
    BUILTIN_EXCHANGE_TYPES,
    DeadLetter,
    Hop,
    Message,
    Route,
    binding_matches,
    describe_route,
    routing_keys,
)
from ._versions import HEADERS_EXACT_NUMBERS_SINCE

# ----------------------------------------------------------------------------- the simulator


@dataclass(frozen=True)
class _Exchange:
    name: str
    type: str
    internal: bool
    arguments: Mapping[str, Any]


class UnknownObject(LookupError):
    """``explain`` was asked about an object the topology does not have."""


class Simulator:
    """Routing and policy rules over one topology (files, or what a broker holds).

    ``operator_policies`` are the operator policies in force (from the files' ``access``, or
    read from the broker); ``version`` is the broker's (``()``: the newest rules known here).
    """

    def __init__(
        self,
        topology: Topology,
        operator_policies: Iterable[PolicySpec] = (),
        version: tuple[int, ...] = (),
    ) -> None:
        self.topology = topology
        self.version = version
        self.exact_numbers = not version or version >= HEADERS_EXACT_NUMBERS_SINCE
        self._policies: dict[str, list[PolicySpec]] = {}
        self._operator: dict[str, list[PolicySpec]] = {}
        self._selected: dict[tuple[str, str, str], tuple[Selection, Selection]] = {}
        for p in topology.policies:
            self._policies.setdefault(p.vhost, []).append(p)
        for p in operator_policies:
            self._operator.setdefault(p.vhost, []).append(p)

    # The indexes of the objects, made when first asked: ``validate`` makes a simulator for
    # a file's expectations, and a 50 MB file without any would hold 80 MB of them for nothing.

    @cached_property
    def _exchanges(self) -> dict[tuple[str, str], _Exchange]:
        exchanges: dict[tuple[str, str], _Exchange] = {}
        for vhost in set(self.topology.vhost_names()):
            for name, (kind, internal) in BUILTIN_EXCHANGE_TYPES.items():
                exchanges[(vhost, name)] = _Exchange(name, kind, internal, {})
        for x in self.topology.exchanges:
            exchanges[(x.vhost, x.name)] = _Exchange(x.name, x.type, x.internal, x.arguments)
        return exchanges

    @cached_property
    def _queues(self) -> dict[tuple[str, str], QueueSpec]:
        return {(q.vhost, q.name): q for q in self.topology.queues}

    @cached_property
    def _bindings(self) -> dict[tuple[str, str], list[BindingSpec]]:
        bindings: dict[tuple[str, str], list[BindingSpec]] = {}
        for b in self.topology.bindings:
            bindings.setdefault((b.vhost, b.source), []).append(b)
        return bindings

    # -- lookups

    def exchange(self, vhost: str, name: str) -> ExchangeSpec | None:
        """The exchange (built-in ones included), or None."""
        x = self._exchanges.get((vhost, name))
        if x is None:
            return None
        return ExchangeSpec(vhost, x.name, x.type, internal=x.internal, arguments=x.arguments)

    def queue(self, vhost: str, name: str) -> QueueSpec | None:
        """The queue, or None."""
        return self._queues.get((vhost, name))

    def unknown_types(self, vhost: str) -> list[str]:
        """Exchanges of plugin types (x-...) whose routing is not modelled."""
        return sorted(
            x.name
            for (v, _), x in self._exchanges.items()
            if v == vhost and x.type not in ("direct", "fanout", "topic", "headers")
        )

    def selections(self, vhost: str, kind: str, name: str) -> tuple[Selection, Selection]:
        """The policy and operator policy selection of one object (cached)."""
        key = (vhost, kind, name)
        cached = self._selected.get(key)
        if cached is not None:
            return cached
        qtype = ""
        if kind == "queue":
            q = self._queues.get((vhost, name))
            qtype = q.type if q is not None else "classic"
        result = (
            select_policy(kind, name, qtype, self._policies.get(vhost, ()), self.version),
            select_policy(kind, name, qtype, self._operator.get(vhost, ()), self.version),
        )
        self._selected[key] = result
        return result

    def policy_value(self, vhost: str, kind: str, name: str, key: str) -> tuple[Any, str] | None:
        """``rabbit_policy:get/2``: a key of the effective policy definition and its source."""
        policy, operator = self.selections(vhost, kind, name)
        p = policy.chosen.definition if policy.chosen else {}
        o = operator.chosen.definition if operator.chosen else {}
        if key in p and key in o:
            return merge_value(key, p[key], o[key])
        if key in p:
            return p[key], "policy"
        if key in o:
            return o[key], "operator_policy"
        return None

    # -- routing

    def route(self, vhost: str, message: Message, *, dead_letters: bool = True) -> Route:
        """Where the broker puts ``message`` published to ``message.exchange`` in ``vhost``."""
        keys, refused = routing_keys(message)
        start = self._exchanges.get((vhost, message.exchange))
        if refused is None and start is None:
            refused = (
                f"exchange '{message.exchange}' does not exist in vhost '{vhost}' (the broker "
                "closes the channel: 404 NOT_FOUND)"
            )
        if refused is None and start is not None and start.internal:
            refused = (
                f"exchange '{message.exchange}' is internal: only other exchanges may publish "
                "to it (the broker closes the channel: 403 ACCESS_REFUSED)"
            )
        if refused is not None or start is None:
            return Route(message, (), refused=refused)
        queues, path = self._route(vhost, start, keys, message.headers)
        dead: dict[str, DeadLetter] = {}
        if dead_letters:
            for q in queues:
                d = self.dead_letter(vhost, q, keys, message.headers)
                if d is not None:
                    dead[q] = d
        return Route(message, tuple(sorted(queues)), tuple(path), dead)

    def _route(
        self, vhost: str, start: _Exchange, keys: Sequence[str], headers: Mapping[str, Any]
    ) -> tuple[set[str], list[Hop]]:
        queues: set[str] = set()
        path: list[Hop] = []
        seen = {start.name}
        work = [start]
        while work:
            x = work.pop()
            found: list[Hop] = []
            if x.name == "":
                for k in keys:
                    if (vhost, k) in self._queues:
                        found.append(Hop("", k, k, "queue", "default exchange"))
            else:
                for b in self._bindings.get((vhost, x.name), ()):
                    if binding_matches(x.type, b, keys, headers, self.exact_numbers):
                        found.append(
                            Hop(
                                x.name,
                                b.routing_key,
                                b.destination,
                                b.destination_type,
                                arguments=b.arguments if x.type == "headers" else {},
                            )
                        )
            if not found and x.name != "":
                ae = self._alternate(vhost, x)
                if ae is not None:
                    found.append(Hop(x.name, "", ae, "exchange", "alternate-exchange"))
            for hop in found:
                if hop.destination_type == "queue":
                    if (vhost, hop.destination) in self._queues:
                        path.append(hop)
                        queues.add(hop.destination)
                    continue
                path.append(hop)
                if hop.destination in seen:
                    continue
                seen.add(hop.destination)
                nxt = self._exchanges.get((vhost, hop.destination))
                if nxt is not None:  # cons_if_present: a missing exchange is skipped
                    work.append(nxt)
        return queues, path

    def alternate_exchange(self, vhost: str, name: str) -> str | None:
        """The exchange's alternate exchange (argument, else policy), or None."""
        x = self._exchanges.get((vhost, name))
        return self._alternate(vhost, x) if x is not None else None

    def _alternate(self, vhost: str, x: _Exchange) -> str | None:
        value = x.arguments.get("alternate-exchange")
        if isinstance(value, str):
            return value
        from_policy = self.policy_value(vhost, "exchange", x.name, "alternate-exchange")
        if from_policy is not None and isinstance(from_policy[0], str):
            return from_policy[0]
        return None

    def dead_letter_settings(
        self, vhost: str, queue: str
    ) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """The queue's dead-letter exchange and routing key, each with its source."""
        q = self._queues.get((vhost, queue))
        if q is None or q.type == "stream":
            return None, None
        result: list[tuple[str, str] | None] = []
        for key in ("dead-letter-exchange", "dead-letter-routing-key"):
            arg = q.arguments.get("x-" + key)
            if isinstance(arg, str):
                result.append((arg, "argument"))
                continue
            pol = self.policy_value(vhost, "queue", queue, key)
            result.append((str(pol[0]), pol[1]) if pol is not None else None)
        return result[0], result[1]

    def dead_letter(
        self, vhost: str, queue: str, keys: Sequence[str], headers: Mapping[str, Any]
    ) -> DeadLetter | None:
        """Where ``queue`` dead-letters this message (rejected, expired or over a limit)."""
        dlx, dlrk = self.dead_letter_settings(vhost, queue)
        if dlx is None:
            return None
        new_keys = [dlrk[0]] if dlrk is not None else list(keys)
        target = self._exchanges.get((vhost, dlx[0]))
        queues: set[str] = set()
        if target is not None:
            queues, _ = self._route(vhost, target, new_keys, headers)
        return DeadLetter(
            exchange=dlx[0],
            routing_key=new_keys[0] if new_keys else "",
            queues=tuple(sorted(queues)),
            routing_key_source=dlrk[1] if dlrk is not None else "message",
            exchange_source=dlx[1],
            exchange_missing=target is None,
        )

    # -- explain

    def explain(self, vhost: str, kind: str, name: str) -> Explanation:
        """The policies that apply to a queue or exchange and its effective settings."""
        if kind == "queue":
            q = self._queues.get((vhost, name))
            if q is None:
                raise UnknownObject(f"queue '{name}' is not in vhost '{vhost}'")
            qtype, arguments, durable = q.type, q.arguments, q.durable
        else:
            x = self._exchanges.get((vhost, name))
            if x is None:
                raise UnknownObject(f"exchange '{name}' is not in vhost '{vhost}'")
            qtype, arguments, durable = "", x.arguments, True
        selections = self.selections(vhost, kind, name)
        return explanation(
            kind, vhost, name, qtype, dict(arguments), durable, selections, self.version
        )


def simulator_for(topology: Topology, version: tuple[int, ...] = ()) -> Simulator:
    """A simulator with the operator policies the topology's ``access`` part declares."""
    operator: tuple[PolicySpec, ...] = ()
    if topology.access is not None:
        operator = topology.access.group("operator_policies")
    return Simulator(topology, operator, version)


# ----------------------------------------------------------------------------- expectations


# ----------------------------------------------------------------------------- expectations


def check_expectations(
    simulator: Simulator, expectations: Iterable[Expectation], *, offline: bool
) -> tuple[list[Problem], list[Problem]]:
    """Route each expectation's message; an expectation whose queues differ is an error.

    ``offline``: the simulator holds only the files, so an expectation whose exchange no file
    declares cannot be checked (a note, not an error); ``plan`` checks it against the broker.
    """
    errors: list[Problem] = []
    notes: list[Problem] = []
    for e in expectations:
        if offline and simulator.exchange(e.vhost, e.exchange) is None:
            notes.append(
                Problem(
                    f"exchange '{e.exchange}' is not declared in the files: checked only by "
                    "`plan`, against the broker",
                    e.location,
                    e.label,
                )
            )
            continue
        route = simulator.route(e.vhost, Message(e.exchange, e.routing_key, e.headers))
        wanted = tuple(sorted(e.reaches))
        if route.refused is not None or route.queues != wanted:
            expected = ", ".join(wanted) if wanted else "no queue (unroutable)"
            errors.append(
                Problem(
                    f"expected {expected}, but it reaches {describe_route(route)}",
                    e.location,
                    e.label,
                )
            )
    return errors, notes


def after_apply(desired: Topology, actual: Topology, *, prune: bool = False) -> Topology:
    """What the broker holds once ``desired`` is applied over ``actual``: the files' objects,
    plus the broker's others (dropped with ``prune`` in the files' vhosts). ``plan`` checks
    the ``expect`` section against this."""
    pruned = set(desired.vhost_names()) if prune else set()

    def keep(obj: Any, declared: set[Any], key: Any) -> bool:
        return key not in declared and obj.vhost not in pruned

    xs = {(x.vhost, x.name) for x in desired.exchanges}
    qs = {(q.vhost, q.name) for q in desired.queues}
    bs = {b.key for b in desired.bindings}
    ps = {(p.vhost, p.name) for p in desired.policies}
    return Topology(
        vhosts=desired.vhosts,
        exchanges=(
            *desired.exchanges,
            *(x for x in actual.exchanges if keep(x, xs, (x.vhost, x.name))),
        ),
        queues=(*desired.queues, *(q for q in actual.queues if keep(q, qs, (q.vhost, q.name)))),
        bindings=(*desired.bindings, *(b for b in actual.bindings if keep(b, bs, b.key))),
        policies=(
            *desired.policies,
            *(p for p in actual.policies if keep(p, ps, (p.vhost, p.name))),
        ),
        named=tuple(dict.fromkeys((*desired.vhost_names(), *actual.vhost_names()))),
        access=desired.access,
    )
