//! The integration tests, one test binary: each file below is a module (`cargo test --test it
//! backfill::` runs one), and they all share [`support`]. One binary links the library and its
//! dependencies once, not once per file; the Lambda function's tests (`tests/lambda.rs`, feature
//! `lambda`) are the only other test binary.
//!
//! What the tests of one process share, and why that is safe: `support` keeps a ledger
//! directory and counters (unique file names, FIFO deduplication ids) process-wide; every moto
//! server ([`support::moto::Moto`]), emulator, Prometheus and Pushgateway is started by the test
//! that uses it, on a port of its own; the AWS SDK's retry token buckets, process-wide too, are
//! one per client (`support::moto`'s clients each take a retry partition of their own); and no
//! test changes the process's environment or working directory (the binary under test gets its
//! own, through [`support::command`]).

mod support;

mod backfill;
mod consume;
mod consume_ledger;
mod emulator_boto3;
mod faults;
mod fleet;
mod identity;
mod invite;
mod ledger;
mod moto_cognito;
mod moto_serial;
mod plan;
mod pool;
mod prometheus_e2e;
mod recheck;
mod release_profile;
mod report;
mod structure;
mod target;
mod waves;
