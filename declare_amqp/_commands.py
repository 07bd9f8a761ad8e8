"""The commands of ``declare-amqp``: one method of ``Cli`` per command.

``_cli.main`` parses the arguments, starts a plan's read of the broker, and only then imports
this module (and through it the loader, YAML and the planning modules), so that the read
overlaps those imports. Exit codes: 0 success / nothing to do; 1 error, invalid input or
conflict; 2 (``plan --detailed-exitcode``) changes are pending.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import __version__
from ._access import read_broker_access, read_for_export
from ._address import BrokerAddress
from ._api import ApplyResult, Session, load
from ._cli_args import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    broker_address,
    default_vhost,
    guessed_vhosts,
)
from ._errors import DeclareAmqpError, PlanConflictError, Problem, TopologyError
from ._files import write_private
from ._fit import fit_warnings
from ._migration import comparable, migration_line
from ._model import Access, Topology, VhostSpec
from ._plan import Plan
from ._render import LazyConsole, escape, plan_json, print_plan, summary_line
from ._validate import check_broker_version, check_references
from ._versions import parse_version
from ._warnings import reference_warnings, sort_problems, strict

if TYPE_CHECKING:
    from ._management import Prefetch
    from ._simulate import Simulator

# Imported by the commands that use them, not at start: a plan pays only for what it runs
# (rich, the simulator, export, graph, schema and saved plans; issue 22).


class Cli:
    """One command's run: its parsed arguments, the consoles, the broker address; one method
    per command (``_cli.main`` calls the one named by ``args.command``)."""

    def __init__(self, args: argparse.Namespace, early: Prefetch | None = None) -> None:
        """``early``: the read of the broker ``_cli.main`` started for a plan (see
        ``_cli.early_read``), which the plan's session takes over."""
        self.args = args
        self.early = early
        no_color = getattr(args, "no_color", False) or bool(os.environ.get("NO_COLOR"))
        self.out = LazyConsole(no_color=no_color)
        self.err = LazyConsole(stderr=True, no_color=no_color)
        # The early read resolved the arguments already: its address is the command's, so the
        # session and the client it takes over name the same broker.
        self._address: BrokerAddress | None = early.management.address if early else None

    @property
    def address(self) -> BrokerAddress:
        """The broker's nodes, credentials and TLS options, resolved once."""
        if self._address is None:
            self._address = broker_address(self.args)
        return self._address

    def files(self) -> list[str]:
        """The topology files given (``FILE...`` and ``--config``); none is an error."""
        paths = list(self.args.files) + list(self.args.config)
        if not paths:
            raise DeclareAmqpError("no topology file given (declare-amqp COMMAND FILE...)")
        return paths

    def default_vhost(self) -> str:
        """The vhost of objects naming none: the URL's, else ``AMQP_VHOST``, else ``/``."""
        return default_vhost(self.address)

    def load(self) -> Topology:
        """The files, loaded and validated."""
        return load(
            self.files(),
            vhost=self.args.vhost,
            default_vhost=self.default_vhost(),
            max_file_size=self.args.max_file_size,
            original_format=getattr(self.args, "original_format", False),
        )

    def validate(self) -> int:
        """``validate FILE...``: the files alone, with notes on what only a broker can check."""
        from ._simulate import check_expectations, simulator_for

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
        return guessed_vhosts(self.args, self.address)

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
            mover=getattr(self.args, "mover", "amqp"),
        )
        if self.args.format == "text":
            for warning in the_plan.warnings:
                self.err.print(f"[yellow]warning:[/] {escape(str(warning))}")
        return desired, the_plan

    def plan(self) -> int:
        """``plan FILE...``: what apply would do; ``--out`` saves it for ``apply PLAN``."""
        with Session(self.address, prefetched=self.early) as session:
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
        """The plan as text or JSON (``--format``)."""
        if self.args.format == "json":
            print(plan_json(plan, extra))
        else:
            print_plan(self.out, plan, session.describe_target())

    def _save(self, session: Session, plan: Plan) -> None:
        """``plan --out``: the plan with the files' digests and the broker's fingerprint."""
        from . import _saved_plan as saved_plan

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
                "mover": getattr(self.args, "mover", "amqp"),
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
        from . import _saved_plan as saved_plan

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
        from . import _saved_plan as saved_plan

        saved = saved_plan.read(path)
        options = saved.options
        self.args.files, self.args.config = [p for p, _ in saved.files], []
        self.args.vhost, self.args.prune = options.get("vhost"), bool(options.get("prune"))
        self.args.force = bool(options.get("force"))
        self.args.strict = self.args.strict or bool(options.get("strict"))
        self.args.migrate = bool(options.get("migrate"))
        self.args.mover = str(options.get("mover") or "amqp")
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
                mover=self.args.mover,
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
        """``apply FILE...`` (or ``apply PLAN``, or ``--amqp-only``): make the broker match."""
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
        """Apply a plan without conflicts and report the result."""
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
            progress_console=self.out.console if self.out.is_terminal else None,
            mover=getattr(self.args, "mover", "amqp"),
        )
        if self.args.format == "json":
            print(plan_json(plan, {"applied": True, **result.to_dict()}))
        else:
            self._report(plan, result)
        return EXIT_OK if result.ok else EXIT_ERROR

    def _report(self, plan: Plan, result: ApplyResult) -> None:
        """The apply's text result: failures, refusals, migrations, rollback, success."""
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
        """``apply --amqp-only``: declarations over AMQP after a passive check."""
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
        """``export``: the live broker as YAML or definitions JSON."""
        from ._definitions import to_definitions_json
        from ._export import to_yaml

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
        """``schema``: the JSON Schema of the file format."""
        from ._schema import json_schema

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
        from ._inspect import route_vhost
        from ._simulate import Simulator, simulator_for

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
            operator = access.group("operator_policies")
            return Simulator(state.topology, operator, version), vhost

    def route(self) -> int:
        """``route``: where each message goes, from the files or the broker."""
        from ._inspect import messages_from_args, read_messages, route_line, route_text

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
        """``explain queue|exchange NAME``: its policies and effective settings."""
        from ._inspect import explain_or_error, explain_text

        sim, vhost = self.simulator()
        explanation = explain_or_error(sim, vhost, self.args.kind, self.args.name)
        if self.args.format == "json":
            print(json.dumps(explanation.to_dict(), indent=2))
        else:
            for line in explain_text(explanation):
                self.out.print(escape(line))
        return EXIT_OK

    def graph(self) -> int:
        """``graph FILE...``: the topology as Mermaid or DOT."""
        from ._graph import graph

        self._write(graph(self.load(), self.args.format))
        return EXIT_OK
