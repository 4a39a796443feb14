//! Everything in the emulator that changes while it runs: the knobs tests flip mid-run, the
//! counters they read back, the request-rate token bucket, and the ledger of sends that is the
//! ground truth for exactly-once assertions.
//!
//! Counters and knobs are atomics so the hot path takes no lock for them; the ledger and the
//! bucket each sit behind a short `std::sync::Mutex` (held for a few comparisons, never across
//! an await).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::model::{Client, Pool};

/// Injected faults, applied to every Cognito operation (never to `/_emulator/*`).
///
/// The default injects nothing. Build one with struct update syntax so that fields added later
/// keep their "off" value: `Faults { drop_rate: 0.1, ..Faults::default() }`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added before each request is answered (also before a dropped connection). For a slow
    /// request it counts from the end of the hold rather than from the request's arrival.
    pub latency: Duration,
    /// Probability (0.0..=1.0) of answering `InternalErrorException` (HTTP 500).
    pub error_rate: f64,
    /// Probability (0.0..=1.0) of closing the connection without answering.
    pub drop_rate: f64,
    /// Probability (0.0..=1.0) that a request is slow: held for `slow_latency` before anything
    /// else happens to it, as a request queued at an overloaded front end. If the client closes
    /// the connection during the hold (its timeout fired), the operation never runs: no code is
    /// sent. Counted in [`Stats::slow_held`] and [`Stats::slow_abandoned`].
    pub slow_rate: f64,
    /// How long a slow request is held (nothing is held while this is zero).
    pub slow_latency: Duration,
    /// Probability (0.0..=1.0) of answering `InternalErrorException` (HTTP 500) **after** the
    /// operation ran: a `ResendConfirmationCode` that sent its code is recorded as sent, and the
    /// client is told it failed. Counted in [`Stats::errors_after_acting`].
    pub error_after_rate: f64,
    /// Probability (0.0..=1.0) of closing the connection without answering **after** the
    /// operation ran (the code is recorded as sent; the answer is lost). Counted in
    /// [`Stats::dropped_after_acting`].
    pub drop_after_rate: f64,
}

/// What a recorded send was: a confirmation code or an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SendAction {
    /// A confirmation code, sent by `ResendConfirmationCode` to an UNCONFIRMED user.
    Confirm,
    /// An invitation (a new temporary password), sent again by `AdminCreateUser` with
    /// `MessageAction` `RESEND` to a FORCE_CHANGE_PASSWORD user.
    Invite,
}

/// One recorded delivery (a confirmation code or an invitation): the ground truth tests compare
/// the worker's report against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendRecord {
    /// What was sent: a confirmation code or an invitation.
    pub action: SendAction,
    /// The user the code went to: the canonical username, whatever spelling, alias or `sub`
    /// the request named them by.
    pub username: String,
    /// The `Username` exactly as the request gave it (another case in a case-insensitive pool,
    /// an alias, the `sub`, or the canonical username itself).
    pub requested_as: String,
    /// `EMAIL` or `SMS`: how the code went (an invitation sent by both: `EMAIL,SMS`).
    pub delivery_medium: String,
    /// The app client the call named (empty for an invitation: AdminCreateUser names none).
    pub client_id: String,
    /// `ClientMetadata` as received.
    pub client_metadata: BTreeMap<String, String>,
    /// `AnalyticsMetadata.AnalyticsEndpointId`.
    pub analytics_endpoint_id: Option<String>,
    /// `UserContextData.EncodedData`.
    pub encoded_data: Option<String>,
    /// `UserContextData.IpAddress`.
    pub ip_address: Option<String>,
    /// Whether the call carried a `SecretHash` (it was valid, or there would be no send).
    pub secret_hash_given: bool,
    /// When the emulator accepted the call.
    pub at: SystemTime,
}

