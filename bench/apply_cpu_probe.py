"""How much of the broker's CPU a cold ``declare-amqp apply`` and a definitions import take.

Issue 22 asks for a cold apply in <= 0.4 x the time of the broker's own import. Whether any
client can get there depends on the broker's CPU per declared object: if the broker spends S
CPU-seconds creating the objects whoever asks, no client finishes sooner than S / cores. This
probe runs two of ``topology_bench.py``'s contenders -- the cold apply, and the POST of the
definitions by ``curl`` until every object is listed -- against a RabbitMQ container of our
own (podman), and reads the container's CPU time from its cgroup (``cpuacct.usage``) before
and after each:

    .venv/bin/python bench/apply_cpu_probe.py --container lead-rabbit --port 5731 \\
        --management-url http://127.0.0.1:15731 [--size 1] [--repetitions 2]

Each contender gets a fresh vhost. Printed per run: wall seconds, the broker's CPU seconds,
and its share of the machine's cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import _common as common
from topology_bench import Context, Topology, run_declare_apply, run_post_definitions


def cgroup_usage(container: str) -> Path:
    """The container's ``cpuacct.usage`` file (cgroup v1, as podman sets it up here)."""
    ident = subprocess.run(
        ["podman", "inspect", "--format", "{{.Id}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    for candidate in (
        f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{ident}/cpuacct.usage",
        f"/sys/fs/cgroup/cpuacct/machine.slice/libpod-{ident}.scope/cpuacct.usage",
    ):
        if os.path.exists(candidate):
            return Path(candidate)
    raise SystemExit(f"no cpuacct.usage for container {container} ({ident[:12]})")


def main() -> int:
    parser = common.argument_parser(__doc__ or "")
    parser.add_argument("--container", required=True)
    parser.add_argument("--size", type=int, default=1, help="multiple of the 1x topology")
    parser.add_argument("--repetitions", type=int, default=2)
    args = parser.parse_args()
    usage = cgroup_usage(args.container)
    mgmt, _ = common.session(args)
    cores = os.cpu_count() or 1
    contenders: list[tuple[str, Callable[[Context, str], float]]] = [
        ("cold declare-amqp apply", run_declare_apply),
        ("POST /api/definitions by curl (until every object is listed)", run_post_definitions),
    ]
    with tempfile.TemporaryDirectory(prefix="apply-cpu-probe-") as tmp:
        exe = common.venv_bin("declare-amqp")
        ctx = Context(args.broker, mgmt, Topology().scaled(args.size), Path(tmp), 600.0, exe)
        for _ in range(args.repetitions):
            for name, run in contenders:
                with common.scratch_vhost(mgmt, "cpu-probe") as vhost:
                    before = int(usage.read_text())
                    wall = run(ctx, vhost)
                    cpu = (int(usage.read_text()) - before) / 1e9
                print(
                    f"{name}: {wall:.2f} s wall, the broker {cpu:.2f} CPU s "
                    f"({100 * cpu / wall / cores:.0f}% of {cores} cores)",
                    flush=True,
                )
    mgmt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
