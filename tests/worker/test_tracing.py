"""Tracing without a broker: free when unused, on only with a provider, configured from OTEL_*.

The import checks run in fresh interpreters (``tests/import_probe.py``): what a process loads
depends on what it imported before, which a shared test process cannot show.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from import_probe import loaded_after
from opentelemetry.sdk.trace import TracerProvider

from priority_worker import ConfigurationError
from priority_worker._log import JsonFormatter
from priority_worker._otel import OtelTracing, provider_from_environment
from priority_worker._tracing import tracing_for

_BUILD_BOTH = """
import priority_worker
from priority_worker._tracing import tracing_for
worker = priority_worker.Worker("amqp://127.0.0.1/", [priority_worker.Queue("q", 1)], print)
publisher = priority_worker.Publisher("amqp://127.0.0.1/")
assert tracing_for(None) is None and worker._tracing is None and publisher._tracing is None
"""


def _otel_modules(loaded: set[str]) -> set[str]:
    return {name for name in loaded if name.partition(".")[0] == "opentelemetry"}


def test_the_worker_and_publisher_load_no_opentelemetry_without_a_provider() -> None:
    """Installed but unused: ``import priority_worker`` and building a Worker and a Publisher
    load no ``opentelemetry`` module, and tracing is off."""
    loaded = loaded_after(_BUILD_BOTH)
    assert "priority_worker._worker" in loaded  # the probe saw the package at all
    assert not _otel_modules(loaded), sorted(_otel_modules(loaded))


def test_the_worker_runs_without_the_extra_installed() -> None:
    """With OpenTelemetry not importable at all (the extra absent), the same works."""
    blocker = (
        "import sys\n"
        "class _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'opentelemetry':\n"
        "            raise ImportError('absent: ' + name)\n"
        "sys.meta_path.insert(0, _Absent())\n"
    )
    loaded = loaded_after(blocker + _BUILD_BOTH)
    assert "priority_worker._publisher" in loaded and not _otel_modules(loaded)


def test_the_probe_sees_opentelemetry_once_tracing_is_on() -> None:
    """A provider given: ``_otel`` and the API are loaded (so the checks above can fail)."""
    loaded = loaded_after(
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from priority_worker._tracing import tracing_for\n"
        "assert tracing_for(TracerProvider()) is not None\n"
    )
    assert "priority_worker._otel" in loaded and "opentelemetry.trace" in loaded


def test_the_global_provider_turns_tracing_on_only_once_set() -> None:
    """OpenTelemetry imported but no provider set: off (the API's proxy is a no-op). After
    ``trace.set_tracer_provider``: on, with that provider."""
    loaded_after(
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from priority_worker._tracing import tracing_for\n"
        "assert tracing_for(None) is None\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "tracing = tracing_for(None)\n"
        "assert type(tracing).__name__ == 'OtelTracing', tracing\n"
    )  # check=True: a failed assert fails the test


def test_a_given_provider_turns_tracing_on() -> None:
    """``tracer_provider=`` is used as given."""
    provider = TracerProvider()
    tracing = tracing_for(provider)
    assert isinstance(tracing, OtelTracing)
    assert tracing.tracer.instrumentation_info.schema_url.endswith("/1.27.0")


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test_tracing.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def test_json_log_lines_carry_the_current_span_ids_only_inside_a_span(
    json_lines: tuple[logging.Logger, io.StringIO],
) -> None:
    """With tracing on, a line logged inside a span has its trace_id and span_id in W3C hex;
    one logged outside has neither."""
    logger, out = json_lines
    provider = TracerProvider()
    tracing_for(provider)  # installs the log correlation
    logger.info("outside")
    with provider.get_tracer("t").start_as_current_span("inside") as span:
        logger.info("inside")
    outside, inside = (json.loads(line) for line in out.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    ctx = span.get_span_context()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")


def test_the_runner_builds_its_sdk_from_the_otel_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--trace``: OTEL_SERVICE_NAME names the service (default priority-worker),
    OTEL_TRACES_EXPORTER picks exporters by their entry-point names, each batched."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "emails")
    provider = provider_from_environment()
    assert provider.resource.attributes["service.name"] == "emails"
    (processor,) = provider._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    assert isinstance(processor._batch_processor._exporter, ConsoleSpanExporter)
    provider.shutdown()

    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = provider_from_environment()
    assert provider.resource.attributes["service.name"] == "priority-worker"
    assert provider._active_span_processor._span_processors == ()


def test_an_exporter_that_is_not_installed_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default exporter (otlp) without its package, or a misspelt name: a clear error
    naming the variable and the value, before anything connects."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "consloe")
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER=consloe"):
        provider_from_environment()


def test_the_runner_reports_a_bad_exporter_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``priority-worker run ... --trace`` with an unknown exporter: exit 2, one line."""
    from priority_worker._cli import main

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "consloe")
    code = main(
        ["run", "builtins:print", "--url", "amqp://127.0.0.1/", "--queue", "q=1", "--trace"]
    )
    assert code == 2
    assert "OTEL_TRACES_EXPORTER=consloe" in capsys.readouterr().err


