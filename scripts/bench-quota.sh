#!/usr/bin/env bash
# Benchmark: how close to a shared Cognito quota cognito-resend runs without pushing the account
# into throttling, next to a boto3 thread pool in botocore's `adaptive` retry mode, in the same
# run. Each case gets a fresh bundled emulator (release build, loopback)
# with the case's quota (50/s unless said) and latency; its client processes start side by side
# against it. Per case it prints wall / ideal (N / Q), the share of the quota used and the share of
# calls throttled, all from the emulator's own per-second counts (GET /_emulator/rates and
# /_emulator/stats), not from the clients' view.
#
#   scripts/bench-quota.sh [N]     N users for the 50/s cases (default 1000, ~20 s per case at
#                                  the ideal); the other cases scale from it
#   BENCH_ONLY=text                runs only the cases whose name contains text
#   BENCH_CLIENT=worker|boto3      runs only that client's cases
#   BENCH_WORK=dir                 keeps each case's files there (rates.json: the emulator's
#                                  per-second counts), instead of a temporary directory
#   BENCH_PYTHON=path              a Python with boto3 (default: the project's .venv, made by
#                                  scripts/test-tools.sh)
#
# The fleet cases (10 processes sharing one SQLite ledger with --fleet-rate) are skipped, with a
# line saying so, while `cognito-resend backfill --help` does not list --fleet-rate. About 8
# minutes on a 2-core machine at the default N.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"

cargo build --release --locked --workspace --bins >&2
bin="${CARGO_TARGET_DIR:-target}/release"
python="${BENCH_PYTHON:-${COGNITO_RESEND_TEST_PYTHON:-$PWD/.venv/bin/python}}"
if ! "$python" -c 'import boto3' 2>/dev/null; then
  echo "bench-quota: $python has no boto3; run: eval \"\$(scripts/test-tools.sh)\" first" >&2
  exit 1
fi
if [ -n "${BENCH_WORK:-}" ]; then
  # Kept afterwards: per case, the emulator's per-second counts (rates.json) and the clients' logs.
  work="$BENCH_WORK"; mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

"$python" scripts/bench_quota.py --bin "$bin" --python "$python" --work "$work" --n "$n" \
  ${BENCH_ONLY:+--only "$BENCH_ONLY"} ${BENCH_CLIENT:+--client "$BENCH_CLIENT"}
