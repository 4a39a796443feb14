//! # cognito-resend
//!
//! Re-sends Amazon Cognito sign-up confirmation codes (`ResendConfirmationCode`) to users who
//! never confirmed, at scale and safely. The contract is docs/contract.md; the README is the
//! user's guide.
//!
//! # Layout
//!
//! The folders follow a job through the pipeline:
//!
//! - [`source`]: where jobs come from (a CSV file or stdin, an SQS queue). A
//!   [`source::Source`] yields jobs only when the engine can start them, and is told each job's
//!   fate.
//! - [`engine`]: the concurrency semaphore, the adaptive rate limit and the one retry layer.
//! - [`ledger`]: the send ledger each job claims its user in before the call and records the
//!   result in after it (SQLite or DynamoDB): cooldown, no two calls for one user at once, and
//!   in-doubt handling after a crash.
//! - [`retry`]: the one retry executor (backoff, budget, rate limiter, stop token) every
//!   repeated call goes through.
//! - [`cognito`]: the one place that talks to Cognito, and the classification of its answers.
//! - [`outcome`]: every job's one outcome: counted, reported (JSON Lines), logged.
//! - [`telemetry`]: logs, metrics (`/metrics`, `/healthz`, `/readyz`), progress and summary.
//!
//! Around them: [`cli`] (raw arguments), [`config`] (layered, validated settings), [`cmd`]
//! (one file per command, over the parts they share), [`shutdown`] (signals). The bundled Cognito emulator that the
//! tests, the demo and the benchmarks run against is a crate of its own
//! (`crates/cognito-emulator`), not part of the worker.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod aws;
pub mod cli;
pub mod cmd;
pub mod cognito;
pub mod config;
pub mod engine;
pub mod job;
pub mod ledger;
pub mod outcome;
pub mod retry;
pub mod shutdown;
pub mod source;
pub mod telemetry;
