"""Benchmark: does the simulator agree with the broker? (issue 21, "Done means").

* Routing: 100 random topologies (exchanges of the four types, internal ones, alternate
  exchanges that chain, loop or name a missing exchange, exchange-to-exchange bindings, topic
  keys with ``*``, ``#`` and empty words, headers bindings of every x-match kind with typed and
  void values) and 100 random messages each: 10,000 messages published with confirms into
  empty queues and read back; the queues ``route`` names must equal where the broker put each
  message.
* Policies: 1,000 random sets of policies and operator policies (no ties) over classic,
  quorum and stream queues and exchanges; each queue's ``policy``, ``operator_policy`` and
  ``effective_policy_definition`` (each exchange's ``policy``) as the management API reports
  them must equal what ``explain`` says.

The generator is ``tests/simulate_agreement.py`` (the suite runs it with small counts).
``python bench/simulate_bench.py [--messages 10000] [--policy-sets 1000] [--vhosts 10]
[--slots 5] [--seed N]``; results are printed and written to
``bench/results/simulate-<version>.md``.
"""

from __future__ import annotations

import contextlib
import random
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _common as common  # type: ignore[import-not-found]
import simulate_agreement as agreement  # type: ignore[import-not-found]

from declare_amqp._simulate import Simulator
from declare_amqp._versions import parse_version


def _routing_mix(seed: int, topologies: int, per: int) -> dict[str, int]:
    """What the random messages exercised, as the simulator sees it (same seed, same draw)."""
    rng = random.Random(seed)
    mix = {"unroutable": 0, "one queue": 0, "several queues": 0, "via alternate exchange": 0}
    mix |= {"via exchange-to-exchange": 0, "headers exchange": 0, "topic wildcard": 0}
    for t in range(topologies):
        topology = agreement.random_topology(rng, "v", f"t{t}-")
        messages = agreement.random_messages(rng, topology, per)
        sim = Simulator(topology)
        types = {x.name: x.type for x in topology.exchanges} | {
            "amq.topic": "topic",
            "amq.headers": "headers",
        }
        for m in messages:
            r = sim.route("v", m, dead_letters=False)
            n = len(r.queues)
            mix["unroutable" if n == 0 else "one queue" if n == 1 else "several queues"] += 1
            vias = {h.via for h in r.path}
            mix["via alternate exchange"] += "alternate-exchange" in vias
            mix["via exchange-to-exchange"] += any(
                h.destination_type == "exchange" and h.via == "binding" for h in r.path
            )
            mix["headers exchange"] += any(types.get(h.exchange) == "headers" for h in r.path)
            mix["topic wildcard"] += any(
                "*" in h.binding_key or "#" in h.binding_key for h in r.path
            )
    return mix


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = common.argument_parser(__doc__ or "")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--policy-sets", type=int, default=1_000)
    parser.add_argument("--vhosts", type=int, default=10, help="vhosts for the policy sets")
    parser.add_argument("--slots", type=int, default=5, help="policy sets at once per vhost")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    mgmt, env = common.session(args)
    version_text = mgmt.overview().get("rabbitmq_version", "")
    version = parse_version(version_text)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    per = 100
    topologies = max(1, args.messages // per)
    rows = []
    with common.scratch_vhost(mgmt, "simulate-route") as vhost:
        started = time.monotonic()
        routed = agreement.routing_agreement(
            args.broker.amqp_url(vhost),
            vhost,
            seed=seed,
            topologies=topologies,
            messages_per_topology=per,
            version=version,
            progress=_progress,
        )
        rows.append(
            [
                "route: messages",
                routed.total,
                routed.agreed,
                f"{routed.percent:.2f}%",
                f"{time.monotonic() - started:.0f} s",
            ]
        )
    stats = agreement.PolicyStats()
    with contextlib.ExitStack() as stack:
        vhosts = [
            stack.enter_context(common.scratch_vhost(mgmt, f"simulate-policy{i}"))
            for i in range(args.vhosts)
        ]
        started = time.monotonic()
        b = args.broker
        with httpx.Client(
            base_url=b.management_url, auth=(b.user, b.password), timeout=120
        ) as http:
            policies = agreement.policy_agreement(
                http,
                vhosts,
                seed=seed,
                sets=args.policy_sets,
                slots=args.slots,
                version=version,
                stats=stats,
                progress=_progress,
            )
        rows.append(
            [
                "explain: policy sets",
                policies.total,
                policies.agreed,
                f"{policies.percent:.2f}%",
                f"{time.monotonic() - started:.0f} s",
            ]
        )
    # the header last: it reads the load average again for "at end"
    lines = common.report_header("Simulator vs broker (route, explain)", env)
    lines += [
        f"- command: `{common.command_line('bench/simulate_bench.py', argv)}`",
        f"- seed: {seed}",
        "",
    ]
    lines.append(common.markdown_table(["check", "compared", "agreed", "agreement", "time"], rows))
    mix = _routing_mix(seed, topologies, per)
    lines += ["", "What the random messages exercised (counts of messages):", ""]
    lines.append(common.markdown_table(["kind", "messages"], sorted(mix.items())))
    lines += [
        "",
        f"Policy sets: {stats.objects} queue checks; {stats.with_policy} with a policy, "
        f"{stats.with_operator_policy} with an operator policy, {stats.merged_keys} keys set by "
        f"both (merged), {stats.skipped_unsupported} matching policies skipped for a key the "
        "queue type does not support.",
    ]
    for title, result in (("route", routed), ("explain", policies)):
        if result.differences:
            lines += ["", f"First differences ({title}):", ""]
            lines += [f"- {d}" for d in result.differences[:10]]
    ok = routed.agreed == routed.total and policies.agreed == policies.total
    lines += ["", f"Verdict: {common.verdict(ok)} (100% required)"]
    name = f"simulate-{version_text or 'unknown'}"
    common.publish_result("\n".join(lines) + "\n", args.output, name, quick=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
