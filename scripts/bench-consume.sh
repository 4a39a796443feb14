#!/usr/bin/env bash
# Benchmark: `consume` throughput over MESSAGES messages (default 20,000) on moto's SQS (one
# request at a time, scripts/moto_server.py) and the bundled Cognito emulator (20 ms latency),
# next to the queue's own ceiling: a loop that only receives and deletes, with the same SDK
# (examples/sqs_ceiling.rs). Also times `enqueue` filling the queue.
#
#   scripts/bench-consume.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
messages="${1:-20000}"

eval "$(scripts/test-tools.sh)" >/dev/null
cargo build --release --locked --workspace --bins --example sqs_ceiling >&2
bin="${CARGO_TARGET_DIR:-target}/release"
ceiling="$bin/examples/sqs_ceiling"
work=$(mktemp -d)
cleanup() {
  kill "${emu_pid:-}" "${moto_pid:-}" "${consumer_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$COGNITO_RESEND_TEST_PYTHON" scripts/moto_server.py --port 0 > "$work/moto.out" 2> "$work/moto.err" &
moto_pid=$!
for _ in $(seq 300); do grep -q '^listening on ' "$work/moto.out" 2>/dev/null && break; sleep 0.1; done
sqs=$(sed -n 's/^listening on //p' "$work/moto.out")
[ -n "$sqs" ] || { echo "moto did not start:" >&2; cat "$work/moto.err" >&2; exit 1; }
start_emulator "$work" --seed "$messages" --csv-out "$work/users.csv" --client-id benchclient \
  --latency 20ms

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
common=(--region us-east-1 --sqs-endpoint "$sqs")

# 1. enqueue
queue=$("$ceiling" "$sqs" create bench)
t0=$(date +%s.%N)
"$bin/cognito-resend" enqueue "$work/users.csv" --queue-url "$queue" "${common[@]}" --metrics-addr none -q
t1=$(date +%s.%N)

# 2. consume, until every message is deleted
"$bin/cognito-resend" consume --queue-url "$queue" --client-id benchclient --state "$work/ledger.db" \
  --cognito-endpoint "$endpoint" --concurrency 64 --rate 0 --wait-time 1s \
  --metrics-addr 127.0.0.1:0 "${common[@]}" 2> "$work/consumer.err" &
consumer_pid=$!
for _ in $(seq 300); do grep -q 'metrics on http://' "$work/consumer.err" && break; sleep 0.1; done
metrics=$(grep -o 'http://[0-9.:]*/metrics' "$work/consumer.err" | head -n 1)
t2=$(date +%s.%N)
while :; do
  deleted=$(curl -s "$metrics" | awk '/^cognito_resend_sqs_messages_total\{action="deleted"\}/ {print $2}')
  [ "${deleted:-0}" -ge "$messages" ] && break
  kill -0 "$consumer_pid" || { echo "consumer died:" >&2; cat "$work/consumer.err" >&2; exit 1; }
  sleep 0.2
done
t3=$(date +%s.%N)
kill -TERM "$consumer_pid"; wait "$consumer_pid" || true; consumer_pid=

# 3. the queue's ceiling: refill, then receive+delete only
"$bin/cognito-resend" enqueue "$work/users.csv" --queue-url "$queue" "${common[@]}" --metrics-addr none -q
drain=$("$ceiling" "$sqs" drain "$queue" 2)

awk -v n="$messages" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" 'BEGIN {
  printf "messages             %d\n", n;
  printf "enqueue              %.0f messages/s (%.1f s)\n", n / (t1 - t0), t1 - t0;
  printf "consume              %.0f jobs/s (%.1f s; 64 in flight, 20 ms per Cognito call)\n", n / (t3 - t2), t3 - t2;
}'
echo "queue ceiling        $drain"
