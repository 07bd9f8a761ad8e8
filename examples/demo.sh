#!/usr/bin/env bash
# The README's demo: the email topology, a backlog on both email queues, and the email worker
# (email.high prefetch 10, email.default prefetch 2) run for a bounded time by the
# priority-worker runner; prints the observed high:default share (about 5:1) and stops.
#
#   bash examples/demo.sh            (AMQP_URL selects the broker; default: local, vhost /)
#
# Takes well under a minute: broker check, declare-amqp apply, ~8,000 confirmed publishes,
# DEMO_SECONDS (default 10) of consuming, clean-up.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
SECONDS_TO_RUN="${DEMO_SECONDS:-10}"
LOG="$(mktemp -t email-worker.XXXXXX.log)"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

bash tests/ensure_env.sh

say "declare-amqp apply topology.example.yml"
.venv/bin/declare-amqp --url "$AMQP_URL" apply topology.example.yml

say "publishing a backlog (email.high, email.default, and email.bulk via the alternate exchange)"
.venv/bin/python examples/publish_emails.py --purge --high 6000 --default 1600 --bulk 400

say "running the email worker for ${SECONDS_TO_RUN}s (logs: $LOG)"
(cd examples && exec ../.venv/bin/priority-worker run email_worker:send_email \
    --url "$AMQP_URL" --queue email.high=10 --queue email.default=2 \
    --dead-letter-exchange email.dlx 2>"$LOG") &
worker=$!
sleep "$SECONDS_TO_RUN"
kill -TERM "$worker" 2>/dev/null || true
status=0
wait "$worker" || status=$?
if [ "$status" != 0 ]; then
    echo "the worker exited with $status; its last log lines:" >&2
    tail -n 20 "$LOG" >&2
    exit "$status"
fi

say "left in the queues (cleaned up now):"
.venv/bin/python examples/publish_emails.py --purge --high 0 --default 0 --bulk 0 --quiet
echo "expected share with prefetch 10 and 2 under backlog: 5.00:1"
