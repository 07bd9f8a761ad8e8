"""Prometheus metrics of one worker (or publisher), in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "priority_worker"
# Time held before the handler starts: from well under a millisecond (a free handler) to a
# backlog of held work.
HELD_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.03,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    float("inf"),
)


class _BlockedCollector(Collector):
    """Seconds the publisher connection spent blocked, including the block still going on."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        m = self._metrics
        yield CounterMetricFamily(
            f"{PREFIX}_publisher_blocked_seconds",
            "Seconds the broker blocked the publishing connection (memory/disk alarm)",
            value=m.blocked_seconds(),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_publisher_blocked",
            "1 while the broker blocks the publishing connection",
            value=1.0 if m.blocked_since is not None else 0.0,
        )


@dataclass(frozen=True)
class QueueMetrics:
    """One queue's labelled metrics, looked up once: the per-message path uses these."""

    deliveries: Counter
    acks: Counter
    retries: Counter
    requeues: Counter
    dropped: Counter
    handler_seconds: Histogram
    handler_errors: Counter
    held_seconds: Histogram
    prefetch: Gauge


class Metrics:
    """All counters, gauges and histograms; ``render()`` gives the /metrics text."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            f"{PREFIX}_deliveries", "Messages delivered", ["queue"], registry=r
        )
        self.acks = Counter(
            f"{PREFIX}_acks", "Messages acked after handling", ["queue"], registry=r
        )
        self.retries = Counter(
            f"{PREFIX}_retries", "Messages sent to a delay queue", ["queue"], registry=r
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters", "Messages dead-lettered", ["queue", "reason"], registry=r
        )
        self.requeues = Counter(
            f"{PREFIX}_requeues", "Deliveries requeued without handling", ["queue"], registry=r
        )
        self.dropped = Counter(
            f"{PREFIX}_dropped_deliveries",
            "Deliveries whose channel died before settling (the broker redelivers them)",
            ["queue"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            f"{PREFIX}_handler_seconds", "Handler latency", ["queue"], registry=r
        )
        self.handler_errors = Counter(
            f"{PREFIX}_handler_errors", "Handlers that raised", ["queue"], registry=r
        )
        self.in_flight = Gauge(
            f"{PREFIX}_in_flight", "Deliveries received and not settled", ["queue"], registry=r
        )
        self.prefetch = Gauge(
            f"{PREFIX}_prefetch",
            "Prefetch the queue is consumed at now (0: paused)",
            ["queue"],
            registry=r,
        )
        self.prefetch_configured = Gauge(
            f"{PREFIX}_prefetch_configured",
            "Prefetch the queue is configured with",
            ["queue"],
            registry=r,
        )
        self.held_seconds = Histogram(
            f"{PREFIX}_held_seconds",
            "Seconds a delivery was held in the worker before its handler started",
            ["queue"],
            buckets=HELD_BUCKETS,
            registry=r,
        )
        self.share = Gauge(
            f"{PREFIX}_share",
            "Fraction of the last handler starts (see share_window) that were this queue's",
            ["queue"],
            registry=r,
        )
        self.share_target = Gauge(
            f"{PREFIX}_share_target",
            "The share this queue gets under backlog on every queue (prefetch / sum; strict: "
            "not set)",
            ["queue"],
            registry=r,
        )
        self.loop_blocked = Counter(
            f"{PREFIX}_loop_blocked",
            "Times an async handler held the event loop longer than the warning threshold",
            ["handler"],
            registry=r,
        )
        self.reconnects = Counter(
            f"{PREFIX}_reconnects", "Connections re-opened after a loss", ["connection"], registry=r
        )
        self.published = Counter(
            f"{PREFIX}_published", "Messages confirmed by the broker", registry=r
        )
        self.publish_failures = Counter(
            f"{PREFIX}_publish_failures", "Publishes that failed", ["reason"], registry=r
        )
        self.publish_resent = Counter(
            f"{PREFIX}_publish_resent",
            "Unconfirmed messages re-sent after a connection loss (possible duplicates)",
            registry=r,
        )
        self.confirms_pending = Gauge(
            f"{PREFIX}_confirms_pending", "Published messages waiting for their confirm", registry=r
        )
        self.blocked_total = 0.0
        self.blocked_since: float | None = None
        r.register(_BlockedCollector(self))

    def of_queue(self, queue: str) -> QueueMetrics:
        """The metrics labelled with ``queue``."""
        return QueueMetrics(
            self.deliveries.labels(queue),
            self.acks.labels(queue),
            self.retries.labels(queue),
            self.requeues.labels(queue),
            self.dropped.labels(queue),
            self.handler_seconds.labels(queue),
            self.handler_errors.labels(queue),
            self.held_seconds.labels(queue),
            self.prefetch.labels(queue),
        )

    def set_blocked(self, blocked: bool) -> None:
        """Record a connection.blocked / connection.unblocked."""
        now = time.monotonic()
        if blocked and self.blocked_since is None:
            self.blocked_since = now
        elif not blocked and self.blocked_since is not None:
            self.blocked_total += now - self.blocked_since
            self.blocked_since = None

    def blocked_seconds(self) -> float:
        """Total blocked seconds so far."""
        ongoing = time.monotonic() - self.blocked_since if self.blocked_since is not None else 0
        return self.blocked_total + ongoing

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
