"""OpenTelemetry traces for the worker and the publisher (the ``otel`` extra).

Imported only when tracing is on (see :mod:`priority_worker._tracing`, the seam). Spans follow
OpenTelemetry's messaging semantic conventions **v1.27.0** (``SCHEMA_URL``), the version that
names the operation types ``send`` and ``process``:

- ``send {exchange}`` (kind PRODUCER) per publish, from the call to the broker's confirm; its
  context travels in the message headers (``traceparent``/``tracestate`` with the default W3C
  propagator; whatever ``OTEL_PROPAGATORS`` configures otherwise).
- ``process {queue}`` (kind CONSUMER) per delivery, the child of the context extracted from its
  headers, current while the handler runs and the delivery is settled.
- A retry republish and a dead-letter publish are ``send`` spans made inside that process span
  (so in the same trace) with a link to it, the attempt that failed, and
  ``priority_worker.republish`` = ``retry`` | ``dead-letter``.

Attributes the conventions define: ``messaging.system`` (``rabbitmq``),
``messaging.operation.type`` and ``.name``, ``messaging.destination.name`` (the exchange, empty
for the default one), ``messaging.rabbitmq.destination.routing_key``, ``messaging.message.id``,
``messaging.message.conversation_id`` (the correlation id),
``messaging.rabbitmq.message.delivery_tag``, ``error.type``. Opt-in ones are left out
(``messaging.message.body.size``): each attribute costs the SDK a validation per span.
The rest under ``priority_worker.``: ``queue``, ``attempt`` (1-based), ``outcome`` (``ack``,
``retry``, ``dead-letter``, ``reject``, ``requeue``, ``dropped``) and ``republish``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, TextMapPropagator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import _log
from ._errors import ConfigurationError
from ._model import with_headers
from ._outcomes import attempts_of

if TYPE_CHECKING:
    import asyncio
    from contextvars import ContextVar

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

    from ._link import Delivery
    from ._model import Properties
    from ._outcomes import Republish

SCHEMA_URL = "https://opentelemetry.io/schemas/1.27.0"
TRACER_NAME = "priority_worker"


class _HeaderGetter(Getter[Mapping[str, Any]]):
    """Reads propagation fields from AMQP headers, whose strings may arrive as bytes."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return [str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()
_EMPTY: Mapping[str, Any] = {}
_NO_CONTEXT = otel_context.Context()  # immutable: what extracting from no trace headers gives
_W3C_TRACE = TraceContextTextMapPropagator()
_W3C_BAGGAGE = W3CBaggagePropagator()
_W3C_FIELDS = frozenset({"traceparent", "tracestate", "baggage"})


def _w3c_parts(textmap: TextMapPropagator) -> tuple[bool, bool] | None:
    """Whether ``textmap`` is made of OpenTelemetry's W3C propagators only (the default,
    ``OTEL_PROPAGATORS`` unset, is trace context and baggage), and which: (trace context,
    baggage); None for anything else. Then :class:`_Propagation` calls those W3C propagators
    itself, and only for the headers present, instead of going through the composite for
    every message."""
    if (
        isinstance(textmap, (TraceContextTextMapPropagator, W3CBaggagePropagator))
        or type(textmap) is CompositePropagator
        and textmap.fields <= _W3C_FIELDS
    ):
        fields = textmap.fields
    else:
        return None
    return "traceparent" in fields, "baggage" in fields


