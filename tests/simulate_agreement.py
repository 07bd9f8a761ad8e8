"""Does ``declare_amqp._simulate`` agree with a real broker? Random topologies and messages,
random policy sets; the broker's answer is what counts.

Used by ``tests/declare/test_simulate_broker.py`` (a few hundred messages and ~50 policy sets
per broker, so the suite stays fast) and by ``bench/simulate_bench.py`` (the issue's counts:
10,000 messages and 1,000 policy sets). Everything happens in vhosts the caller owns.

Routing: each random topology (exchanges of the four types, some internal, alternate
exchanges that may chain, loop or name a missing exchange, exchange-to-exchange bindings,
topic keys with ``*``, ``#`` and empty words, headers bindings of every ``x-match`` kind with
typed and void values, bindings from ``amq.topic`` / ``amq.headers``) is declared over AMQP;
each message is published with confirms and a unique ``message_id`` into empty queues, then
every queue is read back: the set of queues a message landed in must equal ``route``'s.

Policies: the same queues (classic, quorum, a stream) and exchanges in each of several vhosts;
each vhost gets a random set of policies and operator policies (distinct priorities: no ties),
then the management API's ``policy``, ``operator_policy`` and
``effective_policy_definition`` of every queue (``policy`` of every exchange) must equal
``explain``'s. The API's queue details are refreshed on the statistics interval (5 s), so the
sets of many vhosts are written at once, read after the interval, and a difference is read
again before it counts.
"""

from __future__ import annotations

import random
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pika

from declare_amqp._model import BindingSpec, ExchangeSpec, PolicySpec, QueueSpec, Topology
from declare_amqp._routing import Message, topic_words
from declare_amqp._simulate import Simulator

WORDS = ("a", "b", "c", "")
HEADER_NAMES = ("h1", "h2", "x-h")
# pika cannot send floats (AMQP 0-9-1 has them, pika encodes none), so 1 vs 1.0 is not drawn.
HEADER_VALUES: tuple[Any, ...] = (1, 2, 0, "1", "a", True, False)


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


# ----------------------------------------------------------------------------- routing


def _key(rng: random.Random, wildcards: bool) -> str:
    pool = (*WORDS, "*", "#") if wildcards else WORDS
    return ".".join(rng.choice(pool) for _ in range(rng.randint(0, 3)))


def random_topology(rng: random.Random, vhost: str, prefix: str) -> Topology:
    """One random topology with names starting with ``prefix``."""
    n_x, n_q = rng.randint(4, 8), rng.randint(4, 7)
    names = [f"{prefix}x{i}" for i in range(n_x)]
    exchanges = []
    for i, name in enumerate(names):
        args: dict[str, Any] = {}
        if rng.random() < 0.35:  # an alternate exchange: any of them (loops too) or a missing one
            args["alternate-exchange"] = rng.choice([*names, f"{prefix}missing"])
        exchanges.append(
            ExchangeSpec(
                vhost,
                name,
                rng.choice(("direct", "fanout", "topic", "headers")),
                durable=False,
                internal=i > 0 and rng.random() < 0.2,
                arguments=args,
            )
        )
    queues = [QueueSpec(vhost, f"{prefix}q{i}") for i in range(n_q)]
    sources = [
        *exchanges,
        ExchangeSpec(vhost, "amq.topic", "topic"),
        ExchangeSpec(vhost, "amq.headers", "headers"),
    ]
    bindings = []
    for _ in range(rng.randint(8, 18)):
        src = rng.choice(sources)
        if rng.random() < 0.3:
            dest, dest_type = rng.choice(names), "exchange"
        else:
            dest, dest_type = rng.choice(queues).name, "queue"
        key, args = "", {}
        if src.type == "topic":
            key = _key(rng, True)
        elif src.type == "direct":
            key = _key(rng, False)
        elif src.type == "headers":
            args = {}
            kind = rng.choice(("all", "any", "all-with-x", "any-with-x", None))
            if kind is not None:
                args["x-match"] = kind
            for h in rng.sample(HEADER_NAMES, rng.randint(0, 2)):
                args[h] = None if rng.random() < 0.15 else rng.choice(HEADER_VALUES)
        else:
            key = _key(rng, False)
        bindings.append(BindingSpec(vhost, src.name, dest, dest_type, key, args))
    return Topology(
        exchanges=tuple(exchanges), queues=tuple(queues), bindings=tuple(bindings), named=(vhost,)
    )


