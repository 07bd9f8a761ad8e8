"""Benchmark: ``priority-worker run --processes N`` with a CPU-bound handler (issue 13).

A plain-function handler doing ~2 ms of pure-Python work per message (one process is bound by
the GIL), queues ``high`` (prefetch 10) and ``low`` (prefetch 2) with a backlog on both.
For ``--processes 1`` and ``2`` (each its own vhost, one after the other, in the same run):
messages per second over a steady window, and the high:low share of each process and of the
whole. Goal: 2 processes >= 1.7 x one on a 2-core machine; every share within 10% of 5:1.
``--help`` for the options; the table goes to ``bench/results/processes.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common

TARGET = 1.7
SHARE_TOLERANCE = 0.10


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def read(path: Path) -> list[tuple[str, int, float]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((parts[0], int(parts[1]), float(parts[2])))
    out.sort(key=lambda r: r[2])
    return out


def measure(cfg: argparse.Namespace, mgmt: common.Management, processes: int) -> dict:
    with (
        common.scratch_vhost(mgmt, f"processes{processes}") as vhost,
        tempfile.TemporaryDirectory() as tmp,
    ):
        url = cfg.broker.amqp_url(vhost)
        out = Path(tmp) / "records.txt"
        common.fill(url, {"high": cfg.high, "low": cfg.low})
        port = common.free_port()
        env = common.child_env({"BENCH_OUT": str(out)})
        proc = common.start_runner(
            "_cpu_handlers:cpu", url, port, env, "--processes", str(processes)
        )
        try:
            common.wait_runner_ready(port, proc, 60)
            time.sleep(cfg.warmup)
            pids = {pid for _, pid, _ in read(out)}
            t0 = time.monotonic()
            cpu0 = cpu_seconds(pids)
            time.sleep(cfg.seconds)
            t1 = time.monotonic()
            cpu1 = cpu_seconds(pids)
        finally:
            common.stop(proc)
        records = read(out)
        window = [r for r in records if t0 <= r[2] < t1]
        per_pid: dict[int, Counter[str]] = defaultdict(Counter)
        for q, pid, _ in window:
            per_pid[pid][q] += 1
        load = os.getloadavg()[0]
        return {
            "processes": processes,
            "rate": len(window) / (t1 - t0),
            "whole": Counter(q for q, _, _ in window),
            "per_pid": dict(per_pid),
            "cores": (cpu1 - cpu0) / (t1 - t0),
            "load": load,
            "left": len(records) < cfg.high + cfg.low,
        }


def ratio(c: Counter[str]) -> float:
    return c["high"] / c["low"] if c["low"] else float("inf")


def render(cfg: argparse.Namespace, env: dict[str, str], runs: list[list[dict]]) -> str:
    """``runs``: one list per repetition, one result per process count, side by side."""
    rows = []
    counts = [r["processes"] for r in runs[0]]
    for i, n in enumerate(counts):
        rates = [rep[i]["rate"] for rep in runs]
        bases = [rep[0]["rate"] for rep in runs]
        ratios = [a / b for a, b in zip(rates, bases, strict=True) if b]
        whole = [ratio(rep[i]["whole"]) for rep in runs]
        per = [ratio(c) for rep in runs for c in rep[i]["per_pid"].values()]
        ok_share = all(abs(x / 5 - 1) <= SHARE_TOLERANCE for x in whole + per)
        speedup = common.median(ratios)
        goal = "-" if i == 0 else common.verdict(speedup >= TARGET and ok_share)
        rows.append(
            [
                n,
                round(common.median(rates)),
                common.paired_ratio(rates, bases),
                ", ".join(f"{x:.2f}" for x in whole),
                ", ".join(f"{x:.2f}" for x in per),
                "yes" if all(rep[i]["left"] for rep in runs) else "NO (drained)",
                ", ".join(f"{rep[i]['cores']:.2f}" for rep in runs),
                ", ".join(f"{rep[i]['rate'] / max(rep[i]['cores'], 1e-9):.0f}" for rep in runs),
                f"{min(rep[i]['load'] for rep in runs):.1f}-"
                f"{max(rep[i]['load'] for rep in runs):.1f}",
                goal,
            ]
        )
    return "\n".join(
        [
            "# --processes N with a CPU-bound handler (issue 13)",
            "",
            f"- {env['date']}; {env['broker']}; {env['machine']}; load {env['load']}",
            f"- handler: a plain function, ~2 ms of pure-Python CPU per message; prefetch high=10 "
            f"low=2, default concurrency (12 threads per process); {cfg.high} high + {cfg.low} low "
            f"waiting; rate over {cfg.seconds} s after {cfg.warmup} s of warm-up; "
            f"{cfg.repetitions} repetitions, the counts alternating; median (min-max) of the "
            "ratio paired within a repetition",
            f"- goal: 2 processes >= {TARGET} x one process; each process's and the whole's "
            'high:low within 10% of 5. "worker CPU cores used": CPU seconds of the worker '
            "processes per second of the window (at most 2 here; other load on the machine "
            'lowers it); "msg per worker CPU s": the work per message, which load hardly moves',
            f"- command: `{' '.join(cfg.argv)}`",
            "",
            common.markdown_table(
                [
                    "processes",
                    "msg/s (median)",
                    "x one process",
                    "share high/low (all, per run)",
                    "share per process",
                    "backlog left",
                    "worker CPU cores used",
                    "msg per worker CPU s",
                    "1-min load",
                    "goal",
                ],
                rows,
            ),
            "",
        ]
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.argument_parser(__doc__)
    p.add_argument("--processes", default="1,2")
    p.add_argument("--high", type=int, default=15000)
    p.add_argument("--low", type=int, default=3000)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="3 s windows, smaller backlog, 1 run")
    args = p.parse_args(argv)
    if args.quick:
        args.high, args.low, args.seconds, args.warmup = 6000, 1500, 3.0, 1.0
        args.repetitions = 1
    args.argv = common.command_argv(__file__, argv)
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    mgmt, env = common.session(cfg)
    runs = []
    counts = [int(x) for x in cfg.processes.split(",")]
    for rep in range(cfg.repetitions):
        results = []
        for n in counts if rep % 2 == 0 else counts[::-1]:
            r = measure(cfg, mgmt, n)
            print(
                f"run {rep + 1}, processes={n}: {r['rate']:.0f} msg/s, share "
                f"{ratio(r['whole']):.2f}",
                flush=True,
            )
            results.append(r)
        runs.append(sorted(results, key=lambda r: counts.index(r["processes"])))
    common.publish_result(render(cfg, env, runs), cfg.output, "processes", cfg.quick)
    mgmt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
