#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests (the emulator, boto3, moto,
# promtool, a Prometheus server and a Pushgateway, the Lambda function on cargo-lambda's local
# runtime), and the checks of deploy/.
# This is the README's test command and what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/test-tools.sh)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy --all-features (the Lambda function, feature lambda)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
echo "== cargo doc (the developers' docs: broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked
echo "== cargo deny (licenses, bans, sources; see deny.toml for advisories)"
cargo deny --log-level error check bans licenses sources
echo "== cargo test"
cargo test --workspace --all-features --locked -- --test-threads 4
echo "== deploy/ (hadolint, kubernetes-validate, CRD fields, config keys, IAM, dashboard, promtool, cfn-lint)"
scripts/check-deploy.sh -q
echo "== all tests passed"
