"""Benchmark: reading a large YAML topology file, no broker (issues 19 and 22).

The files are ``topology_bench.py``'s topology (``Topology.scaled(n).yaml_document``):

* ``declare-amqp validate`` of the 50 MB file (``--multiple 275``: 550,000 queues, 110,000
  exchanges, 550,000 bindings) peaks at most at 8x the file's size (issue 19; GNU time's
  ``%M``, a fresh process as a user runs it);
* at 1x (2,000 queues, 400 exchanges, 2,000 bindings) the loader's own CPU
  (``read_unvalidated``: read, parse, build the model; in a process of its own, best and
  median of ``--runs``), and a fresh ``declare-amqp validate`` process (issue 22: the YAML
  parse was about half of a no-op plan).

``--baseline DIR`` measures another checkout's ``declare_amqp`` the same way, interleaved,
e.g. ``git archive main declare_amqp | tar -x -C /tmp/main`` then ``--baseline /tmp/main``.
No broker is needed. The table is printed and written to ``bench/results/yaml.md``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
    from topology_bench import Topology  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common
    from .topology_bench import Topology

TARGET_RATIO = 8.0  # peak memory / file size (issue 19)
_GNU_TIME = shutil.which("time", path="/usr/bin:/bin") or ""

# the loader's CPU, in a process of its own (so a baseline checkout is measured alike)
_LOADER_CPU = """
import gc, statistics, sys, time
from declare_amqp._loader import read_unvalidated
path, runs = sys.argv[1], int(sys.argv[2])
read_unvalidated([path])  # warm: imports, caches
times = []
for _ in range(runs):
    start = time.process_time()
    topology, problems = read_unvalidated([path])
    times.append(time.process_time() - start)
    assert not problems, problems[:3]
    del topology
    gc.collect()
print(min(times), statistics.median(times))
"""
_VALIDATE = "import sys; from declare_amqp._cli import main; sys.exit(main(sys.argv[1:]))"


def write_file(directory: Path, multiple: int) -> Path:
    """The topology at ``multiple`` times 1x as a YAML file (kept in ``directory``)."""
    path = directory / f"topology-{multiple}x.yml"
    if not path.exists():
        document = Topology().scaled(multiple).yaml_document("/")
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        with path.open("w") as fh:
            yaml.dump(document, fh, Dumper=dumper, sort_keys=False)
    return path


def env_for(source: Path) -> dict[str, str]:
    """The environment that imports ``declare_amqp`` from ``source`` (run in ``source`` too:
    ``python -c`` puts its working directory first on the path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(source)
    return env


def validate(source: Path, path: Path) -> tuple[float, float, int]:
    """A fresh ``declare-amqp validate`` of ``path``: wall s, user+system CPU s, peak KiB."""
    argv = [_GNU_TIME, "-f", "%e %U %S %M", sys.executable, "-c", _VALIDATE, "validate", str(path)]
    done = subprocess.run(
        argv, env=env_for(source), cwd=source, capture_output=True, text=True, check=False
    )
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    if done.returncode != 0 or len(last.split()) != 4:
        raise common.HarnessError(f"validate failed ({done.returncode}): {done.stderr[-2000:]}")
    wall, user, system, peak = last.split()
    return float(wall), float(user) + float(system), int(peak)


def loader_cpu(source: Path, path: Path, runs: int) -> tuple[float, float]:
    """The loader's CPU on ``path``: best and median of ``runs``, in seconds."""
    argv = [sys.executable, "-c", _LOADER_CPU, str(path), str(runs)]
    done = subprocess.run(
        argv, env=env_for(source), cwd=source, capture_output=True, text=True, check=True
    )
    best, median = done.stdout.split()
    return float(best), float(median)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--multiple", type=int, default=275, help="the large file (default 275: 50 MB)")
    p.add_argument("--large-runs", type=int, default=1, help="validates of the large file")
    p.add_argument("--runs", type=int, default=21, help="loader runs at 1x (default 21)")
    p.add_argument("--processes", type=int, default=5, help="validate processes at 1x")
    p.add_argument("--baseline", type=Path, help="another checkout's source, measured alike")
    p.add_argument("--files", type=Path, help="keep the generated files here (reused)")
    p.add_argument("--output", help="result name under bench/results, or - for none")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write it."""
    args = parse_args(argv)
    if not _GNU_TIME:
        raise SystemExit("GNU time (/usr/bin/time) is needed: apt-get install time")
    sources = {"this checkout": common.REPO_ROOT}
    if args.baseline is not None:
        sources = {"baseline": args.baseline.resolve(), **sources}
    for source in sources.values():  # as pip would: our bytecode compiled first
        compileall.compile_dir(str(source / "declare_amqp"), quiet=1)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = common.load_average()
    with tempfile.TemporaryDirectory(prefix="yaml-bench-") as scratch:
        directory = args.files or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        small, large = write_file(directory, 1), write_file(directory, args.multiple)
        size_mib = large.stat().st_size / 2**20
        rows: list[list[object]] = []
        for name, source in sources.items():
            best, median = loader_cpu(source, small, args.runs)
            processes = [validate(source, small) for _ in range(args.processes)]
            big = [validate(source, large) for _ in range(args.large_runs)]
            peak_mib = max(p for _, _, p in big) / 1024
            rows.append(
                [
                    name,
                    round(best * 1000),
                    round(median * 1000),
                    round(statistics.median(c for _, c, _ in processes), 2),
                    round(statistics.median(w for w, _, _ in processes), 2),
                    round(size_mib, 1),
                    round(peak_mib),
                    round(peak_mib / size_mib, 1),
                    round(statistics.median(w for w, _, _ in big), 1),
                    round(statistics.median(c for _, c, _ in big), 1),
                    common.verdict(peak_mib / size_mib <= TARGET_RATIO),
                ]
            )
    header = [
        "declare_amqp",
        "1x loader CPU ms (best)",
        "1x loader CPU ms (median)",
        "1x validate CPU s",
        "1x validate wall s",
        f"{args.multiple}x file MiB",
        "validate peak MiB",
        "peak / file",
        "wall s",
        "CPU s",
        f"<= {TARGET_RATIO:g}x",
    ]
    lines = [
        "# Reading a large YAML topology (issues 19 and 22)",
        "",
        f"- date: {started}; machine: {os.cpu_count()} cores; load average at start "
        f"{load_start}, at end {common.load_average()}",
        f"- command: `{common.command_line(__file__, argv)}`",
        f"- 1x: {args.runs} loader runs in one process, {args.processes} validate processes;"
        f" {args.multiple}x: {args.large_runs} validate process(es), peak from GNU time's %M",
        "",
        common.markdown_table(header, rows),
        "",
    ]
    common.publish_result("\n".join(lines), args.output, "yaml", quick=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
