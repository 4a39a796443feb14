//! What a job is, in the words every layer shares: the request to make ([`ResendRequest`]),
//! where it came from ([`Origin`]), what a source yields ([`Input`]: a [`Job`] or an
//! [`Unreadable`] row), the [`Source`] and [`Settle`] traits the engine drives sources through,
//! the checks every source applies to usernames and client ids, the pool's creation [`Window`],
//! and the [`Reason`] a job ended so.
//!
//! It sits below sources, engine, Cognito client, ledger and settings, and imports none of them
//! (the outcome types are here too, so the [`Settle`] trait needs nothing from above), so each
//! can use it without a cycle: the engine knows no source beyond these traits.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use serde::Serialize;

mod check;
pub(crate) use check::*;

/// Cognito's limit on a username's length, in characters.
pub(crate) const MAX_USERNAME_CHARS: usize = 128;

/// What a job sends: the two ways to reach a user who never finished signing up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A self-service sign-up (`UNCONFIRMED`): a new confirmation code, with
    /// `ResendConfirmationCode` (unsigned, as the app client).
    #[default]
    Confirm,
    /// A user an administrator created (`FORCE_CHANGE_PASSWORD`) who never signed in: the
    /// invitation again, with a new temporary password, with `AdminCreateUser` and
    /// `MessageAction = RESEND` (IAM-signed, `cognito-idp:AdminCreateUser` on the pool).
    Invite,
}

impl Action {
    /// Both, in the order summaries list them.
    pub const ALL: [Action; 2] = [Self::Confirm, Self::Invite];

    /// The report's and the metrics' spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirm => "confirm",
            Self::Invite => "invite",
        }
    }

    /// The action a user's status calls for: `UNCONFIRMED` a code, `FORCE_CHANGE_PASSWORD` an
    /// invitation; any other status neither.
    pub fn for_status(status: &str) -> Option<Self> {
        match status {
            "UNCONFIRMED" => Some(Self::Confirm),
            "FORCE_CHANGE_PASSWORD" => Some(Self::Invite),
            _ => None,
        }
    }

    /// What `--action` or a row's `action` column says (`confirm`, `invite`), or a row's
    /// `status` column (`UNCONFIRMED`, `FORCE_CHANGE_PASSWORD`), any case.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "confirm" => Some(Self::Confirm),
            "invite" => Some(Self::Invite),
            _ => Self::for_status(&t.to_ascii_uppercase()),
        }
    }

    /// The Cognito operation the action calls.
    pub fn operation(self) -> &'static str {
        match self {
            Self::Confirm => "ResendConfirmationCode",
            Self::Invite => "AdminCreateUser",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message to send — a confirmation code or an invitation ([`Action`]) — with every request
/// field a job may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendRequest {
    /// The Cognito username (personal data: logs show it hashed).
    pub username: String,
    /// What to send, when the job says (a row's `action` or `status` column, a message's
    /// field, the user's status in the pool); `None` takes the run's `--action` (default
    /// `confirm`): see [`ResendRequest::action`].
    pub action: Option<Action>,
    /// The action the user's status (a row's `status` column, a message's field) calls for,
    /// when the job does not say its own: taken as [`RequestDefaults::apply`] says.
    pub status_action: Option<Action>,
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

impl ResendRequest {
    /// What the job sends: its own action, else a confirmation code.
    pub fn action(&self) -> Action {
        self.action.unwrap_or_default()
    }
}

/// A job's `action` and `status` fields (a CSV row's columns, a queue message's fields), either
/// or both: the action the job asks for itself, and the status it names when that status calls
/// for an action (`UNCONFIRMED`, `FORCE_CHANGE_PASSWORD`; any other status, `CONFIRMED` in a user
/// export, says nothing). What a status alone decides is the run's business
/// ([`RequestDefaults::apply`]): `FORCE_CHANGE_PASSWORD` means an invitation only in a run that
/// invites.
pub(crate) fn action_of(
    action: Option<&str>,
    status: Option<&str>,
) -> Result<(Option<Action>, Option<Action>), BadAction> {
    let said = action
        .map(|a| Action::parse(a).ok_or_else(|| BadAction::Action(a.to_owned())))
        .transpose()?;
    let by_status = status.and_then(|s| Action::for_status(&s.trim().to_ascii_uppercase()));
    match (said, by_status) {
        (Some(a), Some(b)) if a != b => Err(BadAction::Disagree {
            action: a,
            status: status.unwrap_or_default().to_owned(),
        }),
        (a, b) => Ok((a, b)),
    }
}

/// Why a job's `action` cannot be taken: the job is `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadAction {
    /// An action that is neither.
    #[error("action {0:?}: expected confirm or invite")]
    Action(String),
    /// Both given, and they disagree.
    #[error("action {action} does not go with status {status:?}")]
    Disagree {
        /// The action given.
        action: Action,
        /// The status given.
        status: String,
    },
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
    /// The user's attributes, when the source read them from the pool (`--from-pool`): with the
    /// pool profile they tell the medium of the code before the call.
    pub attributes: Option<Vec<(String, String)>>,
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
    ) -> BoxFuture<'a, Result<(), AckError>>;

    /// The run stopped at a spend cap whose budget comes back in `hold` (a per-day cap: when
    /// the UTC day turns; zero: at once, for the next run). Told once, before the jobs it stops
    /// are handed back (settled with `None`): those, and anything else the source holds, should
    /// stay away until then, and the source should take no more. A cap reached is no fault of
    /// the jobs: a queue must not redeliver them meanwhile and count each delivery toward its
    /// redrive policy. Sources with nothing to hand back ignore it.
    fn hold_back(&self, _hold: std::time::Duration) {}
}

