"""Benchmark: declaring a large topology with declare-amqp against its peers, in one run.

On 2,000 durable queues (half with ``x-max-priority``), 200 topic exchanges each with its own
fanout alternate exchange, and 2,000 bindings ("1x"; ``--sizes 1,3,10`` also measures every
count multiplied), against the same local broker, every contender a fresh process as a user
runs it, with its own peak memory:

* a cold ``declare-amqp apply`` takes at most 0.4x the time of ``rabbitmqctl
  import_definitions`` of the same objects (waiting until they all exist), at every size;
* a no-op ``declare-amqp plan --detailed-exitcode`` takes at most 1.0x the time of a ``curl``
  re-posting the same definitions to ``POST /api/definitions/{vhost}`` at 1x, 1.5x above;
* at 10x, plan and apply peak at 150 MB at most (issue 22; issue 2 asked 0.5x and 3x);
* the same no-op plan from the same objects as RabbitMQ definitions JSON is not slower than
  from the YAML (issue 11).

Every contender gets its own fresh vhost, created through the management API and deleted after
(``--vhost-prefix`` names them). Run ``python bench/topology_bench.py --help`` for the options;
the result tables (one per size, and the growth table) are printed and written to
``bench/results/topology.md``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pika
import yaml

# GNU time measures a contender's own peak memory (run_process says why wait4 cannot)
_GNU_TIME = shutil.which("time", path="/usr/bin:/bin") or ""

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common  # type: ignore[import-not-found,no-redef]
else:
    from . import _common as common

APPLY_TARGET = 0.4  # cold apply / import_definitions, at every size (issue 22)
PLAN_TARGET = 1.0  # no-op plan / re-POST of the definitions at 1x (issue 22)
PLAN_TARGET_LARGE = 1.5  # the same above 1x, where reading the broker is most of the re-POST
JSON_TARGET = 1.0  # no-op plan from definitions JSON / from the YAML of the same topology
MEMORY_TARGET_MB = 150.0  # peak memory of plan and apply at 10x


# --------------------------------------------------------------------------- the topology


@dataclass(frozen=True)
class Topology:
    """The benchmark topology, independent of any vhost.

    ``exchanges`` topic exchanges ``bx.NNN``, each with the alternate exchange ``bx.NNN.ae``
    (fanout); ``queues`` durable classic queues ``bq.NNNN``, every second one with
    ``x-max-priority``; one binding per queue: every tenth queue is bound to an alternate
    exchange (as ``email.default`` is in the worked example), the others to a topic exchange
    with their own name as routing key.
    """

    queues: int = 2000
    exchanges: int = 200
    max_priority: int = 5

    def exchange_specs(self) -> list[tuple[str, str, dict[str, object]]]:
        """(name, type, arguments) in declaration order: each AE before its topic exchange."""
        specs: list[tuple[str, str, dict[str, object]]] = []
        for e in range(self.exchanges):
            specs.append((f"bx.{e:03d}.ae", "fanout", {}))
            specs.append((f"bx.{e:03d}", "topic", {"alternate-exchange": f"bx.{e:03d}.ae"}))
        return specs

    def queue_specs(self) -> list[tuple[str, dict[str, object]]]:
        return [
            (f"bq.{q:04d}", {"x-max-priority": self.max_priority} if q % 2 == 0 else {})
            for q in range(self.queues)
        ]

    def binding_specs(self) -> list[tuple[str, str, str]]:
        """(exchange, queue, routing_key)."""
        out = []
        for q in range(self.queues):
            e = q % self.exchanges
            if q % 10 == 9:
                out.append((f"bx.{e:03d}.ae", f"bq.{q:04d}", ""))
            else:
                out.append((f"bx.{e:03d}", f"bq.{q:04d}", f"bq.{q:04d}"))
        return out

    def scaled(self, multiple: int) -> Topology:
        """The same topology with every count multiplied (the growth table's sizes)."""
        return Topology(self.queues * multiple, self.exchanges * multiple, self.max_priority)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "exchanges": 2 * self.exchanges,
            "queues": self.queues,
            "bindings": self.queues,
        }

    # -- the two file formats -------------------------------------------------------------

    def definitions(self, vhost: str) -> dict[str, object]:
        """A RabbitMQ definitions document; every object names ``vhost``."""
        return {
            "exchanges": [
                {
                    "name": name,
                    "vhost": vhost,
                    "type": etype,
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": args,
                }
                for name, etype, args in self.exchange_specs()
            ],
            "queues": [
                {
                    "name": name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": args,
                }
                for name, args in self.queue_specs()
            ],
            "bindings": [
                {
                    "source": ex,
                    "vhost": vhost,
                    "destination": q,
                    "destination_type": "queue",
                    "routing_key": rk,
                    "arguments": {},
                }
                for ex, q, rk in self.binding_specs()
            ],
        }

    def yaml_document(self, vhost: str) -> dict[str, object]:
        """The same objects in declare-amqp's YAML format (see topology.example.yml)."""
        bindings: dict[str, list[dict[str, str]]] = {}
        for ex, q, rk in self.binding_specs():
            b = {"exchange": ex}
            if rk:
                b["routing_key"] = rk
            bindings.setdefault(q, []).append(b)
        exchanges: list[dict[str, object]] = []
        for name, etype, args in self.exchange_specs():
            item: dict[str, object] = {"name": name, "type": etype}
            if "alternate-exchange" in args:
                item["alternate_exchange"] = args["alternate-exchange"]
            exchanges.append(item)
        queues: list[dict[str, object]] = []
        for name, args in self.queue_specs():
            item = {"name": name}
            if "x-max-priority" in args:
                item["max_priority"] = args["x-max-priority"]
            if name in bindings:
                item["bindings"] = bindings[name]
            queues.append(item)
        return {"vhost": vhost, "exchanges": exchanges, "queues": queues}


