"""Benchmark: users and permissions added to the topology benchmark (issue 12, "Speed").

The topology of ``topology_bench.py`` (2,000 queues, 400 exchanges, 2,000 bindings) plus 500
users (each password from its own environment variable) with 500 permissions on the vhost:

* a no-op ``declare-amqp plan --detailed-exitcode`` (process start included) against the
  target: at most 3x the broker's own re-import of the same definitions (``POST
  /api/definitions`` with the users, permissions and topology);
* a cold ``declare-amqp apply`` reported beside the cold ``POST /api/definitions`` (waiting
  until every queue exists);
* the password check alone: re-hashing 500 passwords with their stored salts.

Everything runs in fresh vhosts and with users named ``bench-u-<run>-NNN``, deleted after.
``python bench/access_bench.py [--users 500] [--queues 2000] [--rounds 3]``; results are
printed and written to ``bench/results/access.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common as common  # type: ignore[import-not-found]
from topology_bench import Topology, count_objects  # type: ignore[import-not-found]

from declare_amqp.kinds.user import password_matches, rabbit_hash

PLAN_TARGET = 3.0


def _users(run: str, count: int) -> list[tuple[str, str]]:
    return [
        (f"bench-u-{run}-{i:03d}", f"pw-{run}-{i:03d}-{uuid.uuid4().hex[:8]}") for i in range(count)
    ]


def _yaml(topo: Topology, vhost: str, users: list[tuple[str, str]]) -> dict[str, object]:
    doc = topo.yaml_document(vhost)
    doc["users"] = [
        {"name": name, "tags": [], "password_env": f"BENCH_PW_{i}"}
        for i, (name, _) in enumerate(users)
    ]
    doc["permissions"] = [
        {"user": name, "configure": "^bq\\.", "write": ".*", "read": ".*"} for name, _ in users
    ]
    return doc


def _definitions(topo: Topology, vhost: str, users: list[tuple[str, str]]) -> dict[str, object]:
    salt = b"\x00\x01\x02\x03"
    doc = topo.definitions(vhost)
    doc["users"] = [
        {
            "name": name,
            "password_hash": rabbit_hash(pw, salt),
            "tags": "",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
        }
        for name, pw in users
    ]
    doc["permissions"] = [
        {"user": name, "vhost": vhost, "configure": "^bq\\.", "write": ".*", "read": ".*"}
        for name, _ in users
    ]
    return doc


def _tool(args: list[str], env: dict[str, str], ok: tuple[int, ...]) -> float:
    exe = Path(sys.executable).parent / "declare-amqp"
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in ok:
        raise common.HarnessError(
            f"declare-amqp {args[0]} exited {proc.returncode}: "
            f"{proc.stderr[-800:]}{proc.stdout[-800:]}"
        )
    return elapsed


def _post(mgmt: common.Management, body: bytes) -> float:
    t0 = time.perf_counter()
    r = mgmt.http.post("/definitions", content=body, headers={"content-type": "application/json"})
    elapsed = time.perf_counter() - t0
    mgmt._check(r)
    return elapsed


def _wait_full(mgmt: common.Management, vhost: str, topo: Topology, started: float) -> float:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if count_objects(mgmt.definitions(vhost)) == topo.counts:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise common.HarnessError("POST /api/definitions did not complete")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_broker_arguments(parser)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--queues", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    broker = common.broker_from(args)
    mgmt = common.Management(broker)
    topo = Topology(queues=args.queues, exchanges=max(1, args.queues // 10))
    rows = []
    noop, repost, cold, cold_peer, hashing, repost_topo = [], [], [], [], [], []
    for _ in range(args.rounds):
        run = uuid.uuid4().hex[:6]
        users, peer_users = _users(run, args.users), _users(run + "p", args.users)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AMQP_", "RABBITMQ_"))}
        env.update({f"BENCH_PW_{i}": pw for i, (_, pw) in enumerate(users)})
        env.update(AMQP_USER=broker.user, AMQP_PASS=broker.password, NO_COLOR="1")
        try:
            with (
                common.scratch_vhost(mgmt, "acc") as vhost,
                common.scratch_vhost(mgmt, "accp") as peer,
                tempfile.TemporaryDirectory() as tmp,
            ):
                path = Path(tmp) / "t.yml"
                path.write_text(yaml.safe_dump(_yaml(topo, vhost, users), sort_keys=False))
                target = [
                    "--url",
                    broker.amqp_url(vhost),
                    "--management-url",
                    broker.management_url,
                ]
                cold.append(_tool(["apply", str(path), *target], env, (0,)))
                noop.append(_tool(["plan", str(path), "--detailed-exitcode", *target], env, (0,)))
                body = json.dumps(_definitions(topo, peer, peer_users)).encode()
                t0 = time.perf_counter()
                _post(mgmt, body)
                cold_peer.append(_wait_full(mgmt, peer, topo, t0))
                repost.append(_post(mgmt, body))
                topo_only = json.dumps(topo.definitions(peer)).encode()
                t0 = time.perf_counter()
                mgmt.post_definitions(peer, topo_only)
                repost_topo.append(time.perf_counter() - t0)
                stored = {u["name"]: u for u in mgmt.http.get("/users").json()}
                t0 = time.perf_counter()
                matched = sum(
                    password_matches(
                        pw, stored[name]["password_hash"], stored[name]["hashing_algorithm"]
                    )
                    for name, pw in users
                )
                hashing.append(time.perf_counter() - t0)
                if matched != len(users):
                    raise common.HarnessError(f"only {matched} passwords match")
        finally:
            for name, _ in users + peer_users:
                mgmt.http.delete(f"/users/{name}")
    ratio = common.median(noop) / common.median(repost)
    rows = [
        ["no-op declare-amqp plan", f"{common.median(noop):.2f}", ""],
        ["re-POST /api/definitions (broker's own no-op)", f"{common.median(repost):.2f}", ""],
        [
            "no-op plan / re-POST",
            f"{ratio:.1f}x",
            f"<= {PLAN_TARGET}x: " + common.verdict(ratio <= PLAN_TARGET),
        ],
        [
            "re-POST /api/definitions/{vhost} of the topology alone (no users)",
            f"{common.median(repost_topo):.2f}",
            "",
        ],
        [
            "no-op plan / that",
            f"{common.median(noop) / common.median(repost_topo):.1f}x",
            "(for comparison)",
        ],
        ["cold declare-amqp apply", f"{common.median(cold):.2f}", ""],
        ["cold POST /api/definitions (until complete)", f"{common.median(cold_peer):.2f}", ""],
        [f"re-hash {args.users} passwords with their salts", f"{common.median(hashing):.4f}", ""],
    ]
    text = (
        f"# Access benchmark: {args.queues} queues + {args.users} users and permissions\n\n"
        f"median of {args.rounds} rounds, seconds; load {common.load_average()}\n\n"
        + common.markdown_table(["what", "seconds", "target"], rows)
        + "\n"
    )
    print(text)
    common.write_result("access", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
