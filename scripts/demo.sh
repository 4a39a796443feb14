#!/usr/bin/env bash
# The demo: no AWS account needed. Builds the project, starts the bundled Cognito emulator with
# a seeded pool (UNCONFIRMED, CONFIRMED and missing users), and runs a real `backfill` against it
# over HTTP through the AWS SDK, with the progress bar and the final summary.
#
#   scripts/demo.sh [USERS]      (default 3000)
#
# Its files (the CSV, the report, the ledger) live in a temporary folder that is removed when the
# demo ends; DEMO_KEEP=1 keeps it (and says where).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
users="${1:-3000}"

cargo build --release --locked --workspace --bins
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
cleanup() {
  kill "${emu_pid:-}" 2>/dev/null || true
  wait "${emu_pid:-}" 2>/dev/null || true
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "The demo's files are kept in $work (DEMO_KEEP=1)."
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# 20 ms per call, like a real network round trip to Cognito.
start_emulator "$work" --seed "$users" --csv-out "$work/users.csv" --client-id democlient \
  --latency 20ms
echo "Cognito emulator at $endpoint with $users users; CSV: $work/users.csv"
echo

status=0
"$bin/cognito-resend" backfill "$work/users.csv" --config config/demo.toml \
  --cognito-endpoint "$endpoint" --report "$work/report.jsonl" --state "$work/ledger.db" \
  || status=$?

echo
echo "Report (first lines of $work/report.jsonl):"
head -n 3 "$work/report.jsonl"
echo
echo "The same command again: the ledger ($work/ledger.db) remembers who was sent a code, so"
echo "this run sends nobody twice (outcome cooldown), and asks Cognito nothing it already"
echo "answered (known_confirmed, known_missing: --recheck-after):"
"$bin/cognito-resend" backfill "$work/users.csv" --config config/demo.toml \
  --cognito-endpoint "$endpoint" --state "$work/ledger.db" --metrics-addr none 2>&1 \
  | grep -E '^(backfill|  outcomes):' || true

echo
echo "What the emulator recorded:"
python3 - "$endpoint" <<'PY'
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/stats"))
print(f"  requests {s['requests_total']}, codes sent {s['sends_total']}, "
      f"users sent more than once {s['users_sent_more_than_once']}, max in flight {s['max_in_flight']}")
PY
exit "$status"
