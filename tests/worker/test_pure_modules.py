"""The provisioner modules priority_worker uses import neither pika nor tornado nor httpx.

priority_worker's own pure core is held by import-linter (``[tool.importlinter]`` in
pyproject.toml, run by ``tests/lint.sh``), which also sees annotation-only imports; these
checks cover what a static graph cannot: what importing really loads. Each check runs in a
fresh interpreter (``tests/import_probe.py``) that imports the module without the packages'
``__init__``; ``sys.modules`` afterwards says which third-party libraries were pulled in.
"""

from __future__ import annotations

import pytest
from import_probe import imported_by, loaded_after

FORBIDDEN = ("pika", "tornado", "httpx")

PURE = [
    "declare_amqp.socket_writes",
    "declare_amqp.tls",
    "declare_amqp.urls",
    "declare_amqp.worker_queues",
]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module: str) -> None:
    """Importing the module loads none of pika, tornado and httpx."""
    loaded = imported_by(module)
    assert module.partition(".")[0] in loaded
    assert not loaded & set(FORBIDDEN), f"{module} pulls in {sorted(loaded & set(FORBIDDEN))}"


def test_the_probe_sees_an_io_library_when_one_is_imported() -> None:
    """The adapter modules do load pika (so the check above can fail)."""
    assert "pika" in imported_by("priority_worker._pika.connection")
    assert "pika" in imported_by("priority_worker._pika.wire")


def test_importing_the_worker_package_loads_no_provisioner_io() -> None:
    """``import priority_worker`` (real ``__init__`` modules, no stubs) uses only
    ``declare_amqp.urls``/``tls``/``worker_queues``: declare_amqp's ``__init__`` imports its API
    lazily, so neither httpx nor yaml nor the management client is loaded."""
    loaded = {
        name
        for name in loaded_after("import priority_worker")
        if name.partition(".")[0] in ("httpx", "httpcore", "yaml", "declare_amqp")
    }
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
