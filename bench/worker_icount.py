"""Instructions per message, tracing on and off: a load-independent second figure beside
``worker_bench.py``'s throughput ratio (issue 18).

Each contender (``worker_bench.py``'s consume and publish children, ours with and without
tracing) runs under ``valgrind --tool=callgrind`` twice, with ``--small`` and ``--large``
messages; the difference of the two instruction totals divided by the difference of the counts
is the cost of one message, start-up and connection set-up cancelled out. Callgrind counts the
instructions of every thread of the process (the batch span processor's included) and does not
care how loaded the machine is; it runs the code about 50 times slower, so the counts are small.
Needs ``valgrind`` and a broker (``--amqp-url``/``--mgmt-url`` as in the other benchmarks).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
    import worker_bench  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common
    from . import worker_bench

KINDS = ["consume:ours", "consume:ours-traced", "publish:ours", "publish:ours-traced"]
COLLECTED = re.compile(r"Collected : (\d+)")


def instructions(kind: str, n: int, url: str, ops: worker_bench.BrokerOps, timeout: float) -> int:
    """Instructions of one child process handling ``n`` messages of ``kind``."""
    queue = ops.fresh_queue(f"bench.icount.{kind.replace(':', '.')}")
    try:
        if kind.startswith("consume"):
            ops.fill(queue, n)
            extra: dict[str, object] = {"n": n, "prefetch": 100}
        else:
            extra = {"n": n, "window": 1000, "persistent": False}
        spec = json.dumps({"kind": kind, "timeout": timeout, "url": url, "queue": queue, **extra})
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            str(Path(worker_bench.__file__).resolve()),
            "--child",
            spec,
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 120)
        found = COLLECTED.search(proc.stderr)
        if proc.returncode != 0 or found is None or "RESULT " not in proc.stdout:
            tail = proc.stderr[-1500:]
            raise common.HarnessError(f"{kind} ({n}): exit {proc.returncode}\n{tail}")
        return int(found.group(1))
    finally:
        ops.delete(queue)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=1000, help="messages in the first run (1000)")
    p.add_argument("--large", type=int, default=3000, help="messages in the second run (3000)")
    p.add_argument("--timeout", type=float, default=1500, help="per run under valgrind, s")
    p.add_argument("--output", default=None, help="bench/results/NAME.md (default worker-icount)")
    common.add_broker_arguments(p)
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    broker = common.broker_from(args)
    mgmt = common.Management(broker)
    per_message: dict[str, float] = {}
    try:
        env = common.environment(mgmt)
        with common.scratch_vhost(mgmt, "icount") as vhost:
            url = broker.amqp_url(vhost)
            ops = worker_bench.BrokerOps(url)
            try:
                for kind in KINDS:
                    small = instructions(kind, args.small, url, ops, args.timeout)
                    large = instructions(kind, args.large, url, ops, args.timeout)
                    per_message[kind] = (large - small) / (args.large - args.small)
                    print(f"  {kind}: {per_message[kind]:,.0f} instructions/message", flush=True)
            finally:
                ops.close()
    except common.HarnessError as exc:
        print(f"harness failure: {exc}", file=sys.stderr)
        return 1
    finally:
        mgmt.close()
    rows = []
    for part in ("consume", "publish"):
        off, on = per_message[f"{part}:ours"], per_message[f"{part}:ours-traced"]
        rows.append([part, f"{off:,.0f}", f"{on:,.0f}", f"{on - off:,.0f}", f"{off / on:.2f}"])
    text = "\n".join(
        [
            *common.report_header("priority_worker: instructions per message (callgrind)", env),
            f"- command: `{common.command_line(__file__, argv)}`",
            f"- per message: (instructions with {args.large:,} messages - with {args.small:,})"
            f" / {args.large - args.small:,}; all threads; tracing on: the SDK, a batch span "
            "processor, an exporter that drops every span",
            "",
            common.markdown_table(
                ["path", "tracing off", "tracing on", "added by tracing", "off / on"], rows
            ),
            "",
        ]
    )
    common.publish_result(text, args.output, "worker-icount", False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
