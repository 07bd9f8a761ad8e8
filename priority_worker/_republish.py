"""Retry and dead-letter: republish a failed delivery where its action says, then settle it.

At-least-once: the copy is published with confirms first and the delivery is acked only after
the broker confirmed it. A retry goes to the delay queue of its step (declared on first use,
see :mod:`declare_amqp.worker_queues`), a dead letter to the queue's dead-letter exchange or to
``QUEUE.dead``. What cannot be republished is requeued, or, when there is nowhere to put it
(unroutable, no such exchange), rejected so the broker dead-letters it by the queue's own
arguments or policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from declare_amqp.worker_queues import (
    dead_letter_queue_name,
    delay_queue_arguments,
    delay_queue_name,
)

from ._errors import PublishConnectionLost, PublishError, PublishReturned
from ._link import ChannelGone, Delivery
from ._log import log
from ._metrics import Metrics
from ._model import Queue
from ._outcomes import (
    ATTEMPTS_HEADER,
    DEAD_LETTER_REASON_HEADER,
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    REPUBLISH,
    DeadLetter,
    Republish,
    RetryLater,
    attempts_of,
)
from ._publisher import Publisher

logger = logging.getLogger("priority_worker.worker")


def dead_letter_target(spec: Queue, d: Delivery) -> tuple[str, str]:
    """(exchange, routing key) a dead letter of ``spec``'s delivery ``d`` is published to."""
    if spec.dead_letter_exchange:
        return spec.dead_letter_exchange, spec.dead_letter_routing_key or d.routing_key
    return "", dead_letter_queue_name(spec.name)


class Republisher:
    """Carries out RetryLater and DeadLetter actions with ``publisher``.

    ``requeue(deliveries)`` gives deliveries back to the broker; ``dropped(d)`` records one
    whose channel closed before it could be settled (the broker redelivers it).
    """

    def __init__(
        self,
        publisher: Publisher,
        metrics: Metrics,
        *,
        requeue: Callable[[Sequence[Delivery]], int],
        dropped: Callable[[Delivery], None],
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self._requeue = requeue
        self._dropped = dropped

    async def settle(self, d: Delivery, spec: Queue, action: RetryLater | DeadLetter) -> str:
        """Republish ``d`` as ``action`` says, then ack it (requeue or reject it on failure).

        Returns the outcome: ``retry``, ``dead-letter``, ``requeue`` (the republish failed),
        ``reject`` (nowhere to republish it) or ``dropped`` (its channel is gone).
        """
        if not d.channel.is_open:
            self._dropped(d)
            return "dropped"
        failed_attempt = attempts_of(d.properties.headers) + 1
        headers = dict(d.properties.headers or {})
        headers[ORIGINAL_QUEUE_HEADER] = d.queue
        headers[ATTEMPTS_HEADER] = action.attempts
        props = replace(d.properties, expiration=None)
        try:
            if isinstance(action, RetryLater):
                name = delay_queue_name(d.queue, action.delay)
                await self.publisher.ensure_queue(
                    name, delay_queue_arguments(d.queue, action.delay)
                )
                headers[ERROR_HEADER] = action.reason
                # The publish's send span (tracing on) reads why it is sent; set around the
                # call only, which starts the span synchronously.
                token = REPUBLISH.set(Republish("retry", d.queue, failed_attempt))
                try:
                    sent = self.publisher.publish(
                        "", name, d.body, properties=replace(props, headers=headers)
                    )
                finally:
                    REPUBLISH.reset(token)
                await sent
                outcome = "retry"
                counter = self.metrics.retries.labels(d.queue)
                log(
                    logger,
                    logging.INFO,
                    "retry_scheduled",
                    queue=d.queue,
                    delay=action.delay,
                    attempts=action.attempts,
                    reason=action.reason,
                )
            else:
                exchange, key = dead_letter_target(spec, d)
                if not exchange:
                    await self.publisher.ensure_queue(key, {})  # Q.dead, see worker_queues
                headers[ERROR_HEADER] = action.error
                headers[DEAD_LETTER_REASON_HEADER] = action.reason
                token = REPUBLISH.set(Republish("dead-letter", d.queue, failed_attempt))
                try:
                    sent = self.publisher.publish(
                        exchange, key, d.body, properties=replace(props, headers=headers)
                    )
                finally:
                    REPUBLISH.reset(token)
                await sent
                outcome = "dead-letter"
                counter = self.metrics.dead_letters.labels(d.queue, action.reason)
                log(
                    logger,
                    logging.WARNING,
                    "dead_lettered",
                    queue=d.queue,
                    reason=action.reason,
                    error=action.error,
                    exchange=exchange,
                    routing_key=key,
                )
        except (PublishReturned, PublishConnectionLost) as exc:
            if isinstance(exc, PublishConnectionLost) and exc.reply_code != 404:
                log(logger, logging.WARNING, "republish_failed", queue=d.queue, error=str(exc))
                self._requeue([d])
                return "requeue"
            # Nowhere to put it (unroutable, or no such exchange): requeueing would loop, so
            # let the broker dead-letter it by the queue's own arguments or policy.
            log(logger, logging.ERROR, "republish_unroutable", queue=d.queue, error=str(exc))
            if d.channel.nack(d.delivery_tag, requeue=False):
                self.metrics.dead_letters.labels(d.queue, "unroutable").inc()
            return "reject"
        except (PublishError, ChannelGone) as exc:
            log(logger, logging.WARNING, "republish_failed", queue=d.queue, error=str(exc))
            self._requeue([d])
            return "requeue"
        if d.channel.ack(d.delivery_tag):
            counter.inc()
            return outcome
        self.metrics.dropped.labels(d.queue).inc()
        return "dropped"
