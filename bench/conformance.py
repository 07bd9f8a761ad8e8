"""Real definitions files through declare-amqp and through the broker's own import, compared.

    python bench/conformance.py DIR [--url amqp://guest:guest@127.0.0.1:5672/]
        [--management-url http://127.0.0.1:15672] [--prefix conformance-] [--out FILE.md]

For every file under DIR (``*.json`` as RabbitMQ definitions; ``*.yml`` as the original
declare-amqp's format, applied with ``--config`` as that tool was; identical files once):

1. the file is rewritten for scratch space: every vhost it names (``/`` too) and every user
   gets a name under ``--prefix``, twice (side A for the tool, side B for the broker), and its
   global parameters are left out, so the broker's ``/``, ``guest`` and cluster settings are
   never touched;
2. side A: ``declare-amqp validate``, ``plan``, ``apply``, ``plan --detailed-exitcode`` (did it
   converge?), ``export --format definitions`` and a plan of that export (does it load back as
   no change?), in-process through the command line's own ``main``;
3. side B: ``POST /api/definitions`` (``/api/definitions/{vhost}`` for the single-vhost shape),
   the broker's import;
4. both sides are read back (exchanges, queues, bindings, policies of each vhost; the users'
   tags and permissions) and compared with the scratch names mapped back.

It prints one Markdown row per file (``--out`` also writes the table) and deletes every scratch
vhost and user it made. It needs an administrator (users are created on both sides).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from declare_amqp._cli import main as declare_main

_SCOPED = ("exchanges", "queues", "bindings", "policies", "parameters")


@dataclass
class Outcome:
    """One file's row."""

    name: str
    tool: dict[str, int] = field(default_factory=dict)  # step -> exit code
    broker: str = ""
    same: str = ""
    detail: str = ""
    first_error: str = ""


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


class Renamer:
    """Scratch names for a file's vhosts and users, one set per side."""

    def __init__(self, prefix: str, index: int, side: str) -> None:
        self.stem = f"{prefix}{index}{side}"
        self.vhosts: dict[str, str] = {}
        self.users: dict[str, str] = {}

    def vhost(self, name: str) -> str:
        return self.vhosts.setdefault(name, f"{self.stem}-v{len(self.vhosts)}")

    def user(self, name: str) -> str:
        return self.users.setdefault(name, f"{self.stem}-u{len(self.users)}")

    def document(self, doc: dict[str, Any], single: str | None) -> dict[str, Any]:
        """``doc`` with its vhosts and users renamed and its global parameters left out."""
        out = {k: v for k, v in doc.items() if k != "global_parameters"}
        if isinstance(out.get("vhosts"), list):
            out["vhosts"] = [
                {**v, "name": self.vhost(v["name"])} if isinstance(v, dict) else v
                for v in out["vhosts"]
            ]
        for kind in (*_SCOPED, "permissions", "topic_permissions"):
            items = out.get(kind)
            if not isinstance(items, list):
                continue
            renamed = []
            for item in items:
                if isinstance(item, dict):
                    item = dict(item)
                    if "vhost" in item and isinstance(item["vhost"], str):
                        item["vhost"] = single or self.vhost(item["vhost"])
                    if "user" in item and isinstance(item["user"], str):
                        item["user"] = self.user(item["user"])
                renamed.append(item)
            out[kind] = renamed
        if isinstance(out.get("users"), list):
            out["users"] = [
                {**u, "name": self.user(u["name"])} if isinstance(u, dict) and "name" in u else u
                for u in out["users"]
            ]
        return out


def _normalised(definitions: dict[str, Any]) -> dict[str, Any]:
    """A vhost's objects, comparable across vhosts: sorted, without the vhost field."""

    def clean(items: list[dict[str, Any]]) -> list[str]:
        return sorted(
            json.dumps({k: v for k, v in i.items() if k != "vhost"}, sort_keys=True) for i in items
        )

    return {
        k: clean(definitions.get(k, [])) for k in ("exchanges", "queues", "bindings", "policies")
    }


