"""``priority-worker run MODULE:CALLABLE --url URL --queue NAME=PREFETCH ...``

A thin layer over :class:`Worker`: it parses arguments, imports the handler, configures JSON
logging (with the URL's password scrubbed) and exits with:

- 0 after a graceful stop (every handler that started finished and was settled);
- 1 when the worker could not run (the topology check failed, the HTTP port is taken);
- 2 on bad arguments (each flag is checked against its range before anything starts);
- 3 when the stop abandoned handlers still running at ``--shutdown-timeout`` (their messages
  were not acked: the broker redelivers them, so their work may be done twice).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from declare_amqp.tls import add_tls_arguments, tls_environment
from declare_amqp.urls import scrub, url_secrets

from . import _log
from ._config import broker_urls
from ._errors import ConfigurationError, PriorityWorkerError
from ._model import Handler, Mode, Queue, RetryPolicy
from ._topology import TopologyMismatch
from ._worker import Worker

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ABANDONED = 0, 1, 2, 3


def _ranged(kind: type[int] | type[float], low: float, high: float | None = None) -> Any:
    """An argparse ``type`` that parses ``kind`` and checks ``low <= value <= high``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value != value or value < low or (high is not None and value > high):  # NaN too
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text} is out of range ({bound})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _queue_spec(text: str) -> Queue:
    try:
        return Queue.parse(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_handler(ref: str) -> Handler:
    """Import ``module:attribute`` (dots allowed in the attribute)."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise PriorityWorkerError(f"handler {ref!r}: expected MODULE:CALLABLE")
    sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PriorityWorkerError(f"cannot import {module_name}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise PriorityWorkerError(f"{module_name} has no attribute {attr}") from exc
    if not callable(obj):
        raise PriorityWorkerError(f"{ref} is not callable")
    handler: Handler = obj
    return handler


HANDLER_HELP = """\
handlers:
  An `async def` handler runs on the event loop, together with every other handler, the
  broker connection's heartbeats and the /healthz server. One that blocks (CPU work,
  time.sleep, a blocking client library) stalls all of them for as long as it blocks, so
  health checks time out and the broker may drop the connection: that is a bug in the
  handler. Write blocking work as a plain `def` handler: it runs in a thread pool of
  --concurrency threads and the loop stays free. The worker logs `loop_blocked` with the
  handler's name when an async handler held the loop longer than a threshold.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``priority-worker``."""
    parser = argparse.ArgumentParser(prog="priority-worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="consume queues with a handler until SIGTERM/SIGINT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=HANDLER_HELP,
    )
    run.add_argument("handler", metavar="MODULE:CALLABLE")
    run.add_argument(
        "--url",
        action="append",
        default=None,
        help="broker URL; several comma-separated or repeated for failover (default: $AMQP_URL)",
    )
    run.add_argument(
        "--topology",
        metavar="FILE",
        action="append",
        default=None,
        help="declare-amqp topology file(s) holding the --consumer (its queues, "
        "prefetches, mode, concurrency, retries, dead-letter exchange); a "
        "flag given here wins over the file",
    )
    run.add_argument(
        "--consumer",
        metavar="NAME",
        default=None,
        help="the entry of the topology's consumers section to run",
    )
    run.add_argument(
        "--queue",
        dest="queues",
        type=_queue_spec,
        metavar="NAME=PREFETCH",
        action="append",
        default=None,
        help="queue to consume, highest priority first (required without --topology)",
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=None,
        help="weighted: share by prefetch (default); strict: a queue waits while "
        "an earlier one has work; conserving: idle capacity is lent on",
    )
    run.add_argument(
        "--concurrency",
        type=_ranged(int, 1),
        default=None,
        help="handlers running at once (default: sum of prefetches)",
    )
    run.add_argument(
        "--http-port",
        type=_ranged(int, 0, 65535),
        default=None,
        help="serve /healthz, /readyz, /metrics on this port",
    )
    run.add_argument("--http-host", default="127.0.0.1", help="address of the HTTP server")
    run.add_argument(
        "--dead-letter-exchange",
        default=None,
        help="exchange for rejected/exhausted messages (default: NAME.dead queues)",
    )
    run.add_argument(
        "--max-retries",
        type=_ranged(int, 0),
        default=None,
        help="retries after handler errors before dead-lettering (default 5)",
    )
    run.add_argument(
        "--retry-delay",
        type=_ranged(float, 0),
        default=None,
        help="first retry delay in seconds after a handler error (doubles; "
        "default 1); a handler's Retry(delay) is rounded up to a step",
    )
    run.add_argument(
        "--shutdown-timeout",
        type=_ranged(float, 0),
        default=30.0,
        help="seconds SIGTERM waits for running handlers (default 30)",
    )
    run.add_argument("--log-level", default="INFO", help="JSON logs on stderr at this level")
    run.add_argument(
        "--blocked-loop-warning",
        type=_ranged(float, 0),
        default=0.1,
        metavar="SECONDS",
        help="log loop_blocked (with the handler's name) when an async handler "
        "holds the event loop longer than this (0: off; default 0.1)",
    )
    run.add_argument(
        "--processes",
        type=_ranged(int, 1, 1024),
        default=1,
        help="run N worker processes under one supervisor (restarts, SIGTERM "
        "forwarded, one /healthz /readyz /metrics with a process label)",
    )
    run.add_argument(
        "--trace",
        action="store_true",
        help="OpenTelemetry traces (needs the otel extra), configured by the standard "
        "OTEL_* variables: OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER (otlp, console, none), "
        "OTEL_EXPORTER_OTLP_*, OTEL_TRACES_SAMPLER...; each --processes child configures "
        "its own",
    )
    add_tls_arguments(run)
    return parser