class _Propagation:
    """Span contexts into and out of AMQP headers, with whatever propagator is global.

    With W3C propagators only (the default; checked on each call, since an application may
    set another one at any time): ``traceparent`` written straight from the span's context
    (the format W3C Trace Context fixes), ``tracestate`` when the span has one, ``baggage``
    when the current context has some; extraction only of the headers a message carries.
    Anything else goes through ``propagate.inject``/``extract`` as configured.
    """

    __slots__ = ("textmap", "w3c")

    def __init__(self) -> None:
        self.textmap: TextMapPropagator | None = None
        self.w3c: tuple[bool, bool] | None = None

    def _parts(self) -> tuple[bool, bool] | None:
        textmap = propagate.get_global_textmap()
        if textmap is not self.textmap:
            self.textmap, self.w3c = textmap, _w3c_parts(textmap)
        return self.w3c

    def inject(self, headers: dict[str, Any], span: trace.Span) -> None:
        parts = self._parts()
        if parts is None:
            propagate.inject(headers, context=trace.set_span_in_context(span))
            return
        with_trace, with_baggage = parts
        ctx = span.get_span_context()
        if with_trace and ctx.is_valid:
            headers["traceparent"] = (
                f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
            )
            if ctx.trace_state:
                headers["tracestate"] = ctx.trace_state.to_header()
        if with_baggage and baggage.get_all():
            _W3C_BAGGAGE.inject(headers)

    def extract(self, headers: Mapping[str, Any]) -> otel_context.Context:
        parts = self._parts()
        if parts is None:
            # An empty carrier extracts to an empty context: a delivery without trace headers
            # starts a trace of its own rather than joining whatever happens to be current.
            return propagate.extract(headers, getter=_GETTER)
        with_trace, with_baggage = parts
        parent = _NO_CONTEXT
        if with_trace and "traceparent" in headers:
            parent = _W3C_TRACE.extract(headers, parent, _GETTER)
        if with_baggage and "baggage" in headers:
            parent = _W3C_BAGGAGE.extract(headers, parent, _GETTER)
        return parent


def _current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in W3C hex, for JSON log lines."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _fail(span: trace.Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.set_attribute("error.type", type(error).__qualname__)


def _confirmed(span: trace.Span, future: asyncio.Future[None]) -> None:
    """End a send span when its publish is confirmed, or failed (nack, return, timeout...)."""
    if future.cancelled():
        span.set_status(Status(StatusCode.ERROR, "cancelled"))
    else:
        error = future.exception()
        if error is not None:
            _fail(span, error)
    span.end()


class _Process:
    """A started process span and the context token that made it current."""

    __slots__ = ("span", "token")

    def __init__(self, span: trace.Span, token: object) -> None:
        self.span = span
        self.token = token

    def end(self, outcome: str, error: BaseException | None) -> None:
        span = self.span
        span.set_attribute("priority_worker.outcome", outcome)
        if error is not None:
            _fail(span, error)
        span.end()
        otel_context.detach(self.token)  # type: ignore[arg-type]


class _Names:
    """The span name and the attributes that are the same for every span of one queue (or
    exchange), made once: each span starts from a copy of them, in one dict handed to
    ``start_span`` (the SDK validates what it is given once; no ``set_attribute`` calls)."""

    __slots__ = ("name", "attributes")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.attributes = attributes


_NAMES_MAX = 1024  # distinct queues/exchanges whose names and attributes are kept