/// A snapshot of the emulator's counters (also served as JSON at `GET /_emulator/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Cognito requests received (anything but `/_emulator/*`), whatever became of them.
    pub requests_total: u64,
    /// Requests per `X-Amz-Target` operation; unrecognised targets count as `"unknown"`.
    pub requests_by_operation: BTreeMap<String, u64>,
    /// Requests answered `TooManyRequestsException` by the requests-per-second quota (every
    /// operation but AdminCreateUser, whose UserCreation quota counts apart).
    pub throttled: u64,
    /// Requests that passed the requests-per-second quota (all that reached it when there is
    /// none); per second at `GET /_emulator/rates`.
    pub accepted: u64,
    /// The requests-per-second quota in force (`None`: unlimited); see
    /// [`QuotaSchedule`](super::QuotaSchedule).
    pub quota_rps: Option<u32>,
    /// Requests answered `InternalErrorException` by fault injection.
    pub errors_injected: u64,
    /// Connections closed without an answer by fault injection.
    pub connections_dropped: u64,
    /// Requests answered `InternalErrorException` after the operation ran
    /// ([`Faults::error_after_rate`]).
    pub errors_after_acting: u64,
    /// Connections closed unanswered after the operation ran ([`Faults::drop_after_rate`]).
    pub dropped_after_acting: u64,
    /// Requests chosen to be slow and held (see [`Faults::slow_rate`]).
    pub slow_held: u64,
    /// Slow requests whose connection closed during the hold (the client hung up, or the
    /// emulator went down, or shut down with the hold outlasting its grace period), so their
    /// operation never ran.
    pub slow_abandoned: u64,
    /// Times the emulator went down (see [`Emulator::go_down`](super::Emulator::go_down)); a
    /// request to go down while already down extends the window and is not counted again.
    pub downs: u64,
    /// Requests being handled right now.
    pub in_flight: u64,
    /// The most requests ever handled at the same time (the client's real concurrency).
    pub max_in_flight: u64,
    /// Confirmation codes sent (recorded sends of [`SendAction::Confirm`]).
    pub sends_total: u64,
    /// Emails sent, confirmation codes and invitations alike (what the email quota counts).
    pub emails_sent: u64,
    /// Invitations sent again (AdminCreateUser `RESEND`, [`SendAction::Invite`]).
    pub invitations_total: u64,
    /// Users (persons) who got at least one invitation.
    pub distinct_users_invited: u64,
    /// Users (persons) who got more than one invitation: zero in an exactly-once run.
    pub users_invited_more_than_once: u64,
    /// Requests that passed the UserCreation quota (AdminCreateUser); per second at `GET
    /// /_emulator/rates?category=user_creation`.
    pub user_creation_accepted: u64,
    /// Requests answered `TooManyRequestsException` by the UserCreation quota.
    pub user_creation_throttled: u64,
    /// The UserCreation quota in force (`None`: unlimited).
    pub user_creation_quota_rps: Option<u32>,
    /// Users (persons: canonical users, however requests spelled them) who got at least one
    /// code.
    pub distinct_users_sent: u64,
    /// Users (persons, as above) who got more than one code: zero in an exactly-once run.
    pub users_sent_more_than_once: u64,
    /// Successes simulated for unknown users under PreventUserExistenceErrors (no send).
    pub simulated_successes: u64,
    /// Error answers per error code (`__type`), injected ones included.
    pub errors_by_type: BTreeMap<String, u64>,
}

/// The operations the emulator knows, indexing the per-operation counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    ResendConfirmationCode,
    AdminGetUser,
    ListUsers,
    DescribeUserPool,
    DescribeUserPoolClient,
    AdminCreateUser,
    Unknown,
}

impl Operation {
    const ALL: [Operation; 7] = [
        Self::AdminCreateUser,
        Self::ResendConfirmationCode,
        Self::AdminGetUser,
        Self::ListUsers,
        Self::DescribeUserPool,
        Self::DescribeUserPoolClient,
        Self::Unknown,
    ];

