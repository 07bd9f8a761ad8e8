"""Several worker processes under one supervisor (``priority-worker run ... --processes N``).

Each child is a whole :class:`~priority_worker.Worker` in a process of its own (spawned, not
forked: no inherited loop, threads or sockets), with its own connections and prefetches, so
the broker shares work between N consumers per queue and each process keeps the per-queue
share. The supervisor:

* restarts a child that exits while not stopping, after a capped exponential backoff; a child
  that stays up ``stable_after`` seconds resets it. ``crash_loop_restarts`` restarts within
  ``crash_loop_window`` seconds are a *crash loop*: logged as an error, shown in /metrics
  (``priority_worker_process_crash_loop``) and failing ``/healthz`` (so an orchestrator sees
  it) while restarts go on at the capped delay;
* forwards SIGTERM/SIGINT to every child, each of which drains as a single worker does
  (stop consuming, finish running handlers, requeue the rest), and exits 0 when every child
  exited 0;
* serves one ``/healthz``, ``/readyz`` and ``/metrics`` for all. Metrics: each child serves its
  own registry on a private loopback port; the supervisor scrapes them on each request and
  returns every sample with a ``process`` label (``"0"`` .. ``"N-1"``), next to its own
  metrics. This was chosen over prometheus_client's multi-process mode because the worker's
  gauges are read at scrape time (``set_function``), which that mode does not support, and
  because a restarted child's counters then simply restart (Prometheus' ``rate()`` handles
  counter resets), with no files to clean up. Sum over ``process`` for the whole.
  ``/readyz`` is 200 when every child is up and ready.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._backoff import reconnect_delay
from ._errors import ConfigurationError
from ._log import log

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from tornado.httpserver import HTTPServer

    from ._worker import Worker

logger = logging.getLogger("priority_worker.supervisor")

WorkerFactory = Callable[[], "Worker"]
"""Builds the worker of one child process; must be picklable (a module-level function or a
``functools.partial`` of one), since children are spawned."""

ChildMain = Callable[[int, int], int]
"""Instead of a factory: what a child runs, given its index and its private HTTP port; returns
the child's exit code (the CLI runs itself for one process)."""

CONFIGURATION_ERROR = 2  # a child exiting with this (the runner's bad-arguments code) is not
# restarted: the same arguments would fail again. The supervisor stops and exits with it.


def _child_main(
    factory: WorkerFactory | None, child_main: ChildMain | None, index: int, http_port: int
) -> None:
    """The body of one child process: build the worker, serve HTTP on loopback, run."""
    os.environ["PRIORITY_WORKER_PROCESS"] = str(index)
    if child_main is not None:
        sys.exit(child_main(index, http_port))
    assert factory is not None
    worker = factory()
    worker.http_port, worker.http_host = http_port, "127.0.0.1"
    worker.run()
    exit_after_run()


def exit_after_run() -> None:
    """Return from a finished run, or leave at once if a sync handler thread outlived it.

    Such a handler's message was not acked and the broker has requeued it; the interpreter
    would wait for that thread forever.
    """
    import atexit
    import threading

    if any(t.name.startswith("priority-worker") and t.is_alive() for t in threading.enumerate()):
        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(eq=False)
class _Slot:
    index: int
    process: BaseProcess | None = None
    port: int = 0
    started_at: float = 0.0
    attempt: int = 0
    restarts: deque[float] = field(default_factory=deque)
    crash_loop: bool = False
    restart: asyncio.TimerHandle | None = None


