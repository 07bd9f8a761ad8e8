"""Shared fixtures: a live broker and a fresh vhost per integration test.

Which broker (``TEST_BROKER``):
- ``local`` (the default): ``AMQP_URL`` (and optionally ``RABBITMQ_MANAGEMENT_URL``) when set,
  otherwise the local broker on 127.0.0.1:5672 / :15672; when neither answers and Docker does,
  a container as below.
- ``container``: a broker started with testcontainers' ``RabbitMqContainer`` for the whole
  session, from the image ``RABBITMQ_IMAGE`` (default ``localhost/rabbitmq:4.0-management``, the
  image ``tests/container_broker.sh`` builds here; ``rabbitmq:4-management`` with Docker and a
  registry).

When no broker answers: under ``CI`` the test **fails** (a CI run that silently skipped
every integration test would be green and worthless); on a laptop it is skipped with the reason.

Tests that need ``rabbitmqctl`` on the broker's own host carry the ``broker_host`` marker and
call ``broker.ctl(...)``: it runs on the machine (local broker) or through the container's
``exec``; against a remote broker they are skipped with that reason, listed in the summary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for broker_support

import suite_layout
from broker_support import docker_answers, temporary_vhost
from rabbit_node import port_open

DEFAULT_CONTAINER_IMAGE = "localhost/rabbitmq:4.0-management"


class BrokerCommandFailed(AssertionError):
    """``rabbitmqctl`` on the broker's host exited non-zero."""


@dataclass(frozen=True)
class Broker:
    """How to reach the broker under test."""

    amqp_url: str  # URL of the default vhost "/", with credentials
    management_url: str  # http://host:15672, without credentials
    user: str
    password: str
    host: str
    port: int
    # "local" (this machine), "container" (testcontainers) or "remote"
    where: str = "local"
    version: str = "?"
    # runs ``rabbitmqctl ARGS`` on the broker's host; None when that is out of reach
    _ctl: Callable[[list[str]], str] | None = field(default=None, repr=False, compare=False)

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

    @property
    def version_tuple(self) -> tuple[int, ...]:
        """``(4, 0, 5)`` for RabbitMQ 4.0.5; ``()`` when unknown."""
        parts = []
        for piece in self.version.split("."):
            digits = "".join(c for c in piece if c.isdigit())
            if not digits:
                break
            parts.append(int(digits))
        return tuple(parts)

    def at_least(self, *version: int) -> bool:
        """Whether the broker is this version or newer."""
        return self.version_tuple >= version

    def require(self, *version: int, why: str = "") -> None:
        """Skip the calling test on brokers older than ``version`` (a version-only feature)."""
        if not self.at_least(*version):
            wanted = ".".join(map(str, version))
            pytest.skip(
                f"needs RabbitMQ {wanted}+ ({why or 'a feature of that version'}); "
                f"this broker is {self.version}"
            )

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl ARGS`` on the broker's own host (or in its container)."""
        if self._ctl is None:
            pytest.skip(
                f"needs rabbitmqctl on the broker's host; the broker at {self.host} is {self.where}"
            )
        return self._ctl(list(args))


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _local_ctl(args: list[str]) -> str:
    exe = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise BrokerCommandFailed(f"rabbitmqctl {' '.join(args)}: {proc.stderr or proc.stdout}")
    return proc.stdout


def _from_url(
    amqp_url: str,
    management_url: str | None,
    where: str = "local",
    ctl: Callable[[list[str]], str] | None = None,
) -> Broker:
    u = urllib.parse.urlsplit(amqp_url)
    host = u.hostname or "127.0.0.1"
    port = u.port or (5671 if u.scheme == "amqps" else 5672)
    mgmt = management_url or f"http://{host}:15672"
    if where == "local" and host not in ("127.0.0.1", "localhost", "::1"):
        where = "remote"
    if where == "local" and ctl is None:
        ctl = _local_ctl
    return Broker(
        amqp_url=amqp_url,
        management_url=mgmt.rstrip("/"),
        user=urllib.parse.unquote(u.username or "guest"),
        password=urllib.parse.unquote(u.password or "guest"),
        host=host,
        port=port,
        where=where,
        _ctl=ctl if where != "remote" else None,
    )


def _overview(broker: Broker) -> dict[str, object] | None:
    try:
        with broker.http() as http:
            response = http.get("/api/overview")
            return response.json() if response.status_code == 200 else None  # type: ignore[no-any-return]
    except (httpx.HTTPError, ValueError):
        return None


def _with_version(broker: Broker, overview: dict[str, object]) -> Broker:
    version = str(overview.get("rabbitmq_version") or overview.get("management_version") or "?")
    return Broker(**{**broker.__dict__, "version": version})


