"""``plan --out`` and ``export -o`` write files that may hold password hashes: they are
created 0600 (before: 0644 under the usual umask), and an existing file is made 0600 too."""

from __future__ import annotations

import os
import stat
from typing import Any


def _mode(path: Any) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_saved_plan_and_export_are_owner_only(declare: Any) -> None:
    old = os.umask(0o022)  # the usual umask, under which a plain open() made 0644
    try:
        f = declare.write("t.yml", "queues:\n  - name: fine\n")
        assert declare("plan", "--out", "saved.plan", f).code == 0
        assert _mode(declare.workdir / "saved.plan") == 0o600
        assert declare("apply", "saved.plan").code == 0
        export = declare.workdir / "export.yml"
        export.write_text("old\n")
        os.chmod(export, 0o644)
        result = declare("export", "-o", str(export), "--vhost", declare.vhost)
        assert result.code == 0, result
        assert _mode(export) == 0o600
        assert "fine" in export.read_text()
    finally:
        os.umask(old)
