//! Where jobs come from: the three implementations of [`crate::job::Source`]. A source yields
//! [`crate::job::Input`]s one at a time, when the engine has room for them, and is told how each
//! job ended ([`crate::job::Settle`]), so a queue can acknowledge it. The engine does not know
//! which source it runs: it knows only the traits, in [`crate::job`].
//!
//! - [`csv`]: a backfill file or stdin, streamed through a bounded channel.
//! - [`sqs`]: a queue, long-polled, with visibility heartbeats and batched deletes.
//! - [`pool`]: the user pool itself (ListUsers), for `discover` and `backfill --from-pool`.
//! - `lambda_batch`: the records of one SQS event already in memory (the Lambda function), which
//!   names at the end the records that must come back.

pub(crate) mod csv;
#[cfg(feature = "lambda")]
pub(crate) mod lambda_batch;
pub(crate) mod pool;
pub(crate) mod sqs;