def _instance(rng: random.Random, binding_key: str) -> str:
    """A routing key a topic binding key likely matches ('*' one word, '#' 0-2 words)."""
    words: list[str] = []
    for w in topic_words(binding_key):
        if w == "*":
            words.append(rng.choice(WORDS))
        elif w == "#":
            words += [rng.choice(WORDS) for _ in range(rng.randint(0, 2))]
        else:
            words.append(w)
    return ".".join(words)


def random_messages(rng: random.Random, topology: Topology, count: int) -> list[Message]:
    """Messages to the topology's public exchanges, the default exchange and amq.*; about half
    are drawn from a binding of their exchange (its key, or headers like its arguments) so
    that most reach something, the rest are random."""
    targets = [x.name for x in topology.exchanges if not x.internal]
    targets += ["", "amq.topic", "amq.headers"]
    queue_names = [q.name for q in topology.queues]
    by_source: dict[str, list[BindingSpec]] = {}
    for b in topology.bindings:
        by_source.setdefault(b.source, []).append(b)
    messages = []
    for _ in range(count):
        exchange = rng.choice(targets)
        key = rng.choice(queue_names) if exchange == "" and rng.random() < 0.7 else _key(rng, False)
        headers: dict[str, Any] = {}
        for h in rng.sample(HEADER_NAMES, rng.randint(0, 3)):
            headers[h] = None if rng.random() < 0.1 else rng.choice(HEADER_VALUES)
        own = by_source.get(exchange, [])
        if own and rng.random() < 0.5:
            b = rng.choice(own)
            key = _instance(rng, b.routing_key)
            for k, v in b.arguments.items():
                if k != "x-match" and rng.random() < 0.8:
                    headers[k] = rng.choice(HEADER_VALUES) if v is None else v
        if rng.random() < 0.1:
            headers["CC"] = [_key(rng, False)]
        messages.append(Message(exchange, key, headers))
    return messages


def declare(channel: Any, topology: Topology) -> None:
    """Declare the topology over AMQP (test setup: plain pika, not the tool)."""
    for x in topology.exchanges:
        channel.exchange_declare(
            x.name, x.type, durable=x.durable, internal=x.internal, arguments=dict(x.arguments)
        )
    for q in topology.queues:
        channel.queue_declare(q.name, durable=True, arguments={"x-queue-type": q.type})
    for b in topology.bindings:
        if b.destination_type == "queue":
            channel.queue_bind(b.destination, b.source, b.routing_key, arguments=dict(b.arguments))
        else:
            channel.exchange_bind(
                b.destination, b.source, b.routing_key, arguments=dict(b.arguments)
            )


def undeclare(channel: Any, topology: Topology) -> None:
    """Delete what ``declare`` made."""
    for q in topology.queues:
        channel.queue_delete(q.name)
    for x in topology.exchanges:
        channel.exchange_delete(x.name)


def observe(channel: Any, topology: Topology, messages: Sequence[Message]) -> list[set[str]]:
    """Publish each message (confirmed) into the empty queues, then read every queue back:
    the queues each message landed in, by index."""
    channel.confirm_delivery()
    for i, m in enumerate(messages):
        channel.basic_publish(
            m.exchange,
            m.routing_key,
            b"",
            pika.BasicProperties(message_id=str(i), headers=dict(m.headers) or None),
        )
    landed: list[set[str]] = [set() for _ in messages]
    for q in topology.queues:
        while True:
            method, props, _ = channel.basic_get(q.name, auto_ack=True)
            if method is None:
                break
            landed[int(props.message_id)].add(q.name)
    return landed