def count_objects(defs: dict) -> dict[str, int]:
    """Counts of user objects in a ``GET /api/definitions/{vhost}`` answer."""
    return {
        "exchanges": sum(1 for e in defs.get("exchanges", []) if not e["name"].startswith("amq.")),
        "queues": len(defs.get("queues", [])),
        "bindings": sum(1 for b in defs.get("bindings", []) if b.get("source")),
    }


def live_counts(mgmt: common.Management, vhost: str) -> dict[str, int]:
    """The same counts from the per-kind listings, names only and without statistics:
    ``GET /api/definitions/{vhost}`` takes seconds on the large sizes, which would make the
    polling below coarse and load the broker that is being measured."""
    listed = {
        kind: mgmt.http.get(f"/{kind}/{common.qv(vhost)}", params={**params}).json()
        for kind, params in (
            ("exchanges", {"columns": "name", "disable_stats": "true"}),
            ("queues", {"columns": "name", "disable_stats": "true"}),
            ("bindings", {"columns": "source"}),
        )
    }
    return {
        "exchanges": sum(
            1 for e in listed["exchanges"] if e["name"] and not e["name"].startswith("amq.")
        ),
        "queues": len(listed["queues"]),
        "bindings": sum(1 for b in listed["bindings"] if b.get("source")),
    }


def wait_complete(
    mgmt: common.Management, vhost: str, expected: dict[str, int], timeout: float
) -> None:
    """Poll the vhost until every expected object exists."""
    got: dict[str, int] = {}

    def complete() -> bool:
        got.update(live_counts(mgmt, vhost))
        return all(got[k] >= v for k, v in expected.items())

    if not common.poll(complete, timeout, interval=0.02):
        raise common.HarnessError(f"{vhost}: only {got} of {expected} after {timeout:.0f} s")


# --------------------------------------------------------------------------- the contenders


class ToolError(Exception):
    """Our own tool failed (not a harness failure): reported in the table."""


@dataclass
class Context:
    broker: common.Broker
    mgmt: common.Management
    topo: Topology
    workdir: Path
    timeout: float
    declare_amqp: Path
    profile_to: Path | None = None  # set: run declare-amqp under cProfile, writing here
    apply_args: tuple[str, ...] = ()  # extra options for `declare-amqp apply` (tuning)
    compare_args: tuple[str, ...] = ()  # a second apply row with these options instead
    peak_mb: float | None = None  # the largest peak RSS of a process the contender ran
    rabbitmqctl: tuple[str, ...] = ("rabbitmqctl",)  # or e.g. podman exec NAME rabbitmqctl
    settle: float = 0.0  # seconds of rest before each no-op contender (see --settle)


@dataclass(frozen=True)
class Finished:
    """One process run by a contender, as ``os.wait4`` saw it."""

    seconds: float
    returncode: int
    peak_mb: float  # the process's own peak resident set size


