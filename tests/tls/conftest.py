"""The TLS node for this folder: started once per session (about 10 s), stopped after.

Skipped (failed under ``CI``) when RabbitMQ or openssl is not installed on this machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tls_broker


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


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session", params=["node", "container"])
def tls(request: pytest.FixtureRequest) -> Iterator[tls_broker.TlsBroker]:
    """A broker with amqps and https listeners: the own local node, and (when a Docker API
    answers, e.g. after `eval "$(bash tests/container_broker.sh)"`) the 4.x container."""
    if request.param == "node":
        yield request.getfixturevalue("tls_node")
        return
    if not _docker_answers():
        pytest.skip(
            'no Docker API for the TLS container (run `eval "$(bash '
            'tests/container_broker.sh)"` first)'
        )
    image = os.environ.get("RABBITMQ_IMAGE") or "localhost/rabbitmq:4.0-management"
    for broker in tls_broker.container(image):
        _add_x509_user(broker)
        yield broker


@pytest.fixture(scope="session")
def tls_node() -> Iterator[tls_broker.TlsBroker]:
    """A RabbitMQ node with amqps and https listeners and its certificates."""
    if not (tls_broker.SBIN / "rabbitmq-server").exists() or shutil.which("openssl") is None:
        reason = "the TLS tests start a local RabbitMQ node and need rabbitmq-server and openssl"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    broker = tls_broker.start()
    try:
        _add_x509_user(broker)
        yield broker
    finally:
        tls_broker.stop(broker)
