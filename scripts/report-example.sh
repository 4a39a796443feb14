#!/usr/bin/env bash
# The README's `report` example: a 2,000-user backfill against the bundled emulator with a quota
# that drops mid-run (so throttles show), 20 ms per call, a few answers lost after the send (users
# in doubt; Cognito's per-user attempt limit then fails them), and three unreadable rows; then
# `cognito-resend report` as text and as HTML, rendered by headless Chromium to docs/report.png.
#
#   scripts/report-example.sh [OUT_DIR]      (default: a temporary directory; the PNG goes to docs/)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

cargo build --locked --workspace --bins
bin="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)"
work="${1:-$(mktemp -d)}"
mkdir -p "$work"
trap 'kill "${emu_pid:-}" 2>/dev/null || true; wait "${emu_pid:-}" 2>/dev/null || true' EXIT

start_emulator "$work" --seed 2000 --csv-out "$work/users.csv" --client-id democlient \
  --latency 20ms --quota-schedule 0s=60,15s=25,30s=60 --error-after-rate 0.004 --attempt-limit 1
# Three rows no backfill can read: a space, an empty username, a zero-width space.
printf '"user 2001",x,UNCONFIRMED\n"",x,UNCONFIRMED\nuser-\xe2\x80\x8b2002,x,UNCONFIRMED\n' \
  >> "$work/users.csv"

"$bin/cognito-resend" backfill "$work/users.csv" --client-id democlient --region us-east-1 \
  --cognito-endpoint "$endpoint" --rate 0 --concurrency 32 --metrics-addr none \
  --state "$work/ledger.db" --report "$work/report.jsonl" || true
echo
(cd "$work" && "$bin/cognito-resend" report report.jsonl --html report.html)

chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
  --user-data-dir="$work/chromium" --window-size=1200,1920 \
  --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo
echo "page: $work/report.html; screenshot: docs/report.png"
