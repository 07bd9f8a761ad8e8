#!/usr/bin/env bash
# A RabbitMQ 4.x broker for testcontainers on a machine without Docker or a registry.
#
#   bash tests/container_broker.sh          build the image if missing, start podman's API,
#                                           print the environment a test run needs
#   eval "$(bash tests/container_broker.sh)"
#   bash tests/container_broker.sh build    only the image
#   bash tests/container_broker.sh rebuild  drop the cached image and build it again
#
# No container registry is reachable here, so the image is made locally: a Debian 13
# ("trixie") root file system with Debian's rabbitmq-server (4.0.x, Erlang 27) made by
# debootstrap, imported with `podman import`. It is cached in podman's store and rebuilt only
# when missing or made by an older version of this script (the image's label
# declare-amqp.image differs from IMAGE_REVISION below). podman's Docker-compatible API then
# serves testcontainers.
#
# Plugins enabled in the image: management, and federation and shovel with their management
# parts (tests/tls/test_federation_shovel.py runs against it in the container run).
#
# People with Docker and a registry need none of this: set RABBITMQ_IMAGE=rabbitmq:4-management
# and TEST_BROKER=container (see README, "Testing against another broker").
#
# Everything it needs (podman, runc, debootstrap) comes from Debian's packages.
set -euo pipefail

IMAGE="${RABBITMQ_IMAGE:-localhost/rabbitmq:4.0-management}"
SOCK="${PODMAN_SOCKET:-/run/podman/podman.sock}"
SUITE="${RABBITMQ_DEBIAN_SUITE:-trixie}"
# Bump when the image's contents change, so a cached older image is rebuilt.
IMAGE_REVISION=2
PLUGINS="rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management,rabbitmq_shovel,rabbitmq_shovel_management"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

log() { printf '==> %s\n' "$*" >&2; }

ensure_packages() {
    local missing=()
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing Debian's ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    export PATH="$PATH:/usr/sbin:/sbin"
}

ensure_podman_config() {
    # crun fails in this sandbox ("cgroups in hybrid mode not supported") and ulimits above
    # the sandbox's own cannot be set (no CAP_SYS_RESOURCE): runc and modest ulimits.
    local conf=/etc/containers/containers.conf
    if ! grep -q 'declare-amqp test broker' "$conf" 2>/dev/null; then
        log "configuring podman ($conf): runtime runc, ulimits the sandbox allows"
        $SUDO mkdir -p /etc/containers
        [ -f "$conf" ] && $SUDO cp "$conf" "$conf.before-declare-amqp"
        $SUDO tee "$conf" >/dev/null <<'EOF'
# written by declare-amqp's tests/container_broker.sh (declare-amqp test broker)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
    fi
}

image_revision() {
    $SUDO podman image inspect --format '{{ index .Labels "declare-amqp.image" }}' "$IMAGE" 2>/dev/null || true
}