    /// Maps an `X-Amz-Target` header value to an operation.
    pub(crate) fn from_target(target: &[u8]) -> Self {
        match target.strip_prefix(b"AWSCognitoIdentityProviderService.") {
            Some(b"ResendConfirmationCode") => Self::ResendConfirmationCode,
            Some(b"AdminGetUser") => Self::AdminGetUser,
            Some(b"ListUsers") => Self::ListUsers,
            Some(b"DescribeUserPool") => Self::DescribeUserPool,
            Some(b"DescribeUserPoolClient") => Self::DescribeUserPoolClient,
            Some(b"AdminCreateUser") => Self::AdminCreateUser,
            _ => Self::Unknown,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ResendConfirmationCode => "ResendConfirmationCode",
            Self::AdminGetUser => "AdminGetUser",
            Self::ListUsers => "ListUsers",
            Self::DescribeUserPool => "DescribeUserPool",
            Self::DescribeUserPoolClient => "DescribeUserPoolClient",
            Self::AdminCreateUser => "AdminCreateUser",
            Self::Unknown => "unknown",
        }
    }
}

/// The error codes the emulator answers with, indexing the per-error counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    ResourceNotFound,
    NotAuthorized,
    InvalidParameter,
    UserNotFound,
    LimitExceeded,
    TooManyRequests,
    InternalError,
    UnknownOperation,
    Serialization,
    UserLambdaValidation,
    UnsupportedUserState,
    AccessDenied,
    MissingAuthenticationToken,
}

impl ErrorCode {
    const ALL: [ErrorCode; 13] = [
        Self::ResourceNotFound,
        Self::NotAuthorized,
        Self::InvalidParameter,
        Self::UserNotFound,
        Self::LimitExceeded,
        Self::TooManyRequests,
        Self::InternalError,
        Self::UnknownOperation,
        Self::Serialization,
        Self::UserLambdaValidation,
        Self::UnsupportedUserState,
        Self::AccessDenied,
        Self::MissingAuthenticationToken,
    ];

    /// The `__type` / `x-amzn-ErrorType` name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::NotAuthorized => "NotAuthorizedException",
            Self::InvalidParameter => "InvalidParameterException",
            Self::UserNotFound => "UserNotFoundException",
            Self::LimitExceeded => "LimitExceededException",
            Self::TooManyRequests => "TooManyRequestsException",
            Self::InternalError => "InternalErrorException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::Serialization => "SerializationException",
            Self::UserLambdaValidation => "UserLambdaValidationException",
            Self::UnsupportedUserState => "UnsupportedUserStateException",
            Self::AccessDenied => "AccessDeniedException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        }
    }

    /// Cognito answers every client error with 400 (throttling and IAM's AccessDenied
    /// included) and its own failures with 500; a request without a signature is refused with
    /// 403 before it reaches Cognito (AWS's common errors: MissingAuthenticationToken, 403).
    pub(crate) fn http_status(self) -> u16 {
        match self {
            Self::InternalError => 500,
            Self::MissingAuthenticationToken => 403,
            _ => 400,
        }
    }
}

/// Counters and fault knobs, all lock-free.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) requests_total: AtomicU64,
    by_operation: [AtomicU64; Operation::ALL.len()],
    pub(crate) throttled: AtomicU64,
    pub(crate) errors_injected: AtomicU64,
    pub(crate) connections_dropped: AtomicU64,
    pub(crate) errors_after_acting: AtomicU64,
    pub(crate) dropped_after_acting: AtomicU64,
    pub(crate) slow_held: AtomicU64,
    pub(crate) slow_abandoned: AtomicU64,
    pub(crate) downs: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) max_in_flight: AtomicU64,
    pub(crate) simulated_successes: AtomicU64,
    by_error: [AtomicU64; ErrorCode::ALL.len()],
}