def run_process(ctx: Context, command: list[str], sink: IO[bytes] | int) -> Finished:
    """Run ``command`` as a fresh process, as a user would; its wall time and its own peak
    memory are recorded.

    The peak comes from GNU time (``/usr/bin/time -f %M``), which forks the command: Linux
    keeps a process's ``ru_maxrss`` across ``exec``, so a child forked (or vforked, or
    posix_spawned) from this benchmark reports at least the benchmark's own size, and a
    small contender would show the benchmark's peak instead of its own. Without GNU time,
    ``wait4``'s figure is kept and marked as an upper bound in the report.
    """
    peak_file = ctx.workdir / "peak.kib"
    wrapped = [_GNU_TIME, "-f", "%M", "-o", str(peak_file), *command] if _GNU_TIME else command
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrapped, stdout=sink, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024  # KiB on Linux: an upper bound (see above)
    if _GNU_TIME:
        text = peak_file.read_text().strip().splitlines() if peak_file.exists() else []
        # GNU time writes "Command exited with non-zero status N" before the figure
        if text and text[-1].isdigit():
            peak = int(text[-1]) / 1024
    ctx.peak_mb = max(ctx.peak_mb or 0.0, peak)
    return Finished(elapsed, proc.returncode, peak)


def _write(ctx: Context, vhost: str, kind: str) -> Path:
    if kind == "json":
        path = ctx.workdir / f"{vhost}.json"
        path.write_text(json.dumps(ctx.topo.definitions(vhost)))
    else:
        path = ctx.workdir / f"{vhost}.yml"
        path.write_text(yaml.safe_dump(ctx.topo.yaml_document(vhost), sort_keys=False))
    return path


def _rabbitmqctl_import(ctx: Context, path: Path) -> float:
    out = ctx.workdir / "rabbitmqctl.out"
    with out.open("wb") as sink:
        done = run_process(ctx, [*ctx.rabbitmqctl, "import_definitions", str(path)], sink)
    if done.returncode != 0:
        tail = out.read_text(errors="replace")[-500:]
        raise common.HarnessError(f"rabbitmqctl import_definitions: {tail}")
    return done.seconds


def run_import_definitions(ctx: Context, vhost: str) -> float:
    path = _write(ctx, vhost, "json")
    t0 = time.perf_counter()
    _rabbitmqctl_import(ctx, path)
    wait_complete(ctx.mgmt, vhost, ctx.topo.counts, ctx.timeout)
    return time.perf_counter() - t0


def _curl_config(ctx: Context) -> Path:
    """curl's options in a file only we can read (the password stays off the command line)."""
    path = ctx.workdir / "curl.conf"
    if not path.exists():
        path.touch(mode=0o600)
        b = ctx.broker
        path.write_text(
            f'user = "{b.user}:{b.password}"\n'
            'header = "content-type: application/json"\n'
            "silent\nshow-error\nfail\n"
            f'max-time = "{ctx.timeout:.0f}"\n'
        )
    return path


def _curl_post(ctx: Context, vhost: str) -> float:
    """``POST /api/definitions/{vhost}`` of the definitions file by a fresh ``curl``."""
    path = ctx.workdir / f"{vhost}.json"
    if not path.exists():
        _write(ctx, vhost, "json")
    url = f"{ctx.broker.management_url.rstrip('/')}/api/definitions/{common.qv(vhost)}"
    out = ctx.workdir / "curl.out"
    with out.open("wb") as sink:
        command = ["curl", "-K", str(_curl_config(ctx)), "--data-binary", f"@{path}", url]
        done = run_process(ctx, [*command, "-o", os.devnull], sink)
    if done.returncode != 0:
        raise common.HarnessError(f"curl POST definitions: {out.read_text(errors='replace')}")
    return done.seconds


def run_post_definitions(ctx: Context, vhost: str) -> float:
    t0 = time.perf_counter()
    _curl_post(ctx, vhost)
    wait_complete(ctx.mgmt, vhost, ctx.topo.counts, ctx.timeout)
    return time.perf_counter() - t0


def run_pika_blocking(ctx: Context, vhost: str) -> float:
    """One blocking round trip per object on one channel, as the original declare-amqp did."""
    t0 = time.perf_counter()
    conn = pika.BlockingConnection(pika.URLParameters(ctx.broker.amqp_url(vhost)))
    try:
        ch = conn.channel()
        for name, etype, args in ctx.topo.exchange_specs():
            ch.exchange_declare(name, etype, durable=True, arguments=args or None)
        for name, args in ctx.topo.queue_specs():
            ch.queue_declare(name, durable=True, arguments=args or None)
        for ex, q, rk in ctx.topo.binding_specs():
            ch.queue_bind(q, ex, routing_key=rk)
    finally:
        conn.close()
    return time.perf_counter() - t0


