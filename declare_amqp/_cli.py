"""``declare-amqp``: a thin command line over the library.

It catches only declare_amqp's own errors and turns them into a one-paragraph message and
an exit code; every other exception is a bug and says so (with a traceback only when
``DECLARE_AMQP_DEBUG`` is set).

Exit codes: 0 success / nothing to do; 1 error, invalid input or conflict; 2 (``plan
--detailed-exitcode``) changes are pending.
"""

from __future__ import annotations

import sys

# httpx's package imports its own command line eagerly (click, rich's syntax highlighting,
# pygments), 40-50 ms of every start of ours, which never runs it. Marked absent before
# httpx is first imported (through ._api), httpx defines a stub ``httpx.main`` instead.
# Only the command line does this: the library leaves the importing process's modules alone.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import argparse
import dataclasses
import json
import os
import traceback
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from . import __version__
from . import _saved_plan as saved_plan
from ._access import Access, read_broker_access, read_for_export
from ._address import DEFAULT_CHANNELS, BrokerAddress, resolve_address
from ._api import ApplyResult, Session, load
from ._definitions import to_definitions_json
from ._errors import DeclareAmqpError, PlanConflictError, Problem, TopologyError
from ._export import to_yaml
from ._files import DEFAULT_MAX_FILE_SIZE, parse_size, write_private
from ._fit import fit_warnings
from ._graph import graph
from ._inspect import (
    explain_or_error,
    explain_text,
    messages_from_args,
    read_messages,
    route_line,
    route_text,
    route_vhost,
)
from ._migration import comparable, migration_line
from ._model import Topology, VhostSpec
from ._plan import Plan
from ._render import plan_json, print_plan, summary_line
from ._schema import json_schema
from ._simulate import Simulator, check_expectations, simulator_for
from ._validate import check_broker_version, check_references
from ._versions import parse_version
from ._warnings import reference_warnings, sort_problems, strict
from .tls import TlsOptions, add_tls_arguments
from .urls import redact

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2

