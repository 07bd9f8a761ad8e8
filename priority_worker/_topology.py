"""A worker's settings from a topology file's ``consumers`` section, and the startup check.

``Worker.from_topology`` and ``priority-worker run --topology FILE --consumer NAME`` read the
files with declare-amqp's own loader (same validation, same ``file:line`` errors), take the
consumer's queues, prefetches, mode, concurrency, retry policy and dead-letter exchange, and
let explicit arguments win. Before consuming, the worker checks that its queues exist with the
arguments the files give them, so it never consumes from the wrong thing.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pika

from declare_amqp.tls import TlsError, TlsOptions
from declare_amqp.urls import redact_url

from ._config import broker_urls
from ._errors import ConfigurationError
from ._model import Handler, Mode, Queue, RetryPolicy
from ._pika.connection import configure_tls
from ._pika.errors import BrokerClosedChannel, PikaError


class TopologyMismatch(ConfigurationError):
    """The broker lacks a queue or exchange the topology gives the worker, or has it with other
    arguments; ``problems`` lists each one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(
            "the broker does not match the topology; not consuming:\n"
            + "\n".join(f"  {p}" for p in self.problems)
            + "\n(apply it first: declare-amqp apply FILE...)"
        )


@dataclass(frozen=True)
class ExpectedQueue:
    """A queue as the topology declares it: what the startup check compares."""

    name: str
    durable: bool = True
    auto_delete: bool = False
    arguments: Mapping[str, object] = field(default_factory=dict)
    where: str = ""  # file:line


@dataclass(frozen=True)
class ExpectedTopology:
    """The queues and exchanges a worker started from a topology needs on the broker."""

    vhost: str
    queues: tuple[ExpectedQueue, ...] = ()
    exchanges: tuple[tuple[str, str], ...] = ()  # (name, file:line)

    def verify(self, urls: Sequence[str]) -> None:
        """Passive declares of every queue and exchange, then a declare with the files'
        arguments (the broker answers 406 when they differ); raises TopologyMismatch."""
        last_error: Exception | None = None
        for url in urls:
            params = pika.URLParameters(url)
            try:
                configure_tls(params, TlsOptions.from_env())  # the AMQP_TLS_* the worker uses
            except TlsError as exc:
                raise ConfigurationError(f"cannot check the topology: {exc}") from None
            try:
                conn = pika.BlockingConnection(params)
            except PikaError as exc:
                last_error = exc
                continue
            try:
                problems = self._check(conn)
            finally:
                if conn.is_open:
                    conn.close()
            if problems:
                raise TopologyMismatch(problems)
            return
        raise ConfigurationError(
            "cannot check the topology: no broker answers ("
            + ", ".join(redact_url(u) for u in urls)
            + f"): {last_error!r}"
        )

    def _check(self, conn: pika.BlockingConnection) -> list[str]:
        problems: list[str] = []
        ch = conn.channel()
        for q in self.queues:
            where = f"{q.where}: " if q.where else ""
            try:
                ch.queue_declare(q.name, passive=True)
            except BrokerClosedChannel as exc:
                ch = conn.channel()
                problems.append(
                    f"{where}queue '{q.name}' does not exist in vhost "
                    f"'{self.vhost}' ({exc.reply_code} {exc.reply_text})"
                )
                continue
            try:
                ch.queue_declare(
                    q.name,
                    durable=q.durable,
                    auto_delete=q.auto_delete,
                    arguments=dict(q.arguments),
                )
            except BrokerClosedChannel as exc:
                ch = conn.channel()
                problems.append(
                    f"{where}queue '{q.name}' exists with other settings than the "
                    f"topology gives it: {exc.reply_text}"
                )
        for name, where in self.exchanges:
            try:
                ch.exchange_declare(name, passive=True)
            except BrokerClosedChannel as exc:
                ch = conn.channel()
                problems.append(
                    f"{where + ': ' if where else ''}exchange '{name}' does not "
                    f"exist in vhost '{self.vhost}' ({exc.reply_code})"
                )
        return problems


@dataclass(frozen=True)
class ConsumerSettings:
    """What ``Worker(...)`` takes, read from a consumer, and where each setting came from."""

    queues: tuple[Queue, ...]
    mode: Mode
    concurrency: int | None
    retry: RetryPolicy
    expected: ExpectedTopology
    sources: Mapping[str, str]  # setting -> "topology.yml:56 (consumer email-sender)" or flag


