"""Structured logging: one event name plus key=value fields per record, JSON lines in the CLI.

Library code calls ``log(logger, level, "event", key=value)``. The record's message reads
``event key=value ...`` for plain handlers, and carries the fields in ``record.fields`` for
:class:`JsonFormatter`. :class:`SecretFilter` scrubs passwords from every record that reaches a
handler it is attached to, pika's own records included; the library also never formats a URL
without redacting it first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from declare_amqp.urls import scrub

# (trace_id, span_id) of the current span, or None; set by priority_worker._otel when tracing
# is on, so this module never imports OpenTelemetry.
_trace_ids: Callable[[], tuple[str, str] | None] | None = None


def correlate(ids: Callable[[], tuple[str, str] | None]) -> None:
    """Have :class:`JsonFormatter` add ``trace_id`` and ``span_id`` (what ``ids()`` returns)
    to each line logged while a span is active."""
    global _trace_ids
    _trace_ids = ids


def log(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    """Emit ``event`` with structured ``fields`` on ``logger``."""
    if not logger.isEnabledFor(level):
        return
    text = " ".join([event, *(f"{k}={v}" for k, v in fields.items())])
    logger.log(level, "%s", text, extra={"event": event, "fields": fields})


class SecretFilter(logging.Filter):
    """Replace any of ``secrets`` in a record's message (and exception text) by ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Scrub these secrets too."""
        self.secrets.update(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        if not self.secrets:
            return True
        message = scrub(record.getMessage(), self.secrets)
        record.msg, record.args = message, None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {
                k: scrub(v, self.secrets) if isinstance(v, str) else v for k, v in fields.items()
            }
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(text, self.secrets)
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, ``trace_id`` and ``span_id`` while a
    span is active (tracing on), and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if _trace_ids is not None:
            ids = _trace_ids()
            if ids is not None:
                doc["trace_id"], doc["span_id"] = ids
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(
                {k: v if isinstance(v, (int, float, bool)) else str(v) for k, v in fields.items()}
            )
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc)


def configure(level: int = logging.INFO, secrets: Iterable[str] = ()) -> SecretFilter:
    """Log JSON lines to stderr, scrubbing ``secrets`` (used by the CLI)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    secret_filter = SecretFilter(secrets)
    handler.addFilter(secret_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(max(level, logging.WARNING))
    return secret_filter
