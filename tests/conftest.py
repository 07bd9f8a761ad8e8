"""Shared fixtures: a live broker and a fresh vhost per integration test.

Which broker:
- ``AMQP_URL`` (and optionally ``RABBITMQ_MANAGEMENT_URL``) when set;
- otherwise the local broker on 127.0.0.1:5672 / :15672 when it answers;
- otherwise, when Docker answers, a ``rabbitmq:management`` container started with
  testcontainers for the whole session.

When no broker answers: under ``CI`` the test **fails** (a CI run that silently skipped
every integration test would be green and worthless); on a laptop it is skipped with the reason.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for broker_support

from broker_support import temporary_vhost  # noqa: E402


@dataclass(frozen=True)
class Broker:
    """How to reach the broker under test."""

    amqp_url: str  # URL of the default vhost "/", with credentials
    management_url: str  # http://host:15672, without credentials
    user: str
    password: str
    host: str
    port: int

    def url_for(self, vhost: str) -> str:
        """The AMQP URL of ``vhost`` on this broker."""
        u = urllib.parse.urlsplit(self.amqp_url)
        return urllib.parse.urlunsplit(
            (u.scheme, u.netloc, "/" + urllib.parse.quote(vhost, safe=""), u.query, "")
        )

    def http(self) -> httpx.Client:
        """A management-API client authenticated as the test user."""
        return httpx.Client(
            base_url=self.management_url, auth=(self.user, self.password), timeout=30
        )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _port_open(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _from_url(amqp_url: str, management_url: str | None) -> Broker:
    u = urllib.parse.urlsplit(amqp_url)
    host = u.hostname or "127.0.0.1"
    port = u.port or (5671 if u.scheme == "amqps" else 5672)
    mgmt = management_url or f"http://{host}:15672"
    return Broker(
        amqp_url=amqp_url,
        management_url=mgmt.rstrip("/"),
        user=urllib.parse.unquote(u.username or "guest"),
        password=urllib.parse.unquote(u.password or "guest"),
        host=host,
        port=port,
    )


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _management_answers(broker: Broker) -> bool:
    try:
        with broker.http() as http:
            return http.get("/api/overview").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """The live broker, ready on AMQP and on the management API."""
    explicit = os.environ.get("AMQP_URL")
    candidate = _from_url(
        (explicit or "amqp://guest:guest@127.0.0.1:5672/").split(",")[0],
        os.environ.get("RABBITMQ_MANAGEMENT_URL"),
    )
    if _port_open(candidate.host, candidate.port) and _management_answers(candidate):
        yield candidate
        return
    if not explicit and _docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer  # type: ignore[import-untyped]

        with RabbitMqContainer("rabbitmq:management").with_exposed_ports(15672) as container:
            host = container.get_container_host_ip()
            amqp = f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/"
            mgmt = f"http://{host}:{container.get_exposed_port(15672)}"
            yield _from_url(amqp, mgmt)
        return
    reason = (
        f"no RabbitMQ answers on {candidate.host}:{candidate.port} with the management API at "
        f"{candidate.management_url} (set AMQP_URL, run tests/ensure_env.sh, or start Docker)"
    )
    if _in_ci():
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def vhost(broker: Broker) -> Iterator[str]:
    """A fresh, empty vhost for one test, with full permissions for the test user.

    Deleted afterwards (with everything in it), so tests never see each other's objects.
    """
    with temporary_vhost(broker.http, broker.user) as name:
        yield name


@pytest.fixture
def vhost_url(broker: Broker, vhost: str) -> str:
    """The AMQP URL of the fresh test vhost."""
    return broker.url_for(vhost)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the broker fixture carry the ``broker`` marker automatically."""
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
