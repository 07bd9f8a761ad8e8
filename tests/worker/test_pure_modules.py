"""The pure modules import neither pika nor tornado nor httpx.

Each check runs in a fresh interpreter. The packages' ``__init__`` modules import everything
(the public API), so the interpreter gets the two packages as bare module objects with their
``__path__`` set: importing a submodule then runs that module and what it imports, and nothing
else. ``sys.modules`` afterwards says which third-party libraries were pulled in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pika", "tornado", "httpx")

PURE = [
    "priority_worker._backoff",
    "priority_worker._config",
    "priority_worker._confirms",
    "priority_worker._consumers",  # drives channels only through the _link protocols
    "priority_worker._decoding",
    "priority_worker._errors",
    "priority_worker._handling",
    "priority_worker._inmemory",
    "priority_worker._link",
    "priority_worker._log",
    "priority_worker._model",
    "priority_worker._outcomes",
    "priority_worker._runners",
    "priority_worker._scheduling",
    "declare_amqp.tls",
    "declare_amqp.urls",
    "declare_amqp.worker_queues",
]

PROBE = """
import importlib, json, sys, types
for package in ("priority_worker", "declare_amqp"):
    stub = types.ModuleType(package)
    stub.__path__ = [str(sys.argv[1]) + "/" + package]
    sys.modules[package] = stub
importlib.import_module(sys.argv[2])
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def imported_by(module: str) -> set[str]:
    """Top-level names of every module loaded by importing ``module`` in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), module],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    """Importing the module loads none of pika, tornado and httpx."""
    loaded = imported_by(module)
    assert module.partition(".")[0] in loaded
    assert not loaded & set(FORBIDDEN), f"{module} pulls in {sorted(loaded & set(FORBIDDEN))}"


def test_the_probe_sees_an_io_library_when_one_is_imported() -> None:
    """The adapter modules do load pika (so the check above can fail)."""
    assert "pika" in imported_by("priority_worker._connection")
    assert "pika" in imported_by("priority_worker._wire")


def test_importing_the_worker_package_loads_no_provisioner_io() -> None:
    """``import priority_worker`` (real ``__init__`` modules, no stubs) uses only
    ``declare_amqp.urls``/``tls``/``worker_queues``: declare_amqp's ``__init__`` imports its API
    lazily, so neither httpx nor yaml nor the management client is loaded."""
    probe = (
        "import json, sys, priority_worker; "
        "print(json.dumps(sorted(m for m in sys.modules if m.partition('.')[0] in "
        "('httpx', 'httpcore', 'yaml', 'declare_amqp'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    loaded = set(json.loads(result.stdout))
    assert "declare_amqp.urls" in loaded  # the probe sees declare_amqp modules at all
    assert not loaded & {"httpx", "httpcore", "yaml", "declare_amqp._management"}, sorted(loaded)


def test_every_public_name_of_declare_amqp_resolves() -> None:
    """The lazy ``__getattr__`` covers ``__all__`` and the old aliases; an unknown name is an
    AttributeError as usual."""
    import declare_amqp

    for name in [*declare_amqp.__all__, "parse", "load_files"]:
        assert getattr(declare_amqp, name) is not None, name
    assert declare_amqp.parse is declare_amqp.parse_unvalidated
    with pytest.raises(AttributeError, match="no_such_name"):
        declare_amqp.no_such_name  # noqa: B018
