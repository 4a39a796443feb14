//! How jobs end. Every job ends in exactly one [`Outcome`]; the [`Recorder`] is the one place that
//! counts it (metrics, summary), writes it (report) and shows it (progress). The source is told
//! first (a queue deletes the message), so a job is reported done only once its source agrees.

pub mod recorder;
pub mod report;

use serde::Serialize;

pub use recorder::{Recorder, Tally};

/// The outcome of a job, as SPEC.md's table names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Cognito accepted the resend.
    Sent,
    /// The user is already confirmed.
    AlreadyConfirmed,
    /// No such user for this client.
    NotFound,
    /// Sent to this client+username within the cooldown, as the ledger shows.
    Cooldown,
    /// `--dry-run`: everything but the send.
    DryRun,
    /// The row or message could not be read.
    Invalid,
    /// A permanent error, or the retry budget ran out.
    Failed,
}

impl OutcomeKind {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [OutcomeKind; 7] = [
        Self::Sent,
        Self::AlreadyConfirmed,
        Self::NotFound,
        Self::Cooldown,
        Self::DryRun,
        Self::Invalid,
        Self::Failed,
    ];

    /// The label value and report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::AlreadyConfirmed => "already_confirmed",
            Self::NotFound => "not_found",
            Self::Cooldown => "cooldown",
            Self::DryRun => "dry_run",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where Cognito says the code went (CodeDeliveryDetails).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// EMAIL or SMS.
    pub medium: Option<String>,
    /// Masked by Cognito, e.g. `a***@e***`.
    pub destination: Option<String>,
    /// The attribute the code went to (email, phone_number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
}

/// Why a job is *in doubt*: the user may have received a code that the ledger cannot confirm.
/// The report says `"in_doubt": true` with this as `in_doubt_cause`, and
/// `cognito_resend_in_doubt_total{cause}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DoubtCause {
    /// A run that died (or was fenced) had claimed the user mid-call; the claim was taken over.
    DeadRun,
    /// An attempt of this job was ambiguous (timed out after the request was written, the
    /// connection closed before the answer, a 5xx): Cognito may have acted on it.
    AmbiguousAttempt,
    /// Cognito sent a code, but the ledger could not record it.
    Unrecorded,
}

impl DoubtCause {
    /// The label value and report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeadRun => "dead_run",
            Self::AmbiguousAttempt => "ambiguous_attempt",
            Self::Unrecorded => "unrecorded",
        }
    }
}

/// How one job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Which outcome.
    pub kind: OutcomeKind,
    /// A short machine-readable cause for `failed` and `invalid` (e.g. `attempt_limit`).
    pub reason: Option<String>,
    /// The last error Cognito or the network gave, for people reading the report.
    pub error: Option<String>,
    /// Calls made for this job.
    pub attempts: u32,
    /// For `sent`.
    pub delivery: Option<Delivery>,
    /// Set when the user may have received a code the ledger cannot confirm (see
    /// [`DoubtCause`]); the first cause found wins.
    pub in_doubt: Option<DoubtCause>,
}

impl Outcome {
    /// An outcome with no reason, error or delivery.
    pub fn new(kind: OutcomeKind, attempts: u32) -> Self {
        Self {
            kind,
            reason: None,
            error: None,
            attempts,
            delivery: None,
            in_doubt: None,
        }
    }

    /// `failed`, with its reason and last error.
    pub fn failed(reason: &str, error: Option<String>, attempts: u32) -> Self {
        Self {
            kind: OutcomeKind::Failed,
            reason: Some(reason.to_owned()),
            error,
            attempts,
            delivery: None,
            in_doubt: None,
        }
    }
}
