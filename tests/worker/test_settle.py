"""The worker's settle, retry and dead-letter paths, run without a broker.

A real Worker (and its real Publisher) on the in-memory link of ``fake_link``: what a handler's
outcome does to its delivery (ack, requeue, reject) and what it republishes where, with which
headers, in which order (the copy is confirmed before the original is acked).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from fake_link import FakeAmqp

from declare_amqp.worker_queues import (
    dead_letter_queue_name,
    delay_queue_arguments,
    delay_queue_name,
)
from priority_worker import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ORIGINAL_QUEUE_HEADER,
    Message,
    Properties,
    Queue,
    Reject,
    Retry,
    RetryPolicy,
    Worker,
)


async def settled(amqp: FakeAmqp, queue: str, count: int = 1) -> None:
    """Let the loop run until ``count`` deliveries of ``queue`` are settled (2 s at most)."""
    for _ in range(400):
        if amqp.settled(queue) >= count:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{queue}: {amqp.settled(queue)} of {count} deliveries settled")


def scenario(
    handler: Callable[[Message], Awaitable[None]],
    check: Callable[[Worker, FakeAmqp], Awaitable[None]],
    *,
    queues: list[Queue] | None = None,
    amqp: FakeAmqp | None = None,
    **options: object,
) -> None:
    """Start a worker on the fake link, run ``check``, stop the worker."""
    amqp = amqp or FakeAmqp()

    async def main() -> None:
        worker = Worker(
            "amqp://fake/",
            queues or [Queue("jobs", 2)],
            handler,
            link_factory=amqp.link_factory,
            blocked_loop_warning=None,
            **options,  # type: ignore[arg-type]
        )
        await worker.start()
        for _ in range(100):  # the consumer's channel opens at the next loop turns
            if worker.ready:
                break
            await asyncio.sleep(0.005)
        assert worker.ready
        try:
            await check(worker, amqp)
        finally:
            await worker.stop()

    asyncio.run(main())


def metric(worker: Worker, line: str) -> bool:
    return line in worker.metrics.render().decode()


def test_a_handler_that_returns_acks_its_delivery() -> None:
    """Return -> basic.ack of that delivery tag, nothing republished."""

    async def ok(message: Message) -> None:
        pass

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        tag = amqp.consumer("jobs").deliver(b"x")
        await settled(amqp, "jobs")
        assert amqp.acked == [("jobs", tag)] and not amqp.nacked and not amqp.published
        assert metric(worker, 'priority_worker_acks_total{queue="jobs"} 1.0')

    scenario(ok, check)


def test_retry_republishes_to_the_delay_queue_then_acks() -> None:
    """Retry(delay) -> the delay queue of its step is declared with the queue's dead-letter
    arguments, the message is published there with the attempt count, original queue and
    reason in headers (its own headers kept, expiration dropped), confirmed, then acked."""

    async def later(message: Message) -> None:
        raise Retry(10, "busy")

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        props = Properties(headers={"trace": "t1"}, expiration="5000", content_type="text/plain")
        tag = amqp.consumer("jobs").deliver(b"payload", props)
        await settled(amqp, "jobs")
        delay = worker.retry.round_up(10)
        name = delay_queue_name("jobs", delay)
        assert amqp.declared[name] == dict(delay_queue_arguments("jobs", delay))
        [copy] = amqp.published
        assert (copy.exchange, copy.routing_key, copy.body, copy.mandatory) == (
            "",
            name,
            b"payload",
            True,
        )
        assert copy.headers == {
            "trace": "t1",
            ORIGINAL_QUEUE_HEADER: "jobs",
            ATTEMPTS_HEADER: 1,
            ERROR_HEADER: "busy",
        }
        assert copy.properties.expiration is None
        assert copy.properties.content_type == "text/plain"
        assert amqp.acked == [("jobs", tag)] and not amqp.nacked
        assert metric(worker, 'priority_worker_retries_total{queue="jobs"} 1.0')

    scenario(later, check)


def test_handler_errors_retry_until_the_policy_gives_up_then_dead_letter() -> None:
    """An exception retries while fewer than max_retries happened (x-attempts), then the
    message goes to QUEUE.dead with reason "exhausted" and the error in x-error."""

    async def broken(message: Message) -> None:
        raise ValueError("bad input")

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        channel = amqp.consumer("jobs")
        channel.deliver(b"a", Properties(headers={ATTEMPTS_HEADER: 1}))
        await settled(amqp, "jobs")
        assert amqp.published[-1].routing_key == delay_queue_name("jobs", 2.0)
        assert amqp.published[-1].headers[ATTEMPTS_HEADER] == 2
        channel.deliver(b"b", Properties(headers={ATTEMPTS_HEADER: 2}))
        await settled(amqp, "jobs", 2)
        dead = amqp.published[-1]
        assert (dead.exchange, dead.routing_key) == ("", dead_letter_queue_name("jobs"))
        assert dead_letter_queue_name("jobs") in amqp.declared
        assert dead.headers[ERROR_HEADER] == "ValueError: bad input"
        assert dead.headers["x-dead-letter-reason"] == "exhausted"
        assert dead.headers[ATTEMPTS_HEADER] == 3
        assert len(amqp.acked) == 2 and not amqp.nacked
        assert metric(
            worker, 'priority_worker_dead_letters_total{queue="jobs",reason="exhausted"} 1.0'
        )

    scenario(broken, check, retry=RetryPolicy(max_retries=2, initial_delay=1.0))


def test_reject_dead_letters_to_the_queues_exchange_with_its_routing_key() -> None:
    """Reject -> published to the queue's dead-letter exchange (routing key: the configured
    one, else the delivery's), reason "rejected", then acked."""

    async def reject(message: Message) -> None:
        raise Reject("no recipient")

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        tag = amqp.consumer("jobs").deliver(b"x")
        await settled(amqp, "jobs")
        [dead] = amqp.published
        assert (dead.exchange, dead.routing_key) == ("dlx", "jobs")
        assert dead.headers["x-dead-letter-reason"] == "rejected"
        assert dead.headers[ERROR_HEADER] == "no recipient"
        assert amqp.acked == [("jobs", tag)]
        assert not amqp.declared  # an exchange is the operator's: nothing declared for it

    scenario(reject, check, queues=[Queue("jobs", 2, dead_letter_exchange="dlx")])