@dataclass
class Agreement:
    """Counts of one comparison, with the first differences for the report."""

    total: int = 0
    agreed: int = 0
    differences: list[str] = field(default_factory=list)

    def add(self, same: bool, detail: Callable[[], str]) -> None:
        """Count one comparison."""
        self.total += 1
        if same:
            self.agreed += 1
        elif len(self.differences) < 20:
            self.differences.append(detail())

    @property
    def percent(self) -> float:
        """Agreement in percent (100.0 when nothing was compared)."""
        return 100.0 * self.agreed / self.total if self.total else 100.0


def routing_agreement(
    url: str,
    vhost: str,
    *,
    seed: int,
    topologies: int,
    messages_per_topology: int,
    version: tuple[int, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> Agreement:
    """Route random messages through random topologies on the broker and in the simulator."""
    rng = random.Random(seed)
    result = Agreement()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        for t in range(topologies):
            topology = random_topology(rng, vhost, f"t{t}-")
            messages = random_messages(rng, topology, messages_per_topology)
            channel = conn.channel()
            declare(channel, topology)
            landed = observe(channel, topology, messages)
            undeclare(channel, topology)
            channel.close()
            sim = Simulator(topology, version=version)
            for m, got in zip(messages, landed, strict=True):
                want = set(sim.route(vhost, m, dead_letters=False).queues)
                result.add(
                    want == got,
                    lambda m=m, want=want, got=got, topology=topology: (
                        f"{m}: simulator {sorted(want)}, broker {sorted(got)}; topology {topology}"
                    ),
                )
            if progress is not None and (t + 1) % 10 == 0:
                progress(f"topologies: {t + 1}/{topologies}, {result.agreed}/{result.total} agreed")
    finally:
        conn.close()
    return result


# ----------------------------------------------------------------------------- policies

POLICY_QUEUES = (
    ("c-a", "classic"),
    ("c-b", "classic"),
    ("q-a", "quorum"),
    ("q-b", "quorum"),
    ("s-a", "stream"),
)
POLICY_EXCHANGES = ("e-a", "e-b")
# Patterns after a slot's prefix (``^s7-``), so the sets of different slots never meet.
PATTERNS = ("c-", "q-", "s-", "e-", ".*-a$", ".*-b$", "", ".*a", "(c|q)-a$", "[cq]")
POLICY_KEYS: tuple[tuple[str, Callable[[random.Random], Any]], ...] = (
    ("message-ttl", lambda r: r.randint(1, 9) * 1000),
    ("max-length", lambda r: r.randint(1, 9) * 10),
    ("max-length-bytes", lambda r: r.randint(1, 9) * 1000),
    ("expires", lambda r: r.randint(1, 9) * 100000),
    ("dead-letter-exchange", lambda r: r.choice(("dlx", "dlx2"))),
    ("delivery-limit", lambda r: r.randint(1, 9)),
    ("max-age", lambda r: f"{r.randint(1, 9)}D"),
    ("alternate-exchange", lambda r: "ae"),
    ("overflow", lambda r: r.choice(("drop-head", "reject-publish"))),
    ("max-in-memory-length", lambda r: r.randint(1, 9)),
    ("queue-leader-locator", lambda r: "balanced"),
)
OPERATOR_KEYS = POLICY_KEYS[:4]


def slot_prefix(slot: int) -> str:
    """Names of one slot's queues and exchanges start with this."""
    return f"s{slot}-"


def random_policy_set(
    rng: random.Random, vhost: str, slot: int, tag: str, version: tuple[int, ...]
) -> tuple[list[PolicySpec], list[PolicySpec]]:
    """1-4 policies and 0-2 operator policies for one slot, distinct priorities within each
    kind (no ties)."""
    apply_to = ["all", "queues", "exchanges"]
    if version >= (3, 12) or not version:
        apply_to += ["classic_queues", "quorum_queues", "streams"]
    keys = [k for k in POLICY_KEYS if k[0] != "queue-leader-locator" or version >= (3, 13)]
    prefix = slot_prefix(slot)

    def make(
        n: int,
        pool: Sequence[tuple[str, Callable[[random.Random], Any]]],
        kind: str,
        kinds: Sequence[str],
    ) -> list[PolicySpec]:
        priorities = rng.sample(range(10), n)
        out = []
        for i in range(n):
            chosen = rng.sample(list(pool), rng.randint(1, min(3, len(pool))))
            out.append(
                PolicySpec(
                    vhost,
                    f"{prefix}{kind}{tag}-{i}",
                    f"^{prefix}{rng.choice(PATTERNS)}",
                    {k: make_value(rng) for k, make_value in chosen},
                    rng.choice(list(kinds)),
                    priorities[i],
                )
            )
        return out

    return (
        make(rng.randint(1, 4), keys, "p", apply_to),
        make(rng.randint(0, 2), OPERATOR_KEYS, "o", ("queues", "all")),
    )


def prepare_policy_vhost(http: httpx.Client, vhost: str, slots: int) -> None:
    """The queues and exchanges of every slot, that the policy sets are matched against."""
    v = _q(vhost)
    for slot in range(slots):
        prefix = slot_prefix(slot)
        for name, qtype in POLICY_QUEUES:
            http.put(
                f"/api/queues/{v}/{prefix}{name}",
                json={"durable": True, "arguments": {"x-queue-type": qtype}},
            ).raise_for_status()
        for name in POLICY_EXCHANGES:
            http.put(
                f"/api/exchanges/{v}/{prefix}{name}", json={"type": "topic"}
            ).raise_for_status()


def policy_topology(vhost: str, slot: int, policies: Sequence[PolicySpec]) -> Topology:
    """The model of one slot, with its policies."""
    prefix = slot_prefix(slot)
    return Topology(
        exchanges=tuple(ExchangeSpec(vhost, prefix + n, "topic") for n in POLICY_EXCHANGES),
        queues=tuple(QueueSpec(vhost, prefix + n, t) for n, t in POLICY_QUEUES),
        policies=tuple(policies),
        named=(vhost,),
    )


def _put(http: httpx.Client, kind: str, p: PolicySpec) -> None:
    body = {
        "pattern": p.pattern,
        "definition": dict(p.definition),
        "apply-to": p.apply_to,
        "priority": p.priority,
    }
    http.put(f"/api/{kind}/{_q(p.vhost)}/{_q(p.name)}", json=body).raise_for_status()


Observed = dict[tuple[str, str], tuple[Any, ...]]


def _observed(http: httpx.Client, vhost: str) -> Observed:
    """Every queue's policy, operator policy and effective definition, every exchange's
    policy, as the management API reports them."""
    v = _q(vhost)
    seen: Observed = {}
    columns = "name,policy,operator_policy,effective_policy_definition"
    for q in http.get(f"/api/queues/{v}?columns={columns}").json():
        definition = q.get("effective_policy_definition") or {}
        seen[("queue", q["name"])] = (
            q.get("policy") or None,
            q.get("operator_policy") or None,
            dict(definition),
        )
    for x in http.get(f"/api/exchanges/{v}?columns=name,policy").json():
        seen[("exchange", x["name"])] = (x.get("policy") or None,)
    return seen


def _expected(sim: Simulator, vhost: str, slot: int) -> Observed:
    prefix = slot_prefix(slot)
    want: Observed = {}
    for name, _ in POLICY_QUEUES:
        e = sim.explain(vhost, "queue", prefix + name).to_dict()
        want[("queue", prefix + name)] = (
            e["policy"],
            e["operator_policy"],
            e["effective_policy_definition"],
        )
    for name in POLICY_EXCHANGES:
        x = sim.explain(vhost, "exchange", prefix + name).to_dict()
        want[("exchange", prefix + name)] = (x["policy"],)
    return want


def _slice(seen: Observed, want: Observed) -> Observed:
    return {k: seen.get(k, ("missing",)) for k in want}


@dataclass
class PolicyStats:
    """How much of the policy machinery the random sets exercised."""

    objects: int = 0
    with_policy: int = 0
    with_operator_policy: int = 0
    merged_keys: int = 0  # keys both set: combined by merge_policy_value
    skipped_unsupported: int = 0  # matching policies ignored for an unsupported key


def policy_agreement(
    http: httpx.Client,
    vhosts: Sequence[str],
    *,
    seed: int,
    sets: int,
    slots: int,
    version: tuple[int, ...],
    settle: float = 10.5,
    rereads: int = 4,
    stats: PolicyStats | None = None,
    progress: Callable[[str], None] | None = None,
) -> Agreement:
    """``sets`` random policy sets, ``slots`` at a time in each of ``vhosts``; one comparison
    per set (all of its queues and exchanges must agree). Every policy write makes the broker
    match it against each object of its vhost, so many small vhosts cost the broker far less
    than one large one."""
    rng = random.Random(seed)
    result = Agreement()
    places = [(vhost, slot) for vhost in vhosts for slot in range(slots)]
    for vhost in vhosts:
        prepare_policy_vhost(http, vhost, slots)
    done = 0
    while done < sets:
        applied: dict[tuple[str, int], tuple[Simulator, list[PolicySpec], list[PolicySpec]]] = {}
        for vhost, slot in places[: sets - done]:
            policies, operators = random_policy_set(rng, vhost, slot, str(done), version)
            for p in policies:
                _put(http, "policies", p)
            for o in operators:
                _put(http, "operator-policies", o)
            sim = Simulator(policy_topology(vhost, slot, policies), operators, version)
            applied[(vhost, slot)] = (sim, policies, operators)
            done += 1
        time.sleep(settle)
        seen: dict[str, Observed] = {}
        for attempt in range(rereads + 1):
            seen = {vhost: _observed(http, vhost) for vhost in {v for v, _ in applied}}
            wrong = [
                place
                for place, (sim, _, _) in applied.items()
                if _slice(seen[place[0]], _expected(sim, *place)) != _expected(sim, *place)
            ]
            if not wrong or attempt == rereads:
                break
            time.sleep(2)
        for (vhost, slot), (sim, policies, operators) in applied.items():
            want = _expected(sim, vhost, slot)
            got = _slice(seen[vhost], want)
            result.add(
                got == want,
                lambda want=want, got=got, policies=policies, operators=operators: (
                    f"policies {policies} operator policies {operators}: simulator {want}, "
                    f"broker {got}"
                ),
            )
            if stats is not None:
                _count(stats, sim, vhost, slot)
            for p in policies:
                http.delete(f"/api/policies/{_q(vhost)}/{_q(p.name)}")
            for o in operators:
                http.delete(f"/api/operator-policies/{_q(vhost)}/{_q(o.name)}")
        if progress is not None:
            progress(f"policy sets: {done}/{sets}, {result.agreed} agreed")
    return result


def _count(stats: PolicyStats, sim: Simulator, vhost: str, slot: int) -> None:
    prefix = slot_prefix(slot)
    for name, _ in POLICY_QUEUES:
        e = sim.explain(vhost, "queue", prefix + name)
        stats.objects += 1
        stats.with_policy += e.policy.chosen is not None
        stats.with_operator_policy += e.operator_policy.chosen is not None
        if e.policy.chosen is not None and e.operator_policy.chosen is not None:
            both = set(e.policy.chosen.definition) & set(e.operator_policy.chosen.definition)
            stats.merged_keys += len(both)
        stats.skipped_unsupported += sum(
            1 for c in e.policy.candidates if not c.applies and "not supported" in c.reason
        )
