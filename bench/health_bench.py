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
import sys
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common

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
        common.fill(url, {"high": 3000 if backlog else 0, "low": 1000 if backlog else 0})
        port = common.free_port()
        env = common.child_env({"BENCH_OUT": os.devnull})
        proc = common.start_runner(
            handler, url, port, env, "--blocked-loop-warning", "0.025", "--shutdown-timeout", "5"
        )
        latencies = []
        try:
            common.wait_runner_ready(port, proc, 60)
            time.sleep(1.0)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                end = time.monotonic() + cfg.seconds
                while time.monotonic() < end:
                    t = time.perf_counter()
                    client.get("/healthz").raise_for_status()
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.02)
        finally:
            common.stop(proc)
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
            "p50": common.percentile(latencies, 50) * 1000,
            "p99": common.percentile(latencies, 99) * 1000,
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
    p = common.argument_parser(__doc__)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--quick", action="store_true", help="3 s per case")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 3.0
    args.argv = common.command_argv(__file__, argv)
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    mgmt, env = common.session(cfg)
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