_EPILOG = """\
Connection: --url or AMQP_URL (amqp:// or amqps://; repeat or comma-separate for a
cluster), --management-url or RABBITMQ_MANAGEMENT_URL (default http://HOST:15672).
Credentials: from the URL, else AMQP_USER / AMQP_PASS, else guest/guest.
The original tool's AMQP_HOST and AMQP_VHOST are honoured too.
"""


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """The options every command takes. They are accepted before the command
    (``declare-amqp --url U plan F``) and after it (``declare-amqp plan --url U F``): the
    subcommands' copies default to SUPPRESS, so a value given before the command is not
    overwritten by the subcommand's default (argparse copies every subparser default over)."""
    common = argparse.ArgumentParser(
        add_help=False, argument_default=None if top else argparse.SUPPRESS
    )
    empty: dict[str, Any] = {"default": []} if top else {}
    common.add_argument(
        "--url",
        action="append",
        metavar="URL",
        help="AMQP URL of a broker node (repeatable for a cluster)",
        **empty,
    )
    common.add_argument(
        "--management-url",
        action="append",
        metavar="URL",
        help="management API URL (default derived from --url)",
        **empty,
    )
    common.add_argument("--no-color", action="store_true", help="never use colour")
    add_tls_arguments(common)
    return common


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    common = _common_options(top=False)

    files = argparse.ArgumentParser(add_help=False)
    files.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="topology files: YAML, or RabbitMQ definitions (*.json)",
    )
    # --config and --strict also exist before the command (the original tool's invocation),
    # so here they default to SUPPRESS and a value given there is kept
    files.add_argument(
        "--config",
        action="append",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="a topology file (the original tool's option; same as FILE)",
    )
    files.add_argument("--vhost", metavar="V", help="put objects that do not name a vhost into V")
    files.add_argument(
        "--max-file-size",
        type=_size,
        default=argparse.SUPPRESS,
        metavar="SIZE",
        help="refuse files larger than SIZE (bytes, or with K, M, G; default 64M)",
    )
    files.add_argument(
        "--strict",
        action="store_true",
        default=argparse.SUPPRESS,
        help="every warning is an error (exit 1, nothing written)",
    )

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text for people (default), json for tools",
    )
    output.add_argument(
        "--prune",
        action="store_true",
        help="also delete what the files no longer declare (in their vhosts)",
    )
    output.add_argument(
        "--force",
        action="store_true",
        help="with --prune: delete queues even with messages or consumers",
    )

    parser = argparse.ArgumentParser(
        prog="declare-amqp",
        description="Declarative RabbitMQ topology: validate, plan and apply YAML files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"declare-amqp {__version__}")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="apply FILE (the original declare-amqp's invocation)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="with --config: every warning is an error"
    )
    parser.add_argument(
        "--max-file-size",
        type=_size,
        default=DEFAULT_MAX_FILE_SIZE,
        metavar="SIZE",
        help="with --config: refuse files larger than SIZE (default 64M)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = argparse.ArgumentParser(add_help=False)
    version.add_argument(
        "--broker-version",
        metavar="X.Y",
        help="check against this RabbitMQ version (default: the broker's, when one is read)",
    )

    sub.add_parser(
        "validate",
        parents=[common, files, version],
        help="check files without a broker (exit 0 valid, 1 not)",
    )
    p = sub.add_parser(
        "plan", parents=[common, files, output, version], help="show what apply would do"
    )
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 nothing to do, 2 changes pending, 1 error or conflict",
    )
    p.add_argument("--migrate", action="store_true", help=_MIGRATE_HELP)
    p.add_argument(
        "--out",
        metavar="PLAN",
        help="also save the plan, the files' digest and the broker's fingerprint "
        "to PLAN, for `apply PLAN`",
    )
    a = sub.add_parser(
        "apply", parents=[common, files, output], help="make the broker match the files"
    )
    a.add_argument("--migrate", action="store_true", help=_MIGRATE_HELP)
    a.add_argument(
        "--mover",
        choices=("amqp", "shovel"),
        default="amqp",
        help="what moves a migrating queue's messages: amqp (the tool's own confirmed consumer "
        "and publisher, any broker; default) or shovel (the broker's dynamic shovels; needs "
        "the rabbitmq_shovel plugin)",
    )
    a.add_argument(
        "--amqp-only",
        action="store_true",
        help="without the management API: declares after a passive check",
    )
    a.add_argument(
        "--channels",
        type=int,
        default=DEFAULT_CHANNELS,
        metavar="N",
        help=f"AMQP channels used in parallel (default {DEFAULT_CHANNELS})",
    )
    e = sub.add_parser("export", parents=[common], help="write the live topology as YAML")
    e.add_argument(
        "--vhost",
        action="append",
        default=[],
        metavar="V",
        help="vhost to export (repeatable; default: all)",
    )
    e.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    e.add_argument(
        "--format",
        choices=("yaml", "definitions"),
        default="yaml",
        help="yaml (this tool's format, default) or definitions (RabbitMQ's JSON)",
    )
    sub.add_parser("schema", help="print the JSON Schema of the file format")
    c = sub.add_parser(
        "convert",
        help="rewrite topology files for quorum queues, listing every change and its reason",
    )
    c.add_argument("--to", choices=("quorum",), required=True, help="the queue type to convert to")
    c.add_argument("files", nargs="+", metavar="FILE", help="topology files")
    c.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write there (a directory when several files are given); default stdout",
    )
    c.add_argument(
        "--target-version",
        default="",
        metavar="X.Y",
        help="the RabbitMQ version the files are for (reasons that differ by version)",
    )
    _inspect_parsers(sub, common, files, version)
    return parser


