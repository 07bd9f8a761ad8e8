"""A RabbitMQ node of its own with TLS listeners, and the certificates it needs.

The test session makes a CA, a server certificate for ``localhost`` only (so connecting to
``127.0.0.1`` fails the host name check), a client certificate whose common name is a user
(for EXTERNAL), and a second, unrelated CA; then it starts a node ``rabbit-tls12@localhost``
beside the machine's broker, with its own config, plugins, cookie and directories:

- amqps on 127.0.0.1:5691 (client certificates verified when presented), plain AMQP on 5692
  (only for test setup), https management on 15691 (plain http on 15692),
  Erlang distribution on 25691;
- plugins: management, auth_mechanism_ssl (EXTERNAL), federation and shovel (with their
  management parts).

Stopped (and its files deleted) at the end of the session. The machine's broker is left
alone: nothing global is read or written (the node's environment and launch are
tests/rabbit_node.py's, shared with the cluster of tests/cluster).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from rabbit_node import launch, node_env, port_open, write_cookie

NODE = "rabbit-tls12@localhost"
AMQPS_PORT, AMQP_PORT, HTTPS_PORT, HTTP_PORT, DIST_PORT = 5691, 5692, 15691, 15692, 25691
CLIENT_USER = "wt12-x509-client"
SBIN = Path("/usr/lib/rabbitmq/bin")


@dataclass(frozen=True)
class TlsBroker:
    """Where the TLS node listens and where its certificates are."""

    dir: Path
    ca: Path
    other_ca: Path
    client_cert: Path
    client_key: Path
    user: str = "guest"
    password: str = "guest"
    amqps_port: int = AMQPS_PORT
    https_port: int = HTTPS_PORT
    amqp_port: int = AMQP_PORT
    http_port: int = HTTP_PORT
    version: str = "3.10 (own node)"

    def amqps_url(
        self,
        vhost: str = "",
        host: str = "localhost",
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        creds = f"{user or self.user}:{self.password if password is None else password}@"
        return f"amqps://{creds}{host}:{self.amqps_port}/{vhost}"

    @property
    def amqps_display(self) -> str:
        return f"amqps://localhost:{self.amqps_port}"

    def amqp_url(self, vhost: str = "%2F") -> str:
        """Plain AMQP for test setup (the TLS path is what is tested)."""
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}/{vhost}"

    def https_url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.https_port}"

    def http(self) -> httpx.Client:
        """Plain-HTTP management client for test setup (the TLS path is what is tested)."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.http_port}",
            auth=(self.user, self.password),
            timeout=30,
        )

    def ctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-q", "-n", NODE, *args],
            env=_env(self.dir),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {proc.stderr or proc.stdout}")
        return proc.stdout


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> None:
    """CA, server (localhost only), client (CN = CLIENT_USER), and another CA."""
    for ca in ("ca", "other-ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN=declare-amqp test {ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            cwd=d,
        )
    (d / "server.ext").write_text("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, cn in (("server", "localhost"), ("client", CLIENT_USER)):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{who}.key",
            "-out",
            f"{who}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{who}.ext",
            "-out",
            f"{who}.pem",
            cwd=d,
        )
    for key in d.glob("*.key"):
        key.chmod(0o600)


def _env(d: Path) -> dict[str, str]:
    return node_env(d, home=d / "home", name=NODE, amqp_port=AMQP_PORT, dist_port=DIST_PORT)


def _write_config(d: Path) -> None:
    write_cookie(d / "home")
    (d / "log").mkdir(exist_ok=True)
    (d / "mnesia").mkdir(exist_ok=True)
    (d / "rabbitmq-env.conf").write_text("# own env file: the system's pins NODENAME\n")
    (d / "advanced.config").write_text("[].\n")
    (d / "enabled_plugins").write_text(
        "[rabbitmq_management,rabbitmq_auth_mechanism_ssl,rabbitmq_federation,"
        "rabbitmq_federation_management,rabbitmq_shovel,rabbitmq_shovel_management].\n"
    )
    (d / "rabbitmq.conf").write_text(f"""\
listeners.tcp.1 = 127.0.0.1:{AMQP_PORT}
listeners.ssl.1 = 127.0.0.1:{AMQPS_PORT}
ssl_options.cacertfile = {d}/ca.pem
ssl_options.certfile = {d}/server.pem
ssl_options.keyfile = {d}/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
loopback_users = none
management.tcp.ip = 127.0.0.1
management.tcp.port = {HTTP_PORT}
management.ssl.ip = 127.0.0.1
management.ssl.port = {HTTPS_PORT}
management.ssl.cacertfile = {d}/ca.pem
management.ssl.certfile = {d}/server.pem
management.ssl.keyfile = {d}/server.key
""")