def run_aiormq_channels(ctx: Context, vhost: str, channels: int = 16) -> float:
    """aiormq, each phase's declares spread over ``channels`` channels (a fast AMQP reference)."""
    import asyncio

    import aiormq

    topo = ctx.topo

    async def phase(chans: list, calls: list) -> None:
        async def lane(ch: object, items: list) -> None:
            for fn in items:
                await fn(ch)

        await asyncio.gather(*(lane(ch, calls[i :: len(chans)]) for i, ch in enumerate(chans)))

    async def run() -> None:
        conn = await aiormq.connect(ctx.broker.amqp_url(vhost))
        try:
            chans = [await conn.channel() for _ in range(channels)]
            specs = topo.exchange_specs()
            for etype in ("fanout", "topic"):  # alternate exchanges first
                await phase(
                    chans,
                    [
                        (
                            lambda ch, n=n, t=t, a=a: ch.exchange_declare(
                                exchange=n, exchange_type=t, durable=True, arguments=a
                            )
                        )
                        for n, t, a in specs
                        if t == etype
                    ],
                )
            await phase(
                chans,
                [
                    (lambda ch, n=n, a=a: ch.queue_declare(n, durable=True, arguments=a))
                    for n, a in topo.queue_specs()
                ],
            )
            await phase(
                chans,
                [
                    (lambda ch, e=e, q=q, rk=rk: ch.queue_bind(q, e, routing_key=rk))
                    for e, q, rk in topo.binding_specs()
                ],
            )
        finally:
            await conn.close()

    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    if live_counts(ctx.mgmt, vhost) != topo.counts:
        raise common.HarnessError("aiormq peer did not declare everything")
    return elapsed


def _declare_amqp(ctx: Context, args: list[str], ok_codes: tuple[int, ...]) -> float:
    out = ctx.workdir / "declare-amqp.out"
    command = [str(ctx.declare_amqp), *args]
    if ctx.profile_to is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(ctx.profile_to), *command]
    with out.open("wb") as sink:
        done = run_process(ctx, command, sink)
    if done.returncode not in ok_codes:
        tail = out.read_text(errors="replace")[-1500:]
        raise ToolError(f"declare-amqp {args[0]} exited {done.returncode}:\n{tail}")
    return done.seconds


def _target(ctx: Context, vhost: str) -> list[str]:
    """The broker measured, AMQP and management API both (they need not share a host:port)."""
    return ["--url", ctx.broker.amqp_url(vhost), "--management-url", ctx.broker.management_url]


def run_declare_apply(ctx: Context, vhost: str) -> float:
    path = _write(ctx, vhost, "yaml")
    args = ["apply", str(path), *_target(ctx, vhost), *ctx.apply_args]
    elapsed = _declare_amqp(ctx, args, (0,))
    got = live_counts(ctx.mgmt, vhost)
    if got != ctx.topo.counts:
        raise ToolError(f"declare-amqp apply exited 0 but the vhost holds {got}")
    return elapsed


def run_declare_noop_plan(ctx: Context, vhost: str) -> float:
    """Run on the vhost that the cold apply just filled: must exit 0 (nothing to do)."""
    path = ctx.workdir / f"{vhost}.yml"
    return _declare_amqp(
        ctx,
        ["plan", str(path), "--detailed-exitcode", *_target(ctx, vhost)],
        (0,),
    )


def run_declare_noop_plan_json(ctx: Context, vhost: str) -> float:
    """The same no-op plan from the same objects as RabbitMQ definitions JSON (issue 11)."""
    path = ctx.workdir / f"{vhost}-definitions.json"
    path.write_text(json.dumps(ctx.topo.definitions(vhost)))
    return _declare_amqp(
        ctx,
        ["plan", str(path), "--detailed-exitcode", *_target(ctx, vhost)],
        (0,),
    )


def run_repost(ctx: Context, vhost: str) -> float:
    """Re-POST on the vhost that the POST contender filled, by a fresh ``curl`` as a user
    would: the broker's own no-op."""
    elapsed = _curl_post(ctx, vhost)
    if live_counts(ctx.mgmt, vhost) != ctx.topo.counts:
        raise common.HarnessError("re-POST changed the vhost")
    return elapsed