class OtelTracing:
    """:class:`priority_worker._tracing.Tracing` on an OpenTelemetry tracer provider.

    ``republish``: the context variable the worker sets while it republishes a failed delivery
    (``_tracing.REPUBLISH``, handed in so that this module does not import the seam back).
    """

    def __init__(
        self, provider: trace.TracerProvider, republish: ContextVar[Republish | None]
    ) -> None:
        self.tracer = provider.get_tracer(TRACER_NAME, schema_url=SCHEMA_URL)
        self.republish = republish
        self._propagation = _Propagation()
        self._sends: dict[str, _Names] = {}
        self._processes: dict[str, _Names] = {}
        _log.correlate(_current_ids)

    def _send_names(self, exchange: str) -> _Names:
        names = self._sends.get(exchange)
        if names is None:
            if len(self._sends) >= _NAMES_MAX:
                self._sends.clear()
            names = self._sends[exchange] = _Names(
                f"send {exchange}" if exchange else "send",
                {
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "send",
                    "messaging.destination.name": exchange,
                },
            )
        return names

    def _process_names(self, queue: str) -> _Names:
        names = self._processes.get(queue)
        if names is None:
            if len(self._processes) >= _NAMES_MAX:
                self._processes.clear()
            names = self._processes[queue] = _Names(
                f"process {queue}",
                {
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "priority_worker.queue": queue,
                },
            )
        return names

    def sent(
        self,
        exchange: str,
        routing_key: str,
        properties: Properties,
        confirmed: asyncio.Future[None],
    ) -> Properties:
        """See :meth:`priority_worker._tracing.Tracing.sent`."""
        names = self._send_names(exchange)
        attributes = names.attributes.copy()
        if routing_key:
            attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
        if properties.message_id:
            attributes["messaging.message.id"] = properties.message_id
        if properties.correlation_id:
            attributes["messaging.message.conversation_id"] = properties.correlation_id
        links: list[Link] | None = None
        republish = self.republish.get()
        if republish is not None:
            attributes["priority_worker.republish"] = republish.kind
            attributes["priority_worker.queue"] = republish.queue
            attributes["priority_worker.attempt"] = republish.attempt
            failed = trace.get_current_span().get_span_context()
            if failed.is_valid:
                links = [Link(failed, {"priority_worker.link": "failed attempt"})]
        span = self.tracer.start_span(
            names.name, kind=SpanKind.PRODUCER, attributes=attributes, links=links
        )
        headers = dict(properties.headers) if properties.headers else {}
        self._propagation.inject(headers, span)
        confirmed.add_done_callback(functools.partial(_confirmed, span))
        return with_headers(properties, headers)

    def process(self, delivery: Delivery) -> _Process:
        """See :meth:`priority_worker._tracing.Tracing.process`."""
        props = delivery.properties
        headers = props.headers or _EMPTY
        names = self._process_names(delivery.queue)
        attributes = names.attributes.copy()
        attributes["messaging.destination.name"] = delivery.exchange
        attributes["messaging.rabbitmq.message.delivery_tag"] = delivery.delivery_tag
        attributes["priority_worker.attempt"] = attempts_of(headers) + 1
        if delivery.routing_key:
            attributes["messaging.rabbitmq.destination.routing_key"] = delivery.routing_key
        if props.message_id:
            attributes["messaging.message.id"] = props.message_id
        if props.correlation_id:
            attributes["messaging.message.conversation_id"] = props.correlation_id
        parent = self._propagation.extract(headers)
        span = self.tracer.start_span(
            names.name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        return _Process(span, otel_context.attach(trace.set_span_in_context(span, parent)))


def provider_from_environment(
    default_service_name: str = "priority-worker",
) -> SdkTracerProvider:
    """An SDK tracer provider configured by OpenTelemetry's standard environment variables, as
    ``priority-worker run --trace`` (and each ``--processes`` child) uses it.

    ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (the resource; the service name
    defaults to ``default_service_name``), ``OTEL_TRACES_SAMPLER`` / ``_ARG`` (read by the SDK),
    ``OTEL_TRACES_EXPORTER`` (comma-separated exporter names registered under the
    ``opentelemetry_traces_exporter`` entry point: ``console`` ships with the SDK, ``otlp`` with
    ``opentelemetry-exporter-otlp``; ``none``: no export; default ``otlp``), each behind a batch
    span processor (``OTEL_BSP_*``). Raises :class:`ConfigurationError` for an exporter that is
    not installed.
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            "--trace needs the OpenTelemetry SDK: pip install 'declare-amqp[otel]'"
        ) from exc
    resource = Resource.create()
    if "OTEL_SERVICE_NAME" not in os.environ and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        resource = resource.merge(Resource.create({"service.name": default_service_name}))
    provider: SdkTracerProvider = TracerProvider(resource=resource)
    for name in _exporter_names(os.environ.get("OTEL_TRACES_EXPORTER", "otlp")):
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={name}: no such span exporter is installed "
                "(otlp: pip install opentelemetry-exporter-otlp)"
            )
        exporter_class = next(iter(found)).load()
        provider.add_span_processor(BatchSpanProcessor(exporter_class()))
    return provider


def _exporter_names(value: str) -> Iterable[str]:
    return [n for n in (part.strip() for part in value.split(",")) if n and n != "none"]
