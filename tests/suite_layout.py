"""What a test file's name promises, and the check that its tests keep the promise.

One convention for every folder under ``tests/``:

- ``test_<thing>.py`` needs nothing outside the process: no broker, no cluster. The fast loop
  (``pytest -m "not broker and not cluster" tests``) runs these, in seconds.
- ``test_<thing>_broker.py`` needs a RabbitMQ broker (the ``broker`` fixture, or the TLS
  node of ``tests/tls``); ``tests/conftest.py`` marks every test in it ``broker``.
- ``test_<thing>_cluster.py`` needs the three-node cluster of ``tests/cluster``; every test in
  it is marked ``cluster`` (it may use the machine's broker as well).

Each test's fixtures say what it really uses, so ``tests/conftest.py`` compares them with the
name of its file at collection and stops the run on a mismatch: a broker test hidden in a plain
file would break the fast loop, and a plain test in a ``_broker`` file would drop out of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal, Protocol

Kind = Literal["plain", "broker", "cluster"]

# Fixtures that start or reach a RabbitMQ node, and the one that needs the local cluster.
BROKER_FIXTURES = frozenset({"broker", "tls", "tls_node"})
CLUSTER_FIXTURES = frozenset({"cluster"})

_SUFFIX = {"broker": "_broker.py", "cluster": "_cluster.py"}


class Collected(Protocol):
    """What the check reads of a collected test (a ``pytest.Item`` has all of it)."""

    @property
    def nodeid(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def fixturenames(self) -> Iterable[str]: ...


def file_kind(path: Path) -> Kind:
    """What the file's name says its tests need."""
    if path.name.endswith(_SUFFIX["cluster"]):
        return "cluster"
    if path.name.endswith(_SUFFIX["broker"]):
        return "broker"
    return "plain"


def needed(fixturenames: Iterable[str]) -> Kind:
    """What a test needs, judged by the fixtures it uses (directly or through others)."""
    names = set(fixturenames)
    if names & CLUSTER_FIXTURES:
        return "cluster"
    if names & BROKER_FIXTURES:
        return "broker"
    return "plain"


def mismatch(path: Path, fixturenames: Iterable[str]) -> str | None:
    """Why a test does not fit its file's name, or None when it fits."""
    kind, need = file_kind(path), needed(fixturenames)
    if kind == need:
        return None
    uses = sorted(set(fixturenames) & (BROKER_FIXTURES | CLUSTER_FIXTURES))
    if kind == "plain":
        return (
            f"uses {', '.join(uses)} but its file is not named *{_SUFFIX[need]}: "
            "move it to a file of that name"
        )
    if need == "plain":
        return (
            f"needs no broker or cluster but its file is named *{_SUFFIX[kind]}: "
            "move it to a test_<thing>.py file, where the fast loop runs it"
        )
    return (
        f"uses {', '.join(uses)} (needs the {need}) but its file is named "
        f"*{_SUFFIX[kind]}: move it to a *{_SUFFIX[need]} file"
    )


def problems(items: Iterable[Collected]) -> list[str]:
    """One line per collected test whose fixtures contradict its file's name."""
    found = []
    for item in items:
        why = mismatch(item.path, item.fixturenames)
        if why is not None:
            found.append(f"{item.nodeid}: {why}")
    return found