/// Why a source could not acknowledge a job's outcome: the job is not done (its queue message
/// comes back), though what its calls did stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// The run's time was up (the termination grace after a signal) first.
    #[error("the run's time was up (the termination grace after a signal) before it was deleted")]
    TimeUp,
    /// Every attempt failed.
    #[error("the message could not be deleted after {attempts} attempts")]
    Failed {
        /// How many were made.
        attempts: u32,
    },
    /// The task that acknowledges had stopped.
    #[error("the acker stopped before deleting it")]
    Stopped,
}

/// For sources with nothing to acknowledge (a file: rerunning it is how it resumes).
#[derive(Debug, Default)]
pub(crate) struct NothingToSettle;

impl Settle for NothingToSettle {
    fn settle<'a>(
        &'a self,
        _: &'a Origin,
        _: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), AckError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The outcome of a job, as the contract's table names them (docs/contract.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Cognito accepted the resend.
    Sent,
    /// The user is already confirmed.
    AlreadyConfirmed,
    /// An invitation's user is no longer `FORCE_CHANGE_PASSWORD` (Cognito's
    /// `UnsupportedUserStateException`): they signed in since they were found.
    AlreadySignedIn,
    /// No such user for this client.
    NotFound,
    /// Sent to this client+username within the cooldown, as the ledger shows.
    Cooldown,
    /// The user already got `--max-sends-per-user` codes from this tool (over every run the
    /// ledger has seen): no call.
    Capped,
    /// The ledger recorded, within `--recheck-after`, that the user is confirmed
    /// (`already_confirmed`, `already_signed_in`): no call.
    KnownConfirmed,
    /// The ledger recorded, within `--recheck-after`, that no such user exists (`not_found`):
    /// no call.
    KnownMissing,
    /// `--dry-run`: everything but the send.
    DryRun,
    /// The row or message could not be read.
    Invalid,
    /// A permanent error, or the retry budget ran out.
    Failed,
}

impl OutcomeKind {
    /// Every outcome, in the order summaries list them.
    pub const ALL: [OutcomeKind; 11] = [
        Self::Sent,
        Self::AlreadyConfirmed,
        Self::AlreadySignedIn,
        Self::NotFound,
        Self::Cooldown,
        Self::Capped,
        Self::KnownConfirmed,
        Self::KnownMissing,
        Self::DryRun,
        Self::Invalid,
        Self::Failed,
    ];

    /// The label value and report spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::AlreadyConfirmed => "already_confirmed",
            Self::AlreadySignedIn => "already_signed_in",
            Self::NotFound => "not_found",
            Self::Cooldown => "cooldown",
            Self::Capped => "capped",
            Self::KnownConfirmed => "known_confirmed",
            Self::KnownMissing => "known_missing",
            Self::DryRun => "dry_run",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn index(self) -> usize {
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
    /// Why it ended so: a machine-readable cause for `failed` (e.g. `attempt_limit`), words
    /// naming the row or message for `invalid`.
    pub reason: Option<Reason>,
    /// The last error Cognito or the network gave, for people reading the report.
    pub error: Option<String>,
    /// Calls made for this job.
    pub attempts: u32,
    /// For `sent`.
    pub delivery: Option<Delivery>,
    /// Set when the user may have received a code the ledger cannot confirm (see
    /// [`DoubtCause`]); the first cause found wins.
    pub in_doubt: Option<DoubtCause>,
    /// When the job's calls to Cognito happened (none were made: `None`), for the report's
    /// `started_at` and `calls`, from which `cognito-resend report` draws its pictures.
    pub timing: Option<Timing>,
    /// What the job sent, or would have (`None`: a row that never became a job).
    pub action: Option<Action>,
}

/// When a job's calls to Cognito happened and how each went.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// When the first call started.
    pub started_at: SystemTime,
    /// Every call, in order.
    pub calls: Vec<CallTime>,
}

