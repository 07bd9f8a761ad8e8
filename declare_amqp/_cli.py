"""``declare-amqp``: a thin command line over the library.

It catches only declare_amqp's own errors and turns them into a one-paragraph message and
an exit code; every other exception is a bug and says so (with a traceback only when
``DECLARE_AMQP_DEBUG`` is set). The arguments are parsed by ``_cli_args``; each command is
one method of ``_commands.Cli``.

Exit codes: 0 success / nothing to do; 1 error, invalid input or conflict; 2 (``plan
--detailed-exitcode``) changes are pending.

A plan starts reading the broker as soon as its arguments are parsed (``early_read``), and
only then imports the commands and, through them, the loader, YAML and the planning modules
(issue 22): the read overlaps those imports as well as the parse of the files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._cli_args import EXIT_ERROR, broker_address, build_parser, command_in, guessed_vhosts
from ._errors import DeclareAmqpError, PlanConflictError, TopologyError
from ._management import ManagementClient, Prefetch
from .urls import redact

if TYPE_CHECKING:
    from ._commands import Cli


def early_read(args: argparse.Namespace) -> Prefetch | None:
    """For ``plan``: the read of the vhost the files most likely use, started now, in the
    background. None for another command, or when the arguments name no usable broker (a
    bad URL or TLS option: the command reports it as it would without this)."""
    if args.command != "plan":
        return None
    try:
        address = broker_address(args)
    except DeclareAmqpError:
        return None
    return Prefetch(ManagementClient(address), guessed_vhosts(args, address), args.prune)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``declare-amqp`` console script."""
    words = sys.argv[1:] if argv is None else list(argv)
    command = command_in(words)
    parser = build_parser(command)  # that command's alone: what this run parses
    args = parser.parse_args(words)
    if args.command is None:
        if not args.config:
            parser.print_help(sys.stderr)
            return EXIT_ERROR
        # The original tool: `declare-amqp --config FILE` applies the file. Every option given
        # before the command is kept by the subcommand, so the same words with "apply" after them
        # are that apply.
        args = build_parser("apply").parse_args([*words, "apply"])
        args.original_format = True  # its files' unkeyed queue bindings use the queue's name
    early = early_read(args)
    from ._commands import Cli  # the loader, YAML, planning: imported while the read runs

    cli = Cli(args, early)
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
            import traceback

            sys.stderr.write(redact(traceback.format_exc(), password))
        return EXIT_ERROR


def _error(
    cli: Cli,
    args: argparse.Namespace,
    exc: Exception,
    kind: str,
    problems: list[str],
    password: str,
) -> None:
    """A user error on stderr (and as JSON on stdout with ``--format json``), redacted."""
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
