"""Benchmark: how long an urgent message waits, and the share under backlog (issue 13).

The setting of the issue: queues ``high`` (prefetch 10) and ``low`` (prefetch 2), a 20 ms
handler, 3,000 messages waiting in ``low``, one ``high`` message published every 50 ms. For
each mode (weighted, strict, conserving) and concurrency (1, 4, the default), and for a Celery
worker consuming the same two queues (late acks, prefetch multiplier 1, ``-Q high,low``) in the
same run:

* the high messages' time from publish to handler start, p50 / p99 / max;
* the share of the first handled messages when both queues have a backlog (3,000 high, 1,000
  low): observed high:low against the prefetch ratio 5:1.

Each consumer is its own process (``priority-worker run`` or ``celery worker``) in a fresh
vhost; handlers append one line per start to a file (``_latency_peers.py``); timestamps are
``time.monotonic()``, one clock for every process. Goals (weighted mode): p50 <= one handler
time, p99 <= 1.5 handler times, share within 10% of 5:1. A missed goal is reported as MISS,
never a failure. ``--help`` for the options; the table goes to ``bench/results/latency.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common

BENCH_DIR = Path(__file__).resolve().parent
PREFETCH = common.PREFETCH
SHARE_TOLERANCE = 0.10


@dataclass
class Result:
    peer: str
    mode: str
    concurrency: str
    waits: list[float] = field(default_factory=list)
    low_during: int = 0
    low_left: int | None = None
    share: Counter[str] = field(default_factory=Counter)
    note: str = ""


def read_records(path: Path) -> list[tuple[str, float, float]]:
    """(queue, published, started) lines, in start order."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], float(parts[1]), float(parts[2])))
    out.sort(key=lambda r: r[2])
    return out


def count_lines(path: Path, queue: str) -> int:
    if not path.exists():
        return 0
    prefix = queue + " "
    with path.open() as fh:
        return sum(1 for line in fh if line.startswith(prefix))


# =========================================================================== publishers


