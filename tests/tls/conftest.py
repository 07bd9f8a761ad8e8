"""The brokers of this folder, one per test run, chosen like the rest of the suite's.

``TEST_BROKER`` (see tests/conftest.py) picks them, so each run of tests/run.sh covers TLS,
federation and shovels on its own broker and skips nothing for want of another:

- ``local`` (run 1): a RabbitMQ node of its own beside the machine's broker, with amqps and
  https listeners and the federation and shovel plugins (tls_broker.start, about 10 s);
- ``container`` (run 2): for TLS, the 4.x image with the test certificates and config
  mounted (tls_broker.container); for federation and shovels, the run's container broker
  (its image enables those plugins, see tests/container_broker.sh).

A broker that cannot be had is a skip with the reason, and a failure when ``CI`` is set.
Every test here needs a broker, so each carries the ``broker`` marker (the fast loop
``-m "not broker"`` leaves them out).
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tls_broker

HERE = Path(__file__).resolve().parent


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _mode() -> str:
    return os.environ.get("TEST_BROKER", "local").strip().lower() or "local"


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of this folder need a broker: the ``broker`` marker says so."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.broker)


def _add_x509_user(broker: tls_broker.TlsBroker) -> None:
    """The user of the client certificate: it logs in with the certificate only."""
    with broker.http() as http:
        http.put(
            f"/api/users/{tls_broker.CLIENT_USER}", json={"password_hash": "", "tags": ""}
        ).raise_for_status()
        http.put(
            f"/api/permissions/%2F/{tls_broker.CLIENT_USER}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()


@pytest.fixture(scope="session")
def tls(request: pytest.FixtureRequest) -> Iterator[tls_broker.TlsBroker]:
    """A broker with amqps and https listeners: the own local node in the local run, the
    4.x container (certificates and config mounted) in the container run."""
    if _mode() != "container":
        yield request.getfixturevalue("tls_node")
        return
    if not _docker_answers():
        _unavailable(
            "TEST_BROKER=container but no Docker API answers for the TLS container (run "
            '`eval "$(bash tests/container_broker.sh)"` first)'
        )
    image = os.environ.get("RABBITMQ_IMAGE") or "localhost/rabbitmq:4.0-management"
    for broker in tls_broker.container(image):
        _add_x509_user(broker)
        yield broker


@pytest.fixture(scope="session")
def tls_node() -> Iterator[tls_broker.TlsBroker]:
    """A RabbitMQ node with amqps and https listeners and its certificates."""
    if not (tls_broker.SBIN / "rabbitmq-server").exists() or shutil.which("openssl") is None:
        _unavailable(
            "the TLS tests start a local RabbitMQ node and need rabbitmq-server and openssl"
        )
    broker = tls_broker.start()
    try:
        _add_x509_user(broker)
        yield broker
    finally:
        tls_broker.stop(broker)


PLUGINS = ("rabbitmq_federation", "rabbitmq_shovel")


def plugins_running(http: Callable[[], httpx.Client]) -> set[str]:
    """Which of PLUGINS the broker runs, as its management API shows them on 3.x and 4.x
    (4.x's /api/nodes lists no applications): federation adds an exchange type, shovel
    management answers /api/shovels."""
    with http() as client:
        types = {x["name"] for x in client.get("/api/overview").json().get("exchange_types", [])}
        shovels = client.get("/api/shovels").status_code == 200
    running = set()
    if "x-federation-upstream" in types:
        running.add("rabbitmq_federation")
    if shovels:
        running.add("rabbitmq_shovel")
    return running


@dataclass(frozen=True)
class FederationBroker:
    """A broker that runs the federation and shovel plugins.

    ``amqp_url`` is how a test reaches it; ``self_uri`` how the broker reaches itself (the
    URI of an upstream or shovel that points back at it: inside a container that is its
    own port 5672, not the one mapped for the test).
    """

    amqp_port: int  # as seen from the test
    self_port: int  # as seen from inside the broker
    management_url: str
    user: str
    password: str
    version: str
    _http: Callable[[], httpx.Client]

    def amqp_url(self, vhost: str) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/{vhost}"

    def self_uri(self, user: str, password: str, vhost: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.self_port}/{vhost}"

    def http(self) -> httpx.Client:
        return self._http()


@pytest.fixture(scope="session")
def federation_broker(request: pytest.FixtureRequest) -> FederationBroker:
    """The own local node in the local run; the run's 4.x container in the container run."""
    if _mode() != "container":
        node: tls_broker.TlsBroker = request.getfixturevalue("tls_node")
        return FederationBroker(
            node.amqp_port,
            node.amqp_port,
            f"http://127.0.0.1:{node.http_port}",
            node.user,
            node.password,
            node.version,
            node.http,
        )
    broker = request.getfixturevalue("broker")
    missing = sorted(set(PLUGINS) - plugins_running(broker.http))
    if missing:
        pytest.fail(
            f"the container broker does not run {', '.join(missing)}: its image is "
            "older than tests/container_broker.sh (`bash tests/container_broker.sh rebuild`)",
            pytrace=False,
        )
    return FederationBroker(
        urllib.parse.urlsplit(broker.amqp_url).port or 5672,
        5672,
        broker.management_url,
        broker.user,
        broker.password,
        broker.version,
        broker.http,
    )