/// One call of a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallTime {
    /// From the start of the job's first call to the start of this one.
    pub offset: Duration,
    /// How long the call took.
    pub took: Duration,
    /// How it ended, as the attempt metric's `result` label says it: `ok`, `throttled`,
    /// `transient`, `permanent`.
    pub result: &'static str,
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
            timing: None,
            action: None,
        }
    }

    /// `failed`, with its reason and last error.
    pub fn failed(reason: Reason, error: Option<String>, attempts: u32) -> Self {
        Self {
            kind: OutcomeKind::Failed,
            reason: Some(reason),
            error,
            attempts,
            delivery: None,
            in_doubt: None,
            timing: None,
            action: None,
        }
    }
}

/// Which users, by UserCreateDate. All bounds are optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Window {
    /// Created at or after this.
    pub created_after: Option<SystemTime>,
    /// Created before this.
    pub created_before: Option<SystemTime>,
    /// Created at least this long ago (skip users who signed up minutes ago and may still be
    /// reading their first code).
    pub older_than: Option<Duration>,
}

impl Window {
    /// Whether a user created at `created` is in the window at `now`. A user without a creation
    /// date is in it only when the window has no bounds.
    pub(crate) fn admits(&self, created: Option<SystemTime>, now: SystemTime) -> bool {
        let unbounded = self.created_after.is_none()
            && self.created_before.is_none()
            && self.older_than.is_none();
        let Some(created) = created else {
            return unbounded;
        };
        self.created_after.is_none_or(|a| created >= a)
            && self.created_before.is_none_or(|b| created < b)
            && self
                .older_than
                .is_none_or(|o| now.duration_since(created).is_ok_and(|age| age >= o))
    }
}

/// Why a job ended as it did: the `reason` field of the report and of the outcome's log line.
/// The report's text is [`Reason::as_str`]; each name is part of the report format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The run stopped (a signal) while the job waited to retry or was being sent.
    Interrupted,
    /// Cognito's per-user resend limit ("Attempt limit exceeded").
    AttemptLimit,
    /// The retry budget ran out.
    RetriesExhausted,
    /// A ledger operation failed; the run stops.
    LedgerError,
    /// The job panicked.
    InternalError,
    /// The source could not acknowledge the outcome (a queue message will come back).
    AckFailed,
    /// A Lambda trigger failed or stayed unavailable.
    LambdaError,
    /// Cognito could not deliver the code to this user.
    CodeDeliveryFailure,
    /// Cognito refused a parameter of the request.
    InvalidParameter,
    /// The request could not be built.
    InvalidRequest,
    /// An error this SDK version does not model.
    UnexpectedError,
    /// `--precheck`'s AdminGetUser failed for this user.
    PrecheckFailed,
    /// `--precheck` found no such user (`not_found`).
    Precheck,
    /// The pool read that resolves a row to its user (alias resolution, without `--precheck`)
    /// found no such user (`not_found`, without a resend).
    PoolLookup,
    /// A configuration problem that stops the run; the name is the stop reason too
    /// (`not_authorized`, `email_quota`, ...).
    Misconfigured(&'static str),
    /// Words, not a name: why a row or message is `invalid`, or the status `--precheck` found.
    Text(String),
}