def run_reimport(ctx: Context, vhost: str) -> float:
    """Re-run rabbitmqctl import_definitions on the vhost it already filled (no-op)."""
    return _rabbitmqctl_import(ctx, ctx.workdir / f"{vhost}.json")


# --------------------------------------------------------------------------- the run


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    peak_mb: dict[str, list[float]] = field(default_factory=dict)  # processes' own peaks
    errors: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # display names that differ from keys

    def add(self, key: str, value: float, cpu: float, peak_mb: float | None = None) -> None:
        self.samples.setdefault(key, []).append(value)
        self.cpu.setdefault(key, []).append(cpu)
        if peak_mb is not None:
            self.peak_mb.setdefault(key, []).append(peak_mb)

    def med(self, key: str) -> float | None:
        return common.median(self.samples[key]) if self.samples.get(key) else None

    def peak(self, key: str) -> float | None:
        """The largest peak memory of the contender's own process over the repetitions."""
        return max(self.peak_mb[key]) if self.peak_mb.get(key) else None


def client_cpu() -> float:
    """CPU seconds of this process plus its finished children (declare-amqp, rabbitmqctl)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


IMPORT = "rabbitmqctl import_definitions (+ wait until complete)"
POST = "POST /api/definitions/{vhost} by curl (+ wait until complete)"
PIKA = "pika BlockingConnection, sequential declares (original tool)"
AIORMQ = "aiormq, declares over 16 channels (reference)"
APPLY = "declare-amqp apply, cold (process start included)"
REPOST = "no-op: re-POST /api/definitions/{vhost} by curl (process start included)"
APPLY_ALT = "declare-amqp apply, cold, with --compare-apply-args"
REIMPORT = "no-op: rabbitmqctl import_definitions again"
PLAN = "no-op: declare-amqp plan --detailed-exitcode (process start included)"
PLAN_JSON = "no-op: declare-amqp plan of the same topology as definitions JSON"
ORDER = (IMPORT, POST, PIKA, AIORMQ, APPLY, APPLY_ALT, REIMPORT, REPOST, PLAN, PLAN_JSON)
# The rows whose memory is a process of their own (the others run in this process).
OWN_PROCESS = {IMPORT, POST, APPLY, APPLY_ALT, REIMPORT, REPOST, PLAN, PLAN_JSON}


def one_repetition(
    ctx: Context, res: Results, with_tool: bool, with_pika: bool, prefix: str
) -> None:
    def timed(
        key: str,
        kind: str,
        fn: Callable[[Context, str], float],
        after: list[tuple[str, Callable[[Context, str], float]]] = (),
    ) -> None:
        with common.scratch_vhost(ctx.mgmt, f"topo-{kind}", prefix=prefix) as vhost:
            try:
                for k, f in [(key, fn), *after]:
                    if f is not fn and ctx.settle:
                        time.sleep(ctx.settle)  # the same rest before every no-op contender
                    c0, ctx.peak_mb = client_cpu(), None
                    res.add(k, f(ctx, vhost), client_cpu() - c0, ctx.peak_mb)
            except ToolError as exc:
                res.errors.setdefault(key, str(exc))
                print(f"  {key}: ERROR\n{exc}", flush=True)

    timed(IMPORT, "import", run_import_definitions, [(REIMPORT, run_reimport)])
    timed(POST, "post", run_post_definitions, [(REPOST, run_repost)])
    if with_pika:
        timed(PIKA, "pika", run_pika_blocking)
        timed(AIORMQ, "aiormq", run_aiormq_channels)
    if with_tool:
        timed(
            APPLY,
            "apply",
            run_declare_apply,
            [(PLAN, run_declare_noop_plan), (PLAN_JSON, run_declare_noop_plan_json)],
        )
        if ctx.compare_args:
            # The same cold apply with other options, in the same repetition (paired).
            main_args = ctx.apply_args
            ctx.apply_args = ctx.compare_args
            try:
                timed(APPLY_ALT, "apply-alt", run_declare_apply)
            finally:
                ctx.apply_args = main_args


PROFILE_PATTERN = r"declare_amqp|yaml/(composer|constructor)|rich/console.py.*print|asyncio/base_ev"


def profile_tool(ctx: Context, directory: Path, prefix: str) -> str:
    """One extra, untimed run of apply and no-op plan under cProfile; returns a summary."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = []
    with common.scratch_vhost(ctx.mgmt, "topo-profile", prefix=prefix) as vhost:
        for name, fn in (("apply", run_declare_apply), ("plan", run_declare_noop_plan)):
            ctx.profile_to = directory / f"declare-amqp-{name}.prof"
            try:
                elapsed = fn(ctx, vhost)
            finally:
                ctx.profile_to = None
            parts.append(f"### declare-amqp {name} under cProfile ({elapsed:.2f} s wall)\n")
            parts.append(
                common.profile_summary(directory / f"declare-amqp-{name}.prof", PROFILE_PATTERN, 25)
            )
    return "\n".join(parts)


