"""Benchmark: /healthz latency while handlers work (issue 13, "Health checks that stay fast").

One ``priority-worker run`` with queues ``high`` (prefetch 10) and ``low`` (2), a backlog on
both, and a client asking ``/healthz`` every 20 ms for a while. Cases, in one run:

* ``idle``: no messages (the baseline);
* ``sync 500 ms``: a plain-function handler that blocks 500 ms (it runs in the thread pool,
  so the loop stays free). Goal: p99 < 50 ms;
* ``async 50 ms CPU``: an ``async def`` handler that runs a 50 ms CPU loop without awaiting.
  It holds the loop: /healthz waits for it. This documents the bug, and the count of
  ``loop_blocked`` warnings (``--blocked-loop-warning 0.025`` here) shows it is reported.

``--help`` for the options; the table goes to ``bench/results/health.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
    from latency_bench import free_port, percentile, stop, wait_ours_ready  # type: ignore
    from processes_bench import fill  # type: ignore[import-not-found]
else:
    from . import _common as common
    from .latency_bench import free_port, percentile, stop, wait_ours_ready
    from .processes_bench import fill

BENCH_DIR = Path(__file__).resolve().parent
CASES = [
    ("idle", "_cpu_handlers:cpu", False),
    ("sync 500 ms", "_cpu_handlers:sleep_500ms", True),
    ("async 50 ms CPU", "_cpu_handlers:crunch_50ms", True),
]


def measure(
    cfg: argparse.Namespace, mgmt: common.Management, name: str, handler: str, backlog: bool
) -> dict:
    with common.scratch_vhost(mgmt, "health") as vhost:
        url = cfg.broker.amqp_url(vhost)
        fill(url, {"high": 3000 if backlog else 0, "low": 1000 if backlog else 0})
        port = free_port()
        env = {
            **os.environ,
            "BENCH_OUT": os.devnull,
            "PYTHONPATH": f"{BENCH_DIR}{os.pathsep}{common.REPO_ROOT}",
        }
        cmd = [
            str(common.venv_bin("priority-worker")),
            "run",
            handler,
            "--url",
            url,
            "--queue",
            "high=10",
            "--queue",
            "low=2",
            "--http-port",
            str(port),
            "--log-level",
            "WARNING",
            "--blocked-loop-warning",
            "0.025",
            "--shutdown-timeout",
            "5",
        ]
        proc = subprocess.Popen(
            cmd, cwd=BENCH_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        latencies = []
        try:
            wait_ours_ready(port, proc, 60)
            time.sleep(1.0)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                end = time.monotonic() + cfg.seconds
                while time.monotonic() < end:
                    t = time.perf_counter()
                    client.get("/healthz").raise_for_status()
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.02)
        finally:
            stop(proc)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        warnings = []
        for line in stderr.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "loop_blocked":
                warnings.append(doc.get("handler", "?"))
        return {
            "case": name,
            "n": len(latencies),
            "p50": percentile(latencies, 50) * 1000,
            "p99": percentile(latencies, 99) * 1000,
            "max": max(latencies) * 1000,
            "warnings": len(warnings),
            "named": sorted(set(warnings)),
        }


def render(cfg: argparse.Namespace, env: dict[str, str], results: list[dict]) -> str:
    rows = []
    for r in results:
        goal = common.verdict(r["p99"] < 50) if r["case"] == "sync 500 ms" else "-"
        rows.append(
            [
                r["case"],
                r["n"],
                round(r["p50"], 1),
                round(r["p99"], 1),
                round(r["max"], 1),
                r["warnings"],
                ", ".join(r["named"]) or "-",
                goal,
            ]
        )
    return "\n".join(
        [
            "# /healthz latency while handlers work (issue 13)",
            "",
            f"- {env['date']}; {env['broker']}; {env['machine']}; load {env['load']}",
            f"- one worker, prefetch high=10 low=2 (12 handlers at once), backlog 3,000 + 1,000; "
            f"GET /healthz every 20 ms for {cfg.seconds} s; --blocked-loop-warning 0.025",
            "- goal: p99 < 50 ms with sync handlers blocking 500 ms; the async CPU case documents "
            "what a blocking async handler does to the loop",
            f"- command: `{' '.join(cfg.argv)}`",
            "",
            common.markdown_table(
                [
                    "case",
                    "requests",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "loop_blocked warnings",
                    "handler named",
                    "goal",
                ],
                rows,
            ),
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_broker_arguments(p)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--quick", action="store_true", help="3 s per case")
    p.add_argument("--output", default=None, help="result file ('-': none)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 3.0
    args.argv = ["python", "bench/health_bench.py", *(argv if argv is not None else sys.argv[1:])]
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    cfg.broker = common.broker_from(cfg)
    mgmt = common.Management(cfg.broker)
    env = common.environment(mgmt)
    results = []
    for name, handler, backlog in CASES:
        r = measure(cfg, mgmt, name, handler, backlog)
        print(
            f"{name}: p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms, {r['warnings']} warnings",
            flush=True,
        )
        results.append(r)
    common.publish_result(render(cfg, env, results), cfg.output, "health", cfg.quick)
    mgmt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
