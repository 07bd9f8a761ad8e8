"""Publisher confirms against the real broker: acks, nacks, returns, timeouts, lost links."""

from __future__ import annotations

import asyncio

import pytest
from tcp_proxy import TcpProxy
from worker_support import declare_queues, drain, ready_count, run

from priority_worker import (
    Properties,
    PublishConnectionLost,
    Publisher,
    PublishNacked,
    PublishReturned,
    PublishTimeout,
)


def test_many_publishes_in_flight_all_confirmed(vhost_url: str) -> None:
    """1,000 publishes in flight at once each resolve on the broker's (multiple) acks."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        async with Publisher(vhost_url) as publisher:
            futures = [
                publisher.publish(
                    "", "q", f"m{i}".encode(), properties=Properties(message_id=f"m{i}")
                )
                for i in range(1000)
            ]
            assert publisher.pending > 100  # really in flight together
            await asyncio.gather(*futures)
            assert publisher.pending == 0
            assert publisher.metrics.published._value.get() == 1000

    run(scenario())
    assert ready_count(vhost_url, "q") == 1000


def test_unroutable_mandatory_publish_fails_with_returned(vhost_url: str) -> None:
    """basic.return before the ack fails only the unroutable message, with the reply code."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        async with Publisher(vhost_url) as publisher:
            routed = publisher.publish("", "q", b"ok")
            lost = publisher.publish("amq.direct", "nobody-listens", b"lost")
            routed2 = publisher.publish("", "q", b"ok2")
            await routed
            await routed2
            with pytest.raises(PublishReturned) as info:
                await lost
            assert info.value.reply_code == 312
            assert info.value.routing_key == "nobody-listens"
            # mandatory=False: the broker drops it silently and confirms.
            await publisher.publish("amq.direct", "nobody-listens", b"x", mandatory=False)

    run(scenario())
    assert sorted(body for _, body in drain(vhost_url, "q")) == [b"ok", b"ok2"]


def test_nacked_publish_fails_with_nacked(vhost_url: str) -> None:
    """A queue full with overflow=reject-publish makes the broker nack."""
    declare_queues(
        vhost_url, "capped", arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
    )

    async def scenario() -> None:
        async with Publisher(vhost_url) as publisher:
            await publisher.publish("", "capped", b"first")
            with pytest.raises(PublishNacked):
                await publisher.publish("", "capped", b"second")

    run(scenario())
    assert [body for _, body in drain(vhost_url, "capped")] == [b"first"]


def test_confirm_timeout(broker: object, vhost_url: str) -> None:
    """No confirm within the timeout (the link stalls) fails with PublishTimeout."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        proxy = TcpProxy(broker.host, broker.port)  # type: ignore[attr-defined]
        proxy.start()
        try:
            async with Publisher(proxy.url(vhost_url), confirm_timeout=0.5) as publisher:
                proxy.stall_downstream()
                with pytest.raises(PublishTimeout):
                    await publisher.publish("", "q", b"slow")
                proxy.resume()
                await publisher.publish("", "q", b"fine")
        finally:
            proxy.close()

    run(scenario())


def test_connection_loss_fails_unconfirmed_publishes(broker: object, vhost_url: str) -> None:
    """Without resend, messages unconfirmed when the link dies fail with ConnectionLost,
    and the publisher reconnects for new ones."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        proxy = TcpProxy(broker.host, broker.port)  # type: ignore[attr-defined]
        proxy.start()
        try:
            async with Publisher(proxy.url(vhost_url), reconnect_max_delay=1) as publisher:
                proxy.stall_downstream()
                futures = [publisher.publish("", "q", b"x") for _ in range(10)]
                await asyncio.sleep(0.2)
                proxy.cut()
                proxy.resume()
                results = await asyncio.gather(*futures, return_exceptions=True)
                assert all(isinstance(r, PublishConnectionLost) for r in results), results
                await asyncio.wait_for(publisher.publish("", "q", b"after"), 20)
                assert publisher.metrics.reconnects.labels("publisher")._value.get() == 1
        finally:
            proxy.close()

    run(scenario())


def test_resend_unconfirmed_after_reconnect_counts_duplicates(
    broker: object, vhost_url: str
) -> None:
    """With resend_unconfirmed, every message is confirmed after the reconnect; the copies
    the broker may already hold are counted as possible duplicates."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        proxy = TcpProxy(broker.host, broker.port)  # type: ignore[attr-defined]
        proxy.start()
        try:
            async with Publisher(
                proxy.url(vhost_url), resend_unconfirmed=True, reconnect_max_delay=1
            ) as publisher:
                proxy.stall_downstream()
                futures = [
                    publisher.publish(
                        "", "q", f"m{i}".encode(), properties=Properties(message_id=f"m{i}")
                    )
                    for i in range(10)
                ]
                await asyncio.sleep(0.3)
                proxy.cut()
                proxy.resume()
                await asyncio.wait_for(asyncio.gather(*futures), 20)
                assert publisher.metrics.publish_resent._value.get() == 10
        finally:
            proxy.close()

    run(scenario())
    ids = [props.message_id for props, _ in drain(vhost_url, "q")]
    assert set(ids) == {f"m{i}" for i in range(10)}
    assert 10 <= len(ids) <= 20  # the stalled first copies may have reached the queue


def test_publishes_before_connect_wait_and_go_out_in_order(vhost_url: str) -> None:
    """publish() before the connection is up queues the message; it is sent on connect."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        publisher = Publisher(vhost_url)
        futures = [publisher.publish("", "q", f"{i}".encode()) for i in range(5)]
        await publisher.start()
        await asyncio.gather(*futures)
        await publisher.close()

    run(scenario())
    assert [body for _, body in drain(vhost_url, "q")] == [b"0", b"1", b"2", b"3", b"4"]


def test_publish_to_a_missing_exchange_fails_and_the_publisher_recovers(vhost_url: str) -> None:
    """The broker closes the channel (404); that publish fails even with resend enabled (no
    endless re-send), and the next publish goes through a new channel."""
    declare_queues(vhost_url, "q")

    async def scenario() -> None:
        async with Publisher(vhost_url, resend_unconfirmed=True) as publisher:
            with pytest.raises(PublishConnectionLost) as info:
                await asyncio.wait_for(publisher.publish("no-such-exchange", "k", b"x"), 10)
            assert "404" in str(info.value)
            await asyncio.wait_for(publisher.publish("", "q", b"after"), 10)

    run(scenario())
    assert [body for _, body in drain(vhost_url, "q")] == [b"after"]
