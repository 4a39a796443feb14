//! What only the Lambda shape needs (feature `lambda`; the function itself is `cmd::lambda`,
//! docs/lambda.md): reading the events Lambda hands the function ([`event`]), the invocation's
//! time budget ([`deadline`]), the metrics as CloudWatch Embedded Metric Format lines
//! ([`emf`]), and the client secret from AWS Secrets Manager ([`secret`]).
//!
//! The work itself is the CLI's: the records of an SQS event become a
//! `source::lambda_batch::BatchSource`, a scheduled event runs `backfill --from-pool`'s pool source,
//! and both go through the one engine, ledger, Cognito client and recorder.

pub(crate) mod deadline;
pub(crate) mod emf;
pub(crate) mod event;
pub(crate) mod secret;