impl Reason {
    /// The report's text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Interrupted => "interrupted",
            Self::AttemptLimit => "attempt_limit",
            Self::RetriesExhausted => "retries_exhausted",
            Self::LedgerError => "ledger_error",
            Self::InternalError => "internal_error",
            Self::AckFailed => "ack_failed",
            Self::LambdaError => "lambda_error",
            Self::CodeDeliveryFailure => "code_delivery_failure",
            Self::InvalidParameter => "invalid_parameter",
            Self::InvalidRequest => "invalid_request",
            Self::UnexpectedError => "unexpected_error",
            Self::PrecheckFailed => "precheck_failed",
            Self::Precheck => "precheck",
            Self::PoolLookup => "pool_lookup",
            Self::Misconfigured(name) => name,
            Self::Text(text) => text,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a run adds to every request (`--client-metadata`, `--analytics-endpoint-id`), under the
/// job's own fields: a row or message that carries a ClientMetadata key or an analytics endpoint
/// keeps its value. Applied by the engine to every job it takes, whatever its source, so each
/// source (and each shape that drives the engine) gets it without knowing of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDefaults {
    /// ClientMetadata keys every request carries unless the job sets the key itself.
    pub client_metadata: BTreeMap<String, String>,
    /// AnalyticsMetadata.AnalyticsEndpointId for jobs that carry none.
    pub analytics_endpoint_id: Option<String>,
    /// `--action`: what jobs that do not say send.
    pub action: Option<Action>,
    /// The run sends invitations (`--action invite`, or `--status` lists FORCE_CHANGE_PASSWORD):
    /// a job whose status is FORCE_CHANGE_PASSWORD is one. Otherwise that status says nothing,
    /// so a user export's statuses never start invitations a run did not ask for.
    pub invites: bool,
}

impl RequestDefaults {
    /// Merges these under `req`'s own values.
    pub fn apply(&self, req: &mut ResendRequest) {
        for (key, value) in &self.client_metadata {
            req.client_metadata
                .entry(key.clone())
                .or_insert_with(|| value.clone());
        }
        if req.analytics_endpoint_id.is_none() {
            req.analytics_endpoint_id = self.analytics_endpoint_id.clone();
        }
        if req.action.is_none() {
            req.action = match req.status_action {
                Some(Action::Invite) if !self.invites => self.action,
                Some(a) => Some(a),
                None => self.action,
            };
        }
    }
}

/// Cognito's limit on a ClientMetadata key or value, and on AnalyticsEndpointId, in characters
/// (its API model's `StringType`: 0 to 131,072).
pub(crate) const MAX_METADATA_CHARS: usize = 131_072;

/// Whether the user pool tells usernames apart by case (`UsernameConfiguration.CaseSensitive`).
///
/// A pool created in the console since 2020 is case-insensitive (AWS's recommended setting);
/// one created through the API without `UsernameConfiguration` is case-sensitive. When the tool
/// does not know the pool, it takes it as case-insensitive: two spellings of one person then
/// share one ledger row, and the worst that can happen is that two people of a case-sensitive
/// pool whose usernames differ only by case share a cooldown — a missed reminder, the safe side
/// of a second code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UsernameCase {
    /// `alice` and `Alice` are one user: keys are folded.
    #[default]
    Insensitive,
    /// `alice` and `Alice` are two users: keys are the username as it is.
    Sensitive,
}

impl UsernameCase {
    /// The ledger's spelling of `username` in a pool of this kind.
    pub fn key(self, username: &str) -> String {
        match self {
            Self::Insensitive => fold_username(username),
            Self::Sensitive => username.to_owned(),
        }
    }
}

/// Folds a username for a case-insensitive pool: Unicode's default, locale-independent
/// lower-case mapping (`str::to_lowercase`; the mapping Java's `toLowerCase(Locale.ROOT)` makes
/// on Cognito's side). Cheap on the common path: an all-lower-case ASCII name is copied as is.
pub fn fold_username(username: &str) -> String {
    if username
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        username.to_owned()
    } else {
        username.to_lowercase()
    }
}

/// A person, as the ledger, the cooldown, the per-user cap, the waves, the fleet and the
/// in-doubt lists know them: the app client and the user's canonical username (the one Cognito
/// resolves an alias or a `sub` to), folded when the pool is case-insensitive. The row's own
/// spelling stays in the job's request and in the report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    /// The app client id.
    pub client_id: String,
    /// The canonical username, folded for a case-insensitive pool.
    pub username: String,
}

impl UserKey {
    /// The key of `canonical` (a username, not an alias) under `client_id` in a pool of kind
    /// `case`.
    pub fn new(client_id: &str, canonical: &str, case: UsernameCase) -> Self {
        Self {
            client_id: client_id.to_owned(),
            username: case.key(canonical),
        }
    }
}

impl fmt::Display for UserKey {
    /// `client_id/username` — personal data, like the username itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client_id, self.username)
    }
}

#[cfg(test)]
mod tests;
