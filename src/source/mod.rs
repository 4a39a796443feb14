//! Where jobs come from. A [`Source`] yields [`Input`]s one at a time, when the engine has room
//! for them, and is told how each job ended ([`Settle`]), so a queue can acknowledge it. The
//! engine does not know which source it runs.
//!
//! - [`csv`]: a backfill file or stdin, streamed through a bounded channel.
//! - [`sqs`]: a queue, long-polled, with visibility heartbeats and batched deletes.
//! - [`pool`]: the user pool itself (ListUsers), for `discover` and `backfill --from-pool`.

pub mod csv;
pub mod pool;
pub mod sqs;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

use crate::outcome::Outcome;

/// Cognito's limit on a username's length, in characters.
pub const MAX_USERNAME_CHARS: usize = 128;

/// One ResendConfirmationCode to make, with every request field a job may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendRequest {
    /// The Cognito username (personal data: logs show it hashed).
    pub username: String,
    /// The job's own app client id; `None` uses `--client-id`.
    pub client_id: Option<String>,
    /// ClientMetadata, passed to the pool's Lambda triggers.
    pub client_metadata: BTreeMap<String, String>,
    /// AnalyticsMetadata.AnalyticsEndpointId.
    pub analytics_endpoint_id: Option<String>,
    /// UserContextData.EncodedData (advanced security).
    pub encoded_data: Option<String>,
    /// UserContextData.IpAddress.
    pub ip_address: Option<String>,
}

/// Where a job came from: the `source` field of the report and the key for acknowledging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A CSV record starting at this line (the header is line 1).
    Csv {
        /// 1-based line number.
        line: u64,
    },
    /// An SQS message.
    Sqs {
        /// Its MessageId.
        message_id: String,
    },
    /// A user discovered in the pool (`backfill --from-pool`).
    Pool {
        /// 1-based, in discovery order.
        index: u64,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Csv { line } => write!(f, "csv:{line}"),
            Self::Sqs { message_id } => write!(f, "sqs:{message_id}"),
            Self::Pool { index } => write!(f, "pool:{index}"),
        }
    }
}

/// A readable job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where it came from.
    pub origin: Origin,
    /// What to send.
    pub request: ResendRequest,
}

/// A row or message that could not be read: it ends as outcome `invalid`.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Where it came from.
    pub origin: Origin,
    /// What is wrong, naming the row or message.
    pub reason: String,
    /// The username, when one could be read at all.
    pub username: Option<String>,
}

/// What a source yields.
#[derive(Debug, Clone)]
pub enum Input {
    /// A job to run.
    Job(Job),
    /// A row or message that cannot become a job.
    Unreadable(Unreadable),
}

impl Input {
    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        match self {
            Self::Job(j) => &j.origin,
            Self::Unreadable(u) => &u.origin,
        }
    }
}

/// A stream of jobs.
pub trait Source: Send {
    /// The `source` label of `cognito_resend_jobs_total`.
    fn label(&self) -> &'static str;

    /// The next input, or `None` at the end. Called only when the engine can start a job now, so
    /// a source never needs to read further ahead than its own small buffer.
    fn next(&mut self) -> impl Future<Output = Option<Input>> + Send;

    /// The acknowledger the engine tells each job's fate.
    fn settler(&self) -> std::sync::Arc<dyn Settle>;

    /// The error that ended the input early (an unreadable file, a failed discovery), if any:
    /// jobs before it have their outcomes, the rest were never read.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
}

/// Told how each job ended, before the outcome is reported.
pub trait Settle: Send + Sync {
    /// `Some(outcome)`: the job ended so. `None`: the job was never attempted (the run stopped
    /// first) and should come back later. `Err(detail)`: the source could not acknowledge the
    /// outcome (a queue message that could not be deleted will come back), so the job is not
    /// done: the engine reports it `failed` with reason `ack_failed`.
    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// For sources with nothing to acknowledge (a file: rerunning it is how it resumes).
#[derive(Debug, Default)]
pub struct NothingToSettle;

impl Settle for NothingToSettle {
    fn settle<'a>(
        &'a self,
        _: &'a Origin,
        _: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Checks a username the way Cognito's model constrains it, so a bad one is `invalid` without a
/// call: not empty, at most 128 characters, no whitespace or control characters.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("username is empty".into());
    }
    let chars = username.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(format!(
            "username is {chars} characters long; Cognito allows at most {MAX_USERNAME_CHARS}"
        ));
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("username contains whitespace or control characters".into());
    }
    Ok(())
}
