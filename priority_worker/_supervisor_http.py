"""The supervisor's /healthz, /readyz and /metrics: one endpoint set for every child process.

/metrics scrapes each child's own /metrics (loopback) and merges the families, adding a
``process`` label to every sample; the supervisor's own metrics come first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Protocol

import httpx
import tornado.web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from tornado.httpserver import HTTPServer

from ._http import listen
from ._metrics import PREFIX


class Supervised(Protocol):
    """What the endpoints read of the supervisor (``_supervisor.Supervisor`` provides it); a
    protocol so that this module does not import the supervisor back."""

    @property
    def processes(self) -> int:
        """How many worker processes are configured."""

    @property
    def stopping(self) -> bool:
        """A stop was requested: not ready any more."""

    @property
    def crash_looping(self) -> list[int]:
        """Indexes of the children in a crash loop."""

    def pids(self) -> list[int | None]:
        """The pid of each child (None while it is down)."""

    def restarts(self) -> list[int]:
        """Restarts of each child within the crash-loop window."""

    def children(self) -> Iterator[tuple[int, int]]:
        """(index, loopback HTTP port) of every child that is up."""


CHILD_TIMEOUT = 2.0  # seconds a child may take to answer a scrape or a readiness check


async def _fetch(client: httpx.AsyncClient, port: int, path: str) -> httpx.Response | None:
    try:
        return await client.get(f"http://127.0.0.1:{port}{path}", timeout=CHILD_TIMEOUT)
    except httpx.HTTPError:
        return None


class _Merged(Collector):
    """The supervisor's own metrics and the children's, labelled by process."""

    def __init__(self, supervisor: Supervised, texts: Iterable[tuple[int, str]]) -> None:
        self.supervisor = supervisor
        self.texts = list(texts)

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        pids = sup.pids()
        yield GaugeMetricFamily(
            f"{PREFIX}_processes", "Worker processes configured", value=sup.processes
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_processes_up",
            "Worker processes running",
            value=sum(p is not None for p in pids),
        )
        restarts = CounterMetricFamily(
            f"{PREFIX}_process_restarts",
            "Restarts of each worker process within the crash-loop window",
            labels=["process"],
        )
        loop = GaugeMetricFamily(
            f"{PREFIX}_process_crash_loop",
            "1 while a worker process is in a crash loop",
            labels=["process"],
        )
        for i, n in enumerate(sup.restarts()):
            restarts.add_metric([str(i)], n)
            loop.add_metric([str(i)], 1.0 if i in sup.crash_looping else 0.0)
        yield restarts
        yield loop
        merged: dict[str, Metric] = {}
        for index, text in self.texts:
            for family in text_string_to_metric_families(text):
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    out.add_sample(
                        sample.name,
                        {**sample.labels, "process": str(index)},
                        sample.value,
                        sample.timestamp,
                        sample.exemplar,
                    )
        yield from merged.values()


class _Base(tornado.web.RequestHandler):
    def initialize(self, supervisor: Supervised) -> None:
        self.supervisor = supervisor


class _Health(_Base):
    def get(self) -> None:
        looping = self.supervisor.crash_looping
        if looping:
            self.set_status(503)
            self.write(f"crash loop: process {','.join(map(str, looping))}\n")
        else:
            self.write("ok\n")


class _Ready(_Base):
    async def get(self) -> None:
        children = list(self.supervisor.children())
        ready = len(children) == self.supervisor.processes and not self.supervisor.stopping
        if ready:
            async with httpx.AsyncClient() as client:
                answers = await asyncio.gather(
                    *(_fetch(client, port, "/readyz") for _, port in children)
                )
            ready = all(a is not None and a.status_code == 200 for a in answers)
        if ready:
            self.write("ready\n")
        else:
            self.set_status(503)
            self.write("not ready\n")


class _Metrics(_Base):
    async def get(self) -> None:
        children = list(self.supervisor.children())
        async with httpx.AsyncClient() as client:
            answers = await asyncio.gather(
                *(_fetch(client, port, "/metrics") for _, port in children)
            )
        texts = [
            (index, a.text)
            for (index, _), a in zip(children, answers, strict=True)
            if a is not None and a.status_code == 200
        ]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(self.supervisor, texts))
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.write(generate_latest(registry))


def serve_supervisor_http(supervisor: Supervised, port: int, host: str) -> tuple[HTTPServer, int]:
    """Start the server on the running loop; returns it and the port it listens on."""
    app = tornado.web.Application(
        [
            (r"/healthz", _Health, {"supervisor": supervisor}),
            (r"/readyz", _Ready, {"supervisor": supervisor}),
            (r"/metrics", _Metrics, {"supervisor": supervisor}),
        ]
    )
    return listen(app, port, host)
