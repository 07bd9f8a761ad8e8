#!/usr/bin/env python3
"""A three-node RabbitMQ cluster on this one machine, for tests and demos.

Usage::

    python tests/cluster/rabbit_cluster.py start     # idempotent; prints the node URLs
    python tests/cluster/rabbit_cluster.py status    # exit 0 when 3 nodes run clustered
    python tests/cluster/rabbit_cluster.py stop      # stops the nodes, deletes their data

Nodes ``rabbit-c1@localhost`` .. ``rabbit-c3@localhost`` listen on 127.0.0.1 only:
AMQP 5681-5683, management 15681-15683, Erlang distribution 25681-25683
(``RABBIT_CLUSTER_PORT_OFFSET=N`` shifts all of them and makes a separate cluster, with
node names ``rabbit-cI-pPORT@localhost``, for a second user of the same machine). Data, logs,
configuration and the shared Erlang cookie live in ``RABBIT_CLUSTER_DIR`` (default
``$TMPDIR/declare-amqp-cluster[-N]``). The user is guest/guest.

The machine's own broker (``rabbit@localhost`` on 5672/15672, configured by
``/etc/rabbitmq/rabbitmq-env.conf`` and ``rabbitmq.conf``) is left alone: every node gets
its own config file, env file, plugins file, cookie (through ``HOME``) and directories,
so none of the global files apply, and the CLI is always called with ``-n NODE``.

A cold start takes 25-45 s on 2 CPUs (boot in parallel, then join), a start of a running
cluster under 1 s, a stop about 10 s.

Importable: ``Cluster().start()`` returns the running cluster; ``stop_app``,
``start_app``, ``ctl`` and ``http`` serve the fault tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

# Run as a script, only this folder is on sys.path; the node helpers are one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rabbit_node import HOST, find_sbin, launch, node_env, port_open, write_cookie

SIZE = 3
USER = "guest"
PASSWORD = "guest"


class ClusterError(RuntimeError):
    """The cluster could not be started, joined or stopped; the message says which node."""


def _sbin() -> Path:
    """The directory of the unwrapped RabbitMQ scripts (``rabbit_node.find_sbin``)."""
    found = find_sbin()
    if found is None:
        raise ClusterError("RabbitMQ is not installed (no rabbitmq-server script found)")
    return found


@dataclass(frozen=True)
class Node:
    """One node of the local cluster and how to reach it."""

    index: int
    offset: int = 0

    @property
    def name(self) -> str:
        # Another offset is another cluster: its nodes must not answer to our names.
        suffix = f"-p{self.amqp_port}" if self.offset else ""
        return f"rabbit-c{self.index}{suffix}@localhost"

    @property
    def amqp_port(self) -> int:
        return 5680 + self.index + self.offset

    @property
    def management_port(self) -> int:
        return 15680 + self.index + self.offset

    @property
    def dist_port(self) -> int:
        return 25680 + self.index + self.offset

    @property
    def management_url(self) -> str:
        return f"http://{HOST}:{self.management_port}"

    def amqp_url(self, vhost: str = "/", **query: object) -> str:
        """The AMQP URL of ``vhost`` on this node, e.g. ``amqp_url("v", heartbeat=2)``."""
        path = "/" + urllib.parse.quote(vhost, safe="")
        qs = urllib.parse.urlencode(query)
        return f"amqp://{USER}:{PASSWORD}@{HOST}:{self.amqp_port}{path}" + (f"?{qs}" if qs else "")


class Cluster:
    """Three RabbitMQ nodes on this machine joined into one cluster."""

    def __init__(self, state_dir: str | os.PathLike[str] | None = None, offset: int | None = None):
        if offset is None:
            offset = int(os.environ.get("RABBIT_CLUSTER_PORT_OFFSET", "0"))
        default_dir = Path(tempfile.gettempdir()) / (
            "declare-amqp-cluster" + (f"-{offset}" if offset else "")
        )
        self.state_dir = Path(state_dir or os.environ.get("RABBIT_CLUSTER_DIR") or default_dir)
        self.nodes = [Node(i, offset) for i in range(1, SIZE + 1)]
        self.start_seconds: float | None = None

    # ---- paths and environment -------------------------------------------------

    def _dir(self, node: Node) -> Path:
        return self.state_dir / f"c{node.index}"

    @property
    def _home(self) -> Path:
        # HOME of every node and of every CLI call: holds the shared .erlang.cookie
        return self.state_dir / "home"

    def _env(self, node: Node) -> dict[str, str]:
        return node_env(
            self._dir(node),
            home=self._home,
            name=node.name,
            amqp_port=node.amqp_port,
            dist_port=node.dist_port,
        )

    def _write_files(self) -> None:
        write_cookie(self._home)
        for node in self.nodes:
            d = self._dir(node)
            (d / "log").mkdir(parents=True, exist_ok=True)
            (d / "mnesia").mkdir(parents=True, exist_ok=True)
            # Empty on purpose: the system's rabbitmq-env.conf pins NODENAME to rabbit@localhost.
            (d / "rabbitmq-env.conf").write_text("# per-node env file; see rabbit_cluster.py\n")
            (d / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = {HOST}:{node.amqp_port}\n"
                f"management.tcp.ip = {HOST}\n"
                f"management.tcp.port = {node.management_port}\n"
                "loopback_users = none\n"
                # A node going away must be noticed within seconds, not a minute.
                "heartbeat = 10\n"
                "cluster_partition_handling = ignore\n"
                "log.console = false\n"
                "log.file.level = info\n"
                # Tests fill the disk of a shared machine: never let a disk alarm surprise us.
                "disk_free_limit.absolute = 50MB\n"
            )
            (d / "enabled_plugins").write_text("[rabbitmq_management].\n")

    # ---- CLI ------------------------------------------------------------------

    def ctl(
        self,
        node: Node,
        *args: str,
        timeout: float = 60,
        check: bool = True,
        tool: str = "rabbitmqctl",
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE ARGS`` (or another CLI tool) against one node."""
        cmd = [str(_sbin() / tool), "-q", "-n", node.name, *args]
        if not (self._home / ".erlang.cookie").exists():
            # No state dir: none of our nodes can run (and the CLI would crash making a cookie).
            if check:
                raise ClusterError(f"{node.name} is not running (no {self._home})")
            return subprocess.CompletedProcess(cmd, 69, "", f"no {self._home}")
        env = self._env(node)
        env["ERL_CRASH_DUMP_SECONDS"] = "0"  # a failing CLI call must not litter the cwd
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{' '.join(cmd[1:])} timed out after {timeout} s") from exc
        if check and proc.returncode != 0:
            raise ClusterError(
                f"{tool} -n {node.name} {' '.join(args)} failed ({proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[:800]}"
            )
        return proc

    def _pinging(self, node: Node) -> bool:
        return (
            self.ctl(node, "ping", timeout=20, check=False, tool="rabbitmq-diagnostics").returncode
            == 0
        )

    def running_nodes(self, via: Node | None = None) -> list[str]:
        """The names of the running cluster members, as seen by ``via`` (or any node)."""
        for node in [via] if via else self.nodes:
            proc = self.ctl(node, "cluster_status", "--formatter", "json", timeout=30, check=False)
            if proc.returncode == 0:
                try:
                    return sorted(json.loads(proc.stdout).get("running_nodes", []))
                except ValueError:
                    continue
        return []

    def _http_ready(self, node: Node) -> bool:
        try:
            r = httpx.get(f"{node.management_url}/api/overview", auth=(USER, PASSWORD), timeout=3)
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def node_ready(self, node: Node) -> bool:
        """The node answers on AMQP and on the management API."""
        return port_open(node.amqp_port) and self._http_ready(node)

    def is_ready(self) -> bool:
        """All three nodes answer on AMQP and HTTP, and form one cluster with 3 running."""
        if not all(self.node_ready(n) for n in self.nodes):
            return False
        return self.running_nodes() == sorted(n.name for n in self.nodes)

    # ---- lifecycle --------------------------------------------------------------

    def _foreign_port(self) -> str | None:
        """A port of ours taken by something that is not our node (another program)."""
        for node in self.nodes:
            for port in (node.amqp_port, node.management_port, node.dist_port):
                if port_open(port) and not self._pinging(node):
                    return f"port {port} of {node.name} is taken by another program"
        return None

    def _launch(self, node: Node) -> None:
        launch(_sbin(), self._dir(node), self._env(node))

    def _await_app(self, node: Node, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pinging(node):
                self.ctl(
                    node, "await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10
                )
                return
            time.sleep(0.5)
        raise ClusterError(
            f"{node.name} did not start within {timeout:.0f} s; see {self._dir(node) / 'log'}"
        )

    def _wait_http(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = list(self.nodes)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self.node_ready(n)]
            if pending:
                time.sleep(0.3)
        if pending:
            raise ClusterError(
                "not answering on AMQP + HTTP: " + ", ".join(n.name for n in pending)
            )

    def start(self, timeout: float = 180) -> Cluster:
        """Start and join the three nodes; returns at once when they already run clustered."""
        t0 = time.monotonic()
        if self.is_ready():
            self.start_seconds = time.monotonic() - t0
            return self
        foreign = self._foreign_port()
        if foreign:
            raise ClusterError(foreign)
        with ThreadPoolExecutor(SIZE) as pool:
            up = dict(zip(self.nodes, pool.map(self._pinging, self.nodes), strict=True))
        if not any(up.values()) and self.state_dir.exists():
            # Left over from a run that died: start clean rather than from half a cluster.
            shutil.rmtree(self.state_dir)
        self._write_files()
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(self._launch, [n for n in self.nodes if not up[n]]))
            # A node whose VM runs may have had its app stopped (a fault test): start it.
            list(
                pool.map(
                    lambda n: self.ctl(n, "start_app", timeout=120),
                    [n for n in self.nodes if up[n]],
                )
            )
            list(pool.map(lambda n: self._await_app(n, timeout), self.nodes))
        seed = self.nodes[0]
        members = self.running_nodes(via=seed)
        joining = [n for n in self.nodes[1:] if n.name not in members]
        # stop_app is the slow step (~6 s): do it on all joiners at once; joins one at a time.
        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(lambda n: (self.ctl(n, "stop_app"), self.ctl(n, "reset")), joining))
            for node in joining:
                self.ctl(node, "join_cluster", seed.name, timeout=120)
            list(pool.map(lambda n: self.ctl(n, "start_app", timeout=120), joining))
        self._wait_http()
        want = sorted(n.name for n in self.nodes)
        deadline = time.monotonic() + 60
        while self.running_nodes(via=seed) != want:
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"cluster_status shows {self.running_nodes(via=seed)}, want {want}"
                )
            time.sleep(0.5)
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, wipe: bool = True) -> None:
        """Stop every node (the Erlang VM, not just the app) and delete the data."""

        def _stop(node: Node) -> None:
            if self._pinging(node):
                # With the pid file, stop returns only once the VM has exited.
                pid_file = self._dir(node) / "rabbit.pid"
                self.ctl(node, "stop", str(pid_file), timeout=120, check=False)

        with ThreadPoolExecutor(SIZE) as pool:
            list(pool.map(_stop, self.nodes))
        for node in self.nodes:
            pid_file = self._dir(node) / "rabbit.pid"
            if pid_file.exists():
                try:
                    pid = int(pid_file.read_text().strip())
                    os.kill(pid, 0)
                except (ValueError, ProcessLookupError, PermissionError):
                    continue
                # Still alive after a clean stop request: the node is wedged.
                os.kill(pid, 9)
        if wipe and self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def pid(self, node: Node) -> int | None:
        """The OS process id of ``node``'s Erlang VM (from its pid file), None when unknown."""
        try:
            return int((self._dir(node) / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    # ---- faults -------------------------------------------------------------------

    def stop_app(self, node: Node) -> None:
        """Stop the RabbitMQ application on ``node`` (its clients are disconnected)."""
        self.ctl(node, "stop_app", timeout=120)

    def start_app(self, node: Node) -> None:
        """Start the application on ``node`` again and wait until it answers."""
        self.ctl(node, "start_app", timeout=120)
        self.ctl(node, "await_startup", timeout=120)
        deadline = time.monotonic() + 60
        while not self.node_ready(node):
            if time.monotonic() > deadline:
                raise ClusterError(f"{node.name} does not answer after start_app")
            time.sleep(0.3)

    def http(self, node: Node | None = None) -> httpx.Client:
        """A management-API client on ``node`` (default: the first node that answers)."""
        if node is None:
            node = next((n for n in self.nodes if self._http_ready(n)), self.nodes[0])
        return httpx.Client(base_url=node.management_url, auth=(USER, PASSWORD), timeout=30)

    def urls(self, vhost: str = "/", **query: object) -> list[str]:
        """The AMQP URLs of ``vhost`` on all nodes, first node first."""
        return [n.amqp_url(vhost, **query) for n in self.nodes]

    def describe(self) -> str:
        lines = [f"state dir {self.state_dir}"]
        for n in self.nodes:
            lines.append(
                f"{n.name}  amqp://{USER}:{PASSWORD}@{HOST}:{n.amqp_port}/  "
                f"{n.management_url}  dist {n.dist_port}"
            )
        return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--keep-data", action="store_true", help="stop: keep the data directories")
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        if args.command == "start":
            cluster.start()
            print(cluster.describe())
            print(f"ready in {cluster.start_seconds:.1f} s")
        elif args.command == "stop":
            cluster.stop(wipe=not args.keep_data)
            print("stopped")
        else:
            running = cluster.running_nodes()
            print(cluster.describe())
            print("running: " + (", ".join(running) or "none"))
            return 0 if cluster.is_ready() else 1
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