def _inspect_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    files: argparse.ArgumentParser,
    version: argparse.ArgumentParser,
) -> None:
    """route, explain and graph: questions answered by _simulate, from files or the broker."""
    text_or_json = argparse.ArgumentParser(add_help=False)
    text_or_json.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    r = sub.add_parser(
        "route",
        parents=[common, files, version, text_or_json],
        help="where a message goes (from the files, or without files from the broker)",
    )
    r.add_argument("--exchange", metavar="E", help="exchange published to ('' the default)")
    r.add_argument("--routing-key", default="", metavar="K", help="routing key")
    r.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header; VALUE is JSON when it parses (size=1 is a number), else a string",
    )
    r.add_argument(
        "--messages",
        metavar="FILE",
        help='many messages: JSON lines {"exchange", "routing_key", "headers"}, '
        "one result per line",
    )
    x = sub.add_parser(
        "explain",
        parents=[common, version, text_or_json],
        help="which policies apply to a queue or exchange, and its effective settings",
    )
    x.add_argument("kind", choices=("queue", "exchange"), help="queue or exchange")
    x.add_argument("name", help="its name")
    x.add_argument("files", nargs="*", metavar="FILE", help="topology files (default: the broker)")
    x.add_argument("--vhost", metavar="V", help="the vhost (and of objects naming none)")
    g = sub.add_parser(
        "graph", parents=[common, files], help="the topology as a Mermaid or Graphviz picture"
    )
    g.add_argument(
        "--format", choices=("mermaid", "dot"), default="mermaid", help="mermaid (default) or dot"
    )
    g.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")


_MIGRATE_HELP = (
    "re-create queues whose type, durability or arguments changed, with their messages and "
    "bindings (see README: Migrating queues)"
)


