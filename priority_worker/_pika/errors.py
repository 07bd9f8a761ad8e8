"""The one exception map for pika: what pika raises or reports becomes this package's terms.

pika's exceptions stop at the adapter (:mod:`priority_worker._pika.connection`,
:mod:`priority_worker._pika.channels`, and the blocking startup check of
:mod:`priority_worker._topology`); they catch the classes named here and translate them with
these functions, with ``raise ... from exc``, so that callers only ever see
:class:`ChannelGone` (and, from the public API, the errors of :mod:`priority_worker._errors`).
The close and open-failure reasons pika hands to callbacks become one line here too.
"""

from __future__ import annotations

import pika.exceptions

from declare_amqp.tls import tls_reason
from declare_amqp.urls import redact_url

from .._link import ChannelGone

# What the adapter catches around a pika call: every protocol and connection error of pika.
PikaError = pika.exceptions.AMQPError
# The broker closed the channel because of the last method (404, 406, ...): the startup
# topology check (_topology) reports these, with their reply code and text, as mismatches.
BrokerClosedChannel = pika.exceptions.ChannelClosedByBroker


def channel_gone(exc: BaseException) -> ChannelGone:
    """``exc`` (raised by a pika channel or connection method) as ChannelGone."""
    code = getattr(exc, "reply_code", None)
    return ChannelGone(str(exc), code if isinstance(code, int) else None)


def close_details(reason: BaseException) -> tuple[int | None, str]:
    """The broker's reply code (404, 406, ...; None for a local or network close) and one line
    saying why a channel closed."""
    code = getattr(reason, "reply_code", None)
    if not isinstance(code, int):
        return None, str(reason)
    return code, f"{code} {getattr(reason, 'reply_text', reason)}" if code else str(reason)


def bad_url(url: str, exc: Exception) -> str:
    """One line saying that pika could not parse ``url`` (shown without its password)."""
    return f"bad URL {redact_url(url)}: {type(exc).__name__}"


def connection_lost(reason: BaseException) -> str:
    """One line saying why an open connection closed."""
    return f"{type(reason).__name__}: {reason}"


def open_failed(error: BaseException | str, where: str) -> str:
    """One line saying why connecting to ``where`` failed: the TLS check that failed, if one
    did, else the error."""
    reason = tls_reason(error, where) if isinstance(error, BaseException) else None
    return reason or f"{type(error).__name__}: {error}"
