"""Fixtures of the Chef cookbook tests: Debian's ``ruby`` and the cookbook's stub converge.

Chef itself is not installable here; the cookbook's recipes and resource run under a small
stub of the Chef DSL (``cookbooks/declare_amqp/test/chef_stub.rb``), driven by
``test/converge.rb``, which prints what a run produced as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

COOKBOOK = Path(__file__).resolve().parents[2] / "cookbooks" / "declare_amqp"

Converge = Callable[..., dict[str, Any]]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def ruby() -> str:
    """The ruby interpreter; missing ruby fails the test under CI and skips it elsewhere."""
    path = shutil.which("ruby")
    if path is None:
        reason = "ruby is not installed (bash tests/run.sh installs Debian's ruby)"
        if _in_ci():
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture
def converge(ruby: str, tmp_path: Path) -> Converge:
    """Runs recipes of the cookbook under the Chef DSL stub and returns its JSON report.

    ``converge(*recipes, attributes={...}, execute=False, whyrun=False, password=None)``;
    the password travels in the environment, as the cookbook hands it to declare-amqp.
    The report has ``files``, ``commands``, ``converged``, ``log``, ``error`` and the
    process's ``returncode``.
    """

    def run(
        *recipes: str,
        attributes: Mapping[str, Any] | None = None,
        execute: bool = False,
        whyrun: bool = False,
        password: str | None = None,
        user_passwords: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        attributes_file = tmp_path / f"attributes-{len(list(tmp_path.glob('attributes-*')))}.json"
        attributes_file.write_text(json.dumps(attributes or {}))
        argv = [ruby, str(COOKBOOK / "test" / "converge.rb"), "--attributes", str(attributes_file)]
        argv += ["--execute"] * execute + ["--whyrun"] * whyrun
        env = {k: v for k, v in os.environ.items() if k != "DECLARE_AMQP_PASSWORD"}
        if password is not None:
            env["DECLARE_AMQP_PASSWORD"] = password
        if user_passwords is not None:  # like a data bag item's user_passwords
            env["DECLARE_AMQP_USER_PASSWORDS"] = json.dumps(dict(user_passwords))
        proc = subprocess.run(
            [*argv, *recipes], capture_output=True, text=True, env=env, timeout=600, check=False
        )
        assert proc.stdout, f"converge.rb printed nothing; stderr:\n{proc.stderr}"
        report: dict[str, Any] = json.loads(proc.stdout)
        report["returncode"] = proc.returncode
        report["stderr"] = proc.stderr
        return report

    return run