@pytest.mark.parametrize("why", ["unroutable", "missing exchange"])
def test_a_dead_letter_with_nowhere_to_go_is_rejected_not_requeued(why: str) -> None:
    """Returned (no binding) or 404 (no such exchange): requeueing would loop, so the delivery
    is nacked without requeue and the broker dead-letters it by the queue's own arguments."""
    amqp = FakeAmqp()
    if why == "unroutable":
        amqp.unroutable.add(("dlx", "jobs"))
    else:
        amqp.missing_exchanges.add("dlx")

    async def reject(message: Message) -> None:
        raise Reject("no")

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        tag = amqp.consumer("jobs").deliver(b"x")
        await settled(amqp, "jobs")
        assert amqp.nacked == [("jobs", tag, False)] and not amqp.acked
        assert metric(
            worker, 'priority_worker_dead_letters_total{queue="jobs",reason="unroutable"} 1.0'
        )

    scenario(reject, check, queues=[Queue("jobs", 2, dead_letter_exchange="dlx")], amqp=amqp)


def test_a_retry_the_broker_nacks_is_requeued_not_acked() -> None:
    """The copy was not confirmed: the original goes back to its queue (at-least-once)."""
    amqp = FakeAmqp(nack_publishes=True)

    async def later(message: Message) -> None:
        raise Retry(1)

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        tag = amqp.consumer("jobs").deliver(b"x")
        await settled(amqp, "jobs")
        assert amqp.nacked == [("jobs", tag, True)] and not amqp.acked
        assert metric(worker, 'priority_worker_requeues_total{queue="jobs"} 1.0')

    scenario(later, check, amqp=amqp)


def test_a_delivery_whose_channel_closed_is_dropped_never_acked_elsewhere() -> None:
    """The channel closed while the handler ran: its tag is not settled (the broker has
    requeued it), the drop is counted, and the queue is consumed again on a new channel."""
    release = asyncio.Event()

    async def slow(message: Message) -> None:
        await release.wait()

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        first = amqp.consumer("jobs")
        first.deliver(b"x")
        await asyncio.sleep(0.01)
        first.closed_by_broker(320, "CONNECTION_FORCED")
        release.set()
        for _ in range(200):
            if metric(worker, 'priority_worker_dropped_deliveries_total{queue="jobs"} 1.0'):
                break
            await asyncio.sleep(0.01)
        assert metric(worker, 'priority_worker_dropped_deliveries_total{queue="jobs"} 1.0')
        assert not amqp.acked and not amqp.nacked
        for _ in range(300):  # reopened after the backoff (0.25-0.5 s for the first)
            if worker.ready:
                break
            await asyncio.sleep(0.01)
        assert amqp.consumer("jobs") is not first

    scenario(slow, check)


def test_stop_waits_for_running_handlers_and_requeues_what_did_not_start() -> None:
    """stop(): the running handler finishes and is acked; the delivery held but not started
    is requeued; the stop returns as soon as the handler is done, not after a poll."""
    release = asyncio.Event()

    async def slow(message: Message) -> None:
        await release.wait()

    async def check(worker: Worker, amqp: FakeAmqp) -> None:
        channel = amqp.consumer("jobs")
        running, held = channel.deliver(b"1"), channel.deliver(b"2")
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, release.set)
        started = loop.time()
        await worker.stop()
        assert loop.time() - started < 1.0
        assert amqp.acked == [("jobs", running)]
        assert amqp.nacked == [("jobs", held, True)]

    scenario(slow, check, concurrency=1, shutdown_timeout=5.0)
