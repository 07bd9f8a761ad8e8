"""``declare-amqp graph``: the topology as a picture, in Mermaid (renders in GitHub and GitLab
Markdown) or Graphviz DOT. Pure: text in, text out.

What is drawn, grouped by vhost: exchanges (hexagons, with their type), queues (cylinders,
with their type when not classic; queues derived for a consumer say so), consumers; bindings
with their keys (headers bindings with their arguments), alternate-exchange and dead-letter
edges (dashed; from arguments or from the policy that applies, as ``_simulate`` decides), the
consumers' queues with their prefetch, and the retry and dead-letter paths each consumer's
worker uses. Exchanges that are referenced but not declared are drawn too, marked so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._model import BindingSpec, ConsumerSpec, ExchangeSpec, QueueSpec, Topology
from ._simulate import Simulator, simulator_for
from .worker_queues import dead_letter_queue_name, delay_queue_name

FORMATS = ("mermaid", "dot")


@dataclass(frozen=True)
class _Node:
    id: str
    label: str
    kind: str  # "exchange", "queue", "consumer", "missing"


@dataclass(frozen=True)
class _Edge:
    source: str
    target: str
    label: str
    style: str  # "binding", "alternate", "dead-letter", "consumes", "retry"


@dataclass
class _Vhost:
    name: str
    nodes: dict[tuple[str, str], _Node] = field(default_factory=dict)
    edges: list[_Edge] = field(default_factory=list)


class _Builder:
    def __init__(self, topology: Topology, sim: Simulator) -> None:
        self.topology = topology
        self.sim = sim
        self.count = 0
        self.vhosts: dict[str, _Vhost] = {}

    def vhost(self, name: str) -> _Vhost:
        return self.vhosts.setdefault(name, _Vhost(name))

    def node(self, vhost: str, kind: str, name: str, label: str | None = None) -> str:
        v = self.vhost(vhost)
        key = ("queue" if kind == "queue" else "consumer" if kind == "consumer" else "x", name)
        found = v.nodes.get(key)
        if found is not None:
            return found.id
        self.count += 1
        prefix = {"queue": "q", "consumer": "c"}.get(kind, "x")
        node = _Node(f"{prefix}{self.count}", label if label is not None else name, kind)
        v.nodes[key] = node
        return node.id

    def exchange(self, vhost: str, name: str) -> str:
        x = self.sim.exchange(vhost, name)
        if x is None:
            return self.node(vhost, "missing", name, f"{name}\n(not declared)")
        shown = name or "(default exchange)"
        internal = ", internal" if x.internal else ""
        return self.node(vhost, "exchange", name, f"{shown}\n({x.type}{internal})")

    def build(self) -> dict[str, _Vhost]:
        """Every node and edge, vhost by vhost; the layers in this order (node ids follow it)."""
        t = self.topology
        for vhost in t.vhost_names():
            self.vhost(vhost)
        for x in t.exchanges:
            self.exchange(x.vhost, x.name)
        for q in t.queues:
            self.queue(q)
        for b in t.bindings:
            self.binding(b)
        for x in t.exchanges:
            self.alternate(x)
        for q in t.queues:
            self.dead_letters(q)
        for c in t.consumers:
            self.consumer(c)
        return self.vhosts

    def queue(self, q: QueueSpec) -> None:
        """The queue's node, its type and (for a derived queue) its origin in the label."""
        extra = [] if q.type == "classic" else [q.type]
        if q.origin:  # "retry delay 30 s of email.high, consumer 'x'": the first words
            extra.append(q.origin.split(" of ")[0])
        label = q.name + (f"\n({'; '.join(extra)})" if extra else "")
        self.node(q.vhost, "queue", q.name, label)

    def binding(self, b: BindingSpec) -> None:
        """A binding's edge, labelled with its key and (headers) arguments."""
        source = self.exchange(b.vhost, b.source)
        if b.destination_type == "queue":
            target = self.node(b.vhost, "queue", b.destination)
        else:
            target = self.exchange(b.vhost, b.destination)
        args = ", ".join(f"{k}={v}" for k, v in sorted(b.arguments.items()))
        label = " ".join(part for part in (b.routing_key, args) if part)
        self.vhost(b.vhost).edges.append(_Edge(source, target, label, "binding"))

    def alternate(self, x: ExchangeSpec) -> None:
        """The exchange's alternate-exchange edge (argument or policy), if it has one."""
        alternate = self.sim.alternate_exchange(x.vhost, x.name)
        if alternate is not None:
            source, target = self.exchange(x.vhost, x.name), self.exchange(x.vhost, alternate)
            self.vhost(x.vhost).edges.append(_Edge(source, target, "alternate", "alternate"))

    def dead_letters(self, q: QueueSpec) -> None:
        """The queue's dead-letter edge (argument or policy), if it has one."""
        dlx, dlrk = self.sim.dead_letter_settings(q.vhost, q.name)
        if dlx is None:
            return
        source = self.node(q.vhost, "queue", q.name)
        key = f" [{dlrk[0]}]" if dlrk is not None else ""
        if dlx[0] == "" and dlrk is not None and self.sim.queue(q.vhost, dlrk[0]):
            # the default exchange straight to a queue: draw the queue, not the exchange
            target = self.node(q.vhost, "queue", dlrk[0])
            label = "dead letters"
        else:
            target = self.exchange(q.vhost, dlx[0])
            label = f"dead letters{key}"
        if dlx[1] != "argument":
            label += f" ({dlx[1].replace('_', ' ')})"
        self.vhost(q.vhost).edges.append(_Edge(source, target, label, "dead-letter"))

    def consumer(self, c: ConsumerSpec) -> None:
        """A consumer's node, the queues it consumes and its retry and dead-letter paths."""
        consumer = self.node(c.vhost, "consumer", c.name, f"{c.name}\n(consumer, {c.mode})")
        edges = self.vhost(c.vhost).edges
        steps = c.retry_steps()
        for consumed in c.queues:
            queue = self.node(c.vhost, "queue", consumed.queue)
            edges.append(_Edge(queue, consumer, f"prefetch {consumed.prefetch}", "consumes"))
            for step in steps:
                delay = self.node(c.vhost, "queue", delay_queue_name(consumed.queue, step))
                edges.append(_Edge(consumer, delay, f"retry {step:g} s", "retry"))
            if c.dead_letter_exchange is not None:
                target = self.exchange(c.vhost, c.dead_letter_exchange)
            else:
                target = self.node(c.vhost, "queue", dead_letter_queue_name(consumed.queue))
            if not any(e.source == consumer and e.target == target for e in edges):
                edges.append(_Edge(consumer, target, "rejected / exhausted", "retry"))