class _Cli:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        no_color = getattr(args, "no_color", False) or bool(os.environ.get("NO_COLOR"))
        self.out = Console(no_color=no_color, highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, no_color=no_color, highlight=False, soft_wrap=True)
        self._address: BrokerAddress | None = None

    @property
    def address(self) -> BrokerAddress:
        if self._address is None:
            tls = TlsOptions.resolve(
                self.args.tls_ca_file,
                self.args.tls_cert_file,
                self.args.tls_key_file,
                self.args.auth_mechanism,
            )
            self._address = resolve_address(
                self.args.url, self.args.management_url, tls_options=tls
            )
        return self._address

    def files(self) -> list[str]:
        paths = list(self.args.files) + list(self.args.config)
        if not paths:
            raise DeclareAmqpError("no topology file given (declare-amqp COMMAND FILE...)")
        return paths

    def default_vhost(self) -> str:
        if self.address.url_vhost is not None:
            return self.address.url_vhost
        return os.environ.get("AMQP_VHOST") or "/"

    def load(self) -> Topology:
        return load(
            self.files(),
            vhost=self.args.vhost,
            default_vhost=self.default_vhost(),
            max_file_size=self.args.max_file_size,
            original_format=getattr(self.args, "original_format", False),
        )

    def validate(self) -> int:
        topology = self.load()
        sim = simulator_for(topology, self.version())
        failed, unchecked = check_expectations(sim, topology.expectations, offline=True)
        version_warnings: list[Problem] = []
        given = self._given_version()
        if given:
            refused, version_warnings = check_broker_version(topology, given)
            failed += refused
        if failed:
            raise TopologyError(sort_problems(failed))
        self.out.print(
            f"[green]valid[/]: {len(self.files())} file(s), {len(topology.vhost_names())} "
            f"vhost(s), {len(topology.exchanges)} exchanges, {len(topology.queues)} queues, "
            f"{len(topology.bindings)} bindings, {len(topology.policies)} policies, "
            f"{len(topology.consumers)} consumers ({sum(1 for q in topology.queues if q.origin)} "
            "queues derived from them)"
        )
        # Without a broker, references outside the files can only be listed, not checked.
        known = Topology(vhosts=tuple(VhostSpec(v) for v in topology.vhost_names()))
        for problem in check_references(topology, known, broker_read=False):
            self.out.print(f"[yellow]note:[/] {escape(str(problem))}")
        for problem in reference_warnings(topology, known, broker_read=False):
            self.out.print(f"[yellow]note:[/] {escape(str(problem))}")
        for problem in unchecked:
            self.out.print(f"[yellow]note:[/] {escape(str(problem))}")
        if topology.expectations:
            held = len(topology.expectations) - len(unchecked)
            self.out.print(f"expect: {held} of {len(topology.expectations)} expectations hold")
        warnings = sort_problems([*topology.warnings, *fit_warnings(topology), *version_warnings])
        if self.args.strict:
            strict(warnings)
        for problem in warnings:  # on stderr also with --format (it names no secret)
            self.err.print(f"[yellow]warning:[/] {escape(str(problem))}")
        return EXIT_OK

    def strict(self, plan: Plan) -> None:
        """``--strict``: the plan's warnings are errors (exit 1, nothing written)."""
        if self.args.strict:
            strict(plan.warnings)

    def warn(self, warnings: Sequence[Problem]) -> None:
        """Warnings on stderr (text output; JSON carries them in ``warnings``)."""
        if getattr(self.args, "format", "text") != "text":
            return
        for problem in warnings:
            self.err.print(f"[yellow]warning:[/] {escape(str(problem))}")

    def guessed_vhosts(self) -> list[str]:
        """The vhost the files most likely use, to read it while they are parsed."""
        return [self.args.vhost or self.default_vhost()]

    def load_and_plan(self, session: Session) -> tuple[Topology, Plan]:
        """Parse the files while the likely vhost is read, then plan against the broker."""
        session.prefetch(self.guessed_vhosts(), with_stats=self.args.prune)
        desired = self.load()
        the_plan = session.plan(
            desired,
            prune=self.args.prune,
            force=self.args.force,
            broker_version=self._given_version(),
            migrate=getattr(self.args, "migrate", False),
        )
        if self.args.format == "text":
            for warning in the_plan.warnings:
                self.err.print(f"[yellow]warning:[/] {escape(str(warning))}")
        return desired, the_plan

    def plan(self) -> int:
        with Session(self.address) as session:
            _, plan = self.load_and_plan(session)
            self.strict(plan)
            extra = None
            if self.args.out:
                self._save(session, plan)
                extra = {"saved": self.args.out}
            self._show(plan, session, extra)
            if self.args.out and self.args.format == "text":
                self.err.print(
                    f"saved the plan to {escape(self.args.out)}; apply it with "
                    f"`declare-amqp apply {escape(self.args.out)}`"
                )
        if plan.conflicts or plan.refused:
            if plan.conflicts and self.args.format == "text":
                self.err.print(
                    "[bold red]error:[/] the plan has conflicts; apply would "
                    "change nothing until they are resolved"
                )
            return EXIT_ERROR
        if self.args.detailed_exitcode and not plan.is_empty:
            return EXIT_CHANGES
        return EXIT_OK

    def _show(self, plan: Any, session: Session, extra: dict[str, Any] | None = None) -> None:
        if self.args.format == "json":
            print(plan_json(plan, extra))
        else:
            print_plan(self.out, plan, session.describe_target())

    def _save(self, session: Session, plan: Plan) -> None:
        state = session.last_state
        assert state is not None
        objects = saved_plan.state_objects(state.topology)
        node = session.management.node
        saved = saved_plan.SavedPlan(
            files=saved_plan.file_digests(self.files()),
            options={
                "vhost": self.args.vhost,
                "default_vhost": self.default_vhost(),
                "prune": self.args.prune,
                "force": self.args.force,
                "strict": self.args.strict,
                "migrate": getattr(self.args, "migrate", False),
            },
            target=node.amqp_display if node else str(self.address),
            version=state.version,
            fingerprint=saved_plan.fingerprint(objects),
            objects=objects,
            plan=plan.to_dict(),
            tool=f"declare-amqp {__version__}",
        )
        saved_plan.write(self.args.out, saved, self.address.redact)

    def saved(self) -> str | None:
        """The saved plan ``apply`` was given instead of topology files, if it was."""
        paths: list[str] = list(self.args.files) + list(self.args.config)
        if len(paths) == 1 and saved_plan.is_saved_plan(paths[0]):
            return paths[0]
        if len(paths) > 1 and any(saved_plan.is_saved_plan(p) for p in paths):
            raise DeclareAmqpError(
                "apply takes either one saved plan or topology files, not both; nothing was changed"
            )
        return None

    def _apply_saved(self, path: str) -> int:
        """``apply PLAN``: exactly that plan, or nothing when files or broker changed."""
        saved = saved_plan.read(path)
        options = saved.options
        self.args.files, self.args.config = [p for p, _ in saved.files], []
        self.args.vhost, self.args.prune = options.get("vhost"), bool(options.get("prune"))
        self.args.force = bool(options.get("force"))
        self.args.strict = self.args.strict or bool(options.get("strict"))
        self.args.migrate = bool(options.get("migrate"))
        saved_plan.check_files(saved, path)
        with Session(self.address) as session:
            desired = load(
                self.files(),
                vhost=self.args.vhost,
                default_vhost=options.get("default_vhost") or "/",
                max_file_size=self.args.max_file_size,
            )
            plan = session.plan(
                desired,
                prune=self.args.prune,
                force=self.args.force,
                migrate=getattr(self.args, "migrate", False),
            )
            assert session.last_state is not None
            saved_plan.check_broker(
                saved, path, saved_plan.state_objects(session.last_state.topology)
            )
            if comparable(plan.to_dict()) != comparable(dict(saved.plan)):
                raise saved_plan.SavedPlanRefused(
                    f"{path}: the plan computed now from the same files and broker state "
                    "differs from the saved one (queue message or consumer counts a prune "
                    f"depends on, or the plan was made by {saved.tool or 'another version'}); "
                    "nothing was changed. Make the plan again."
                )
            self.warn(plan.warnings)
            self.strict(plan)
            return self._apply_planned(session, desired, plan)

    def apply(self) -> int:
        path = self.saved()
        if path is not None:
            return self._apply_saved(path)
        if self.args.amqp_only:
            return self._apply_amqp_only(self.load())
        with Session(self.address) as session:
            desired, plan = self.load_and_plan(session)
            self.strict(plan)
            return self._apply_planned(session, desired, plan)

    def _apply_planned(self, session: Session, desired: Topology, plan: Plan) -> int:
        if plan.conflicts:
            self._show(plan, session, {"applied": False})
            raise PlanConflictError(plan.conflicts)
        if self.args.format == "text":
            print_plan(self.out, plan, session.describe_target())
        result = session.apply(
            desired,
            plan,
            force=self.args.force,
            channels=self.args.channels,
            progress_console=self.out if self.out.is_terminal else None,
            mover=getattr(self.args, "mover", "amqp"),
        )
        if self.args.format == "json":
            print(plan_json(plan, {"applied": True, **result.to_dict()}))
        else:
            self._report(plan, result)
        return EXIT_OK if result.ok else EXIT_ERROR

    def _report(self, plan: Plan, result: ApplyResult) -> None:
        if plan.is_empty:
            return
        for failure in result.failures:
            self.err.print(f"[bold red]error:[/] {failure}")
        for change in plan.refused:
            self.err.print(f"[magenta]refused:[/] {change.spec.label}: {change.message}")
        for m in result.migrations:
            self.out.print(escape(migration_line(m)))
        if result.rollback is not None:
            # the broker refused a write: what this run wrote was undone (or is listed)
            style = "green" if result.rollback.complete else "bold red"
            self.err.print(f"[{style}]{escape(result.rollback.summary())}[/]")
            return
        if result.ok:
            self.out.print(
                f"[green]Applied[/] in {result.seconds:.2f} s: "
                f"{summary_line(plan)}. The broker matches the topology."
            )
        elif not result.matches:
            self.err.print(
                "[bold red]error:[/] after the apply the broker still differs: "
                f"{summary_line(result.remaining)}"
            )

    def _apply_amqp_only(self, desired: Topology) -> int:
        from ._apply import amqp_only_apply  # pika only when writing

        if self.args.prune:
            raise DeclareAmqpError(
                "--prune needs the management API (AMQP cannot list what exists); nothing "
                "was changed"
            )
        if desired.policies or desired.vhosts or (desired.access and desired.access.size):
            raise DeclareAmqpError(
                "--amqp-only cannot create vhosts, policies, users, permissions, limits, "
                "upstreams or shovels (AMQP has no way to); remove them from the files or "
                "enable the management plugin"
            )
        # What the files alone show (AMQP cannot tell which exchanges exist to warn about).
        warnings = sort_problems([*desired.warnings, *fit_warnings(desired)])
        if self.args.strict:
            strict(warnings)
        for problem in warnings:  # on stderr also with --format (it names no secret)
            self.err.print(f"[yellow]warning:[/] {escape(str(problem))}")
        self.err.print(
            "[yellow]warning:[/] AMQP-only mode: arguments that RabbitMQ does not compare on "
            "redeclare are not checked, and existing bindings and policies are not read"
        )
        plan, report = amqp_only_apply(self.address, desired, channels=self.args.channels)
        if plan.conflicts:
            if self.args.format == "json":
                print(plan_json(plan, {"applied": False}))
            else:
                print_plan(self.out, plan, str(self.address))
            raise PlanConflictError(plan.conflicts)
        if self.args.format == "json":
            print(plan_json(plan, {"applied": True, "written": len(report.written)}))
        else:
            print_plan(self.out, plan, f"{self.address} (AMQP only)")
            count = len(report.written)
            self.out.print(
                f"[green]Applied[/] {count} declaration{'s' if count != 1 else ''} over AMQP."
            )
        return EXIT_OK

    def export(self) -> int:
        with Session(self.address) as session:
            vhosts = list(self.args.vhost) or session.management.vhosts()
            topology = session.read(vhosts).topology
            version = session.management.version
            access, warnings = read_for_export(session.management, vhosts)
            if access is not None:
                topology = dataclasses.replace(topology, access=access)
        for problem in warnings:  # on stderr also with --format (it names no secret)
            self.err.print(f"[yellow]warning:[/] {escape(str(problem))}")
        if self.args.format == "definitions":
            text = to_definitions_json(topology, vhosts, version)
        else:
            header = (
                f"# Exported by declare-amqp {__version__} from {self.address} "
                f"(vhosts: {', '.join(vhosts)})\n"
            )
            text = to_yaml(topology, vhosts, header)
        self._write(text)
        return EXIT_OK

    def _write(self, text: str) -> None:
        """``-o FILE`` when given, else stdout (export, graph)."""
        if self.args.output:
            write_private(self.args.output, text)
            self.err.print(f"wrote {self.args.output}")
        else:
            sys.stdout.write(text)

    def convert(self) -> int:
        """``convert --to quorum FILE... [-o OUT]``: the changes on stderr, the files out."""
        from ._convert import to_quorum
        from ._versions import parse_version

        files: list[str] = self.args.files
        output: str | None = self.args.output
        if len(files) > 1 and output and not os.path.isdir(output):
            raise DeclareAmqpError(
                f"-o {output}: with several files, -o names an existing directory; nothing "
                "was written"
            )
        results = []
        for path in files:
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise DeclareAmqpError(f"{path}: cannot read: {exc.strerror}") from exc
            results.append((path, *to_quorum(text, path, parse_version(self.args.target_version))))
        for path, text, changes in results:  # everything converted before anything is written
            for change in changes:
                self.err.print(escape(str(change)), markup=True)
            if not changes:
                self.err.print(f"{escape(path)}: no classic queue or setting to convert")
            if output:
                target = os.path.join(output, os.path.basename(path)) if len(files) > 1 else output
                with open(target, "w", encoding="utf-8") as fh:
                    fh.write(text)
                self.err.print(f"wrote {escape(target)}")
            else:
                sys.stdout.write(text)
        return EXIT_OK

    def schema(self) -> int:
        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK

    def _given_version(self) -> str | None:
        """``--broker-version`` as given (checked), or None."""
        return ".".join(map(str, self.version())) or None

    def version(self) -> tuple[int, ...]:
        """``--broker-version``, parsed; ``()`` when not given."""
        given = getattr(self.args, "broker_version", None)
        if not given:
            return ()
        parsed = parse_version(given)
        if not parsed:
            raise DeclareAmqpError(
                f"--broker-version {given!r}: write a version like 4.3 or 3.13.7"
            )
        return parsed

    def simulator(self) -> tuple[Simulator, str]:
        """The files' topology, or without files the live broker's; and the vhost to use."""
        paths = list(self.args.files) + list(getattr(self.args, "config", []))
        if paths:
            topology = load(paths, vhost=self.args.vhost, default_vhost=self.default_vhost())
            vhost = route_vhost(topology, self.args.vhost, self.default_vhost())
            return simulator_for(topology, self.version()), vhost
        vhost = self.args.vhost or self.default_vhost()
        with Session(self.address) as session:
            state = session.read([vhost])
            if not state.topology.vhosts:
                raise DeclareAmqpError(
                    f"vhost '{vhost}' does not exist on {session.describe_target()}"
                )
            wanted = Access(managed=frozenset({"operator_policies"}))
            access = read_broker_access(session.management, wanted, [vhost], admin=False)
            version = self.version() or parse_version(state.version)
            return Simulator(state.topology, access.operator_policies, version), vhost

    def route(self) -> int:
        if self.args.messages:
            messages = read_messages(self.args.messages)
        else:
            messages = messages_from_args(
                self.args.exchange, self.args.routing_key, self.args.header
            )
        sim, vhost = self.simulator()
        for message in messages:
            result = sim.route(vhost, message)
            if self.args.format == "json":
                print(json.dumps(result.to_dict(), sort_keys=False))
            elif self.args.messages:
                self.out.print(escape(route_line(result)))
            else:
                for line in route_text(vhost, result):
                    self.out.print(escape(line))
        return EXIT_OK

    def explain(self) -> int:
        sim, vhost = self.simulator()
        explanation = explain_or_error(sim, vhost, self.args.kind, self.args.name)
        if self.args.format == "json":
            print(json.dumps(explanation.to_dict(), indent=2))
        else:
            for line in explain_text(explanation):
                self.out.print(escape(line))
        return EXIT_OK

    def graph(self) -> int:
        self._write(graph(self.load(), self.args.format))
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``declare-amqp`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if not args.config:
            parser.print_help(sys.stderr)
            return EXIT_ERROR
        # The original tool: `declare-amqp --config FILE` applies the file. Every option given
        # before the command is kept by the subcommand, so the same words with "apply" after them
        # are that apply.
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "apply"])
        args.original_format = True  # its files' unkeyed queue bindings use the queue's name
    cli = _Cli(args)
    password = ""
    try:
        password = cli.address.password if args.command != "schema" else ""
        handler = getattr(cli, args.command)
        code: int = handler()
        return code
    except TopologyError as exc:
        _error(cli, args, exc, "invalid", [str(p) for p in exc.problems], password)
        return exc.exit_code
    except PlanConflictError as exc:
        if getattr(args, "format", "text") == "text":
            cli.err.print(f"[bold red]error:[/] {exc}")
        return exc.exit_code
    except DeclareAmqpError as exc:
        _error(cli, args, exc, "error", [str(exc)], password)
        return exc.exit_code
    except KeyboardInterrupt:
        cli.err.print("interrupted")
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (`declare-amqp schema | head`): not a bug, nothing to
        # say; point stdout at /dev/null so the interpreter's flush at exit cannot fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so plainly, never leak the password
        text = redact(f"{type(exc).__name__}: {exc}", password)
        cli.err.print(
            f"[bold red]internal error:[/] {text}\nThis is a bug in declare-amqp; "
            "set DECLARE_AMQP_DEBUG=1 for a traceback.",
            markup=True,
        )
        if os.environ.get("DECLARE_AMQP_DEBUG"):
            sys.stderr.write(redact(traceback.format_exc(), password))
        return EXIT_ERROR


def _error(
    cli: _Cli,
    args: argparse.Namespace,
    exc: Exception,
    kind: str,
    problems: list[str],
    password: str,
) -> None:
    if getattr(args, "format", "text") == "json":
        print(
            json.dumps(
                {"format": 1, "error": kind, "problems": [redact(p, password) for p in problems]},
                indent=2,
            )
        )
    message = redact(str(exc), password)
    cli.err.print("error: " + message, markup=False, style="bold red")


if __name__ == "__main__":
    sys.exit(main())