@pytest.fixture
def global_textmap() -> Iterator[None]:
    """Restores OpenTelemetry's global propagator after a test that sets another."""
    from opentelemetry import propagate

    saved = propagate.get_global_textmap()
    yield
    propagate.set_global_textmap(saved)


def test_w3c_headers_are_what_the_global_propagator_would_write_and_read(
    global_textmap: None,
) -> None:
    """The default propagators (W3C trace context and baggage) are called directly, only for
    the headers present: what is injected (traceparent, tracestate, baggage) and extracted is
    exactly what ``propagate.inject``/``extract`` give. Another global propagator (here
    trace context without baggage, then a custom one) is honoured, not bypassed."""
    from opentelemetry import baggage, propagate, trace
    from opentelemetry import context as otel_context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from priority_worker._otel import _GETTER, _Propagation, _w3c_parts

    # OTEL_PROPAGATORS unset: the default, W3C trace context and baggage.
    assert _w3c_parts(propagate.get_global_textmap()) == (True, True)
    propagation = _Propagation()
    span = NonRecordingSpan(
        SpanContext(
            0x0AF7651916CD43DD8448EB211C80319C,
            0x00F067AA0BA902B7,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "x"), ("other", "y")]),
        )
    )
    with_baggage = baggage.set_baggage("user", "42")
    for ctx in (otel_context.Context(), with_baggage):
        token = otel_context.attach(ctx)
        try:
            fast: dict[str, object] = {"keep": 1}
            propagation.inject(fast, span)
            usual: dict[str, object] = {"keep": 1}
            propagate.inject(usual, context=trace.set_span_in_context(span))
        finally:
            otel_context.detach(token)
        assert fast == usual and "traceparent" in fast and "tracestate" in fast
        assert ("baggage" in fast) == (ctx is with_baggage)
        # Read back, as the broker hands them over (strings may arrive as bytes).
        carried = {k: v.encode() if isinstance(v, str) else v for k, v in fast.items()}
        got, expected = propagation.extract(carried), propagate.extract(carried, getter=_GETTER)
        remote = trace.get_current_span(got).get_span_context()
        assert remote == trace.get_current_span(expected).get_span_context()
        sent = span.get_span_context()
        assert (remote.trace_id, remote.span_id, remote.trace_flags, remote.is_remote) == (
            sent.trace_id,
            sent.span_id,
            sent.trace_flags,
            True,
        )
        assert remote.trace_state == sent.trace_state
        assert baggage.get_all(got) == baggage.get_all(expected)
    # No trace headers: a context of its own (a new trace), not the current one.
    assert propagation.extract({}) == propagate.extract({}, getter=_GETTER) == {}
    assert not trace.get_current_span(propagation.extract({"x": 1})).get_span_context().is_valid

    class Custom(TextMapPropagator):
        """Writes its own header; reads nothing."""

        def inject(self, carrier, context=None, setter=None):  # type: ignore[no-untyped-def]
            carrier["x-custom"] = "yes"

        def extract(self, carrier, context=None, getter=None):  # type: ignore[no-untyped-def]
            return otel_context.set_value("custom", "seen", context)

        @property
        def fields(self) -> set[str]:
            return {"x-custom"}

    propagate.set_global_textmap(TraceContextTextMapPropagator())
    token = otel_context.attach(with_baggage)
    try:
        alone: dict[str, object] = {}
        propagation.inject(alone, span)
    finally:
        otel_context.detach(token)
    assert set(alone) == {"traceparent", "tracestate"}  # no baggage: not configured
    assert not baggage.get_all(propagation.extract({**alone, "baggage": "user=42"}))

    propagate.set_global_textmap(Custom())
    custom: dict[str, object] = {}
    propagation.inject(custom, span)
    assert custom == {"x-custom": "yes"}
    assert otel_context.get_value("custom", propagation.extract({"traceparent": "x"})) == "seen"
