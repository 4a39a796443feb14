//! # cognito-resend
//!
//! Re-sends Amazon Cognito sign-up confirmation codes (`ResendConfirmationCode`) to users who
//! never confirmed, at scale and safely. The contract is docs/contract.md; the README is the
//! user's guide.
//!
//! # Layout
//!
//! ```text
//!  source ──► engine ──► ledger (claim) ──► cognito ──► ledger (record) ──► source (ack) ──► outcome
//!  csv/sqs/   semaphore,                    the one                         SQS delete      report,
//!  pool       rate, retry                   caller                                          metrics, logs
//! ```
//!
//! The folders follow a job through that pipeline:
//!
//! - [`job`]: what a job is (request, origin, the `Source`/`Settle` traits, checks, outcome
//!   types, the `Reason` enum); imports nothing above it.
//! - [`source`]: where jobs come from (a CSV file or stdin, an SQS queue, the pool). A
//!   [`job::Source`] yields jobs only when the engine can start them, and is told each job's
//!   fate.
//! - [`engine`]: the concurrency semaphore, the quota-finding rate controller and the resend's
//!   retry policy; it knows no source type.
//! - `retry`: the one retry executor (backoff, budget, rate limiter, stop token) every repeated
//!   call goes through.
//! - [`ledger`]: the send ledger each job claims its user in before the call and records the
//!   result in after it (SQLite or DynamoDB): cooldown, no two calls for one user at once,
//!   in-doubt handling after a crash, the fleet census, spend caps.
//! - [`cognito`]: the one place that talks to Cognito, and the classification of its answers.
//! - [`outcome`]: every job's one outcome: counted, reported (JSON Lines), logged, shown.
//! - [`telemetry`]: logs, metrics (`/metrics`, `/healthz`, `/readyz`), the Pushgateway.
//! - [`report`]: after the run, reports read back and summed up (`cognito-resend report`):
//!   text, JSON, or an HTML page with pictures.
//!
//! Around them: [`cli`] (raw arguments), [`config`] (layered, validated settings), [`cmd`]
//! (one file per command, over the parts they share; nothing below it imports it), `aws` (the
//! one AWS SDK config builder), [`shutdown`] (signals). With the `lambda` feature, `cmd::lambda`
//! is the AWS Lambda function over the same parts, and `lambda` holds what only it needs (its
//! events, deadline, EMF metrics, the secret from Secrets Manager). The bundled Cognito emulator that the
//! tests, the demo and the benchmarks run against is a crate of its own
//! (`crates/cognito-emulator`), not part of the worker.
//!
//! # Public surface
//!
//! Three modules are public: [`cli`] and [`cmd`] for the two binaries (each parses its command
//! line and hands it to `cmd::main` or `cmd::lambda::main`), and [`testing`], the re-exports the
//! integration tests assemble runs and drive ledgers with. Every other module is `pub(crate)`,
//! and `unreachable_pub` keeps their items so: the tool's contract is its command line, files
//! and metrics, not a Rust API. `tests/it/structure.rs` fails on an import
//! cycle between these modules.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
// These docs are for the people who work on the tool, read with `--document-private-items`
// (scripts/test.sh builds them so): module docs link the private modules beside them.
#![allow(rustdoc::private_intra_doc_links)]

mod aws;
pub mod cli;
pub mod cmd;
pub(crate) mod cognito;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod job;
#[cfg(feature = "lambda")]
pub(crate) mod lambda;
pub(crate) mod ledger;
pub(crate) mod outcome;
pub(crate) mod report;
pub(crate) mod retry;
pub(crate) mod shutdown;
pub(crate) mod source;
pub(crate) mod sync;
pub(crate) mod telemetry;
pub mod testing;
