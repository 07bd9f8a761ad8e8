#!/usr/bin/env bash
# The whole test suite: unit tests, broker integration tests, the cookbook's
# Ruby tests and the cluster tests. Extra arguments go to pytest.
#
#   bash tests/run.sh            everything
#   bash tests/run.sh -m 'not cluster'
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tests/ensure_env.sh
if ! command -v ruby >/dev/null 2>&1; then
    echo "==> installing Debian's ruby for the cookbook tests" >&2
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ruby >/dev/null
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
