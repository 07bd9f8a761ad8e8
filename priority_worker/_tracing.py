"""The seam to OpenTelemetry: what the worker and the publisher ask of tracing, and whether it
is on. Pure: OpenTelemetry itself is imported only by :mod:`priority_worker._otel`, and only
when tracing is on.

Tracing is on for a :class:`~priority_worker.Worker` or :class:`~priority_worker.Publisher`
when it was given ``tracer_provider=``, or when the application has set OpenTelemetry's global
tracer provider before ``start()``. Nobody can have set a global provider without importing
``opentelemetry.trace``, so ``sys.modules`` answers that without importing anything: a process
that never imports OpenTelemetry never loads it here either (pinned by
``tests/worker/test_tracing.py``). When tracing is off the worker holds ``None`` and its hot
path pays one ``is not None`` check per delivery and per publish.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import asyncio

    # The one place outside _otel that names OpenTelemetry (for annotations only; re-exported
    # for _worker and _publisher's signatures). import-linter's pw-otel contract holds that.
    from opentelemetry.trace import TracerProvider as TracerProvider

    from ._link import Delivery
    from ._model import Properties

from ._outcomes import REPUBLISH

T = TypeVar("T")


class ProcessSpan(Protocol):
    """The span of one delivery's processing, current until :meth:`end`."""

    def end(self, outcome: str, error: BaseException | None) -> None:
        """Record the outcome (and the handler's exception), end the span, restore the context
        that was current before it started."""


class Tracing(Protocol):
    """What :mod:`priority_worker._otel` provides to the worker and the publisher."""

    def sent(
        self,
        exchange: str,
        routing_key: str,
        properties: Properties,
        confirmed: asyncio.Future[None],
    ) -> Properties:
        """Start the producer span of one publish and return ``properties`` with its context
        in the headers; the span ends when ``confirmed`` resolves."""

    def process(self, delivery: Delivery) -> ProcessSpan:
        """Start the consumer span of one delivery, continuing the context in its headers,
        and make it current."""


def tracing_for(provider: TracerProvider | None) -> Tracing | None:
    """The tracing to use with ``provider``, or with the global provider when None; None
    when tracing is off (no provider given and none set globally)."""
    if provider is None:
        trace = sys.modules.get("opentelemetry.trace")
        if trace is None:
            return None  # OpenTelemetry was never imported: nobody set a provider
        provider = trace.get_tracer_provider()
        if isinstance(provider, trace.ProxyTracerProvider):
            return None  # imported, but no provider set: the API's no-op default
    from ._otel import OtelTracing

    return OtelTracing(provider, REPUBLISH)


class ContextExecutor(concurrent.futures.Executor):
    """Runs each call in ``executor`` inside a copy of the caller's context, so that a sync
    handler in the thread pool sees its delivery's span (``run_in_executor`` does not carry
    ``contextvars`` over). Used only when tracing is on."""

    def __init__(self, executor: concurrent.futures.Executor) -> None:
        self.executor = executor

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        """Submit ``fn(*args, **kwargs)`` to run in a copy of the current context."""
        return self.executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shut the wrapped executor down."""
        self.executor.shutdown(wait=wait, cancel_futures=cancel_futures)
