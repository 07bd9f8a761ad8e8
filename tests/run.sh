#!/usr/bin/env bash
# The whole test suite, against two brokers:
#   1. the local broker (Debian's RabbitMQ 3.10 here, or AMQP_URL): unit tests, broker
#      integration tests, the cookbook's Ruby tests, the cluster and fault suites;
#   2. a RabbitMQ 4.x container started by testcontainers (tests/container_broker.sh builds the
#      image here once and starts podman's Docker-compatible API): the declare, worker and TLS
#      suites (tests/tls: TLS, federation and shovels on 4.x).
# Both must pass. Extra arguments go to pytest in both runs.
#
#   bash tests/run.sh                      both runs
#   TEST_BROKERS=local bash tests/run.sh   only the local broker (no container)
#   TEST_BROKERS=container bash tests/run.sh -k quorum
#   bash tests/run.sh -m 'not broker and not cluster'   the fast loop (no broker at all)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BROKERS="${TEST_BROKERS:-local container}"
CONTAINER_SUITES=(tests/declare tests/worker tests/tls)

bash tests/ensure_env.sh
if ! command -v ruby >/dev/null 2>&1; then
    echo "==> installing Debian's ruby for the cookbook tests" >&2
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ruby >/dev/null
fi
if ! command -v dot >/dev/null 2>&1; then
    echo "==> installing Debian's graphviz for the graph tests (dot -Tsvg)" >&2
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq graphviz >/dev/null
fi

LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
status=0
summaries=()

# run_pytest NAME ARGS...: one pytest run, its output teed to $LOGS/NAME; exit 5 (no tests) fails
run_pytest() {
    local name="$1"; shift
    local rc=0
    set +e
    # bounded, so a run that hangs ends with a report: CI gives the whole job 90 minutes
    timeout --kill-after=30 "${RUN_TIMEOUT:-2100}" .venv/bin/python -m pytest "$@" 2>&1 | tee "$LOGS/$name"
    rc="${PIPESTATUS[0]}"
    set -e
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "error: the $name run did not finish within ${RUN_TIMEOUT:-2100} s" >&2
    elif [ "$rc" = 5 ]; then
        echo "error: pytest collected no tests ($name run)" >&2
        rc=1
    fi
    local line
    line="$(grep -E '^broker tests against ' "$LOGS/$name" | tail -n 1 || true)"
    summaries+=("$name: exit $rc; ${line:-no broker test ran}")
    [ "$rc" = 0 ] || status=1
}

for which in $BROKERS; do
    case "$which" in
        local)
            echo "==> run 1: the whole suite against the local broker" >&2
            TEST_BROKER=local run_pytest local "$@"
            ;;
        container)
            echo "==> run 2: ${CONTAINER_SUITES[*]} against a RabbitMQ 4.x container" >&2
            started=$(date +%s)
            # bounded: a first build (debootstrap) takes 1-3 minutes
            if ! container_env="$(timeout --kill-after=10 1200 bash tests/container_broker.sh)"; then
                echo "error: the container broker could not be made ready" >&2
                summaries+=("container: the image or podman's API could not be made ready")
                status=1
                continue
            fi
            echo "==> container broker ready in $(( $(date +%s) - started )) s (image build included)" >&2
            (
                eval "$container_env"
                run_pytest container "${CONTAINER_SUITES[@]}" -p no:cacheprovider "$@"
                printf '%s\n' "${summaries[-1]}" >"$LOGS/container.summary"
                exit "$status"
            ) || status=1
            [ -f "$LOGS/container.summary" ] && summaries+=("$(cat "$LOGS/container.summary")")
            ;;
        *)
            echo "error: TEST_BROKERS names '$which'; use local and/or container" >&2
            exit 2
            ;;
    esac
done

echo
echo "==> test runs, one per broker:"
printf '    %s\n' "${summaries[@]}"
passed=0; failed=0; skipped=0
for f in "$LOGS"/local "$LOGS"/container; do
    [ -f "$f" ] || continue
    last="$(grep -E '^=*[^=]*[0-9]+ (passed|failed|error)' "$f" | tail -n 1 || true)"
    p=$(grep -oE '[0-9]+ passed' <<<"$last" | grep -oE '[0-9]+' || echo 0)
    x=$(grep -oE '[0-9]+ failed' <<<"$last" | grep -oE '[0-9]+' || echo 0)
    e=$(grep -oE '[0-9]+ errors?' <<<"$last" | grep -oE '[0-9]+' || echo 0)
    s=$(grep -oE '[0-9]+ skipped' <<<"$last" | grep -oE '[0-9]+' || echo 0)
    passed=$((passed + p)); failed=$((failed + x + e)); skipped=$((skipped + s))
done
echo "total: $passed passed, $failed failed, $skipped skipped"
exit "$status"
