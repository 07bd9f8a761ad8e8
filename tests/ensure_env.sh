#!/usr/bin/env bash
# Make this checkout ready to run: a virtual environment with the package, and
# a RabbitMQ broker that answers on AMQP and on the management HTTP API.
#
#   bash tests/ensure_env.sh        (sourced by tests/run.sh and examples/demo.sh)
#
# The broker is the one named by AMQP_URL; without AMQP_URL it is the local one
# on 127.0.0.1:5672. A local broker that is not installed is installed from
# Debian's packages (rabbitmq-server), started, and its management plugin is
# enabled. Everything here is idempotent: a second run only checks.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_venv() {
    local stamp="$VENV/.installed-$(cksum <"$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -x "$VENV/bin/python" ]; then
        if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import ensurepip, venv" 2>/dev/null; then
            log "installing Debian's python3 and python3-venv"
            $SUDO apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3 python3-venv >/dev/null
        fi
        log "creating virtual environment $VENV"
        python3 -m venv "$VENV"
    fi
    if [ ! -e "$stamp" ]; then
        log "installing declare-amqp and its test tools into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q -e "$ROOT[test,bench,dev]" >"$VENV/install.log" 2>&1 || { cat "$VENV/install.log" >&2; exit 1; }
        rm -f "$VENV"/.installed-*
        touch "$stamp"
    fi
}

amqp_host_port() {
    # host and port of AMQP_URL (or the local default), for the readiness probe
    "$VENV/bin/python" - <<'PY'
import os, urllib.parse
u = urllib.parse.urlsplit(os.environ.get("AMQP_URL", "amqp://127.0.0.1:5672/").split(",")[0])
print(u.hostname or "127.0.0.1", u.port or (5671 if u.scheme == "amqps" else 5672))
PY
}

port_open() { "$VENV/bin/python" -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2).close()" "$1" "$2" 2>/dev/null; }

ensure_local_broker() {
    if ! command -v rabbitmqctl >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmqctl ]; then
        log "no RabbitMQ installed: installing Debian's rabbitmq-server"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"
    if ! $SUDO rabbitmqctl -q ping >/dev/null 2>&1 && ! $SUDO rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
        log "starting RabbitMQ"
        $SUDO rabbitmq-server -detached >/dev/null 2>&1 || $SUDO service rabbitmq-server start || true
        for _ in $(seq 1 60); do
            $SUDO rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
            sleep 2
        done
    fi
    $SUDO rabbitmqctl -q await_startup >/dev/null 2>&1 || true
    # A previous test run may have left the memory alarm on or the app stopped.
    $SUDO rabbitmqctl -q start_app >/dev/null 2>&1 || true
    $SUDO rabbitmqctl -q set_vm_memory_high_watermark 0.4 >/dev/null 2>&1 || true
    if ! $SUDO rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1; then
        log "enabling the management plugin"
        $SUDO rabbitmq-plugins -q enable rabbitmq_management >/dev/null
    fi
}

wait_ready() {
    local host port
    read -r host port < <(amqp_host_port)
    local mgmt="${RABBITMQ_MANAGEMENT_URL:-http://$host:15672}"
    for i in $(seq 1 90); do
        if port_open "$host" "$port" && \
           "$VENV/bin/python" - "$mgmt" <<'PY' 2>/dev/null
import os, sys, urllib.parse, httpx
url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/").split(",")[0]
u = urllib.parse.urlsplit(url)
auth = (urllib.parse.unquote(u.username or "guest"), urllib.parse.unquote(u.password or "guest"))
r = httpx.get(sys.argv[1].rstrip("/") + "/api/overview", auth=auth, timeout=3)
sys.exit(0 if r.status_code == 200 else 1)
PY
        then
            log "broker ready: AMQP $host:$port, management $mgmt"
            return 0
        fi
        [ "$i" = 1 ] && log "waiting for AMQP $host:$port and management $mgmt"
        sleep 2
    done
    echo "error: RabbitMQ did not answer on AMQP $host:$port and $mgmt within 180 s" >&2
    return 1
}

ensure_venv
if [ -z "${AMQP_URL:-}" ] || [[ "${AMQP_URL}" =~ ://([^@/]*@)?(127\.0\.0\.1|localhost)(:5672)?/ ]]; then
    ensure_local_broker
fi
wait_ready