def graph(topology: Topology, fmt: str = "mermaid") -> str:
    """The topology as Mermaid (``fmt="mermaid"``) or Graphviz DOT (``fmt="dot"``) text."""
    vhosts = _Builder(topology, simulator_for(topology)).build()
    render: Callable[[dict[str, _Vhost]], str] = _mermaid if fmt == "mermaid" else _dot
    return render(vhosts)


def _mermaid_text(text: str) -> str:
    # Mermaid's entity codes: a quote or pipe would end a label early
    return text.replace('"', "#quot;").replace("|", "#124;").replace("\n", "<br/>")


_MERMAID_SHAPES = {
    "exchange": ('{{"', '"}}'),
    "missing": ('{{"', '"}}'),
    "queue": ('[("', '")]'),
    "consumer": ('(["', '"])'),
}
_MERMAID_ARROWS = {
    "binding": "-->",
    "alternate": "-.->",
    "dead-letter": "-.->",
    "consumes": "==>",
    "retry": "-.->",
}


def _mermaid(vhosts: dict[str, _Vhost]) -> str:
    lines = ["flowchart LR"]
    for i, v in enumerate(vhosts.values()):
        lines.append(f'  subgraph v{i}["vhost {_mermaid_text(v.name)}"]')
        for node in v.nodes.values():
            left, right = _MERMAID_SHAPES[node.kind]
            lines.append(f"    {node.id}{left}{_mermaid_text(node.label)}{right}")
        for e in v.edges:
            arrow = _MERMAID_ARROWS[e.style]
            label = f'|"{_mermaid_text(e.label)}"|' if e.label else ""
            lines.append(f"    {e.source} {arrow}{label} {e.target}")
        lines.append("  end")
    missing = [n.id for v in vhosts.values() for n in v.nodes.values() if n.kind == "missing"]
    lines.append("  classDef exchange fill:#fff3cd,stroke:#b58900")
    lines.append("  classDef queue fill:#e3f2fd,stroke:#1565c0")
    lines.append("  classDef consumer fill:#e8f5e9,stroke:#2e7d32")
    lines.append("  classDef missing fill:#fdecea,stroke:#c62828,stroke-dasharray:4")
    for kind in ("exchange", "queue", "consumer"):
        ids = [n.id for v in vhosts.values() for n in v.nodes.values() if n.kind == kind]
        if ids:
            lines.append(f"  class {','.join(ids)} {kind}")
    if missing:
        lines.append(f"  class {','.join(missing)} missing")
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_DOT_NODES = {
    "exchange": 'shape=hexagon, style=filled, fillcolor="#fff3cd"',
    "missing": 'shape=hexagon, style="filled,dashed", fillcolor="#fdecea"',
    "queue": 'shape=cylinder, style=filled, fillcolor="#e3f2fd"',
    "consumer": 'shape=box, style="rounded,filled", fillcolor="#e8f5e9"',
}
_DOT_EDGES = {
    "binding": "",
    "alternate": 'style=dashed, color="#b58900"',
    "dead-letter": 'style=dashed, color="#c62828"',
    "consumes": 'penwidth=2, color="#2e7d32"',
    "retry": 'style=dotted, color="#2e7d32"',
}


def _dot(vhosts: dict[str, _Vhost]) -> str:
    lines = [
        "digraph topology {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for i, v in enumerate(vhosts.values()):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f'    label="vhost {_dot_text(v.name)}";')
        for node in v.nodes.values():
            lines.append(
                f'    {node.id} [label="{_dot_text(node.label)}", {_DOT_NODES[node.kind]}];'
            )
        for e in v.edges:
            attrs = [f'label="{_dot_text(e.label)}"'] if e.label else []
            if _DOT_EDGES[e.style]:
                attrs.append(_DOT_EDGES[e.style])
            lines.append(f"    {e.source} -> {e.target} [{', '.join(attrs)}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
