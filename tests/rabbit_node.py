"""Extra RabbitMQ nodes beside the machine's own broker: their environment and their launch.

Used by ``tests/cluster/rabbit_cluster.py`` (three clustered nodes) and ``tests/tls/tls_broker.py``
(one node with TLS listeners). Every such node gets its own config file, env file, plugins
file, cookie (through ``HOME``) and directories under one folder of its own, so none of the
machine broker's global files (``/etc/rabbitmq/rabbitmq-env.conf`` pins ``NODENAME``) apply:

    d/rabbitmq-env.conf  d/rabbitmq.conf  d/advanced.config  d/enabled_plugins
    d/mnesia/  d/log/ (stdout.log, erl_crash.dump)  d/rabbit.pid

The caller writes the config files; ``launch`` starts ``rabbitmq-server`` in its own session
and returns at once (wait for the node with its CLI or its management API).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from pathlib import Path

HOST = "127.0.0.1"
# Where the unwrapped scripts live. Debian's /usr/sbin/rabbitmqctl wrapper switches to the
# rabbitmq user and cds into the system broker's home, which would hand our nodes the system
# cookie; the scripts under /usr/lib/rabbitmq/bin run as whoever calls them.
SBIN_CANDIDATES = ("/usr/lib/rabbitmq/bin", "/usr/local/lib/rabbitmq/bin", "/usr/sbin")


def find_sbin() -> Path | None:
    """The directory holding ``rabbitmq-server`` (``$RABBITMQ_SBIN`` first), None without one."""
    override = os.environ.get("RABBITMQ_SBIN")
    for candidate in (override,) if override else SBIN_CANDIDATES:
        if candidate and (Path(candidate) / "rabbitmq-server").exists():
            return Path(candidate)
    return None


def port_open(port: int, host: str = HOST, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def write_cookie(home: Path) -> None:
    """A fresh Erlang cookie in ``home`` (kept when one is there: the nodes sharing ``home``
    must keep agreeing on it)."""
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)


def node_env(d: Path, *, home: Path, name: str, amqp_port: int, dist_port: int) -> dict[str, str]:
    """The environment of the node ``name`` (and of every CLI call against it), kept in ``d``:
    the caller's environment without any RabbitMQ or Erlang setting, then the node's own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RABBITMQ_", "ERL_")) and k not in ("CONFIG_FILE", "NODENAME")
    }
    env.update(
        HOME=str(home),
        RABBITMQ_NODENAME=name,
        RABBITMQ_NODE_IP_ADDRESS=HOST,
        RABBITMQ_NODE_PORT=str(amqp_port),
        RABBITMQ_DIST_PORT=str(dist_port),
        RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
        RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
        RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
        RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
        RABBITMQ_LOG_BASE=str(d / "log"),
        RABBITMQ_PID_FILE=str(d / "rabbit.pid"),
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        ERL_EPMD_ADDRESS=HOST,
        ERL_CRASH_DUMP=str(d / "log" / "erl_crash.dump"),
    )
    return env


def launch(sbin: Path, d: Path, env: dict[str, str]) -> None:
    """Start ``rabbitmq-server`` for the node kept in ``d``; its output goes to
    ``d/log/stdout.log``."""
    (d / "log").mkdir(parents=True, exist_ok=True)
    log = open(d / "log" / "stdout.log", "ab")  # noqa: SIM115 - owned by the child
    subprocess.Popen(
        [str(sbin / "rabbitmq-server")],
        env=env,
        cwd=d,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own session: Ctrl-C in a pytest run or a shell must not reach the node.
        start_new_session=True,
    )
    log.close()
