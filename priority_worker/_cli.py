"""``priority-worker run MODULE:CALLABLE --url URL --queue NAME=PREFETCH ...``

A thin layer over :class:`Worker`: it parses arguments, imports the handler, configures JSON
logging (with the URL's password scrubbed) and exits 0 after a graceful stop, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from . import _log
from ._core import scrub, split_urls, url_secrets
from ._errors import PriorityWorkerError
from ._model import Mode, Queue, RetryPolicy
from ._tls import ENV as TLS_ENV
from ._worker import Worker


def load_handler(ref: str) -> Any:
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
    return obj


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``priority-worker``."""
    parser = argparse.ArgumentParser(prog="priority-worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume queues with a handler until SIGTERM/SIGINT")
    run.add_argument("handler", metavar="MODULE:CALLABLE")
    run.add_argument("--url", action="append", default=None,
                     help="broker URL; several comma-separated or repeated for failover "
                          "(default: $AMQP_URL)")
    run.add_argument("--queue", dest="queues", metavar="NAME=PREFETCH", action="append",
                     required=True, help="queue to consume, highest priority first")
    run.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.WEIGHTED.value,
                     help="weighted: share by prefetch (default); strict: a queue waits while "
                          "an earlier one has work; conserving: idle capacity is lent on")
    run.add_argument("--concurrency", type=int, default=None,
                     help="handlers running at once (default: sum of prefetches)")
    run.add_argument("--http-port", type=int, default=None,
                     help="serve /healthz, /readyz, /metrics on this port")
    run.add_argument("--http-host", default="127.0.0.1", help="address of the HTTP server")
    run.add_argument("--dead-letter-exchange", default=None,
                     help="exchange for rejected/exhausted messages (default: NAME.dead queues)")
    run.add_argument("--max-retries", type=int, default=RetryPolicy.max_retries,
                     help="retries after handler errors before dead-lettering (default 5)")
    run.add_argument("--retry-delay", type=float, default=RetryPolicy.initial_delay,
                     help="first retry delay in seconds after a handler error (doubles)")
    run.add_argument("--shutdown-timeout", type=float, default=30.0,
                     help="seconds SIGTERM waits for running handlers (default 30)")
    run.add_argument("--log-level", default="INFO", help="JSON logs on stderr at this level")
    run.add_argument("--tls-ca-file", metavar="FILE",
                     help="CA bundle for amqps:// (default: the system trust store, "
                          "SSL_CERT_FILE; env AMQP_TLS_CA_FILE)")
    run.add_argument("--tls-cert-file", metavar="FILE",
                     help="client certificate (env AMQP_TLS_CERT_FILE)")
    run.add_argument("--tls-key-file", metavar="FILE",
                     help="key of the client certificate (env AMQP_TLS_KEY_FILE)")
    run.add_argument("--auth-mechanism", choices=("plain", "external"),
                     help="external: log in with the client certificate (env "
                          "AMQP_AUTH_MECHANISM)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``priority-worker`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    urls_arg = [u for u in (args.url or [os.environ.get("AMQP_URL", "")]) if u]
    if not urls_arg:
        parser.error("--url or $AMQP_URL is required")
    # The links read their TLS setup from the environment (see _tls): flags win over it.
    for option, variable in TLS_ENV.items():
        value = getattr(args, "tls_" + option if option != "auth_mechanism" else option)
        if value:
            os.environ[variable] = value
    secrets: set[str] = set()
    try:
        urls = split_urls(urls_arg)
        secrets = url_secrets(urls)
        handler = load_handler(args.handler)
        queues = [Queue.parse(spec) for spec in args.queues]
        if args.dead_letter_exchange:
            queues = [replace(q, dead_letter_exchange=args.dead_letter_exchange) for q in queues]
        worker = Worker(
            urls, queues, handler, mode=args.mode, concurrency=args.concurrency,
            retry=RetryPolicy(max_retries=args.max_retries, initial_delay=args.retry_delay),
            http_port=args.http_port, http_host=args.http_host,
            shutdown_timeout=args.shutdown_timeout,
        )
    except PriorityWorkerError as exc:
        print(f"priority-worker: error: {scrub(str(exc), secrets)}", file=sys.stderr)
        return 2
    _log.configure(getattr(logging, args.log_level.upper(), logging.INFO), secrets)
    worker.run()
    if any(t.name.startswith("priority-worker") and t.is_alive() for t in threading.enumerate()):
        # A sync handler outlived the shutdown timeout; its message was not acked and the broker
        # has requeued it. The interpreter would join that thread forever: exit without it.
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