class Supervisor:
    """Runs ``processes`` workers built by ``factory`` and keeps them running (see module doc).

    ``child_main(index, http_port) -> exit code`` instead of ``factory``: what each child runs.
    A child exiting with 2 (a configuration error) stops everything: exit code 2.

    ``http_port``: one /healthz, /readyz and /metrics for all (0: a free port, ``None``: no
    server). ``shutdown_timeout``: how long a stop waits for the children to drain before
    killing them (give it more than the workers' own ``shutdown_timeout``).
    ``restart_max_delay``: cap of the restart backoff.
    """

    def __init__(
        self,
        factory: WorkerFactory | None,
        processes: int,
        *,
        child_main: ChildMain | None = None,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        shutdown_timeout: float = 60.0,
        restart_max_delay: float = 30.0,
        crash_loop_restarts: int = 5,
        crash_loop_window: float = 60.0,
        stable_after: float = 30.0,
    ) -> None:
        if processes < 1:
            raise ConfigurationError("processes must be >= 1")
        if (factory is None) == (child_main is None):
            raise ConfigurationError("give either a worker factory or child_main")
        self.factory = factory
        self.child_main = child_main
        self._exit_code = 0
        self.processes = processes
        self.http_port = http_port
        self.http_host = http_host
        self.shutdown_timeout = shutdown_timeout
        self.restart_max_delay = restart_max_delay
        self.crash_loop_restarts = crash_loop_restarts
        self.crash_loop_window = crash_loop_window
        self.stable_after = stable_after
        self._ctx = multiprocessing.get_context("spawn")
        self._slots = [_Slot(i) for i in range(processes)]
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._http: HTTPServer | None = None

    # --- state ---------------------------------------------------------------------------------

    def pids(self) -> list[int | None]:
        """The pid of each child (None while it is down)."""
        return [_process(s).pid if self._alive(s) else None for s in self._slots]

    def restarts(self) -> list[int]:
        """Restarts of each child within the crash-loop window."""
        return [len(s.restarts) for s in self._slots]

    @property
    def crash_looping(self) -> list[int]:
        """Indexes of the children in a crash loop."""
        return [s.index for s in self._slots if s.crash_loop]

    @property
    def stopping(self) -> bool:
        """A stop was requested (the HTTP server's /readyz answers "not ready" from then on)."""
        return self._stopping

    @staticmethod
    def _alive(s: _Slot) -> bool:
        return s.process is not None and s.process.exitcode is None

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT, stop every child gracefully; 0 if every child exited 0."""

        async def main() -> int:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            return await self.serve()

        return asyncio.run(main())

    def request_stop(self) -> None:
        """Ask :meth:`serve` to stop (safe from a signal handler on the loop)."""
        log(logger, logging.INFO, "stop_requested")
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def serve(self) -> int:
        """Start the children and the HTTP server, supervise until stopped, then drain."""
        self._stop_requested = asyncio.Event()
        if self._stopping:
            self._stop_requested.set()
        if self.http_port is not None:
            from ._supervisor_http import serve_supervisor_http

            self._http, self.http_port = serve_supervisor_http(self, self.http_port, self.http_host)
        log(
            logger,
            logging.INFO,
            "supervisor_starting",
            processes=self.processes,
            http_port=self.http_port,
        )
        for s in self._slots:
            self._start(s)
        watcher = asyncio.ensure_future(self._watch())
        try:
            await self._stop_requested.wait()
        finally:
            watcher.cancel()
        return await self._stop_all()

    def _start(self, s: _Slot) -> None:
        s.restart = None
        if self._stopping:
            return
        s.port = _free_port()
        s.process = self._ctx.Process(
            target=_child_main,
            args=(self.factory, self.child_main, s.index, s.port),
            name=f"priority-worker-{s.index}",
        )
        s.process.start()
        s.started_at = time.monotonic()
        log(logger, logging.INFO, "child_started", process=s.index, pid=_process(s).pid)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            now = time.monotonic()
            for s in self._slots:
                if s.process is None or s.restart is not None:
                    continue
                code = _process(s).exitcode
                if code is None:
                    if s.attempt and now - s.started_at >= self.stable_after:
                        s.attempt = 0
                        if s.crash_loop:
                            s.crash_loop = False
                            log(logger, logging.INFO, "crash_loop_over", process=s.index)
                    continue
                self._exited(s, code, now, loop)
            await asyncio.sleep(0.1)

    def _exited(self, s: _Slot, code: int, now: float, loop: asyncio.AbstractEventLoop) -> None:
        if code == CONFIGURATION_ERROR:
            log(
                logger,
                logging.ERROR,
                "child_configuration_error",
                process=s.index,
                pid=_process(s).pid,
                exitcode=code,
            )
            _process(s).close()
            s.process = None
            self._exit_code = CONFIGURATION_ERROR
            self.request_stop()
            return
        s.restarts.append(now)
        while s.restarts and now - s.restarts[0] > self.crash_loop_window:
            s.restarts.popleft()
        delay = reconnect_delay(s.attempt, cap=self.restart_max_delay)
        s.attempt += 1
        log(
            logger,
            logging.WARNING,
            "child_exited",
            process=s.index,
            pid=_process(s).pid,
            exitcode=code,
            restart_in=round(delay, 2),
        )
        if len(s.restarts) >= self.crash_loop_restarts and not s.crash_loop:
            s.crash_loop = True
            log(
                logger,
                logging.ERROR,
                "crash_loop",
                process=s.index,
                restarts=len(s.restarts),
                window=self.crash_loop_window,
                exitcode=code,
            )
        _process(s).close()
        s.process = None
        s.restart = loop.call_later(delay, self._start, s)

    async def _stop_all(self) -> int:
        """Forward SIGTERM to every child, wait for all to drain; kill what outlives the
        timeout."""
        self._stopping = True
        for s in self._slots:
            if s.restart is not None:
                s.restart.cancel()
                s.restart = None
        alive = [s for s in self._slots if self._alive(s)]
        for s in alive:
            try:
                pid = _process(s).pid
                assert pid is not None  # alive, so started
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        log(logger, logging.INFO, "draining", processes=len(alive))
        await self._exits(alive, self.shutdown_timeout)
        ok = True
        for s in alive:
            if self._alive(s):
                log(
                    logger,
                    logging.ERROR,
                    "child_killed",
                    process=s.index,
                    pid=_process(s).pid,
                    reason="did not drain within the shutdown timeout",
                )
                _process(s).kill()
                _process(s).join(5)
            code = _process(s).exitcode
            if code != 0:
                ok = False
                log(logger, logging.WARNING, "child_stopped", process=s.index, exitcode=code)
        if self._http is not None:
            self._http.stop()
        log(logger, logging.INFO, "supervisor_stopped", ok=ok)
        return self._exit_code or (0 if ok else 1)

    async def _exits(self, slots: list[_Slot], timeout: float) -> None:
        """Until every process of ``slots`` has exited, or ``timeout`` seconds: each process's
        sentinel becomes readable when it ends, so this waits on the loop, not in a poll."""
        loop = asyncio.get_running_loop()
        waiting: dict[int, asyncio.Future[None]] = {}
        for s in slots:
            if s.process is None:
                continue
            ended: asyncio.Future[None] = loop.create_future()
            fd = s.process.sentinel
            waiting[fd] = ended
            loop.add_reader(fd, _resolve, ended)
        try:
            if waiting:
                await asyncio.wait(waiting.values(), timeout=timeout)
        finally:
            for fd in waiting:
                loop.remove_reader(fd)

    # --- for the HTTP server ---------------------------------------------------------------

    def children(self) -> Iterator[tuple[int, int]]:
        """(index, loopback HTTP port) of every child that is up."""
        for s in self._slots:
            if self._alive(s):
                yield s.index, s.port


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _process(s: _Slot) -> BaseProcess:
    """The process of a slot known to have one (started, not yet reaped)."""
    assert s.process is not None
    return s.process