CONTAINER_CONFIG = """\
loopback_users = none
listeners.tcp.default = 5672
listeners.ssl.default = 5671
ssl_options.cacertfile = /certs/ca.pem
ssl_options.certfile = /certs/server.pem
ssl_options.keyfile = /certs/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
auth_mechanisms.3 = EXTERNAL
ssl_cert_login_from = common_name
management.tcp.port = 15672
management.ssl.port = 15671
management.ssl.cacertfile = /certs/ca.pem
management.ssl.certfile = /certs/server.pem
management.ssl.keyfile = /certs/server.key
"""


def container(image: str) -> Iterator[TlsBroker]:
    """The same TLS setup in a container of ``image`` (the RabbitMQ 4.x one here), with the
    certificates and config mounted; its ports are mapped to free ones on 127.0.0.1."""
    from testcontainers.core.container import DockerContainer

    d = Path(tempfile.mkdtemp(prefix="declare-amqp-tls4-"))
    make_certificates(d)
    d.chmod(0o755)  # read by the broker's own user inside the container
    (d / "server.key").chmod(0o644)
    (d / "rabbitmq.conf").write_text(CONTAINER_CONFIG)
    (d / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_auth_mechanism_ssl].\n")
    c = (
        DockerContainer(image)
        .with_exposed_ports(5671, 15671, 5672, 15672)
        .with_volume_mapping(str(d), "/certs")
        .with_volume_mapping(str(d / "rabbitmq.conf"), "/etc/rabbitmq/rabbitmq.conf")
        .with_volume_mapping(str(d / "enabled_plugins"), "/etc/rabbitmq/enabled_plugins")
    )
    with c:

        def port(inside: int) -> int:
            return int(c.get_exposed_port(inside))

        broker = TlsBroker(
            d,
            d / "ca.pem",
            d / "other-ca.pem",
            d / "client.pem",
            d / "client.key",
            amqps_port=port(5671),
            https_port=port(15671),
            amqp_port=port(5672),
            http_port=port(15672),
        )
        overview = _await_ready(broker, 120)
        if overview is None:
            raise RuntimeError(
                f"the TLS container of {image} did not start: {c.get_logs()[0][-2000:]!r}"
            )
        yield replace(broker, version=str(overview.get("rabbitmq_version")))
    shutil.rmtree(d, ignore_errors=True)


def _await_ready(broker: TlsBroker, timeout: float) -> dict[str, object] | None:
    """The management overview once the API answers and amqps accepts connections; None
    when that has not happened within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with broker.http() as http:
                overview = http.get("/api/overview")
                if overview.status_code == 200 and port_open(broker.amqps_port):
                    found: dict[str, object] = overview.json()
                    return found
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def start(timeout: float = 120) -> TlsBroker:
    """Certificates, config, then the node; returns when https answers."""
    for port in (AMQPS_PORT, AMQP_PORT, HTTPS_PORT, HTTP_PORT, DIST_PORT):
        if port_open(port):
            raise RuntimeError(f"port {port} is taken: another TLS test node runs?")
    d = Path(tempfile.mkdtemp(prefix="declare-amqp-tls-"))
    make_certificates(d)
    _write_config(d)
    launch(SBIN, d, _env(d))
    broker = TlsBroker(d, d / "ca.pem", d / "other-ca.pem", d / "client.pem", d / "client.key")
    if _await_ready(broker, timeout) is not None:
        return broker
    stop(broker)
    raise RuntimeError(f"the TLS node did not start within {timeout:.0f} s; see {d}/log")


def stop(broker: TlsBroker) -> None:
    """Stop the node and delete its files."""
    subprocess.run(
        [str(SBIN / "rabbitmqctl"), "-q", "-n", NODE, "stop"],
        env=_env(broker.dir),
        capture_output=True,
        timeout=120,
    )
    shutil.rmtree(broker.dir, ignore_errors=True)
