#!/usr/bin/env bash
# Benchmark: the Lambda function on cargo-lambda's local runtime (`cargo lambda watch`), against
# the bundled emulator (20 ms latency, no quota) and a DynamoDB ledger on moto. Prints the
# container's init time (settings to ready, as the function logs it), then the time of each
# invocation with a 10-record SQS batch of new UNCONFIRMED users, as the function measures it
# (arrival to answer), the first one being the cold container's.
#
#   scripts/bench-lambda.sh [INVOCATIONS]     (default 20)
#
# BENCH_RATE is the function's --rate (default 10, the default setting: ten calls take about a
# second, by design); BENCH_RATE=1000 shows what the function itself costs.
#
# The function is the debug build `cargo lambda watch` makes (no --release here: the figures
# are for comparing changes, not a promise of production latency).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
invocations="${1:-20}"
users=$(( invocations * 10 * 2 ))   # ~70 % of the seeded names are UNCONFIRMED

cargo build --quiet --locked --workspace --bins >&2
bin="${CARGO_TARGET_DIR:-target}/debug"
venv=.venv/bin
[ -x "$venv/cargo-lambda" ] || { echo "no $venv/cargo-lambda: run scripts/test-tools.sh" >&2; exit 1; }
work=$(mktemp -d)
cleanup() {
  [ -n "${watch_pid:-}" ] && kill -INT "$watch_pid" 2>/dev/null && wait "$watch_pid" 2>/dev/null
  kill "${moto_pid:-}" "${emu_pid:-}" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_emulator "$work" --seed "$users" --csv-out "$work/all.csv" --client-id benchclient \
  --latency 20ms
"$venv/python" scripts/moto_server.py --port 0 > "$work/moto.out" 2> "$work/moto.err" &
moto_pid=$!
for _ in $(seq 300); do grep -q '^listening on ' "$work/moto.out" 2>/dev/null && break; sleep 0.1; done
moto=$(sed -n 's/^listening on //p' "$work/moto.out")
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 \
  AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
"$bin/cognito-resend" ledger init --state dynamodb://bench --dynamodb-endpoint "$moto" \
  --region us-east-1 >&2

port=$("$venv/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
COGNITO_RESEND_COGNITO_ENDPOINT="$endpoint" COGNITO_RESEND_COGNITO_CLIENT_ID=benchclient \
COGNITO_RESEND_AWS_REGION=us-east-1 COGNITO_RESEND_LEDGER_PATH=dynamodb://bench \
COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT="$moto" COGNITO_RESEND_RUN_RATE="${BENCH_RATE:-10}" \
COGNITO_RESEND_LAMBDA_TIMEOUT=60s COGNITO_RESEND_LOG_FORMAT=json \
  "$venv/cargo-lambda" lambda watch --ignore-changes --invoke-address 127.0.0.1 \
  --invoke-port "$port" --features lambda --bin cognito-resend-lambda > "$work/function.out" 2>&1 &
watch_pid=$!
for _ in $(seq 600); do grep -q 'starting Runtime server' "$work/function.out" && break; sleep 0.1; done

# Batches of 10 UNCONFIRMED users, each user in one batch only.
grep ',UNCONFIRMED$' "$work/all.csv" | cut -d, -f1 | head -n $(( invocations * 10 )) > "$work/users"
split -l 10 -d -a 4 "$work/users" "$work/batch-"
for batch in "$work"/batch-*; do
  "$venv/python" - "$batch" > "$batch.json" <<'PY'
import json, sys
names = open(sys.argv[1]).read().split()
print(json.dumps({"Records": [{
    "messageId": f"m-{n}", "receiptHandle": f"r-{n}", "body": json.dumps({"username": n}),
    "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench", "awsRegion": "us-east-1"}
    for n in names]}))
PY
  answer=$("$venv/cargo-lambda" lambda invoke --invoke-address 127.0.0.1 --invoke-port "$port" \
    --data-file "$batch.json" --output-format json | tr -d ' \n')
  [ "$answer" = '{"batchItemFailures":[]}' ] || { echo "unexpected answer: $answer" >&2; exit 1; }
done

"$venv/python" - "$work/function.out" <<'PY'
import json, statistics, sys
init, runs = None, []
for line in open(sys.argv[1]):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if "init_seconds" in event:
        init = event["init_seconds"]
    if event.get("message") == "invocation done" or event.get("fields", {}).get("message") == "invocation done":
        runs.append(event.get("seconds", event.get("fields", {}).get("seconds")))
warm = sorted(runs[1:])
print(f"init (settings to ready)     {init * 1000:.1f} ms")
print(f"first invocation (cold)      {runs[0] * 1000:.1f} ms")
print(f"warm invocations             {len(warm)}")
print(f"warm median                  {statistics.median(warm) * 1000:.1f} ms")
print(f"warm max                     {warm[-1] * 1000:.1f} ms")
PY
