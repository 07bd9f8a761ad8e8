"""``declare-amqp``'s command line as data: every command, its options and their help text.

The options every command takes are accepted before the command and after it (see
``_common_options``). ``_cli`` runs what this parses.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from . import __version__
from ._address import DEFAULT_CHANNELS, BrokerAddress, resolve_address
from ._files import DEFAULT_MAX_FILE_SIZE, parse_size
from ._vhost_guess import file_vhosts
from .tls import TlsOptions, add_tls_arguments

_MIGRATE_HELP = (
    "re-create queues whose type, durability or arguments changed, with their messages and "
    "bindings (see README: Migrating queues)"
)

# What may move a migrating queue's messages (``_migration.MOVER_WORDS`` says what each is).
_MOVERS = ("auto", "amqp", "shovel")
_MOVER_HELP = (
    "what moves a migrating queue's messages: amqp (the tool's own confirmed consumer and "
    "publisher, any broker; the default), shovel (the broker's dynamic shovels; needs the "
    "rabbitmq_shovel plugin) or auto (shovel where the broker runs the plugin, else amqp)"
)

_EPILOG = """\
Connection: --url or AMQP_URL (amqp:// or amqps://; repeat or comma-separate for a
cluster), --management-url or RABBITMQ_MANAGEMENT_URL (default http://HOST:15672).
Credentials: from the URL, else AMQP_USER / AMQP_PASS, else guest/guest.
The original tool's AMQP_HOST and AMQP_VHOST are honoured too.
"""

# The exit codes: success / nothing to do; an error, invalid input or a conflict; changes
# pending (``plan --detailed-exitcode``).
EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def broker_address(args: argparse.Namespace) -> BrokerAddress:
    """The broker's nodes, credentials and TLS options the arguments (and the environment)
    give; raises BrokerError for a bad URL or TLS option."""
    tls = TlsOptions.resolve(
        args.tls_ca_file, args.tls_cert_file, args.tls_key_file, args.auth_mechanism
    )
    return resolve_address(args.url, args.management_url, tls_options=tls)


def default_vhost(address: BrokerAddress) -> str:
    """The vhost of objects naming none: the URL's, else ``AMQP_VHOST``, else ``/``."""
    if address.url_vhost is not None:
        return address.url_vhost
    return os.environ.get("AMQP_VHOST") or "/"


def guessed_vhosts(args: argparse.Namespace, address: BrokerAddress) -> list[str]:
    """The vhosts the files most likely use, to read them while they are parsed (or before:
    ``_cli.early_read``): those their lines name (``_vhost_guess``), else the one objects
    naming none go to."""
    url_vhost = default_vhost(address)
    files = [*getattr(args, "files", ()), *(getattr(args, "config", None) or ())]
    return file_vhosts(files, args.vhost, url_vhost) or [args.vhost or url_vhost]


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
    """``--max-file-size``: bytes, or with K, M, G."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


# The commands, and the options before the command that take a value (``command_in``).
COMMANDS = (
    "validate",
    "plan",
    "apply",
    "export",
    "schema",
    "convert",
    "route",
    "explain",
    "graph",
)
_VALUE_OPTIONS = frozenset(
    (
        "--url",
        "--management-url",
        "--tls-ca-file",
        "--tls-cert-file",
        "--tls-key-file",
        "--auth-mechanism",
        "--config",
        "--max-file-size",
    )
)


def command_in(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is no option's value), or None when it
    names none that exists (then the whole parser is built, to list them or to say which
    word is wrong)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in ("--", "-h", "--help"):
            return None  # the top level's help lists every command
        elif word.startswith("-"):
            skip = word in _VALUE_OPTIONS
        else:
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``declare-amqp`` parser: every command, its options and their help; with
    ``command``, that command alone (what a run parses: building all of them takes a
    start ~10 ms)."""

    def wanted(name: str) -> bool:
        return command is None or name == command

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

    if wanted("validate"):
        sub.add_parser(
            "validate",
            parents=[common, files, version],
            help="check files without a broker (exit 0 valid, 1 not)",
        )
    if wanted("plan"):
        p = sub.add_parser(
            "plan", parents=[common, files, output, version], help="show what apply would do"
        )
        p.add_argument(
            "--detailed-exitcode",
            action="store_true",
            help="exit 0 nothing to do, 2 changes pending, 1 error or conflict",
        )
        p.add_argument("--migrate", action="store_true", help=_MIGRATE_HELP)
        p.add_argument("--mover", choices=_MOVERS, default="amqp", help=_MOVER_HELP)
        p.add_argument(
            "--out",
            metavar="PLAN",
            help="also save the plan, the files' digest and the broker's fingerprint "
            "to PLAN, for `apply PLAN`",
        )
    if wanted("apply"):
        a = sub.add_parser(
            "apply", parents=[common, files, output], help="make the broker match the files"
        )
        a.add_argument("--migrate", action="store_true", help=_MIGRATE_HELP)
        a.add_argument("--mover", choices=_MOVERS, default="amqp", help=_MOVER_HELP)
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
    if wanted("export"):
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
    if wanted("schema"):
        sub.add_parser("schema", help="print the JSON Schema of the file format")
    if wanted("convert"):
        c = sub.add_parser(
            "convert",
            help="rewrite topology files for quorum queues, listing every change and its reason",
        )
        c.add_argument(
            "--to", choices=("quorum",), required=True, help="the queue type to convert to"
        )
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
    _inspect_parsers(sub, common, files, version, wanted)
    return parser


def _inspect_parsers(
    sub: Any,
    common: argparse.ArgumentParser,
    files: argparse.ArgumentParser,
    version: argparse.ArgumentParser,
    wanted: Callable[[str], bool],
) -> None:
    """route, explain and graph: questions answered by _simulate, from files or the broker."""
    text_or_json = argparse.ArgumentParser(add_help=False)
    text_or_json.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json"
    )
    if wanted("route"):
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
    if wanted("explain"):
        x = sub.add_parser(
            "explain",
            parents=[common, version, text_or_json],
            help="which policies apply to a queue or exchange, and its effective settings",
        )
        x.add_argument("kind", choices=("queue", "exchange"), help="queue or exchange")
        x.add_argument("name", help="its name")
        x.add_argument(
            "files", nargs="*", metavar="FILE", help="topology files (default: the broker)"
        )
        x.add_argument("--vhost", metavar="V", help="the vhost (and of objects naming none)")
    if wanted("graph"):
        g = sub.add_parser(
            "graph", parents=[common, files], help="the topology as a Mermaid or Graphviz picture"
        )
        g.add_argument(
            "--format",
            choices=("mermaid", "dot"),
            default="mermaid",
            help="mermaid (default) or dot",
        )
        g.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
