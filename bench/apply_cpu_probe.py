"""How much of the broker's CPU a cold ``declare-amqp apply`` and a definitions import take.

Issue 22 asks for a cold apply in <= 0.4 x the time of the broker's own import. Whether any
client can get there depends on the broker's CPU per declared object: if the broker spends S
CPU-seconds creating the objects whoever asks, no client finishes sooner than S / cores. This
probe runs both on a RabbitMQ container of our own (podman) and reads the container's CPU time
from its cgroup (``cpuacct.usage``) before and after each:

    .venv/bin/python bench/apply_cpu_probe.py --container lead-rabbit --port 5731 \\
        --management-port 15731 [--size 1] [--repetitions 2]

Each contender gets a fresh vhost; the import is a ``POST /api/definitions/{vhost}`` of the
same topology, timed until every queue is listed. Printed per run: wall seconds, the broker's
CPU seconds, and its share of the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from topology_bench import Topology

ROOT = Path(__file__).resolve().parents[1]


def cgroup_usage(container: str) -> Path:
    """The container's ``cpuacct.usage`` file (cgroup v1, as podman sets it up here)."""
    ident = subprocess.run(
        ["podman", "inspect", "--format", "{{.Id}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for pattern in (
        f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{ident}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/machine.slice/libpod-{ident}.scope/cpuacct.usage",
    ):
        if os.path.exists(pattern):
            return Path(pattern)
    raise SystemExit(f"no cpuacct.usage for container {container} ({ident[:12]})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--container", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--management-port", type=int, required=True)
    parser.add_argument("--size", type=int, default=1, help="multiple of the 1x topology")
    parser.add_argument("--repetitions", type=int, default=2)
    args = parser.parse_args()
    usage = cgroup_usage(args.container)
    api = f"http://127.0.0.1:{args.management_port}/api"
    http = httpx.Client(auth=("guest", "guest"), timeout=600)
    cores = os.cpu_count() or 1

    def fresh(vhost: str) -> None:
        http.delete(f"{api}/vhosts/{vhost}")
        http.put(f"{api}/vhosts/{vhost}").raise_for_status()
        everything = {"configure": ".*", "write": ".*", "read": ".*"}
        http.put(f"{api}/permissions/{vhost}/guest", json=everything).raise_for_status()

    def measure(name: str, run: Callable[[], None]) -> None:
        cpu0, wall0 = int(usage.read_text()), time.monotonic()
        run()
        cpu = (int(usage.read_text()) - cpu0) / 1e9
        wall = time.monotonic() - wall0
        print(
            f"{name}: {wall:.2f} s wall, the broker {cpu:.2f} CPU s "
            f"({100 * cpu / wall / cores:.0f}% of {cores} cores)",
            flush=True,
        )

    topology = Topology().scaled(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repetitions):
            vhost = f"probe-apply-{rep}"
            fresh(vhost)
            spec = Path(tmp) / "t.yml"
            spec.write_text(yaml.safe_dump(topology.yaml_document(vhost)))
            url = f"amqp://guest:guest@127.0.0.1:{args.port}/{vhost}"
            command = [str(ROOT / ".venv/bin/declare-amqp"), "apply", str(spec), "--url", url]
            command += ["--management-url", f"http://127.0.0.1:{args.management_port}"]
            measure("cold declare-amqp apply", lambda c=command: _check(c))  # type: ignore[misc]
            imported = f"probe-import-{rep}"
            fresh(imported)
            body = json.dumps(topology.definitions(imported))
            queues = len(topology.definitions(imported).get("queues", []))  # type: ignore[arg-type]

            def post(vhost: str = imported, body: str = body, queues: int = queues) -> None:
                headers = {"content-type": "application/json"}
                http.post(f"{api}/definitions/{vhost}", content=body, headers=headers)
                listed = f"{api}/queues/{vhost}"
                while len(http.get(listed, params={"columns": "name"}).json()) < queues:
                    time.sleep(0.2)

            measure("POST /api/definitions (until every queue is listed)", post)
            for v in (vhost, imported):
                http.delete(f"{api}/vhosts/{v}")
    return 0


def _check(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
