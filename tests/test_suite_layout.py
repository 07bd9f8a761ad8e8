"""The naming rule of the test files (tests/suite_layout.py) and the shared waiting helpers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import suite_layout
from waiting import run, wait_until, wait_until_blocking


@dataclass
class FakeItem:
    nodeid: str
    path: Path
    fixturenames: tuple[str, ...]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("test_plan.py", "plain"),
        ("test_apply_broker.py", "broker"),
        ("test_worker_cluster.py", "cluster"),
        ("test_inmemory_vs_broker.py", "broker"),
        ("test_brokers.py", "plain"),  # only the suffix counts
        ("test_broker_version.py", "plain"),
    ],
)
def test_the_file_name_says_what_its_tests_need(name: str, kind: str) -> None:
    assert suite_layout.file_kind(Path("tests/declare") / name) == kind


@pytest.mark.parametrize(
    ("fixtures", "need"),
    [
        ((), "plain"),
        (("tmp_path", "monkeypatch"), "plain"),
        (("vhost_url", "vhost", "broker"), "broker"),
        (("tls",), "broker"),
        (("tls_node",), "broker"),
        (("cluster_vhost", "cluster", "broker"), "cluster"),
    ],
)
def test_the_fixtures_say_what_a_test_needs(fixtures: tuple[str, ...], need: str) -> None:
    assert suite_layout.needed(fixtures) == need


def test_matching_tests_pass_the_check() -> None:
    items = [
        FakeItem("a", Path("tests/test_plan.py"), ("tmp_path",)),
        FakeItem("b", Path("tests/test_apply_broker.py"), ("vhost", "broker")),
        FakeItem("c", Path("tests/tls/test_tls_broker.py"), ("tls",)),
        FakeItem("d", Path("tests/cluster/test_x_cluster.py"), ("cluster", "broker")),
    ]
    assert suite_layout.problems(items) == []


def test_a_broker_test_in_a_plain_file_is_reported() -> None:
    item = FakeItem("tests/test_plan.py::t", Path("tests/test_plan.py"), ("vhost", "broker"))
    [problem] = suite_layout.problems([item])
    assert problem.startswith("tests/test_plan.py::t: uses broker ")
    assert "*_broker.py" in problem


def test_a_plain_test_in_a_broker_file_is_reported() -> None:
    item = FakeItem("x::t", Path("tests/test_apply_broker.py"), ("tmp_path",))
    [problem] = suite_layout.problems([item])
    assert "needs no broker or cluster" in problem and "test_<thing>.py" in problem


def test_a_cluster_test_in_a_broker_file_and_the_reverse_are_reported() -> None:
    items = [
        FakeItem("x::t", Path("tests/test_apply_broker.py"), ("cluster_vhost", "cluster")),
        FakeItem("y::t", Path("tests/test_x_cluster.py"), ("broker",)),
    ]
    first, second = suite_layout.problems(items)
    assert "needs the cluster" in first and "*_cluster.py file" in first
    assert "needs the broker" in second and "*_broker.py file" in second


def test_this_session_marks_by_file_name(request: pytest.FixtureRequest) -> None:
    """tests/conftest.py applies the rule: this plain file's test carries neither marker."""
    assert request.node.get_closest_marker("broker") is None
    assert request.node.get_closest_marker("cluster") is None


def test_wait_until_returns_once_the_predicate_holds() -> None:
    calls = []

    async def scenario() -> int:
        await wait_until(lambda: calls.append(1) or len(calls) >= 3, 5, "three polls", 0.001)
        return len(calls)

    assert run(scenario()) == 3


def test_wait_until_fails_with_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match=r"gave up after 0\.05 s waiting for: the moon"):
        run(wait_until(lambda: False, 0.05, "the moon", 0.01))


def test_wait_until_blocking_polls_without_a_loop() -> None:
    began = time.monotonic()
    wait_until_blocking(lambda: time.monotonic() - began > 0.03, 5, "30 ms", 0.005)
    with pytest.raises(AssertionError, match="waiting for: never"):
        wait_until_blocking(lambda: False, 0.02, "never", 0.005)


def test_run_bounds_a_scenario_unless_told_not_to() -> None:
    with pytest.raises(TimeoutError):
        run(asyncio.sleep(5), timeout=0.05)
    assert run(asyncio.sleep(0.01, result="done"), timeout=None) == "done"
