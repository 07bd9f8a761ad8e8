"""The supervisor without a broker: one /metrics for all children, a crash loop reported."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from worker_handlers import broken_worker

from priority_worker import ConfigurationError, Metrics, Supervisor
from priority_worker._supervisor_http import _Merged


class FakeSupervisor:
    processes = 2

    def pids(self) -> list[int | None]:
        return [101, None]

    def restarts(self) -> list[int]:
        return [0, 3]

    crash_looping = [1]


def test_children_metrics_are_merged_per_family_with_a_process_label() -> None:
    """Two children's expositions become one valid exposition: each family once, every
    sample labelled with its process, next to the supervisor's own metrics."""
    texts = []
    for index, acks in ((0, 5), (1, 7)):
        m = Metrics()
        m.acks.labels("high").inc(acks)
        m.held_seconds.labels("high").observe(0.003)
        texts.append((index, m.render().decode()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(FakeSupervisor(), texts))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert text.count("# TYPE priority_worker_acks_total counter") == 1
    acks = {
        s.labels["process"]: s.value
        for s in families["priority_worker_acks"].samples
        if s.name == "priority_worker_acks_total"
    }
    assert acks == {"0": 5.0, "1": 7.0}
    held = [
        s
        for s in families["priority_worker_held_seconds"].samples
        if s.name == "priority_worker_held_seconds_count"
    ]
    assert sorted(s.labels["process"] for s in held) == ["0", "1"]
    assert families["priority_worker_processes_up"].samples[0].value == 1
    loops = {
        s.labels["process"]: s.value for s in families["priority_worker_process_crash_loop"].samples
    }
    assert loops == {"0": 0.0, "1": 1.0}


class _EventSeen(logging.Handler):
    """Sets ``flag`` when a record of the structured log event ``event`` is emitted."""

    def __init__(self, event: str, flag: asyncio.Event) -> None:
        super().__init__()
        self.event, self.flag = event, flag

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.event:
            self.flag.set()


def test_a_crash_loop_is_reported_not_hidden() -> None:
    """A child that dies at once is restarted with backoff; after 3 quick restarts the
    supervisor reports a crash loop on /healthz and /metrics, and a stop still exits."""

    async def scenario() -> tuple[list[int], int, str, int]:
        sup = Supervisor(
            broken_worker,
            1,
            http_port=0,
            crash_loop_restarts=3,  # type: ignore[arg-type]
            restart_max_delay=0.2,
            shutdown_timeout=5,
        )
        reported = asyncio.Event()
        watcher = _EventSeen("crash_loop", reported)
        logging.getLogger("priority_worker.supervisor").addHandler(watcher)
        task = asyncio.ensure_future(sup.serve())
        try:
            await asyncio.wait_for(reported.wait(), 60)
        except asyncio.TimeoutError:
            pass  # the assertions below say what was missing
        finally:
            logging.getLogger("priority_worker.supervisor").removeHandler(watcher)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sup.http_port}") as c:
            health = (await c.get("/healthz")).status_code
            metrics = (await c.get("/metrics")).text
        looping = sup.crash_looping
        sup.request_stop()
        code = await asyncio.wait_for(task, 30)
        return looping, health, metrics, code

    looping, health, metrics, code = asyncio.run(scenario())
    assert looping == [0]
    assert health == 503
    assert 'priority_worker_process_crash_loop{process="0"} 1.0' in metrics
    assert code in (0, 1)


def test_cli_refuses_fewer_than_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    """`--processes 0` is a usage error: exit 2 (argparse checks the range) before anything
    starts."""
    from priority_worker._cli import main

    with pytest.raises(SystemExit) as stop:
        main(
            [
                "run",
                "json:loads",
                "--url",
                "amqp://127.0.0.1:1/",
                "--queue",
                "q=1",
                "--processes",
                "0",
            ]
        )
    assert stop.value.code == 2
    assert "--processes" in capsys.readouterr().err
    with pytest.raises(ConfigurationError):
        Supervisor(broken_worker, 0)  # type: ignore[arg-type]


def test_a_configuration_error_in_the_children_is_not_restarted() -> None:
    """A handler that cannot be imported makes each child exit 2: the supervisor does not
    restart them into a crash loop, it stops and exits 2 (as one process would)."""
    runner = Path(sys.executable).parent / "priority-worker"
    result = subprocess.run(
        [
            str(runner),
            "run",
            "no_such_module:handler",
            "--url",
            "amqp://127.0.0.1:1/",
            "--queue",
            "q=1",
            "--processes",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot import no_such_module" in result.stderr
    assert "child_configuration_error" in result.stderr
    assert "crash_loop" not in result.stderr