class Conformance:
    """Runs the files; holds the broker's address."""

    def __init__(self, url: str, management_url: str, prefix: str) -> None:
        self.url = url
        self.management_url = management_url.rstrip("/")
        self.prefix = prefix
        parts = urllib.parse.urlsplit(url)
        self.http = httpx.Client(
            base_url=self.management_url,
            auth=(
                urllib.parse.unquote(parts.username or "guest"),
                urllib.parse.unquote(parts.password or "guest"),
            ),
            timeout=120,
        )

    def amqp_url(self, vhost: str) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + _quote(vhost)))

    def run_tool(self, argv: list[str]) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = declare_main(argv)
            except SystemExit as exc:  # argparse
                code = int(exc.code or 0)
        return code, out.getvalue() + err.getvalue()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[None]:
        try:
            yield
        finally:
            for v in self.http.get("/api/vhosts", params={"columns": "name"}).json():
                if v["name"].startswith(self.prefix):
                    self.http.delete(f"/api/vhosts/{_quote(v['name'])}")
            for u in self.http.get("/api/users", params={"columns": "name"}).json():
                if u["name"].startswith(self.prefix):
                    self.http.delete(f"/api/users/{_quote(u['name'])}")

    def one(self, index: int, path: Path, root: Path) -> Outcome:
        row = Outcome(str(path.relative_to(root)))
        text = path.read_text("utf-8", errors="replace")
        original = path.suffix in (".yml", ".yaml")
        try:
            doc = None if original else json.loads(text)
        except ValueError as exc:
            doc, row.detail = None, f"not JSON: {exc.msg} (line {exc.lineno})"
        single = isinstance(doc, dict) and "vhosts" not in doc
        a, b = Renamer(self.prefix, index, "a"), Renamer(self.prefix, index, "b")
        with tempfile.TemporaryDirectory() as tmp, self.scratch():
            work = Path(tmp)
            if original or doc is None or not isinstance(doc, dict):
                file_a = work / path.name
                file_a.write_text(text)
                target_vhosts = [a.vhost("/")]
            else:
                file_a = work / "a.json"
                file_a.write_text(json.dumps(a.document(doc, a.vhost("/") if single else None)))
                target_vhosts = list(a.vhosts.values()) or [a.vhost("/")]
            if single or original or doc is None:
                for v in (a.vhost("/"), b.vhost("/")):
                    self.http.put(f"/api/vhosts/{_quote(v)}", json={}).raise_for_status()
            connect = [
                "--url",
                self.amqp_url(a.vhost("/")),
                "--management-url",
                self.management_url,
                "--no-color",
            ]
            files = ["--config", str(file_a)] if original else [str(file_a)]
            steps: list[tuple[str, list[str]]] = [
                ("validate", ["validate", *files]),
                ("plan", [*connect, "plan", *files]),
                ("apply", [*connect, "apply", *files]),
                ("replan", [*connect, "plan", "--detailed-exitcode", *files]),
            ]
            for step, argv in steps:
                code, output = self.run_tool(argv)
                row.tool[step] = code
                if code not in (0,) and not row.first_error:
                    row.first_error = _first_error(output)
                if step in ("validate", "apply") and code != 0:
                    break
            if row.tool.get("replan") == 0:
                exported = work / "export.json"
                vhost_args = [a for v in target_vhosts for a in ("--vhost", v)]
                code, _ = self.run_tool(
                    [
                        *connect,
                        "export",
                        *vhost_args,
                        "--format",
                        "definitions",
                        "-o",
                        str(exported),
                    ]
                )
                code2 = 1
                if code == 0:
                    # one vhost exports in the single-vhost shape: it goes where --vhost says
                    into = ["--vhost", target_vhosts[0]] if len(target_vhosts) == 1 else []
                    code2, output = self.run_tool(
                        [*connect, "plan", "--detailed-exitcode", *into, str(exported)]
                    )
                    if code2 != 0 and not row.first_error:
                        row.first_error = _first_error(output)
                row.tool["export-replan"] = code2
            if original:
                row.broker, row.same = "n/a (not its format)", "n/a"
                return row
            body = (
                text
                if doc is None
                else json.dumps(
                    b.document(doc, b.vhost("/") if single else None)
                    if isinstance(doc, dict)
                    else doc
                )
            )
            where = f"/api/definitions/{_quote(b.vhost('/'))}" if single else "/api/definitions"
            response = self.http.post(
                where, content=body, headers={"content-type": "application/json"}
            )
            row.broker = str(response.status_code)
            if response.status_code >= 400:
                reason = (
                    response.json().get("reason", "")
                    if "json" in response.headers.get("content-type", "")
                    else response.text
                )
                row.broker += " " + " ".join(str(reason).split())[:90]
            time.sleep(0.5)  # the import answers before it has finished (README: facts)
            row.same, row.detail = self.compare(a, b, single)
        return row

    def compare(self, a: Renamer, b: Renamer, single: bool) -> tuple[str, str]:
        differences: list[str] = []
        for original, va in a.vhosts.items():
            vb = b.vhosts.get(original)
            if vb is None:
                continue
            da = self.http.get(f"/api/definitions/{_quote(va)}")
            db = self.http.get(f"/api/definitions/{_quote(vb)}")
            if (da.status_code == 200) != (db.status_code == 200):
                who = "only the tool" if da.status_code == 200 else "only the broker"
                differences.append(f"vhost {original}: {who} made it")
                continue
            if da.status_code != 200:
                continue
            na, nb = _normalised(da.json()), _normalised(db.json())
            for kind in na:
                if na[kind] != nb[kind]:
                    only_a = len(set(na[kind]) - set(nb[kind]))
                    only_b = len(set(nb[kind]) - set(na[kind]))
                    differences.append(
                        f"{kind} in {original}: {only_a} tool-only, {only_b} broker-only"
                    )
        for original, ua in a.users.items():
            ub = b.users.get(original)
            ra = self.http.get(f"/api/users/{_quote(ua)}")
            rb = self.http.get(f"/api/users/{_quote(ub)}") if ub else None
            if rb is None or (ra.status_code == 200) != (rb.status_code == 200):
                differences.append(f"user {original}: made on one side only")
            elif ra.status_code == 200:
                ta, tb = ra.json().get("tags"), rb.json().get("tags")
                if sorted(_tags(ta)) != sorted(_tags(tb)):
                    differences.append(f"user {original}: tags {ta!r} vs {tb!r}")
        return ("yes" if not differences else "no"), "; ".join(differences)


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t for t in value.split(",") if t]
    return list(value or [])


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("error:", "  ")) and ("problem" not in line or line.startswith("  ")):
            if line.startswith("error:") and "problem" in line:
                continue
            return line.strip()[:140]
    return output.strip().splitlines()[-1][:140] if output.strip() else ""


def files_of(root: Path) -> list[Path]:
    """Every definitions or original-format file under ``root``, identical ones once."""
    seen: set[str] = set()
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".json", ".yml", ".yaml") or not path.is_file():
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            found.append(path)
    return found


def table(rows: list[Outcome]) -> str:
    steps = ("validate", "plan", "apply", "replan", "export-replan")
    head = "| file | " + " | ".join(steps) + " | broker import | same broker state | detail |"
    lines = [head, "|" + " --- |" * (len(steps) + 4)]
    for r in rows:
        cells = [str(r.tool.get(s, "-")) for s in steps]
        detail = " ".join((r.detail or r.first_error).split())
        lines.append(
            f"| {r.name} | "
            + " | ".join(cells)
            + f" | {r.broker} | {r.same} | {detail.replace('|', '/')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run DIR and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--management-url", default="http://127.0.0.1:15672")
    parser.add_argument("--prefix", default="conformance-")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", help="run only files whose path contains this")
    args = parser.parse_args(argv)
    runner = Conformance(args.url, args.management_url, args.prefix)
    rows = []
    for index, path in enumerate(files_of(args.dir)):
        if args.only and args.only not in str(path):
            continue
        row = runner.one(index, path, args.dir)
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    text = table(rows)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
