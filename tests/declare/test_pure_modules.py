"""The pure modules of declare_amqp import no I/O library: neither pika nor tornado nor an HTTP
client (``http.client`` or httpx).

Each module is imported in a fresh interpreter, with the package's ``__init__`` left out
(``tests/import_probe.py``), and ``sys.modules`` then shows everything the module pulled in.
Broker I/O lives in ``_management`` (HTTP) and ``_amqp`` (AMQP) only; ``_apply`` and ``_api``
drive them. import-linter's ``da-pure`` contract (``pyproject.toml``) holds the same rule over
the static import graph; this test adds what only a run shows (imports inside functions).
"""

from __future__ import annotations

import pytest
from import_probe import imported_by, loaded_after

PURE = (
    "_model",
    "_plan",
    "_planning",  # plan(): the engine over the kinds
    "_loader",  # and so _yaml, _access and every kind module (kinds/)
    "_validate",
    "_fit",
    "_format",
    "_render",
    "_errors",
    "_export",
    "_schema",
    "_warnings",
    "_consumers",
    "_saved_plan",
    "_definitions",  # and _json_lines
    "worker_queues",
    "_simulate",  # and so what it imports: _routing, _policy_choice, _effective
    "_graph",
    "_inspect",
    "_broker_json",
    "_move_progress",
    "_move_gate",
)
IO_LIBRARIES = ("pika", "tornado", "http", "httpx", "httpcore")


def _imported_by(module: str) -> set[str]:
    return imported_by(f"declare_amqp.{module}")


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    """The module (and all it imports) loads without pika, tornado or an HTTP client."""
    loaded = _imported_by(module)
    assert "declare_amqp" in loaded  # the probe did import the package's module
    assert loaded.isdisjoint(IO_LIBRARIES), sorted(loaded & set(IO_LIBRARIES))


def test_the_probe_sees_io_libraries_where_they_are() -> None:
    """The check can fail: the protocol modules do load their libraries."""
    assert "http" in _imported_by("_management")
    assert "pika" in _imported_by("_amqp")


def test_planning_does_not_load_pika() -> None:
    """The package and its CLI load without pika: it is imported only when something is
    written (``_apply``), so ``plan`` and ``validate`` do not pay for it."""
    loaded = loaded_after("import declare_amqp, declare_amqp._cli")
    assert "declare_amqp._cli" in loaded  # the statement ran
    assert "pika" not in loaded


def test_a_plan_does_not_load_httpx() -> None:
    """The management client is ``_http`` on the standard library's ``http.client``:
    httpx and httpcore cost ~70 ms of every start (issue 22). A whole ``plan``, up to its
    read of the broker (refused: nothing listens on port 1), loads neither."""
    loaded = loaded_after(
        "from declare_amqp._cli import main\n"
        "code = main(['plan', '--url', 'amqp://guest:guest@127.0.0.1:1/',"
        " '--management-url', 'http://127.0.0.1:1', 'topology.example.yml'])\n"
        "assert code == 1, code"
    )
    assert "http.client" in loaded  # the read was tried
    assert "declare_amqp._loader" in loaded  # and the file parsed
    assert "httpx" not in loaded
    assert "httpcore" not in loaded