def declare_amqp_available(exe: Path) -> bool:
    if not exe.exists():
        return False
    # As installed (pip compiles a package's bytecode), not as an editable checkout under
    # PYTHONDONTWRITEBYTECODE=1, which compiles every module of ours at each start (0.1 s of
    # CPU at 1x). __pycache__ is ignored by git.
    compileall.compile_dir(str(common.REPO_ROOT / "declare_amqp"), quiet=1)
    try:
        proc = subprocess.run([str(exe), "--help"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def fmt_s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def fmt_mb(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


@dataclass(frozen=True)
class Targets:
    """The issue's targets at one size (issue 22; issue 2's were 0.5 and 3.0)."""

    apply: float = APPLY_TARGET
    plan: float = PLAN_TARGET
    json: float = JSON_TARGET
    memory_mb: float | None = None  # peak memory of plan and apply, checked at 10x and over


def targets_for(multiple: int) -> Targets:
    if multiple >= 10:
        return Targets(plan=PLAN_TARGET_LARGE, memory_mb=MEMORY_TARGET_MB)
    if multiple > 1:
        return Targets(plan=PLAN_TARGET_LARGE)
    return Targets()


def size_report(res: Results, topo: Topology, multiple: int, reps: int) -> list[str]:
    """The tables of one size: every contender's time and memory, then the targets."""
    rows = []
    for key in ORDER:
        if key == APPLY_ALT and not res.samples.get(key) and key not in res.errors:
            continue
        samples = res.samples.get(key, [])
        label = res.labels.get(key, key)
        if key in res.errors and not samples:
            rows.append([label, "ERROR", "-", "-", "-", "-"])
        elif samples:
            rows.append(
                [
                    label,
                    fmt_s(common.median(samples)),
                    f"{min(samples):.2f}-{max(samples):.2f}",
                    fmt_s(common.median(res.cpu[key])),
                    fmt_mb(res.peak(key)) if key in OWN_PROCESS else "(in the harness)",
                    len(samples),
                ]
            )
        elif key not in (PIKA, AIORMQ) or multiple == 1:
            rows.append([label, "not run", "-", "-", "-", 0])
    timing = common.markdown_table(
        [
            "contender",
            "median s",
            "min-max s",
            "client-side CPU s (median)",
            "peak MB of its process",
            "runs",
        ],
        rows,
    )
    goal = targets_for(multiple)

    def ratio(label: str, num: str, den: str, target: float | None) -> list[object]:
        n, d = res.med(num), res.med(den)
        shown = "(info)" if target is None else f"<= {target}"
        if n is None or d is None:
            why = "MISS (ERROR)" if num in res.errors else "not run"
            return [label, "-", "-", shown, why]
        r = n / d
        paired = common.paired_ratio(res.samples[num], res.samples[den])
        verdict = "-" if target is None else common.verdict(r <= target)
        return [label, f"{r:.2f}", paired, shown, verdict]

    def memory(label: str, key: str) -> list[object]:
        peak = res.peak(key)
        if goal.memory_mb is None:
            return [label, fmt_mb(peak) + " MB", "-", "(info)", "-"]
        if peak is None:
            return [label, "-", "-", f"<= {goal.memory_mb:.0f} MB", "not run"]
        return [
            label,
            f"{peak:.0f} MB",
            "-",
            f"<= {goal.memory_mb:.0f} MB",
            common.verdict(peak <= goal.memory_mb),
        ]

    table_rows = [
        ratio("cold apply / import_definitions", APPLY, IMPORT, goal.apply),
        ratio("no-op plan / re-POST", PLAN, REPOST, goal.plan),
        ratio("no-op plan of definitions JSON / re-POST", PLAN_JSON, REPOST, goal.plan),
        ratio("no-op plan: definitions JSON / YAML", PLAN_JSON, PLAN, goal.json),
        memory("peak memory of the no-op plan", PLAN),
        memory("peak memory of the cold apply", APPLY),
    ]
    if res.samples.get(APPLY_ALT):
        label = f"(info) {res.labels.get(APPLY_ALT, APPLY_ALT)} / import_definitions"
        table_rows.append(ratio(label, APPLY_ALT, IMPORT, None))
    targets = common.markdown_table(
        ["ratio", "of the medians", "per repetition (median, min-max)", "target", "result"],
        table_rows,
    )
    c = topo.counts
    lines = [
        f"## {multiple}x: {c['queues']:,} queues, {c['exchanges']:,} exchanges, "
        f"{c['bindings']:,} bindings ({reps} repetition{'s' if reps != 1 else ''})",
        "",
        timing,
        "",
        targets,
        "",
    ]
    for key, err in res.errors.items():
        lines += [f"**{key}** failed:", "", "```", err.strip(), "```", ""]
    return lines


def growth_table(by_size: dict[int, Results]) -> str:
    """Time and peak memory of every contender at every size, and how the time grew: a
    factor at most the size's multiple is linear or better."""
    sizes = sorted(by_size)
    largest = sizes[-1]
    header = [
        "contender",
        *(f"{m}x s" for m in sizes),
        f"time {largest}x / 1x (linear: {largest})",
        *(f"{m}x MB" for m in sizes),
    ]
    rows = []
    for key in ORDER:
        if not any(by_size[m].samples.get(key) for m in sizes):
            continue
        times = [by_size[m].med(key) for m in sizes]
        first, last = times[0], times[-1]
        growth = f"{last / first:.1f}" if first and last else "-"
        peaks = [fmt_mb(by_size[m].peak(key)) if key in OWN_PROCESS else "-" for m in sizes]
        label = by_size[sizes[0]].labels.get(key, key)
        rows.append([label, *(fmt_s(t) for t in times), growth, *peaks])
    return common.markdown_table(header, rows)


def render(
    by_size: dict[int, Results],
    env: dict[str, str],
    base: Topology,
    reps: dict[int, int],
    cmdline: str,
    settle: float = 0.0,
) -> str:
    c = base.counts
    lines = [
        *common.report_header("declare-amqp topology benchmark", env),
        f"- topology at 1x: {c['queues']} durable queues (half with x-max-priority), "
        f"{base.exchanges} topic exchanges each with its own fanout alternate exchange "
        f"({c['exchanges']} exchanges), {c['bindings']} bindings; the other sizes multiply "
        "every count",
        "- each contender in its own fresh vhost; median reported; every process is started "
        "fresh, as a user runs it (declare-amqp, curl, rabbitmqctl), its peak memory is its "
        "own, not the broker's ("
        + (
            "GNU time's %M"
            if _GNU_TIME
            else "ru_maxrss from wait4: an upper bound, it includes this benchmark's size"
        )
        + ")",
        *(
            [
                f"- each no-op contender ran {settle:g} s after the cold run that filled its "
                "vhost (`--settle`): a CI job plans against a broker that is not still "
                "starting the queues it was just given"
            ]
            if settle
            else []
        ),
        f"- command: `{cmdline}`",
        "",
    ]
    if len(by_size) > 1:
        lines += ["## Growth", "", growth_table(by_size), ""]
    for multiple in sorted(by_size):
        lines += size_report(by_size[multiple], base.scaled(multiple), multiple, reps[multiple])
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queues", type=int, default=2000, help="durable queues at 1x (default 2000)")
    p.add_argument(
        "--exchanges",
        type=int,
        default=200,
        help="topic exchanges at 1x, each with its own fanout AE (default 200)",
    )
    p.add_argument(
        "--sizes",
        default="1",
        help="multiples of the 1x topology to measure, e.g. '1,3,10' (default 1); the report "
        "adds a growth table",
    )
    p.add_argument("--repetitions", "-n", type=int, help="runs per contender at 1x (3)")
    p.add_argument(
        "--large-repetitions",
        type=int,
        default=1,
        help="runs per contender at the sizes above 1x (default 1: they are heavy)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="200 queues, 20 exchanges, 1 repetition, no pika peer (< 60 s)",
    )
    p.add_argument(
        "--no-pika",
        action="store_true",
        help="skip the sequential pika peer and the aiormq reference (they run at 1x only)",
    )
    p.add_argument("--skip-tool", action="store_true", help="measure the peers only")
    p.add_argument("--timeout", type=float, default=600, help="per-import wait limit, s")
    p.add_argument(
        "--settle",
        type=float,
        default=0.0,
        help="seconds to rest before each no-op contender (re-import, re-POST, plans), the same "
        "for all; right after 20,000 queues were created a 4.x broker is still busy with them "
        "for some seconds (default 0)",
    )
    p.add_argument(
        "--apply-args",
        default="",
        help="extra options for declare-amqp apply, e.g. '--channels 64' (shown in the table)",
    )
    p.add_argument(
        "--compare-apply-args",
        default="",
        help="also time a second cold apply with these options in every repetition, "
        "e.g. '--channels 64' (an informational row, paired with the default one)",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="afterwards, run apply and plan once more under cProfile (untimed, at the "
        "largest size); writes DIR/declare-amqp-{apply,plan}.prof and prints the top functions",
    )
    p.add_argument(
        "--rabbitmqctl",
        default="rabbitmqctl",
        help="the rabbitmqctl command of the broker measured, e.g. 'podman exec NAME "
        "rabbitmqctl' for a container that mounts this machine's /tmp (default rabbitmqctl)",
    )
    p.add_argument(
        "--vhost-prefix",
        default="bench",
        help="start of the names of the vhosts the benchmark makes and deletes (default bench)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="result name: bench/results/NAME.md (default topology, topology-quick with --quick; "
        "'-' = none)",
    )
    common.add_broker_arguments(p)
    args = p.parse_args(argv)
    if args.quick:
        args.queues, args.exchanges, args.no_pika = 200, 20, True
    args.repetitions = args.repetitions or (1 if args.quick else 3)
    try:
        args.sizes = sorted({int(m) for m in args.sizes.split(",")})
    except ValueError:
        p.error(f"--sizes: a comma-separated list of whole multiples, not {args.sizes!r}")
    if not args.sizes or args.sizes[0] < 1:
        p.error("--sizes: multiples of 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    broker = common.broker_from(args)
    mgmt = common.Management(broker, timeout=max(120.0, args.timeout))
    base = Topology(queues=args.queues, exchanges=args.exchanges)
    exe = common.venv_bin("declare-amqp")
    by_size: dict[int, Results] = {}
    reps: dict[int, int] = {}
    try:
        env = common.environment(mgmt)
        with_tool = not args.skip_tool and declare_amqp_available(exe)
        if not with_tool and not args.skip_tool:
            print(f"note: {exe} --help does not work yet; measuring the peers only")
        with tempfile.TemporaryDirectory(prefix="topology-bench-") as tmp:
            # rabbitmqctl runs as the rabbitmq user, which must be able to read the JSON.
            Path(tmp).chmod(0o755)
            ctx = Context(broker, mgmt, base, Path(tmp), args.timeout, exe)
            ctx.apply_args = tuple(shlex.split(args.apply_args))
            ctx.compare_args = tuple(shlex.split(args.compare_apply_args))
            ctx.rabbitmqctl = tuple(shlex.split(args.rabbitmqctl))
            ctx.settle = args.settle
            for multiple in args.sizes:
                ctx.topo = base.scaled(multiple)
                res = by_size[multiple] = Results()
                res.labels[APPLY_ALT] = f"declare-amqp apply {shlex.join(ctx.compare_args)}, cold"
                reps[multiple] = args.repetitions if multiple == 1 else args.large_repetitions
                for rep in range(reps[multiple]):
                    print(f"{multiple}x: repetition {rep + 1}/{reps[multiple]}", flush=True)
                    with_pika = not args.no_pika and multiple == 1
                    one_repetition(ctx, res, with_tool, with_pika, args.vhost_prefix)
                    for key, samples in res.samples.items():
                        print(f"  {key}: {samples[-1]:.2f} s", flush=True)
            if args.profile and with_tool:
                try:
                    print(profile_tool(ctx, Path(args.profile), args.vhost_prefix), flush=True)
                except ToolError as exc:
                    print(f"profiling failed: {exc}", flush=True)
    except common.HarnessError as exc:
        print(f"harness failure: {exc}", file=sys.stderr)
        return 1
    finally:
        mgmt.close()
    text = render(by_size, env, base, reps, common.command_line(__file__, argv), args.settle)
    common.publish_result(text, args.output, "topology", args.quick)
    return 2 if any(r.errors for r in by_size.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
