"""priority_worker over amqps://: verified against the CA from AMQP_TLS_CA_FILE (or
SSL_CERT_FILE), a wrong CA and a wrong host name reported as the failed check, and EXTERNAL
login with a client certificate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tls_broker import CLIENT_USER, TlsBroker

from priority_worker import Publisher


def _publish_one(url: str) -> None:
    async def scenario() -> None:
        async with Publisher(url) as publisher:
            await publisher.publish("amq.topic", "tls.test", b"x", mandatory=False)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def _first_error(url: str) -> str:
    async def scenario() -> str:
        publisher = Publisher(url)
        task = asyncio.ensure_future(publisher.start())
        for _ in range(50):
            await asyncio.sleep(0.1)
            if publisher._link.last_error:
                break
        error = publisher._link.last_error or ""
        await publisher.close(timeout=1)
        task.cancel()
        return error

    return asyncio.run(scenario())


def test_publish_over_amqps_verified(tls: TlsBroker, monkeypatch: Any) -> None:
    """AMQP_TLS_CA_FILE, or SSL_CERT_FILE for the default trust store: confirmed publish."""
    monkeypatch.setenv("AMQP_TLS_CA_FILE", str(tls.ca))
    _publish_one(tls.amqps_url())
    monkeypatch.delenv("AMQP_TLS_CA_FILE")
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca))
    _publish_one(tls.amqps_url())


@pytest.mark.parametrize(
    ("ca", "host", "check"),
    [
        ("other", "localhost", "TLS certificate verification failed"),
        ("right", "127.0.0.1", "TLS host name check failed"),
    ],
)
def test_failed_check_is_named(
    tls: TlsBroker, monkeypatch: Any, ca: str, host: str, check: str
) -> None:
    monkeypatch.setenv("AMQP_TLS_CA_FILE", str(tls.other_ca if ca == "other" else tls.ca))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert check in _first_error(tls.amqps_url(host=host))


def test_external_login_with_client_certificate(tls: TlsBroker, monkeypatch: Any) -> None:
    """The certificate's common name is the user; the URL carries no credentials."""
    monkeypatch.setenv("AMQP_TLS_CA_FILE", str(tls.ca))
    monkeypatch.setenv("AMQP_TLS_CERT_FILE", str(tls.client_cert))
    monkeypatch.setenv("AMQP_TLS_KEY_FILE", str(tls.client_key))
    monkeypatch.setenv("AMQP_AUTH_MECHANISM", "external")
    users: set[str] = set()

    async def scenario() -> None:
        async with Publisher(tls.amqps_display + "/") as publisher:
            await publisher.publish("amq.topic", "tls.test", b"x", mandatory=False)
            with tls.http() as http:
                # /api/connections lists a connection once the node's stats catch up (every 5 s
                # by default), so wait up to 20 s. Only EXTERNAL logins count: the earlier tests'
                # guest connections over amqps:// stay listed until the next stats tick.
                for _ in range(200):
                    users.update(
                        c["user"]
                        for c in http.get("/api/connections").json()
                        if c.get("auth_mechanism") == "EXTERNAL"
                    )
                    if users:
                        break
                    await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert users == {CLIENT_USER}


def test_worker_consumes_over_amqps_with_a_client_certificate(
    tls: TlsBroker, monkeypatch: Any
) -> None:
    """The Worker (consume, ack) over amqps:// logged in with the client certificate."""
    import pika

    from priority_worker import Message, Queue, Worker

    queue = "tls.worker"
    setup = pika.BlockingConnection(pika.URLParameters(tls.amqp_url()))
    channel = setup.channel()
    channel.queue_declare(queue, durable=True)
    for i in range(5):
        channel.basic_publish("", queue, f"m{i}".encode())
    setup.close()
    for name, value in (
        ("AMQP_TLS_CA_FILE", tls.ca),
        ("AMQP_TLS_CERT_FILE", tls.client_cert),
        ("AMQP_TLS_KEY_FILE", tls.client_key),
        ("AMQP_AUTH_MECHANISM", "external"),
    ):
        monkeypatch.setenv(name, str(value))
    seen: list[bytes] = []

    async def handle(message: Message) -> None:
        seen.append(message.body)

    async def scenario() -> None:
        worker = Worker(tls.amqps_display + "/", [Queue(queue, 2)], handle)
        await worker.start()
        try:
            for _ in range(100):
                if len(seen) >= 5:
                    break
                await asyncio.sleep(0.1)
        finally:
            await worker.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    assert sorted(seen) == [f"m{i}".encode() for i in range(5)]