def _container_broker(image: str) -> Iterator[Broker]:
    """One container for the session, ready on AMQP and on the management API."""
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # testcontainers before 4.10
        from testcontainers.rabbitmq import RabbitMqContainer  # type: ignore[no-redef]

    started = time.monotonic()
    with RabbitMqContainer(image).with_exposed_ports(15672) as container:
        host = container.get_container_host_ip()
        amqp = f"amqp://guest:guest@{host}:{container.get_exposed_port(5672)}/"
        mgmt = f"http://{host}:{container.get_exposed_port(15672)}"

        def ctl(args: list[str]) -> str:
            code, output = container.exec(["rabbitmqctl", *args])
            text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
            if code != 0:
                raise BrokerCommandFailed(f"rabbitmqctl {' '.join(args)} in {image}: {text}")
            return text

        candidate = _from_url(amqp, mgmt, where="container", ctl=ctl)
        deadline = time.monotonic() + 120
        while (overview := _overview(candidate)) is None:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the container of {image} answers AMQP but not its management "
                    f"API at {mgmt} after 120 s",
                    pytrace=False,
                )
            time.sleep(0.5)
        broker = _with_version(candidate, overview)
        print(
            f"\n[broker] container {image}: RabbitMQ {broker.version}, ready in "
            f"{time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
        yield broker


_SESSION: dict[str, Broker] = {}


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """The live broker, ready on AMQP and on the management API."""
    mode = os.environ.get("TEST_BROKER", "local").strip().lower() or "local"
    if mode not in ("local", "container"):
        pytest.fail(f"TEST_BROKER must be 'local' or 'container', not {mode!r}", pytrace=False)
    image = os.environ.get("RABBITMQ_IMAGE") or DEFAULT_CONTAINER_IMAGE
    if mode == "container":
        if not docker_answers():
            reason = (
                f"TEST_BROKER=container but no Docker API answers (DOCKER_HOST="
                f"{os.environ.get('DOCKER_HOST', 'unset')}); here run "
                '`eval "$(bash tests/container_broker.sh)"` first'
            )
            if _in_ci():
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        for found in _container_broker(image):
            _SESSION["broker"] = found
            yield found
        return
    explicit = os.environ.get("AMQP_URL")
    candidate = _from_url(
        (explicit or "amqp://guest:guest@127.0.0.1:5672/").split(",")[0],
        os.environ.get("RABBITMQ_MANAGEMENT_URL"),
    )
    if port_open(candidate.port, candidate.host, timeout=2) and (overview := _overview(candidate)):
        found = _with_version(candidate, overview)
        _SESSION["broker"] = found
        yield found
        return
    if not explicit and docker_answers():
        for found in _container_broker(os.environ.get("RABBITMQ_IMAGE") or "rabbitmq:4-management"):
            _SESSION["broker"] = found
            yield found
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


_USES_BROKER: set[str] = set()  # node ids of the tests that use the ``broker`` fixture


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from file names (``suite_layout``): every test in a ``*_broker.py`` file is
    marked ``broker``, in a ``*_cluster.py`` file ``cluster``; a test that uses the broker
    fixture is marked ``broker`` wherever it is. A test whose fixtures contradict its file's
    name stops the run (so the fast loop can neither meet a broker test nor lose a plain one)."""
    wrong = suite_layout.problems(item for item in items if isinstance(item, pytest.Function))
    if wrong:
        raise pytest.UsageError(
            "test files are named by what their tests need (tests/suite_layout.py):\n  "
            + "\n  ".join(wrong)
        )
    for item in items:
        kind = suite_layout.file_kind(item.path)
        fixtures = getattr(item, "fixturenames", ())
        if kind == "broker" or "broker" in fixtures:
            item.add_marker(pytest.mark.broker)
        if kind == "cluster":
            item.add_marker(pytest.mark.cluster)
        if "broker" in fixtures:
            _USES_BROKER.add(item.nodeid)


_OUTCOMES: dict[str, int] = {}
_HOST_SKIPS: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count the outcomes of the tests that used the broker fixture, for the summary below
    (the TLS node of tests/tls is another broker: its tests are not counted here)."""
    if report.nodeid not in _USES_BROKER:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.outcome] = _OUTCOMES.get(report.outcome, 0) + 1
        if report.skipped and "broker_host" in report.keywords:
            _HOST_SKIPS.append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line saying which broker (version, where) the integration tests ran against."""
    found = _SESSION.get("broker")
    if found is None or not _OUTCOMES:
        return
    counts = ", ".join(f"{n} {what}" for what, n in sorted(_OUTCOMES.items()))
    terminalreporter.write_line(
        f"broker tests against RabbitMQ {found.version} ({found.where}, "
        f"{found.host}:{found.port}): {counts}"
    )
    for nodeid in _HOST_SKIPS:
        terminalreporter.write_line(f"  skipped, needs rabbitmqctl on the broker's host: {nodeid}")