def _build(
    args: argparse.Namespace,
    urls: list[str],
    handler: Handler,
    parser: argparse.ArgumentParser,
    tracer_provider: Any = None,
) -> Worker:
    """The worker the arguments describe: from the topology's consumer, flags winning."""
    queues: list[Queue] | None = list(args.queues) if args.queues else None
    if queues and args.dead_letter_exchange:
        queues = [replace(q, dead_letter_exchange=args.dead_letter_exchange) for q in queues]
    options: dict[str, Any] = {
        "http_port": args.http_port,
        "http_host": args.http_host,
        "shutdown_timeout": args.shutdown_timeout,
        "tracer_provider": tracer_provider,
    }
    retry = None
    if args.retry_delay is not None or (args.max_retries is not None and not args.topology):
        retry = RetryPolicy(
            max_retries=RetryPolicy.max_retries if args.max_retries is None else args.max_retries,
            initial_delay=RetryPolicy.initial_delay
            if args.retry_delay is None
            else args.retry_delay,
        )
    if args.topology:
        if not args.consumer:
            parser.error("--topology needs --consumer NAME")
        flags = {
            "queues": "--queue",
            "mode": "--mode",
            "concurrency": "--concurrency",
            "retry": "--retry-delay/--max-retries",
            "max_retries": "--max-retries",
            "dead_letter_exchange": "--dead-letter-exchange",
        }
        worker = Worker.from_topology(
            args.topology,
            args.consumer,
            urls,
            handler,
            queues=queues,
            mode=args.mode,
            concurrency=args.concurrency,
            retry=retry,
            max_retries=args.max_retries,
            dead_letter_exchange=args.dead_letter_exchange,
            sources=flags,
            **options,
        )
        return worker
    if args.consumer:
        parser.error("--consumer needs --topology FILE")
    if not queues:
        parser.error("--queue NAME=PREFETCH is required without --topology")
    return Worker(
        urls,
        queues,
        handler,
        mode=args.mode or Mode.WEIGHTED.value,
        concurrency=args.concurrency,
        retry=retry,
        **options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``priority-worker`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.processes != 1:
        return supervise(args, sys.argv[1:] if argv is None else argv)
    urls_arg = [u for u in (args.url or [os.environ.get("AMQP_URL", "")]) if u]
    if not urls_arg:
        parser.error("--url or $AMQP_URL is required")
    # The links read their TLS setup from the environment (see declare_amqp.tls): flags win.
    os.environ.update(tls_environment(args))
    secrets: set[str] = set()
    provider = None
    try:
        urls = broker_urls(urls_arg)
        secrets = url_secrets(urls)
        handler = load_handler(args.handler)
        if args.trace:
            # Started fresh (not forked), each --processes child comes here and configures its
            # own SDK from the environment: a provider object cannot cross a process boundary.
            from ._otel import provider_from_environment

            provider = provider_from_environment()
        worker = _build(args, urls, handler, parser, provider)
    except PriorityWorkerError as exc:
        print(f"priority-worker: error: {scrub(str(exc), secrets)}", file=sys.stderr)
        return EXIT_USAGE
    worker.blocked_loop_warning = args.blocked_loop_warning or None
    _log.configure(getattr(logging, args.log_level.upper(), logging.INFO), secrets)
    try:
        worker.run()
    except (TopologyMismatch, ConfigurationError) as exc:  # the check failed, the port is taken
        print(f"priority-worker: error: {scrub(str(exc), secrets)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if provider is not None:
            provider.shutdown()  # export what the batch processor still holds
    code = EXIT_ABANDONED if worker.abandoned else EXIT_OK
    if any(t.name.startswith("priority-worker") and t.is_alive() for t in threading.enumerate()):
        # A sync handler outlived the shutdown timeout; its message was not acked and the broker
        # has requeued it. The interpreter would join that thread forever: exit without it.
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def supervise(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``--processes N``: N children, each this runner for one process with its HTTP server on
    a private loopback port (the supervisor serves the public one)."""
    from ._supervisor import Supervisor

    try:  # a bad URL is reported by the children (exit 2), here only its password matters
        secrets = url_secrets(
            broker_urls([u for u in (args.url or [os.environ.get("AMQP_URL", "")]) if u])
        )
    except PriorityWorkerError:
        secrets = set()
    _log.configure(getattr(logging, args.log_level.upper(), logging.INFO), secrets)
    supervisor = Supervisor(
        None,
        args.processes,
        child_main=functools.partial(run_child, list(argv)),
        http_port=args.http_port,
        http_host=args.http_host,
        shutdown_timeout=args.shutdown_timeout + 15,
    )
    try:
        return supervisor.run()
    except ConfigurationError as exc:  # the HTTP port is taken
        print(f"priority-worker: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def run_child(argv: list[str], index: int, http_port: int) -> int:
    """The body of one ``--processes`` child: the runner with one process."""
    return main(
        [*argv, "--processes", "1", "--http-port", str(http_port), "--http-host", "127.0.0.1"]
    )


if __name__ == "__main__":
    sys.exit(main())