class PikaPublisher:
    """Publishes the bodies priority_worker's handler reads (the publish time)."""

    def __init__(self, url: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()

    def declare(self) -> None:
        for q in PREFETCH:
            self.ch.queue_declare(q, durable=True)

    def publish(self, queue: str) -> None:
        self.ch.basic_publish("", queue, repr(time.monotonic()).encode())

    def close(self) -> None:
        self.conn.close()


class CeleryPublisher:
    """Sends the Celery task of ``_latency_celery.py`` (Celery's own message format)."""

    def __init__(self, url: str) -> None:
        os.environ["BENCH_AMQP_URL"] = url
        import _latency_celery as peer  # type: ignore[import-not-found]

        self.peer = peer
        peer.app.conf.broker_url = url
        self.conn = peer.app.connection_for_write()
        self.producer = peer.app.amqp.Producer(self.conn)

    def declare(self) -> None:
        for q in self.peer.QUEUES:
            q(self.conn.default_channel).declare()

    def publish(self, queue: str) -> None:
        self.peer.handle.apply_async(
            (queue, time.monotonic()), queue=queue, routing_key=queue, producer=self.producer
        )

    def close(self) -> None:
        self.conn.release()


# =========================================================================== consumers


def start_ours(
    url: str, mode: str, concurrency: int | None, env: dict[str, str], port: int
) -> subprocess.Popen[bytes]:
    extra = ["--mode", mode] + (["--concurrency", str(concurrency)] if concurrency else [])
    return common.start_runner("_latency_peers:handle", url, port, env, *extra)


def start_celery(concurrency: int | None, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [
        str(common.venv_bin("celery")),
        "-A",
        "_latency_celery",
        "worker",
        "-Q",
        "high,low",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if concurrency:
        cmd += ["-c", str(concurrency)]
    return subprocess.Popen(
        cmd, cwd=BENCH_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


# =========================================================================== one scenario


def scenario(
    cfg: argparse.Namespace,
    mgmt: common.Management,
    peer: str,
    mode: str,
    concurrency: int | None,
    phase: str,
) -> Result:
    """``phase`` "latency": low backlog + a high stream; "share": both queues backlogged."""
    label = (
        str(concurrency)
        if concurrency
        else (
            f"default ({sum(PREFETCH.values())})"
            if peer != "celery"
            else f"default ({os.cpu_count()})"
        )
    )
    result = Result(peer, mode, label)
    with (
        common.scratch_vhost(mgmt, f"latency-{phase}") as vhost,
        tempfile.TemporaryDirectory() as tmp,
    ):
        url = cfg.broker.amqp_url(vhost)
        out = Path(tmp) / "records.txt"
        # baseline: an older priority_worker, for a before/after in one run
        env = common.child_env(
            {
                "BENCH_LATENCY_OUT": str(out),
                "BENCH_AMQP_URL": url,
                "BENCH_HANDLER_S": str(cfg.handler_ms / 1000),
            },
            [cfg.baseline] if peer == "baseline" else [],
        )
        pub: Any = CeleryPublisher(url) if peer == "celery" else PikaPublisher(url)
        try:
            pub.declare()
            backlog = (
                {"high": 0, "low": cfg.low_backlog}
                if phase == "latency"
                else {"high": cfg.share_high, "low": cfg.share_low}
            )
            for queue, n in backlog.items():
                for _ in range(n):
                    pub.publish(queue)
            if peer != "celery":
                port = common.free_port()
                proc = start_ours(url, mode, concurrency, env, port)
                common.wait_runner_ready(port, proc, 30)
            else:
                proc = start_celery(concurrency, env)
                marker = Path(str(out) + ".ready")
                common.require(marker.exists, 60, "celery worker", proc=proc)
            try:
                if phase == "latency":
                    run_stream(cfg, pub, out, proc, result)
                else:
                    want = cfg.share_count if concurrency != 1 else cfg.share_count // 2
                    common.poll(lambda: len(read_records(out)) >= want, cfg.timeout, interval=0.2)
                    records = read_records(out)[:want]
                    result.share = Counter(q for q, _, _ in records)
                    if len(records) < want:
                        result.note = f"only {len(records)} handled"
            finally:
                common.stop(proc)
        finally:
            pub.close()
        if phase == "latency":
            try:
                result.low_left = common.ready_count(url, "low")
            except Exception:  # the vhost is going away anyway
                result.low_left = None
    return result


def run_stream(
    cfg: argparse.Namespace, pub: Any, out: Path, proc: subprocess.Popen[bytes], result: Result
) -> None:
    """One high message every ``interval`` ms, paced on the monotonic clock."""
    time.sleep(cfg.warmup)  # the consumer is busy with the low backlog by now
    low_before = count_lines(out, "low")
    interval = cfg.interval_ms / 1000
    start = time.monotonic()
    for i in range(cfg.high):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pub.publish("high")
    common.poll(lambda: count_lines(out, "high") >= cfg.high, cfg.timeout, proc=proc)
    records = read_records(out)
    result.waits = [s - p for q, p, s in records if q == "high"]
    result.low_during = count_lines(out, "low") - low_before
    if len(result.waits) < cfg.high:
        result.note = f"only {len(result.waits)} of {cfg.high} high handled"


# =========================================================================== report


def render(
    cfg: argparse.Namespace,
    env: dict[str, str],
    latency: list[Result],
    share: dict[tuple[str, str, str], Result],
) -> str:
    h = cfg.handler_ms
    rows = []
    for r in latency:
        s = share.get((r.peer, r.mode, r.concurrency))
        ratio = "-"
        share_ok = None
        if s is not None and s.share["low"]:
            value = s.share["high"] / s.share["low"]
            ratio = f"{value:.2f} ({s.share['high']}:{s.share['low']})"
            share_ok = abs(value / 5.0 - 1) <= SHARE_TOLERANCE
        elif s is not None:
            ratio = f"inf ({s.share['high']}:0)"
        p50, p99 = common.percentile(r.waits, 50) * 1000, common.percentile(r.waits, 99) * 1000
        goal = "-"
        if r.peer == "priority_worker" and r.mode == "weighted":
            ok = p50 <= h and p99 <= 1.5 * h and bool(share_ok)
            goal = common.verdict(ok)
        rows.append(
            [
                r.peer,
                r.mode,
                r.concurrency,
                round(p50, 1),
                round(p99, 1),
                round(max(r.waits, default=float("nan")) * 1000, 1),
                r.low_during,
                "-" if r.low_left is None else r.low_left,
                ratio,
                goal,
                (r.note + " " + (s.note if s else "")).strip(),
            ]
        )
    header = [
        "peer",
        "mode",
        "concurrency",
        "high wait p50 ms",
        "p99 ms",
        "max ms",
        "low handled meanwhile",
        "low left",
        "share high/low under backlog",
        "goal",
        "note",
    ]
    lines = [
        "# Latency of a high-priority message, and the share under backlog (issue 13)",
        "",
        f"- {env['date']}; {env['broker']}; {env['machine']}; load {env['load']}",
        f"- prefetch high=10 low=2; handler {h} ms (priority_worker: async sleep; Celery: "
        f"time.sleep in the prefork pool); {cfg.low_backlog} low waiting; {cfg.high} high, one "
        f"every {cfg.interval_ms} ms after {cfg.warmup} s",
        f"- share: {cfg.share_high} high + {cfg.share_low} low waiting; the first "
        f"{cfg.share_count} handled ({cfg.share_count // 2} at concurrency 1); expected 5.00",
        f"- goal (weighted): p50 <= {h} ms, p99 <= {1.5 * h:g} ms, share within 10% of 5:1",
        "- Celery: task_acks_late, worker_prefetch_multiplier=1, `-Q high,low`; its default "
        "concurrency is the number of CPUs",
        *(
            [
                f"- baseline: the priority_worker package from `{cfg.baseline}` (arrival-order "
                "dispatch), same settings"
            ]
            if cfg.baseline
            else []
        ),
        f"- command: `{' '.join(cfg.argv)}`",
        "",
        common.markdown_table(header, rows),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = common.argument_parser(__doc__)
    p.add_argument("--modes", default="weighted,strict,conserving")
    p.add_argument(
        "--concurrency",
        default="1,4,default",
        help="comma-separated; 'default' = the worker's default",
    )
    p.add_argument("--peers", default="priority_worker,celery")
    p.add_argument("--handler-ms", type=float, default=20.0)
    p.add_argument("--interval-ms", type=float, default=50.0)
    p.add_argument("--high", type=int, default=100, help="high messages in the stream")
    p.add_argument("--low-backlog", type=int, default=3000)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--share-high", type=int, default=3000)
    p.add_argument("--share-low", type=int, default=1000)
    p.add_argument("--share-count", type=int, default=600)
    p.add_argument("--no-share", action="store_true", help="skip the share runs")
    p.add_argument(
        "--baseline",
        default=None,
        metavar="DIR",
        help="also run the priority_worker package found in DIR (e.g. from "
        "`git archive REV priority_worker | tar -x -C DIR`) as peer 'baseline'",
    )
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument(
        "--quick",
        action="store_true",
        help="30 high messages, concurrency 1 only, 120 for the share",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.high, args.concurrency, args.share_count = 30, "1", 240
    args.argv = common.command_argv(__file__, argv)
    return args


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    mgmt, env = common.session(cfg)
    peers = cfg.peers.split(",")
    if cfg.baseline and "baseline" not in peers:
        peers.insert(1, "baseline")
    if "celery" in peers:
        try:
            import celery  # noqa: F401
        except ImportError:
            print("celery is not installed (pip install -e '.[bench]'): skipping the peer")
            peers.remove("celery")
    concs = [None if c == "default" else int(c) for c in cfg.concurrency.split(",")]
    latency: list[Result] = []
    share: dict[tuple[str, str, str], Result] = {}
    for conc in concs:
        for peer in peers:
            for mode in cfg.modes.split(",") if peer != "celery" else ["-"]:
                r = scenario(cfg, mgmt, peer, mode, conc, "latency")
                latency.append(r)
                print(
                    f"{peer} {mode} c={r.concurrency}: p50 "
                    f"{common.percentile(r.waits, 50) * 1000:.1f} ms p99 "
                    f"{common.percentile(r.waits, 99) * 1000:.1f} ms {r.note}",
                    flush=True,
                )
                if not cfg.no_share and mode != "strict":
                    s = scenario(cfg, mgmt, peer, mode, conc, "share")
                    share[(peer, mode, r.concurrency)] = s
                    print(f"   share {dict(s.share)} {s.note}", flush=True)
    common.publish_result(render(cfg, env, latency, share), cfg.output, "latency", cfg.quick)
    mgmt.close()
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "latency-bench"
    sys.exit(main())