impl Counters {
    pub(crate) fn count_request(&self, op: Operation) {
        self.requests_total.fetch_add(1, Relaxed);
        self.by_operation[op as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn count_error(&self, code: ErrorCode) {
        self.by_error[code as usize].fetch_add(1, Relaxed);
    }

    /// Marks a request in flight until the guard drops (including when a dropped connection
    /// or a cancelled future ends it early).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
        InFlight(&self.in_flight)
    }
}

/// See [`Counters::enter`].
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// [`Faults`] stored as atomics, so every request can read them without a lock and tests can
/// change them at any moment.
#[derive(Default)]
pub(crate) struct FaultKnobs {
    latency_nanos: AtomicU64,
    error_rate_bits: AtomicU64,
    drop_rate_bits: AtomicU64,
    slow_rate_bits: AtomicU64,
    slow_latency_nanos: AtomicU64,
    error_after_rate_bits: AtomicU64,
    drop_after_rate_bits: AtomicU64,
    /// Fast path: skip the random draws entirely when no fault is configured.
    any: AtomicBool,
}

impl FaultKnobs {
    pub(crate) fn set(&self, f: &Faults) {
        let latency = u64::try_from(f.latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(latency, Relaxed);
        self.error_rate_bits
            .store(f.error_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        self.drop_rate_bits
            .store(f.drop_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        self.slow_rate_bits
            .store(f.slow_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        let slow_latency = u64::try_from(f.slow_latency.as_nanos()).unwrap_or(u64::MAX);
        self.slow_latency_nanos.store(slow_latency, Relaxed);
        self.error_after_rate_bits
            .store(f.error_after_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        self.drop_after_rate_bits
            .store(f.drop_after_rate.clamp(0.0, 1.0).to_bits(), Relaxed);
        // A slow rate without a hold (or a hold that is never drawn) changes nothing.
        let slow = f.slow_rate > 0.0 && slow_latency > 0;
        let after = f.error_after_rate > 0.0 || f.drop_after_rate > 0.0;
        let any = latency > 0 || f.error_rate > 0.0 || f.drop_rate > 0.0 || slow || after;
        self.any.store(any, Relaxed);
    }

    pub(crate) fn get(&self) -> Faults {
        Faults {
            latency: Duration::from_nanos(self.latency_nanos.load(Relaxed)),
            error_rate: f64::from_bits(self.error_rate_bits.load(Relaxed)),
            drop_rate: f64::from_bits(self.drop_rate_bits.load(Relaxed)),
            slow_rate: f64::from_bits(self.slow_rate_bits.load(Relaxed)),
            slow_latency: Duration::from_nanos(self.slow_latency_nanos.load(Relaxed)),
            error_after_rate: f64::from_bits(self.error_after_rate_bits.load(Relaxed)),
            drop_after_rate: f64::from_bits(self.drop_after_rate_bits.load(Relaxed)),
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.any.load(Relaxed)
    }
}

/// The requests-per-second quota: a token bucket holding up to `quota` tokens, refilled at
/// `quota` per second. A throttled request takes no token.
pub(crate) struct Bucket {
    quota: Option<u32>,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(quota: Option<u32>) -> Self {
        Self {
            quota,
            tokens: quota.map_or(0.0, f64::from),
            last: Instant::now(),
        }
    }

    /// Changes the quota; the bucket starts full at the new size.
    pub(crate) fn set_quota(&mut self, quota: Option<u32>) {
        *self = Self::new(quota);
    }

    /// Takes a token if there is one.
    pub(crate) fn try_acquire(&mut self, now: Instant) -> bool {
        let Some(quota) = self.quota else {
            return true;
        };
        let capacity = f64::from(quota);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * capacity).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a send was refused by the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendRefused {
    /// This user already had `attempt_limit` codes.
    AttemptLimit,
    /// The account already sent `email_quota` email codes.
    EmailQuota,
}

/// Every send, and the per-user and account limits checked against them. One lock covers the
/// checks and the record, so two concurrent calls cannot both take the last allowed send.
pub(crate) struct Ledger {
    /// Confirmation codes per user, indexed by the user's position in the pool.
    per_user: Vec<u32>,
    /// Invitations per user, likewise.
    invites_per_user: Vec<u32>,
    invitations_total: u64,
    distinct_invited: u64,
    repeated_invited: u64,
    records: Vec<SendRecord>,
    /// Whether to keep full [`SendRecord`]s (benchmarks may turn it off to bound memory).
    keep_records: bool,
    sends_total: u64,
    emails_sent: u64,
    distinct_users: u64,
    repeated_users: u64,
    pub(crate) attempt_limit: Option<u32>,
    /// Email codes the account may send (SMS codes don't count). Cognito's limit is daily; an
    /// emulator run is shorter than a day, so it is never reset.
    pub(crate) email_quota: Option<u64>,
}

impl Ledger {
    pub(crate) fn new(
        users: usize,
        attempt_limit: Option<u32>,
        email_quota: Option<u64>,
        keep_records: bool,
    ) -> Self {
        Self {
            per_user: vec![0; users],
            invites_per_user: vec![0; users],
            invitations_total: 0,
            distinct_invited: 0,
            repeated_invited: 0,
            records: Vec::new(),
            keep_records,
            sends_total: 0,
            emails_sent: 0,
            distinct_users: 0,
            repeated_users: 0,
            attempt_limit,
            email_quota,
        }
    }

    /// Records a send to the user at `position` (by email when `by_email`) unless a limit
    /// forbids it. `record` is only built when the send is allowed.
    pub(crate) fn try_send(
        &mut self,
        position: usize,
        by_email: bool,
        record: impl FnOnce() -> SendRecord,
    ) -> Result<(), SendRefused> {
        let count = self.per_user[position];
        if self.attempt_limit.is_some_and(|limit| count >= limit) {
            return Err(SendRefused::AttemptLimit);
        }
        if by_email && self.email_quota_spent() {
            return Err(SendRefused::EmailQuota);
        }
        self.per_user[position] = count + 1;
        self.sends_total += 1;
        if by_email {
            self.emails_sent += 1;
        }
        match count {
            0 => self.distinct_users += 1,
            1 => self.repeated_users += 1,
            _ => {}
        }
        if self.keep_records {
            self.records.push(record());
        }
        Ok(())
    }

    fn email_quota_spent(&self) -> bool {
        self.email_quota
            .is_some_and(|quota| self.emails_sent >= quota)
    }

    /// Records an invitation to the user at `position` (one email among its mediums when
    /// `by_email`) unless the email quota forbids it. The per-user attempt limit is
    /// ResendConfirmationCode's and does not apply.
    pub(crate) fn try_invite(
        &mut self,
        position: usize,
        by_email: bool,
        record: impl FnOnce() -> SendRecord,
    ) -> Result<(), SendRefused> {
        if by_email && self.email_quota_spent() {
            return Err(SendRefused::EmailQuota);
        }
        let count = self.invites_per_user[position];
        self.invites_per_user[position] = count + 1;
        self.invitations_total += 1;
        if by_email {
            self.emails_sent += 1;
        }
        match count {
            0 => self.distinct_invited += 1,
            1 => self.repeated_invited += 1,
            _ => {}
        }
        if self.keep_records {
            self.records.push(record());
        }
        Ok(())
    }
}

/// Everything a request handler needs, shared by all connections.
pub(crate) struct Shared {
    pub(crate) pool_id: String,
    /// When the emulator started: the pool's and its clients' `CreationDate`, in epoch seconds.
    pub(crate) created: f64,
    pub(crate) pool: Pool,
    pub(crate) clients: HashMap<String, Client>,
    pub(crate) faults: FaultKnobs,
    pub(crate) counters: Counters,
    /// The quota of every operation but AdminCreateUser (ResendConfirmationCode's category).
    pub(crate) quota: super::quota::RateQuota,
    /// The UserCreation category's own quota (AdminCreateUser).
    pub(crate) user_creation_quota: super::quota::RateQuota,
    /// Operations IAM denies (see `iam`).
    pub(crate) denied: super::iam::Denied,
    pub(crate) ledger: Mutex<Ledger>,
    /// Injected latency, precise to the OS timer (see `delay`).
    pub(crate) delay: super::delay::PreciseDelay,
    /// Requests to go down, read by the accept loop (`server::run`). Here rather than only in
    /// [`super::Emulator`] because `POST /_emulator/down` asks from inside a connection.
    pub(crate) down: tokio::sync::mpsc::UnboundedSender<super::server::GoDown>,
}

/// Locks a mutex, shrugging off poisoning: every critical section here leaves the data
/// consistent before anything that could panic, so a poisoned lock's data is still good.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let requests_by_operation = Operation::ALL
            .iter()
            .map(|op| {
                (
                    op.name().to_owned(),
                    c.by_operation[*op as usize].load(Relaxed),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let errors_by_type = ErrorCode::ALL
            .iter()
            .map(|e| (e.name().to_owned(), c.by_error[*e as usize].load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let (sends_total, emails_sent, distinct_users_sent, users_sent_more_than_once) = {
            let l = lock(&self.ledger);
            (
                l.sends_total,
                l.emails_sent,
                l.distinct_users,
                l.repeated_users,
            )
        };
        let (invitations_total, distinct_users_invited, users_invited_more_than_once) = {
            let l = lock(&self.ledger);
            (l.invitations_total, l.distinct_invited, l.repeated_invited)
        };
        let (user_creation_accepted, user_creation_throttled) = self.user_creation_quota.totals();
        Stats {
            requests_total: c.requests_total.load(Relaxed),
            requests_by_operation,
            throttled: c.throttled.load(Relaxed),
            accepted: self.quota.totals().0,
            quota_rps: self.quota.current(),
            errors_injected: c.errors_injected.load(Relaxed),
            connections_dropped: c.connections_dropped.load(Relaxed),
            errors_after_acting: c.errors_after_acting.load(Relaxed),
            dropped_after_acting: c.dropped_after_acting.load(Relaxed),
            slow_held: c.slow_held.load(Relaxed),
            slow_abandoned: c.slow_abandoned.load(Relaxed),
            downs: c.downs.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            max_in_flight: c.max_in_flight.load(Relaxed),
            sends_total,
            emails_sent,
            distinct_users_sent,
            users_sent_more_than_once,
            invitations_total,
            distinct_users_invited,
            users_invited_more_than_once,
            user_creation_accepted,
            user_creation_throttled,
            user_creation_quota_rps: self.user_creation_quota.current(),
            simulated_successes: c.simulated_successes.load(Relaxed),
            errors_by_type,
        }
    }

    /// The quota of a category.
    pub(crate) fn quota_of(&self, category: super::QuotaCategory) -> &super::quota::RateQuota {
        match category {
            super::QuotaCategory::Resend => &self.quota,
            super::QuotaCategory::UserCreation => &self.user_creation_quota,
        }
    }

    pub(crate) fn sends(&self) -> Vec<SendRecord> {
        lock(&self.ledger).records.clone()
    }

    /// Codes (or invitations) sent to the user at `position`.
    pub(crate) fn sends_to(&self, position: usize, action: SendAction) -> usize {
        let l = lock(&self.ledger);
        match action {
            SendAction::Confirm => l.per_user[position] as usize,
            SendAction::Invite => l.invites_per_user[position] as usize,
        }
    }

    /// Codes (or invitations) per canonical username, for users who got at least one.
    pub(crate) fn send_counts(&self, action: SendAction) -> HashMap<String, usize> {
        let l = lock(&self.ledger);
        let counts = match action {
            SendAction::Confirm => &l.per_user,
            SendAction::Invite => &l.invites_per_user,
        };
        self.pool
            .users
            .iter()
            .zip(counts)
            .filter(|(_, n)| **n > 0)
            .map(|(u, n)| (u.username.clone(), *n as usize))
            .collect()
    }
}

#[cfg(test)]
mod tests;
