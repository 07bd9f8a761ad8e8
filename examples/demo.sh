#!/usr/bin/env bash
# The README's demo: the email topology, a backlog on both email queues, and the email worker
# (email.high prefetch 10, email.default prefetch 2, from the topology's consumers section) run
# for a bounded time by the priority-worker runner; prints the observed high:default share
# (about 5:1), then shows that `declare-amqp plan --prune` has nothing to do while a few
# greylisted emails wait in the worker's retry delay queue, and stops.
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
.venv/bin/python examples/publish_emails.py --purge --high 6000 --default 1600 --bulk 400 \
    --greylisted 5

say "running the email worker for ${SECONDS_TO_RUN}s, settings from the topology's consumer (logs: $LOG)"
(cd examples && exec ../.venv/bin/priority-worker run email_worker:send_email \
    --url "$AMQP_URL" --topology ../topology.example.yml --consumer email-sender 2>"$LOG") &
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
echo "expected share with prefetch 10 and 2 under backlog: 5.00:1"

say "declare-amqp plan --prune while the greylisted emails wait in their retry delay queue"
.venv/bin/declare-amqp --url "$AMQP_URL" plan --prune --detailed-exitcode topology.example.yml
.venv/bin/python - "$AMQP_URL" <<'PY'
import sys, pika
ch = pika.BlockingConnection(pika.URLParameters(sys.argv[1])).channel()
n = ch.queue_declare("email.high.delay.30000", passive=True).method.message_count
print(f"email.high.delay.30000 holds {n} greylisted email(s), retried within 30 s; "
      "declare-amqp derived it from the consumer, prune leaves it")
PY

say "left in the queues (cleaned up now):"
.venv/bin/python examples/publish_emails.py --purge --high 0 --default 0 --bulk 0 --quiet
