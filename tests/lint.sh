#!/usr/bin/env bash
# The static checks CI runs before the tests (.ci/run): ruff's lint rules, ruff's formatter,
# mypy in strict mode over both packages and import-linter's architecture contracts. Configuration is in pyproject.toml; every ignored rule
# there says why. Takes a few seconds:
#
#   bash tests/lint.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -x .venv/bin/ruff ] || bash tests/ensure_env.sh >&2
status=0
echo "==> ruff check" >&2
.venv/bin/ruff check . || status=1
echo "==> ruff format --check" >&2
.venv/bin/ruff format --check . || status=1
echo "==> mypy (strict)" >&2
.venv/bin/mypy || status=1
echo "==> lint-imports (architecture contracts)" >&2
.venv/bin/lint-imports --no-cache || status=1
[ "$status" = 0 ] || echo "error: the static checks failed (fix them, or run '.venv/bin/ruff format .')" >&2
exit "$status"
