#!/usr/bin/env bash
# Benchmark: `backfill` throughput and footprint against the bundled emulator (20 ms latency,
# no quota), --concurrency 64 --rate 0. Prints jobs/s, the ideal (concurrency / latency), their
# ratio, CPU seconds per 1,000 jobs and peak RSS of the worker process, and the size of the
# release binary (fails over 40 MiB).
#
#   scripts/bench.sh [ROWS]      (default 100000; the memory run uses 1000000)
#
# The worker keeps its default SQLite ledger in a fresh file; BENCH_STATE=none (or
# dynamodb://...) measures another ledger. BENCH_RATE=R runs with `--rate R` instead of
# `--rate 0`: a ceiling far above the ideal (5000) measures the engine without the slow start
# of `--rate 0` (which takes about 4 s to reach 3,200/s, a fixed cost per run).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
rows="${1:-100000}"
concurrency=64
latency_ms=20

cargo build --release --locked --workspace --bins >&2
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
trap 'kill "${emu_pid:-}" 2>/dev/null || true; wait "${emu_pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

# The seeded pool's CSV has one row per seeded name (~70 % UNCONFIRMED, ~20 % CONFIRMED, ~10 %
# missing from the pool): every row is one ResendConfirmationCode call.
seed=$rows
start_emulator "$work" --seed "$seed" --csv-out "$work/all.csv" --client-id benchclient \
  --latency "${latency_ms}ms"
head -n $(( rows + 1 )) "$work/all.csv" > "$work/users.csv"
actual=$(( $(wc -l < "$work/users.csv") - 1 ))

/usr/bin/time -f '%e %U %S %M' -o "$work/time" \
  "$bin/cognito-resend" backfill "$work/users.csv" --client-id benchclient --region us-east-1 \
  --cognito-endpoint "$endpoint" --concurrency "$concurrency" --rate "${BENCH_RATE:-0}" --metrics-addr none \
  --report "$work/report.jsonl" --state "${BENCH_STATE:-$work/ledger.db}" -q || { echo "backfill failed (exit $?)" >&2; exit 1; }

read -r wall user sys rss_kb < "$work/time"
awk -v rows="$actual" -v wall="$wall" -v user="$user" -v sys="$sys" -v rss="$rss_kb" \
    -v c="$concurrency" -v lat="$latency_ms" -v state="${BENCH_STATE:-sqlite}" \
    -v rate_flag="--rate ${BENCH_RATE:-0}" 'BEGIN {
  rate = rows / wall; ideal = c / (lat / 1000.0);
  printf "rows                 %d\n", rows;
  printf "ledger               %s\n", state;
  printf "rate                 %s\n", rate_flag;
  printf "wall                 %.2f s\n", wall;
  printf "jobs/s               %.0f\n", rate;
  printf "ideal (c/latency)    %.0f\n", ideal;
  printf "ratio                %.3f\n", rate / ideal;
  printf "CPU s per 1000 jobs  %.3f (user %.2f s + sys %.2f s)\n", (user + sys) / rows * 1000, user, sys;
  printf "peak RSS             %.1f MiB\n", rss / 1024.0;
}'
echo "report lines         $(wc -l < "$work/report.jsonl")"
# The same command again: everyone is either in cooldown or known confirmed or missing
# (--recheck-after), so a rerun should make no call at all.
requests() {
  python3 - "$endpoint" <<'PY'
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/_emulator/stats"))["requests_total"])
PY
}
before=$(requests)
/usr/bin/time -f '%e' -o "$work/time2" \
  "$bin/cognito-resend" backfill "$work/users.csv" --client-id benchclient --region us-east-1 \
  --cognito-endpoint "$endpoint" --concurrency "$concurrency" --rate "${BENCH_RATE:-0}" --metrics-addr none \
  --state "${BENCH_STATE:-$work/ledger.db}" ${BENCH_RECHECK:+--recheck-after "$BENCH_RECHECK"} -q \
  || { echo "the rerun failed (exit $?)" >&2; exit 1; }
echo "rerun calls          $(( $(requests) - before )) (of $actual rows; wall $(cat "$work/time2") s)"
# What `cargo install` and the image ship: the release profile strips the debug info.
size=$(stat -c %s "$bin/cognito-resend")
awk -v s="$size" 'BEGIN { printf "release binary       %.1f MiB (at most 40)\n", s / 1048576 }'
[ "$size" -le $(( 40 * 1024 * 1024 )) ] || {
  echo "the release binary is over 40 MiB: does [profile.release] still strip the debug info?" >&2
  exit 1
}
