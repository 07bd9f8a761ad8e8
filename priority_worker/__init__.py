"""priority_worker: consume several RabbitMQ queues with a prefetch per queue, publish with
publisher confirms, and never lose work.

    from priority_worker import Worker, Queue, Retry, Reject

    async def send_email(message):
        ...

    Worker("amqp://...", [Queue("email.high", 10), Queue("email.default", 2)], send_email).run()
"""

from ._errors import (
    ConfigurationError,
    ConnectionFailed,
    PriorityWorkerError,
    PublishConnectionLost,
    PublisherClosed,
    PublishError,
    PublishNacked,
    PublishReturned,
    PublishTimeout,
    Reject,
    Retry,
)
from ._metrics import Metrics
from ._model import Handler, Message, Mode, Properties, Queue, RetryPolicy
from ._outcomes import ATTEMPTS_HEADER, ERROR_HEADER, ORIGINAL_QUEUE_HEADER
from ._publisher import Publisher
from ._supervisor import Supervisor
from ._worker import Worker

__all__ = [
    "ATTEMPTS_HEADER",
    "ERROR_HEADER",
    "ORIGINAL_QUEUE_HEADER",
    "ConfigurationError",
    "ConnectionFailed",
    "Handler",
    "Message",
    "Metrics",
    "Mode",
    "PriorityWorkerError",
    "Properties",
    "PublishConnectionLost",
    "PublishError",
    "PublishNacked",
    "PublishReturned",
    "PublishTimeout",
    "Publisher",
    "PublisherClosed",
    "Queue",
    "Reject",
    "Retry",
    "RetryPolicy",
    "Supervisor",
    "Worker",
]
