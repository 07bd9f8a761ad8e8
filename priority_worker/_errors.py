"""Exceptions of priority_worker.

Two families. Handler outcomes are raised *by your handler* to say what should happen to a
message; errors are raised *by the library* to you::

    Retry                       handler: try this message again after a delay
    Reject                      handler: dead-letter this message now

    PriorityWorkerError         base of everything the library raises
    +-- ConfigurationError      bad arguments (URL, queue spec, mode)
    +-- ConnectionFailed        no broker URL could be connected to (password redacted)
    +-- PublishError            a publish was not confirmed; ``.exchange``, ``.routing_key``
        +-- PublishNacked       the broker answered basic.nack
        +-- PublishReturned     unroutable with mandatory=True (basic.return); ``.reply_code``
        +-- PublishTimeout      no confirm within the publisher's confirm timeout
        +-- PublishConnectionLost  the connection closed while the message was unconfirmed
        +-- PublisherClosed     publish() after close()

pika's exceptions never reach you: the adapter translates them at one edge
(``_pika.errors``, the one exception map for pika).
"""

from __future__ import annotations


class Retry(Exception):
    """Raise from a handler to handle the message again after ``delay`` seconds.

    The message is republished to a delay queue whose TTL dead-letters it back to the queue it
    came from, then the original is acked: the queue keeps moving meanwhile (no hot requeue).
    """

    def __init__(self, delay: float = 30.0, reason: str = "") -> None:
        if delay < 0:
            raise ValueError("Retry delay must be >= 0")
        super().__init__(reason or f"retry in {delay:g}s")
        self.delay = float(delay)
        self.reason = reason


class Reject(Exception):
    """Raise from a handler to dead-letter the message at once, with ``reason`` in a header."""

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason


class PriorityWorkerError(Exception):
    """Base class of every error priority_worker raises."""


class ConfigurationError(PriorityWorkerError, ValueError):
    """Invalid configuration: a malformed URL, queue spec, mode or option."""


class ConnectionFailed(PriorityWorkerError):
    """No broker could be reached. The message names the URLs with their passwords redacted."""


class PublishError(PriorityWorkerError):
    """A message was not confirmed by the broker."""

    def __init__(self, message: str, *, exchange: str = "", routing_key: str = "") -> None:
        super().__init__(message)
        self.exchange = exchange
        self.routing_key = routing_key


class PublishNacked(PublishError):
    """The broker answered ``basic.nack``: it could not take the message."""


class PublishReturned(PublishError):
    """The message was unroutable and published with ``mandatory=True`` (``basic.return``)."""

    def __init__(
        self,
        message: str,
        *,
        exchange: str = "",
        routing_key: str = "",
        reply_code: int = 312,
        reply_text: str = "NO_ROUTE",
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.reply_code = reply_code
        self.reply_text = reply_text


class PublishTimeout(PublishError):
    """No confirm arrived within the confirm timeout. The message may still have been taken."""


class PublishConnectionLost(PublishError):
    """The connection or channel closed while the message was unconfirmed.

    ``reply_code`` is the broker's code when it closed only the channel (e.g. 404: the exchange
    does not exist), None when the connection was lost.
    """

    def __init__(
        self,
        message: str,
        *,
        exchange: str = "",
        routing_key: str = "",
        reply_code: int | None = None,
    ) -> None:
        super().__init__(message, exchange=exchange, routing_key=routing_key)
        self.reply_code = reply_code


class PublisherClosed(PublishError):
    """``publish()`` was called on a closed publisher."""
