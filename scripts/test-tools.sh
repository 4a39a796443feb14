#!/usr/bin/env bash
# Installs what the test suite needs beyond cargo, idempotently:
#   - a project-local Python venv (.venv) with the pinned packages of tests/requirements.txt
#     (boto3, the independent client that proves the emulator faithful; moto[server], the
#     local SQS that tests start through scripts/moto_server.py; cargo-lambda, the local Lambda
#     runtime of tests/lambda.rs; cfn-lint, which lints deploy/lambda/template.yaml; checkov,
#     which scans deploy/);
#   - promtool and the Prometheus server (Debian package `prometheus`), which check the metrics
#     exposition and scrape a real run; the Pushgateway (Debian `prometheus-pushgateway`);
#   - headless Chromium (Debian package `chromium`), which renders `report --html` to a PNG;
#   - cargo-deny (pinned), which checks licenses, bans and sources against deny.toml.
# Prints the environment variables the tests read.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test-tools: $*" >&2; }

# --- Python venv -------------------------------------------------------------------------------
req=tests/requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating .venv with $req"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

# --- Debian packages ---------------------------------------------------------------------------
# apt_install PACKAGE COMMAND: installs PACKAGE unless COMMAND is already there. The packages'
# services are not wanted here (and cannot start without an init system).
apt_updated=
apt_install() {
  command -v "$2" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ]; then
    log "$2 is missing and installing it needs root: apt-get install $1"
    exit 1
  fi
  log "installing $2 (Debian package $1)"
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2; apt_updated=1; fi
  apt-get install -y -qq --no-install-recommends "$1" >&2 || {
    log "apt-get install $1 failed"; exit 1; }
}
# promtool and the Prometheus server check the exposition and scrape a real run; the end-to-end
# test pushes a backfill's final metrics to a real Pushgateway.
apt_install prometheus promtool
apt_install prometheus prometheus
apt_install prometheus-pushgateway prometheus-pushgateway
# `report --html` is rendered headless to a PNG by the report test, which asserts it loads clean.
apt_install chromium chromium

# --- cargo-deny ------------------------------------------------------------------------------
deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$deny_version"; then
  log "installing cargo-deny $deny_version (a few minutes, once)"
  cargo install --quiet --locked cargo-deny --version "$deny_version" >&2
fi

echo "export COGNITO_RESEND_TEST_PYTHON=$PWD/.venv/bin/python"
echo "export COGNITO_RESEND_TEST_PROMTOOL=$(command -v promtool)"
echo "export COGNITO_RESEND_TEST_PROMETHEUS=$(command -v prometheus)"
echo "export COGNITO_RESEND_TEST_PUSHGATEWAY=$(command -v prometheus-pushgateway)"
echo "export COGNITO_RESEND_TEST_CHROMIUM=$(command -v chromium)"
echo "export COGNITO_RESEND_TEST_CARGO_LAMBDA=$PWD/.venv/bin/cargo-lambda"