build_image() {
    case "$IMAGE" in
        localhost/*) ;;
        *)
            $SUDO podman image exists "$IMAGE" 2>/dev/null && { log "image $IMAGE is cached"; return 0; }
            log "pulling $IMAGE"; $SUDO podman pull "$IMAGE" >&2; return 0 ;;
    esac
    if $SUDO podman image exists "$IMAGE" 2>/dev/null; then
        if [ "$(image_revision)" = "$IMAGE_REVISION" ]; then
            log "image $IMAGE is cached"
            return 0
        fi
        log "image $IMAGE is from an older tests/container_broker.sh: rebuilding it"
        $SUDO podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
    fi
    local started dir
    started=$(date +%s)
    dir="$(mktemp -d /var/tmp/rabbitmq4-rootfs.XXXXXX)"
    # shellcheck disable=SC2064
    trap "$SUDO rm -rf '$dir'" RETURN
    log "building $IMAGE: debootstrap $SUITE with rabbitmq-server into $dir (a few minutes)"
    if ! $SUDO debootstrap --variant=minbase --include=rabbitmq-server,ca-certificates \
        "$SUITE" "$dir" >"$dir.log" 2>&1; then
        tail -n 30 "$dir.log" >&2
        echo "error: debootstrap of $SUITE failed (log: $dir.log)" >&2
        return 1
    fi
    $SUDO mkdir -p "$dir/etc/rabbitmq"
    $SUDO tee "$dir/etc/rabbitmq/rabbitmq.conf" >/dev/null <<'EOF'
# Test broker: guest may connect through the container's mapped ports.
loopback_users = none
listeners.tcp.default = 5672
management.tcp.port = 15672
EOF
    echo "[${PLUGINS}]." | $SUDO tee "$dir/etc/rabbitmq/enabled_plugins" >/dev/null
    # A cookie made at build time would be shared by every container: let each make its own.
    $SUDO rm -f "$dir/var/lib/rabbitmq/.erlang.cookie"
    $SUDO rm -rf "$dir/var/cache/apt/archives"/*.deb "$dir/var/lib/apt/lists"/*
    $SUDO tar -C "$dir" -cf - . | $SUDO podman import \
        --change 'CMD ["rabbitmq-server"]' \
        --change 'ENV HOME=/var/lib/rabbitmq' \
        --change 'EXPOSE 5672' --change 'EXPOSE 15672' \
        --change "LABEL declare-amqp.image=$IMAGE_REVISION" \
        - "$IMAGE" >/dev/null
    rm -f "$dir.log"
    log "built $IMAGE in $(( $(date +%s) - started )) s"
}

# Every call to the API is bounded: a service that accepted the connection but never answers
# (seen once: a CI run waited here until its 90 minutes ran out) must not hang the run.
ping() { curl -fsS --max-time 3 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

service_pids() { pgrep -f "podman system service .*unix://$SOCK" 2>/dev/null || true; }

# A service whose working directory was deleted (it was started from a checkout that has since
# been removed, e.g. an earlier CI clone) still answers _ping, but every container it starts
# fails ("write child: broken pipe"; its log: "conmon: Failed to get working directory"):
# such a service is stopped and started again, and a new one is started from /.
stale_service() {
    local pid
    for pid in $(service_pids); do
        case "$(readlink "/proc/$pid/cwd" 2>/dev/null)" in
            *" (deleted)") return 0 ;;
        esac
    done
    return 1
}

# Stop every service on $SOCK (TERM, then KILL after 10 s) and wait until none is left, so that
# a new one does not start beside an old one that still holds podman's locks.
stop_services() {
    local pids
    pids="$(service_pids)"
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    $SUDO kill $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
        [ -n "$(service_pids)" ] || return 0
        sleep 0.2
    done
    log "podman's API service did not stop on TERM; killing it"
    pids="$(service_pids)"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || $SUDO kill -9 $pids 2>/dev/null || true
    sleep 0.5
}

start_service() {
    $SUDO mkdir -p "$(dirname "$SOCK")"
    $SUDO rm -f "$SOCK"
    # From /, so the service never keeps a checkout as its working directory. The redirections
    # apply to the whole background subshell, which then becomes the service (exec): nothing
    # left running holds the caller's stdout. (Stop 24's CI run hung here: the subshell that
    # waited for the service kept the pipe of `$(bash tests/container_broker.sh)` open.)
    (cd / && exec nohup $SUDO podman system service --time=0 "unix://$SOCK") \
        </dev/null >/var/tmp/podman-service.log 2>&1 &
    for _ in $(seq 1 60); do
        ping && return 0
        sleep 0.5
    done
    return 1
}

ensure_service() {
    if stale_service; then
        log "restarting podman's API service: its working directory was deleted"
    elif [ -S "$SOCK" ] && ping; then
        return 0
    elif [ -n "$(service_pids)" ]; then
        log "restarting podman's API service: it runs but does not answer on $SOCK"
    fi
    stop_services
    log "starting podman's Docker-compatible API on unix://$SOCK"
    start_service && return 0
    log "podman's API did not answer within 30 s; stopping it and trying once more"
    stop_services
    start_service && return 0
    echo "error: podman system service did not answer on $SOCK; the end of its log:" >&2
    tail -n 20 /var/tmp/podman-service.log >&2 || true
    return 1
}

print_env() {
    # testcontainers-python believes it runs inside a container here (and then fails with
    # KeyError: 'HostConfig'): the host override and docker_host mode set it straight.
    cat <<EOF
export DOCKER_HOST=unix://$SOCK
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
export TESTCONTAINERS_CONNECTION_MODE=docker_host
export RABBITMQ_IMAGE=$IMAGE
export TEST_BROKER=container
EOF
}

case "${1:-all}" in
    build) ensure_packages; ensure_podman_config; build_image ;;
    rebuild) ensure_packages; ensure_podman_config; $SUDO podman rmi -f "$IMAGE" >/dev/null 2>&1 || true; build_image ;;
    service) ensure_packages; ensure_podman_config; ensure_service ;;
    env) print_env ;;
    all) ensure_packages; ensure_podman_config; build_image; ensure_service; print_env ;;
    *) echo "usage: $0 [all|build|rebuild|service|env]" >&2; exit 2 ;;
esac
