"""What importing something loads, asked of a fresh interpreter (both test_pure_modules files).

``imported_by(module)`` gives the two packages to the interpreter as bare module objects with
their ``__path__`` set, so importing a submodule runs that module and what it imports and not
the package's ``__init__``. ``loaded_after(statement)`` runs a statement with the real
packages. Each returns the names in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_STUBBED = """
import importlib, json, sys, types
for package in ("priority_worker", "declare_amqp"):
    stub = types.ModuleType(package)
    stub.__path__ = [sys.argv[1] + "/" + package]
    sys.modules[package] = stub
importlib.import_module(sys.argv[2])
print(json.dumps(sorted(sys.modules)))
"""

_REAL = """
import json, sys
exec(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def _modules(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def imported_by(module: str) -> set[str]:
    """Top-level names of every module loaded by importing ``module`` (a dotted name in
    either package) without the packages' ``__init__``."""
    return {name.partition(".")[0] for name in _modules(_STUBBED, str(ROOT), module)}


def loaded_after(statement: str) -> set[str]:
    """Every module name (dotted) in ``sys.modules`` after running ``statement``."""
    return _modules(_REAL, statement)