def url_vhost(url: str) -> str:
    """The vhost an AMQP URL names (``/`` when its path is empty)."""
    path = urllib.parse.urlsplit(url).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def consumer_settings(
    paths: Sequence[str],
    consumer: str,
    *,
    vhost: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ConsumerSettings:
    """Read ``consumer`` from the topology files; ``overrides`` (non-None values) win.

    Override keys: ``queues`` (a list of :class:`Queue`), ``mode``, ``concurrency``,
    ``max_retries``, ``retry`` (a :class:`RetryPolicy`), ``dead_letter_exchange``; each is
    reported as ``overrides[key + "_source"]`` when given (e.g. ``--mode``), else "argument".
    """
    from declare_amqp import DeclareAmqpError, load  # the provisioner's loader and validation

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        topology = load(paths, default_vhost=vhost or "/")
    except DeclareAmqpError as exc:
        raise ConfigurationError(str(exc)) from exc
    found = [
        c for c in topology.consumers if c.name == consumer and (vhost is None or c.vhost == vhost)
    ]
    if not found:
        elsewhere = sorted(c.vhost for c in topology.consumers if c.name == consumer)
        if elsewhere:
            raise ConfigurationError(
                f"consumer '{consumer}' is in vhost {', '.join(map(repr, elsewhere))}, but the "
                f"broker URL names vhost '{vhost}'"
            )
        names = ", ".join(sorted({c.name for c in topology.consumers})) or "none"
        raise ConfigurationError(
            f"no consumer '{consumer}' in {', '.join(paths)} (consumers there: {names})"
        )
    if len(found) > 1:
        raise ConfigurationError(
            f"consumer '{consumer}' is in several vhosts "
            f"({', '.join(c.vhost for c in found)}): pass the vhost"
        )
    c = found[0]
    origin = f"{c.location} (consumer {c.name})"

    def source(key: str) -> str:
        return str(overrides.get(f"{key}_source", "argument")) if key in overrides else origin

    dlx = overrides.get("dead_letter_exchange", c.dead_letter_exchange)
    if "queues" in overrides:
        queues = tuple(overrides["queues"])
    else:
        queues = tuple(Queue(q.queue, q.prefetch) for q in c.queues)
    if dlx:
        queues = tuple(
            q
            if q.dead_letter_exchange
            else Queue(
                q.name,
                q.prefetch,
                dead_letter_exchange=dlx,
                dead_letter_routing_key=q.dead_letter_routing_key,
                handler=q.handler,
            )
            for q in queues
        )
    if "retry" in overrides:
        retry = overrides["retry"]
    else:
        retry = RetryPolicy(
            max_retries=overrides.get("max_retries", c.max_retries), delays=c.delays
        )
    declared = {q.name: q for q in topology.queues if q.vhost == c.vhost}
    expected_queues = []
    for q in queues:
        spec = declared.get(q.name)
        if spec is None:  # named by a flag, or declared only on the broker: existence only
            expected_queues.append(ExpectedQueue(q.name, where=source("queues")))
            continue
        arguments = dict(spec.arguments)
        if spec.type != "classic":
            arguments["x-queue-type"] = spec.type
        expected_queues.append(
            ExpectedQueue(
                q.name, spec.durable, spec.auto_delete, arguments, str(spec.location or "")
            )
        )
    exchanges = ((dlx, source("dead_letter_exchange")),) if dlx else ()
    sources = {
        "queues": source("queues"),
        "mode": source("mode"),
        "concurrency": source("concurrency"),
        "retry": source("retry") if "retry" in overrides else source("max_retries"),
        "dead_letter_exchange": source("dead_letter_exchange"),
    }
    return ConsumerSettings(
        queues=queues,
        mode=Mode(overrides.get("mode", c.mode)),
        concurrency=overrides.get("concurrency", c.concurrency),
        retry=retry,
        expected=ExpectedTopology(c.vhost, tuple(expected_queues), exchanges),
        sources=sources,
    )


class _FromTopology(Protocol):
    """What :func:`worker_from_topology` sets on the worker it builds."""

    expected_topology: ExpectedTopology | None
    settings_sources: dict[str, str]


W = TypeVar("W", bound=_FromTopology)


def worker_from_topology(
    build: Callable[..., W],
    paths: str | Sequence[str],
    consumer: str,
    url: str | Sequence[str],
    handler: Handler | None = None,
    *,
    queues: Sequence[Queue] | None = None,
    mode: Mode | str | None = None,
    concurrency: int | None = None,
    retry: RetryPolicy | None = None,
    max_retries: int | None = None,
    dead_letter_exchange: str | None = None,
    sources: dict[str, str] | None = None,
    **options: object,
) -> W:
    """``Worker.from_topology`` (see there): ``build`` is the worker class, passed in so that
    this module does not import ``_worker`` (which imports this one for the startup check)."""
    files = [paths] if isinstance(paths, str) else list(paths)
    urls = broker_urls(url)
    overrides: dict[str, object] = {
        "queues": list(queues) if queues else None,
        "mode": mode,
        "concurrency": concurrency,
        "retry": retry,
        "max_retries": max_retries,
        "dead_letter_exchange": dead_letter_exchange,
    }
    for key, where in (sources or {}).items():
        overrides[f"{key}_source"] = where
    settings = consumer_settings(files, consumer, vhost=url_vhost(urls[0]), overrides=overrides)
    worker = build(
        urls,
        list(settings.queues),
        handler,
        mode=settings.mode,
        concurrency=settings.concurrency,
        retry=settings.retry,
        **options,
    )
    worker.expected_topology = settings.expected
    worker.settings_sources = dict(settings.sources)
    return worker
