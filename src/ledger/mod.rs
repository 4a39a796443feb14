//! The send ledger: what keeps a user from getting two codes.
//!
//! A confirmation code is a message to a real person, and Cognito cannot tell a resend we meant
//! from one we repeated. So before a job calls Cognito it *claims* its (client id, username) in
//! the ledger, atomically:
//!
//! - a user sent within the cooldown is not claimed: outcome `cooldown`, no call;
//! - a user claimed by a live call (a duplicate row, a duplicate SQS delivery, another replica)
//!   is not claimed either: the job waits for that call to end, then asks again;
//! - a user claimed by a run that died (`kill -9`, a lost pod) is *in doubt*: that call may or
//!   may not have reached Cognito. The claim is taken over, the job is counted and reported as in
//!   doubt, and the code is sent again (at-least-once). At most `--concurrency` calls per dead run
//!   can be in doubt, since that is how many it had in flight.
//!
//! When the call ends, the result is written (and, for SQLite, synced) before the engine
//! acknowledges the job to its source or reports it: a job is never reported done ahead of the
//! ledger.
//!
//! Telling a live claim from a dead one without comparing clocks: every run writes a row of its
//! own and bumps a heartbeat *counter* in it every `lease / 6`. A claim is dead when its run
//! ended cleanly, or when this run has seen that run's counter unchanged for a full lease on its
//! own monotonic clock (see [`Ledger::claim`]). No two hosts' clocks are ever compared, so a
//! replica whose clock runs ahead cannot take over live claims. The other side of the bargain
//! is the *fence*: a run whose own heartbeat has failed for half a lease stops claiming and stops
//! (a ledger error), so by the time anyone could judge it dead it has stopped starting calls.
//! The lease is the *holder's*: each run records its `--claim-lease` in its row, and others
//! judge its claims by it, so runs with different leases can share a ledger (a run with a short
//! lease would otherwise take a long-lease run's claims between two of its beats). A run row of
//! an older build has no lease; its claims are judged by the reader's, as before.
//! Wall-clock times in the ledger (`last_sent_at`, `heartbeat_at`) serve the cooldown and people
//! (`ledger stats`), never liveness.
//!
//! The in-doubt mark: a claim taken over from a dead run leaves the dead run's id in the row
//! (`doubt_run`) until a result is recorded. A job released before its first call (SIGTERM)
//! gives up the claim but keeps the mark, so the next run still reports the user in doubt.
//!
//! A send that cannot be recorded: [`Ledger::record`] retries with backoff for up to a lease
//! while the job holds its permit (a queue message stays invisible). If the ledger still fails,
//! the claim is left as it is (never released) and the send is kept in memory; [`Ledger::close`]
//! tries once more, with the heartbeat still beating, so other runs keep waiting rather than
//! take the claim over. If the ledger is back by then, the send is recorded and the cooldown
//! holds. If it never comes back while this run lives, a later run finds a claim of a dead run:
//! it sends again and reports the user in doubt (`dead_run`) — the limit no client can remove.
//!
//! A person's key is (client id, canonical username), the username folded
//! ([`crate::job::fold_username`]) when the pool is case-insensitive or not known
//! ([`crate::job::UserKey`]). Ledgers written when keys were the row's spelling are folded once,
//! when a run for a case-insensitive pool opens them ([`open`], [`fold`]).
//!
//! The same counters size a fleet budget (`--fleet-rate`): each run counts the live runs
//! sharing the ledger with every heartbeat and takes its share ([`fleet`]).
//!
//! Backends ([`Store`]):
//! - [`sqlite`]: a file (default `cognito-resend.db`), WAL, one writer thread that commits in
//!   groups, so durability does not cost one fsync per call. Several processes on one host may
//!   share it.
//! - [`dynamo`]: a DynamoDB table (`--state dynamodb://TABLE`) with conditional writes, for
//!   replicas on many hosts — the pattern Powertools' idempotency utility uses.

pub mod dynamo;
pub mod fleet;
pub mod fold;
pub mod sqlite;

pub use fold::Folded;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::job::UserKey;
use crate::job::UsernameCase;
use crate::retry::{Backoff, Budget, Policy, Quota, Retry, Verdict};

/// Where the ledger lives, as `--state` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSpec {
    /// `none`: no ledger.
    None,
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// `dynamodb://TABLE`.
    Dynamo {
        /// The table name.
        table: String,
    },
}

impl StateSpec {
    /// Parses a `--state` value.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        if let Some(rest) = s.strip_prefix("dynamodb://") {
            let table = rest.trim_end_matches('/');
            let valid = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
            if !valid {
                return Err(format!(
                    "`{s}`: a DynamoDB table name is 3-255 characters of a-z, A-Z, 0-9, _, - and ."
                ));
            }
            return Ok(Self::Dynamo {
                table: table.to_owned(),
            });
        }
        if s.is_empty() {
            return Err("empty: give a file, dynamodb://TABLE or none".into());
        }
        if s.contains("://") {
            return Err(format!(
                "`{s}`: unknown scheme; give a file, dynamodb://TABLE or none"
            ));
        }
        Ok(Self::Sqlite(s.into()))
    }
}

impl fmt::Display for StateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Dynamo { table } => write!(f, "dynamodb://{table}"),
        }
    }
}

/// Milliseconds since the Unix epoch: how both backends store time.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_millis() -> Millis {
    to_millis(SystemTime::now())
}

/// A time in [`Millis`].
pub fn to_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`Millis`] as RFC 3339, for people.
pub fn rfc3339(ms: Millis) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

pub(crate) fn duration_millis(d: Duration) -> Millis {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// This process's run: the owner of its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId(pub String);

impl RunId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The timing rules a claim is decided by.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Now.
    pub now: Millis,
    /// Sends at or after this are within the cooldown.
    pub cooldown_since: Millis,
    /// For `ledger stats` only (people's estimate, by this host's clock): runs whose heartbeat
    /// time is older than this are counted as dead. Claims never use it.
    pub alive_since: Millis,
    /// `--max-sends-per-user`: a user with this many codes recorded is not claimed.
    pub max_sends_per_user: Option<u64>,
}

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The user is ours: call Cognito.
    Granted {
        /// Set when the claim was taken over from a run that died mid-call.
        in_doubt: Option<InDoubt>,
    },
    /// A code went to this user within the cooldown.
    Cooldown {
        /// When.
        last_sent: Millis,
    },
    /// The user already got `--max-sends-per-user` codes (over the ledger's life).
    Capped {
        /// Codes recorded for the user.
        sends: i64,
    },
    /// A live call holds the user: wait and ask again.
    Held {
        /// Its run.
        run: String,
        /// That run's heartbeat counter, as read in the same step: the caller judges the run
        /// dead once it has seen this unchanged for a full lease of that run's.
        beats: i64,
        /// That run's claim lease, as it recorded it when it began; `None` for a run of an
        /// older build, which recorded none (the caller's own lease judges it then).
        lease: Option<Duration>,
    },
}

/// A holder this run judged dead (its heartbeat counter seen unchanged for a full lease): a
/// claim naming it may be taken over, if the counter still has this value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The run.
    pub run: String,
    /// Its counter, unchanged for a lease.
    pub beats: i64,
}

/// The run holding a claim, as a store read it inside its atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Holder<'a> {
    /// The run.
    pub run: &'a str,
    /// When it claimed.
    pub claimed_at: Millis,
    /// Its heartbeat counter.
    pub beats: i64,
    /// It ended cleanly (or has no run row at all): its claims are dead at once.
    pub ended: bool,
    /// Its claim lease in milliseconds, as its run row records it (none from older builds).
    pub lease: Option<Millis>,
}

/// A run's row as a claim of that run is judged by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunLiveness {
    /// Its heartbeat counter.
    pub beats: i64,
    /// It ended cleanly.
    pub ended: bool,
    /// Its `--claim-lease` in milliseconds (none from older builds).
    pub lease: Option<Millis>,
}

impl<'a> Holder<'a> {
    /// The holder of a claim `run` made at `claimed_at`, by its run's row (`None`: no row, so
    /// its claims are dead at once).
    pub(crate) fn of(run: &'a str, claimed_at: Millis, row: Option<RunLiveness>) -> Self {
        Self {
            run,
            claimed_at,
            beats: row.map_or(0, |r| r.beats),
            ended: row.is_none_or(|r| r.ended),
            lease: row.and_then(|r| r.lease),
        }
    }
}

/// A claim left by a run that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDoubt {
    /// The dead run.
    pub run: String,
    /// When it claimed the user.
    pub claimed_at: Millis,
}

/// How a claimed job ended, as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Cognito sent a code: starts the cooldown.
    Sent,
    /// Cognito answered and sent nothing (`already_confirmed`, `not_found`, `failed`, ...):
    /// the claim goes, the outcome is kept for `ledger export`.
    NotSent(&'static str),
    /// Cognito may have sent a code (an attempt was ambiguous: a timeout after the request was
    /// written, a dropped answer, a 5xx), but the job ended without a confirmed send. The
    /// cooldown starts as for a send (the user may hold a code), the send count stays, and the
    /// outcome is kept.
    MaybeSent(&'static str),
    /// The run stopped before the first call: the claim goes, nothing else changes.
    Release,
}

/// One user's row, for `ledger export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// App client id.
    pub client_id: String,
    /// Username.
    pub username: String,
    /// Codes sent, over the ledger's life.
    pub sends: i64,
    /// The last send (RFC 3339).
    pub last_sent_at: Option<String>,
    /// The last outcome recorded.
    pub last_outcome: Option<String>,
    /// When it was recorded (RFC 3339).
    pub last_outcome_at: Option<String>,
    /// The run holding a claim on the user, if any.
    pub claimed_by: Option<String>,
    /// Codes sent by wave (`--wave`); sends of runs without one are not in it.
    pub waves: std::collections::BTreeMap<String, i64>,
}

/// One run's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    /// Run id.
    pub run: String,
    /// `backfill`, `consume`.
    pub command: String,
    /// Host name and pid.
    pub host: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Last heartbeat (RFC 3339).
    pub heartbeat_at: String,
    /// Clean end (RFC 3339); none if it is running or died.
    pub finished_at: Option<String>,
}

/// Totals for `ledger stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Users with a row.
    pub users: u64,
    /// Users sent at least one code.
    pub users_sent: u64,
    /// Codes sent in all.
    pub sends: u64,
    /// Users sent more than one code (over the ledger's life, across cooldowns).
    pub users_sent_more_than_once: u64,
    /// Users sent within the last `cooldown`.
    pub in_cooldown: u64,
    /// Claims held right now, by live runs.
    pub claims_live: u64,
    /// Claims left by dead runs: these users are in doubt.
    pub claims_in_doubt: u64,
    /// Users with no claim but an in-doubt mark: a claim taken over from a dead run that was
    /// released before its call; the next run to claim them reports them in doubt.
    pub doubt_marks: u64,
    /// The most recent runs, newest first.
    pub recent_runs: Vec<RunRow>,
    /// Runs sharing a fleet budget (`--fleet-rate`) and live by this host's clock: on SQLite
    /// every unfinished run, on DynamoDB those in the fleet item.
    pub fleet_runs: u64,
    /// Codes sent per wave (`--wave`), by wave name.
    pub sends_per_wave: std::collections::BTreeMap<String, u64>,
    /// Users at `--max-sends-per-user` (when the rules give one): never sent again.
    pub users_capped: Option<u64>,
}

/// A page of `ledger export`: rows, and the cursor of the next page (`None` at the end).
pub type Page = (Vec<UserRow>, Option<String>);

/// A ledger failure. The engine does not send without a claim, so any of these stops the run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ledger ({state}) failed: {detail}")]
pub struct LedgerError {
    /// Which ledger.
    pub state: String,
    /// What went wrong.
    pub detail: String,
}

/// A ledger backend. Every method is atomic on its own.
pub trait Store: Send + Sync + 'static {
    /// `--state`, for messages.
    fn describe(&self) -> String;
    /// Records that `run` started (and refreshes its heartbeat), with its claim lease: other
    /// runs judge its claims by that lease, not by theirs.
    fn begin_run<'a>(
        &'a self,
        run: &'a RunId,
        command: &'a str,
        lease: Duration,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Refreshes `run`'s heartbeat time and adds one to its heartbeat counter.
    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Records that `run` ended cleanly: its remaining claims are in doubt from now on.
    fn end_run<'a>(&'a self, run: &'a RunId, now: Millis)
    -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Claims (client id, username) for `run`. A claim held by `take_over` (a run the caller
    /// judged dead, with the counter it saw) is taken over if that counter has not moved since.
    /// A claim of another job of `run` itself is [`Claim::Held`].
    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>>;
    /// What a claim would find, claims of runs aside: [`Claim::Cooldown`] or
    /// [`Claim::Capped`], or `None` when it would be granted (see [`plan`]); writes nothing
    /// (`--dry-run`).
    fn peek<'a>(
        &'a self,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>>;
    /// Ends `run`'s claim on (client id, username), durably. A send ([`Finish::Sent`]) adds one
    /// to the user's count of codes, and to its count for `wave` when given, in the same write.
    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        how: Finish,
        wave: Option<&'a str>,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Totals for `ledger stats`.
    fn stats(&self, rules: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>>;
    /// One page of user rows for `ledger export`, after `cursor` (from the previous page);
    /// returns the rows and the cursor of the next page (`None` at the end).
    fn export_page(
        &self,
        cursor: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, LedgerError>>;
    /// Folds the ledger's keys, once ([`fold`]): every user row whose username differs from
    /// [`fold_username`](crate::job::fold_username) of it is merged ([`fold::merge`]) into the
    /// row of the folded key (created if missing) and removed, and a marker records that the
    /// keys are folded. Later calls only read the marker and return zeros. Safe to run from
    /// several processes or replicas at once: nothing is merged twice. Only for a ledger of a
    /// case-insensitive pool ([`open`] calls it then); the default refuses.
    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        let e = unsupported(self.describe(), "folding of usernames");
        Box::pin(async move { Err(e) })
    }
    // Personal data has an end: erasure requests and a retention policy.
    /// Erases the rows of these users (their sends, cooldown, claim, in-doubt mark and per-wave
    /// counts): `ledger forget`. Returns how many user rows were there.
    fn forget<'a>(&'a self, keys: &'a [UserKey]) -> BoxFuture<'a, Result<u64, LedgerError>> {
        let _ = keys;
        let e = unsupported(self.describe(), "erasure");
        Box::pin(async move { Err(e) })
    }
    /// Deletes every user row with no claim and nothing written since `before` (no send, no
    /// outcome, no claim, no in-doubt mark): `ledger prune`, and `ledger.retention` for SQLite.
    /// Returns how many rows went.
    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, LedgerError>> {
        let _ = before;
        let e = unsupported(self.describe(), "pruning");
        Box::pin(async move { Err(e) })
    }
    // Spend caps (see [`DayCaps`]). Defaults refuse, so a store without them cannot be used
    // with a per-day cap by mistake.
    /// Makes reservation `r` on its day unless a cap is reached, atomically: `None` if granted
    /// (the day's `sends` grew by one, and `medium`'s count too when the medium is known
    /// ahead), else the cap that refused it (nothing written). See [`refused_by`]. Asked twice
    /// for the same `r` (a write whose answer was lost, sent again), it reserves once.
    fn reserve_send<'a>(
        &'a self,
        r: &'a DayReservation,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> BoxFuture<'a, Result<Option<SpendCap>, LedgerError>> {
        let _ = (r, caps, medium);
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }
    /// Settles reservation `r`: gives it back, counts its code's medium, or keeps it as it is.
    /// Asked twice for the same `r`, it settles once.
    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let _ = (r, spent);
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }
    /// The spend counters of `day` (zeros if none).
    fn day_spend<'a>(&'a self, day: &'a str) -> BoxFuture<'a, Result<DaySpend, LedgerError>> {
        let _ = day;
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }

    // --- the fleet census (`--fleet-rate`, see [`fleet`]) ---

    /// Notes that `run` is running, forgets `dead` (runs the caller saw standing still for a
    /// lease), adds `throttles` (counted by `run` since its last census) to the fleet's total,
    /// and returns every run the store lists as running, each with a counter that moves while
    /// the run lives, and that total. Cheap: called every half second.
    fn census<'a>(
        &'a self,
        run: &'a RunId,
        lease: Duration,
        dead: &'a [String],
        throttles: u64,
    ) -> BoxFuture<'a, Result<fleet::Listing, LedgerError>> {
        let _ = (run, lease, dead, throttles);
        let e = unsupported(self.describe(), "fleet census");
        Box::pin(async move { Err(e) })
    }
}

/// Spend caps per UTC day, kept in the ledger so every run and replica sharing it counts
/// against the same budget (`--max-sends-per-day`, `--max-sms-per-day`, `--max-email-per-day`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCaps {
    /// Codes a day, any medium.
    pub sends: Option<u64>,
    /// Codes a day by SMS.
    pub sms: Option<u64>,
    /// Codes a day by email.
    pub email: Option<u64>,
}

impl DayCaps {
    /// No per-day cap is set.
    pub fn is_empty(&self) -> bool {
        self.sends.is_none() && self.sms.is_none() && self.email.is_none()
    }
}

/// Which spend cap refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendCap {
    /// `--max-sends`: this run.
    Run,
    /// `--max-sends-per-day`.
    Day,
    /// `--max-sms-per-day`.
    SmsDay,
    /// `--max-email-per-day`.
    EmailDay,
}

impl SpendCap {
    /// The setting, as a person looks for it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Run => "--max-sends (limits.max_sends)",
            Self::Day => "--max-sends-per-day (limits.max_sends_per_day)",
            Self::SmsDay => "--max-sms-per-day (limits.max_sms_per_day)",
            Self::EmailDay => "--max-email-per-day (limits.max_email_per_day)",
        }
    }
}

/// The delivery medium Cognito named (`CodeDeliveryDetails.DeliveryMedium`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// `SMS`.
    Sms,
    /// `EMAIL`.
    Email,
}

impl Medium {
    /// From Cognito's `DeliveryMedium`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SMS" => Some(Self::Sms),
            "EMAIL" => Some(Self::Email),
            _ => None,
        }
    }
}

/// One send reserved on a day's counters ([`Ledger::reserve_send`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayReservation {
    /// The UTC day it counts on, `YYYY-MM-DD`.
    pub day: String,
    /// Its own random token, written with it and taken away by its settlement, so that a write
    /// whose answer was lost and that is sent again (DynamoDB's SDK retries) reserves or
    /// settles once, not twice.
    pub token: String,
}

impl DayReservation {
    /// A new reservation on `day`, with a fresh token.
    pub fn new(day: impl Into<String>) -> Self {
        Self {
            day: day.into(),
            token: RunId::new().0,
        }
    }
}

/// How a reserved send ended, for the day's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// A code went out, or may have, and the reservation already counts it as it should: a
    /// code by the medium reserved ahead, a code whose medium is not known, an ambiguous
    /// attempt, a call abandoned. The counters stay; the reservation is done.
    Kept,
    /// Nothing was sent: the reservation (of no medium) is given back.
    Nothing,
    /// A code went out by this medium: the reservation (of no medium) stays and the medium's
    /// count grows.
    Code(Medium),
    /// Nothing was sent on a reservation of this medium: both are given back.
    NothingOf(Medium),
    /// A reservation of one medium went out by the other (the user's contacts changed since
    /// the pool was read): the count moves from `reserved` to `sent`.
    Moved {
        /// The medium reserved.
        reserved: Medium,
        /// The medium Cognito named.
        sent: Medium,
    },
}

/// One UTC day's spend, as the ledger counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DaySpend {
    /// The day, `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Reservations kept: codes sent, possibly sent, and calls in flight.
    pub sends: u64,
    /// Codes sent by SMS: confirmed by Cognito's answer, or reserved as SMS ahead of the call
    /// (the medium known from the pool) and not given back.
    pub sms: u64,
    /// Codes sent by email, counted the same way.
    pub email: u64,
}

/// How long from `ms` until the next UTC day begins: when the per-day caps' budgets come back.
pub fn until_next_day(ms: Millis) -> Duration {
    const DAY: Millis = 86_400_000;
    Duration::from_millis((DAY - ms.rem_euclid(DAY)) as u64)
}

/// The UTC day of `ms`, `YYYY-MM-DD`: the key of the day's spend counters.
pub fn utc_day(ms: Millis) -> String {
    rfc3339(ms)[..10].to_owned()
}

/// The reservation rule both backends apply inside their atomic step: the first cap that a
/// new reservation would break, given the day's counters.
///
/// When the medium of the code is known before the call (`medium`: from the pool profile's
/// auto-verified attributes and the user's contacts), the reservation counts toward that
/// medium at once, so its cap holds exactly, whatever is in flight; the other medium's cap does
/// not concern it. When it is not known (no pool access), per-medium caps compare against the
/// codes counted so far, and calls in flight when a medium's count reaches its cap may still go
/// out by that medium: the overshoot is at most the calls in flight across the fleet then.
pub(crate) fn refused_by(
    spend: &DaySpend,
    caps: DayCaps,
    medium: Option<Medium>,
) -> Option<SpendCap> {
    if caps.sends.is_some_and(|c| spend.sends >= c) {
        return Some(SpendCap::Day);
    }
    match medium {
        Some(Medium::Sms) => {
            return caps
                .sms
                .is_some_and(|c| spend.sms >= c)
                .then_some(SpendCap::SmsDay);
        }
        Some(Medium::Email) => {
            return caps
                .email
                .is_some_and(|c| spend.email >= c)
                .then_some(SpendCap::EmailDay);
        }
        None => {}
    }
    if caps.sms.is_some_and(|c| spend.sms >= c) {
        return Some(SpendCap::SmsDay);
    }
    if caps.email.is_some_and(|c| spend.email >= c) {
        return Some(SpendCap::EmailDay);
    }
    None
}

/// The cap that refuses every reservation a run could make now, given the day's counters: its
/// day's budget is spent. A run whose reservations carry no medium is refused as soon as any
/// cap is reached ([`refused_by`] with none); one that knows each code's medium ahead
/// (`mediums_known`) only once both media are refused.
pub(crate) fn spent_for_every_job(
    spend: &DaySpend,
    caps: DayCaps,
    mediums_known: bool,
) -> Option<SpendCap> {
    let cap = refused_by(spend, caps, None)?;
    if mediums_known {
        refused_by(spend, caps, Some(Medium::Sms))?;
        refused_by(spend, caps, Some(Medium::Email))?;
    }
    Some(cap)
}

/// How often a run in a fleet (`--fleet-rate`) takes the census at most. Half a second: a
/// throttle one run counted reaches the others within it (the bench's fleet above the quota
/// measured 3.5 % of calls throttled with a census every second, 2.4 % with this). On DynamoDB,
/// two small writes a second per run to the fleet item.
const CENSUS_EVERY: Duration = Duration::from_millis(500);

/// The error of a [`Store`] method a backend does not implement (test wrappers).
fn unsupported(state: String, what: &str) -> LedgerError {
    LedgerError {
        state,
        detail: format!("this ledger keeps no {what}"),
    }
}

/// Timing settings of the ledger.
#[derive(Debug, Clone, Copy)]
pub struct LedgerTiming {
    /// `--cooldown`.
    pub cooldown: Duration,
    /// `--claim-lease`: how long another run must see this run's heartbeat counter standing
    /// still before it treats this run's claims as in doubt.
    pub lease: Duration,
}

/// This run's wall clock, as the ledger reads it: the system clock plus a skew, so tests can
/// run two "hosts" whose clocks disagree. Liveness never uses it (see the module doc); the
/// monotonic clock is tokio's, which tests can pause.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// Added to the system clock (negative: behind).
    pub skew_millis: i64,
}

impl Clock {
    /// Now, by this clock.
    pub fn now(self) -> Millis {
        now_millis().saturating_add(self.skew_millis)
    }
}

/// What a run adds to the ledger's rules beyond timing (`--wave`, `--max-sends-per-user`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waves {
    /// The name each send of this run is recorded under.
    pub wave: Option<String>,
    /// Users with this many codes recorded are not claimed: outcome `capped`.
    pub max_sends_per_user: Option<u64>,
}

/// A send (or possible send) the ledger could not record: kept until [`Ledger::close`].
#[derive(Debug, Clone)]
struct Unrecorded {
    key: UserKey,
    how: Finish,
    at: Millis,
}

/// What the clones of one [`Ledger`] share.
struct RunState {
    /// Other runs' heartbeat counters as this run last saw them, and since when (monotonic).
    seen: std::sync::Mutex<std::collections::HashMap<String, (i64, tokio::time::Instant)>>,
    /// Cancelled when this run's heartbeat has failed for half a lease: no more claims.
    fenced: CancellationToken,
    /// Sends that could not be recorded.
    unrecorded: std::sync::Mutex<Vec<Unrecorded>>,
    /// `--fleet-rate`: the runs seen in the census, and this run's share as last published.
    fleet: Option<FleetState>,
}

/// A run's side of the fleet budget.
struct FleetState {
    census: std::sync::Mutex<fleet::Census>,
    /// Runs judged dead at the last census, removed from the store at the next.
    dead: std::sync::Mutex<Vec<String>>,
    share: tokio::sync::watch::Sender<fleet::Share>,
    /// Whether the last census failed (logged once per failing stretch).
    failing: std::sync::atomic::AtomicBool,
    /// Held by a census in flight: [`Ledger::close`] waits for it, so a census cannot put this
    /// run back into the fleet after its end was recorded.
    busy: tokio::sync::Mutex<()>,
    /// Throttles this run's controller counted that the fleet has not been told of yet.
    unreported: std::sync::atomic::AtomicU64,
    /// The fleet's throttle total at the last census (`None` before the first).
    throttles_seen: std::sync::Mutex<Option<u64>>,
    /// Wakes the census loop: this run was throttled, the fleet should hear of it now.
    throttled: tokio::sync::Notify,
}

/// The ledger as the engine uses it: a store, this run's id, and the heartbeat that keeps its
/// claims alive.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    run: RunId,
    timing: LedgerTiming,
    clock: Clock,
    stop_heartbeat: CancellationToken,
    state: Arc<RunState>,
    /// `--wave` and `--max-sends-per-user`: the same for every job of the run.
    waves: Arc<Waves>,
    /// Cancelled when the run's time is up (a Lambda invocation's deadline, a pod's termination
    /// grace after SIGTERM): from then on every ledger call fails at once instead of waiting or
    /// retrying ([`Ledger::with_give_up`]).
    give_up: CancellationToken,
}

impl Ledger {
    /// Registers a new run in `store` and starts its heartbeat.
    pub async fn start(
        store: Arc<dyn Store>,
        command: &str,
        timing: LedgerTiming,
    ) -> Result<Self, LedgerError> {
        Self::start_with_clock(store, command, timing, Clock::default()).await
    }

    /// [`Ledger::start`] for a run that takes its share of a fleet budget of `budget` calls
    /// per second (`--fleet-rate`): see [`Ledger::fleet_share`].
    pub async fn start_in_fleet(
        store: Arc<dyn Store>,
        command: &str,
        timing: LedgerTiming,
        budget: f64,
    ) -> Result<Self, LedgerError> {
        Self::begin(store, command, timing, Clock::default(), Some(budget)).await
    }

    /// [`Ledger::start`] with a skewed wall clock (tests).
    pub async fn start_with_clock(
        store: Arc<dyn Store>,
        command: &str,
        timing: LedgerTiming,
        clock: Clock,
    ) -> Result<Self, LedgerError> {
        Self::begin(store, command, timing, clock, None).await
    }

    async fn begin(
        store: Arc<dyn Store>,
        command: &str,
        timing: LedgerTiming,
        clock: Clock,
        budget: Option<f64>,
    ) -> Result<Self, LedgerError> {
        let run = RunId::new();
        store
            .begin_run(&run, command, timing.lease, clock.now())
            .await?;
        let ledger = Self {
            store,
            run,
            timing,
            clock,
            stop_heartbeat: CancellationToken::new(),
            waves: Arc::default(),
            give_up: CancellationToken::new(),
            state: Arc::new(RunState {
                seen: Default::default(),
                fenced: CancellationToken::new(),
                unrecorded: Default::default(),
                fleet: budget.map(|budget| FleetState {
                    census: std::sync::Mutex::new(fleet::Census::new(timing.lease)),
                    dead: Default::default(),
                    // No run yet: the first census always publishes (and logs) a share.
                    share: tokio::sync::watch::Sender::new(fleet::Share {
                        budget,
                        runs: 0,
                        rate: budget,
                        peer_throttles: 0,
                    }),
                    failing: Default::default(),
                    busy: Default::default(),
                    unreported: Default::default(),
                    throttles_seen: Default::default(),
                    throttled: Default::default(),
                }),
            }),
        };
        if ledger.state.fleet.is_some() {
            // The first share is known before the first call: a run that cannot take the
            // census does not start (and ends its row, so nobody waits a lease on it).
            if let Err(e) = ledger.take_census().await {
                let _ = ledger.store.end_run(&ledger.run, clock.now()).await;
                return Err(e);
            }
        }
        tokio::spawn(ledger.clone().beat());
        if ledger.state.fleet.is_some() {
            tokio::spawn(ledger.clone().count_the_fleet());
        }
        tracing::info!(run = %ledger.run, "ledger: {}", ledger.store.describe());
        Ok(ledger)
    }

    /// How often the heartbeat beats, and how long one beat may take before it counts as
    /// failed. A sixth of the lease: a run fences itself at most `lease/2 + lease/6 + lease/6`
    /// after its last successful beat was sent, before anyone can have seen its counter still
    /// for a full lease.
    fn beat_every(&self) -> Duration {
        (self.timing.lease / 6).max(Duration::from_millis(50))
    }

    async fn beat(self) {
        let every = self.beat_every();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // When the last beat that succeeded was sent (monotonic).
        let mut last_ok = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.stop_heartbeat.cancelled() => return,
                _ = tick.tick() => {}
            }
            let sent = tokio::time::Instant::now();
            let beat =
                tokio::time::timeout(every, self.store.heartbeat(&self.run, self.clock.now()));
            match beat.await {
                Ok(Ok(())) => {
                    last_ok = sent;
                    if failing {
                        failing = false;
                        tracing::info!("ledger heartbeat works again");
                    }
                }
                failed => {
                    if !failing {
                        failing = true;
                        let why = match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => format!("a heartbeat took longer than {every:?}"),
                        };
                        tracing::warn!(
                            "{why}; if this lasts half the claim lease ({:?}), this run stops \
                             claiming users",
                            self.timing.lease
                        );
                    }
                    if sent.duration_since(last_ok) >= self.timing.lease / 2
                        && !self.state.fenced.is_cancelled()
                    {
                        tracing::error!(
                            "ledger heartbeat failing for {:?} (half the claim lease): this run \
                             stops claiming, since other runs may soon treat its claims as in \
                             doubt",
                            sent.duration_since(last_ok)
                        );
                        self.state.fenced.cancel();
                    }
                }
            }
        }
    }

    /// `--fleet-rate`: this run's share of the fleet budget, updated with every heartbeat
    /// (`None` without a fleet budget).
    pub fn fleet_share(&self) -> Option<tokio::sync::watch::Receiver<fleet::Share>> {
        self.state.fleet.as_ref().map(|f| f.share.subscribe())
    }

    /// Takes the census and publishes this run's share if it changed (logged, and shown by the
    /// `cognito_resend_fleet_runs` gauge).
    async fn take_census(&self) -> Result<(), LedgerError> {
        let Some(f) = &self.state.fleet else {
            return Ok(());
        };
        let dead = std::mem::take(&mut *f.dead.lock().unwrap_or_else(|e| e.into_inner()));
        let mine = f.unreported.swap(0, std::sync::atomic::Ordering::Relaxed);
        let listing = match self
            .store
            .census(&self.run, self.timing.lease, &dead, mine)
            .await
        {
            Ok(listing) => listing,
            Err(e) => {
                // Pruned, and told, at the next census instead. (A census whose answer was
                // lost after its write may count these twice: one extra cut, never a missed one.)
                *f.dead.lock().unwrap_or_else(|e| e.into_inner()) = dead;
                f.unreported
                    .fetch_add(mine, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        let heard = {
            let mut seen = f.throttles_seen.lock().unwrap_or_else(|e| e.into_inner());
            let heard = fleet::peer_throttles(*seen, listing.throttles, mine);
            *seen = Some(listing.throttles);
            heard
        };
        let listed = listing.runs;
        if f.failing.swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!("the fleet census works again");
        }
        let counted = f.census.lock().unwrap_or_else(|e| e.into_inner()).count(
            &self.run.0,
            &listed,
            &listing.leases,
        );
        *f.dead.lock().unwrap_or_else(|e| e.into_inner()) = counted.dead;
        let budget = f.share.borrow().budget;
        let share = fleet::Share::of(budget, counted.live);
        crate::telemetry::metrics::fleet_runs(share.runs);
        f.share.send_if_modified(|old| {
            if heard > 0 {
                old.peer_throttles += heard;
                tracing::debug!(heard, "peers in the fleet were throttled");
            }
            if old.runs == share.runs && old.rate == share.rate {
                return heard > 0;
            }
            tracing::info!(
                runs = share.runs,
                budget,
                share = share.rate,
                "fleet budget: {} live run(s) share {budget}/s; this run takes {:.2}/s",
                share.runs,
                share.rate
            );
            *old = fleet::Share {
                peer_throttles: old.peer_throttles,
                ..share
            };
            true
        });
        Ok(())
    }

    /// `--fleet-rate`: this run's controller acted on a throttle. The fleet hears of it at a
    /// census taken now rather than at the next second, so the other runs cut with this one
    /// ([`fleet`], "Throttles are shared too"). Nothing without a fleet budget.
    pub fn note_throttle(&self) {
        if let Some(f) = &self.state.fleet {
            f.unreported
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f.throttled.notify_one();
        }
    }

    /// The census loop: a census every half second (or every heartbeat period, if shorter), and
    /// at once after a throttle this run counted, apart from the heartbeat so that a slow census
    /// never delays a beat (which could fence this run). Often, because a share is only right
    /// once every run has seen the others, and a throttle only helps the fleet once the others
    /// hear of it: a run that joins or ends changes everyone's share within a second, not a
    /// heartbeat period (5 s by default), during which the fleet would ask for more (or use
    /// less) than its budget. One cheap read and upsert (SQLite) or one write to the fleet item
    /// (DynamoDB) each.
    async fn count_the_fleet(self) {
        let every = self.beat_every().min(CENSUS_EVERY);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let Some(f) = &self.state.fleet else { return };
            tokio::select! {
                _ = self.stop_heartbeat.cancelled() => return,
                _ = tick.tick() => {}
                // The next tick is a full period after this census, not sooner.
                _ = f.throttled.notified() => tick.reset(),
            }
            let _busy = f.busy.lock().await;
            if self.stop_heartbeat.is_cancelled() {
                return;
            }
            let failed = match tokio::time::timeout(every, self.take_census()).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("a census took longer than {every:?}"),
            };
            if !f.failing.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("{failed}: the fleet census failed; keeping the last share");
            }
        }
    }

    /// This run's wave and lifetime cap per user (none by default): a handle given them records
    /// its sends under the wave and claims no user already at the cap.
    pub fn with_waves(mut self, waves: Waves) -> Self {
        self.waves = Arc::new(waves);
        self
    }

    /// A handle whose ledger calls end when `give_up` is cancelled: the time the run has is up
    /// (a Lambda invocation's deadline, the termination grace of a pod after SIGTERM), and work
    /// past it would be cut short by the platform anyway, without a word. A call in progress
    /// (with the SDK's own retries under it) is dropped, no retry or backoff starts, and the
    /// call fails with [`Ledger::gave_up`]'s error: a result not recorded so is kept as
    /// unrecorded, its claim left in place, exactly as when the ledger fails ([`Ledger::record`]).
    pub fn with_give_up(mut self, give_up: CancellationToken) -> Self {
        self.give_up = give_up;
        self
    }

    /// The error of a ledger call made or cut short once the run's time was up.
    fn gave_up(&self) -> LedgerError {
        LedgerError {
            state: self.store.describe(),
            detail: "the run's time was up (the invocation's deadline, or the termination grace \
                     after a signal) before the ledger answered: gave up"
                .into(),
        }
    }

    /// `op`, unless the run's time is up first.
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        tokio::select! {
            biased;
            answered = op => answered,
            _ = self.give_up.cancelled() => Err(self.gave_up()),
        }
    }

    /// This run's id.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// `--state`, for messages.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Cancelled once this run is fenced (its heartbeat failed for half a lease): the engine
    /// stops taking work.
    pub fn fenced(&self) -> CancellationToken {
        self.state.fenced.clone()
    }

    /// The error a fenced run stops with.
    pub fn fence_error(&self) -> LedgerError {
        LedgerError {
            state: self.store.describe(),
            detail: format!(
                "this run's heartbeat has failed for half the claim lease ({:?}); it stopped \
                 claiming users so that no other run takes over a claim it still acts on",
                self.timing.lease
            ),
        }
    }

    fn rules(&self) -> Rules {
        let now = self.clock.now();
        Rules {
            now,
            cooldown_since: now.saturating_sub(duration_millis(self.timing.cooldown)),
            alive_since: now.saturating_sub(duration_millis(self.timing.lease)),
            max_sends_per_user: self.waves.max_sends_per_user,
        }
    }

    /// How long to wait before asking again about a user a live call holds.
    pub fn held_poll(&self) -> Duration {
        (self.timing.lease / 20).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Claims a user for a call. A claim of another run is judged by that run's heartbeat
    /// counter: once this run has seen it unchanged for a full lease of that run's (its
    /// `--claim-lease`, from its row; this run's own for a row without one), on this run's
    /// monotonic clock, the claim is taken over as in doubt; until then it is [`Claim::Held`]
    /// and the caller asks again.
    pub async fn claim(&self, key: &UserKey) -> Result<Claim, LedgerError> {
        let (client_id, username) = (key.client_id.as_str(), key.username.as_str());
        if self.state.fenced.is_cancelled() {
            return Err(self.fence_error());
        }
        let first = self
            .bounded(
                self.store
                    .claim(&self.run, client_id, username, self.rules(), None),
            )
            .await?;
        let Claim::Held { run, beats, lease } = &first else {
            return Ok(first);
        };
        // Judged by the holder's own lease: it fences itself at half of it, whatever ours is.
        let lease = lease.unwrap_or(self.timing.lease);
        if *run == self.run.0 || !self.stood_still(run, *beats, lease) {
            return Ok(first);
        }
        let stale = Stale {
            run: run.clone(),
            beats: *beats,
        };
        self.bounded(
            self.store
                .claim(&self.run, client_id, username, self.rules(), Some(&stale)),
        )
        .await
    }

    /// Notes `run`'s counter; true once it has stood still for a full `lease` (that run's).
    fn stood_still(&self, run: &str, beats: i64, lease: Duration) -> bool {
        let now = tokio::time::Instant::now();
        let mut seen = self.state.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(run) {
            Some(&(b, since)) if b == beats => now.duration_since(since) >= lease,
            _ => {
                seen.insert(run.to_owned(), (beats, now));
                false
            }
        }
    }

    /// What a claim would find, claims aside: a send within the cooldown, the cap reached, or
    /// `None` (`--dry-run`).
    pub async fn peek(&self, key: &UserKey) -> Result<Option<Claim>, LedgerError> {
        self.bounded(self.store.peek(&key.client_id, &key.username, self.rules()))
            .await
    }

    /// Ends this run's claim on a user: one write, no retry.
    pub async fn finish(&self, key: &UserKey, how: Finish) -> Result<(), LedgerError> {
        self.write(key, how, self.clock.now()).await
    }

    /// One write of a claim's end, under this run and its wave.
    async fn write(&self, key: &UserKey, how: Finish, at: Millis) -> Result<(), LedgerError> {
        self.bounded(self.store.finish(
            &self.run,
            &key.client_id,
            &key.username,
            how,
            self.waves.wave.as_deref(),
            at,
        ))
        .await
    }

    /// Records how a claimed job ended, retrying a failing ledger with backoff for up to a
    /// lease (each retry logged and counted in `cognito_resend_ledger_retries_total`). The
    /// caller holds its permit meanwhile, so a queue message stays invisible. If it still
    /// fails and Cognito sent (or may have sent) a code, the claim is left in place and the
    /// send is kept for [`Ledger::close`] to try again.
    pub async fn record(&self, key: &UserKey, how: Finish) -> Result<(), LedgerError> {
        let at = self.clock.now();
        let result = self.write_patiently(key, how, at).await;
        if result.is_err() && matches!(how, Finish::Sent | Finish::MaybeSent(_)) {
            self.state
                .unrecorded
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Unrecorded {
                    key: key.clone(),
                    how,
                    at,
                });
        }
        result
    }

    async fn write_patiently(
        &self,
        key: &UserKey,
        how: Finish,
        at: Millis,
    ) -> Result<(), LedgerError> {
        let ran = Retry::new(&self.write_policy())
            .until(&self.give_up)
            .run_observed(
                |_| self.write(key, how, at),
                |_, _| Verdict::Retry(Quota::Unknown),
                |e, _, delay| {
                    tracing::warn!("{e}: recording a result failed; retrying in {delay:?}");
                    crate::telemetry::metrics::ledger_retry("finish");
                },
            )
            .await;
        ran.result.map_err(|failure| {
            // No attempt is made only once the run's time is up.
            let e = match failure {
                crate::retry::Failure::Stopped(_) => self.gave_up(),
                failure => failure.into_last().unwrap_or_else(|| self.gave_up()),
            };
            tracing::error!(
                "{e}: recording a result failed {} times; giving up",
                ran.attempts
            );
            e
        })
    }

    /// How a result's write is retried: from 50 ms, doubling up to a heartbeat period, for up
    /// to a lease in all (the claim is this run's for that long, whatever happens to the write).
    fn write_policy(&self) -> Policy {
        let backoff = Backoff::new(Duration::from_millis(50), self.beat_every(), 2.0, 0.0)
            .expect("a heartbeat period is at least 50 ms");
        Policy::new(
            backoff,
            Budget {
                max_attempts: None,
                max_elapsed: Some(self.timing.lease),
            },
        )
    }

    /// Reserves one send against the per-day caps, on today's UTC day by this run's clock.
    /// `Ok(Ok(r))`: granted, settle it (once, however it ends) with [`Ledger::settle_send`];
    /// `Ok(Err(cap))`: refused.
    pub async fn reserve_send(
        &self,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> Result<Result<DayReservation, SpendCap>, LedgerError> {
        let r = DayReservation::new(utc_day(self.clock.now()));
        Ok(
            match self
                .bounded(self.store.reserve_send(&r, caps, medium))
                .await?
            {
                None => Ok(r),
                Some(cap) => Err(cap),
            },
        )
    }

    /// How long until the next UTC day by this run's clock: when the per-day caps' budgets
    /// come back.
    pub fn until_next_day(&self) -> Duration {
        until_next_day(self.clock.now())
    }

    /// Today's spend counters (UTC, by this run's clock).
    pub async fn today_spend(&self) -> Result<DaySpend, LedgerError> {
        self.store.day_spend(&utc_day(self.clock.now())).await
    }

    /// Settles a reservation [`Ledger::reserve_send`] granted.
    pub async fn settle_send(&self, r: &DayReservation, spent: Spent) -> Result<(), LedgerError> {
        self.bounded(self.store.settle_send(r, spent)).await
    }

    /// Sends this run could not record, so far.
    pub fn unrecorded(&self) -> usize {
        self.state
            .unrecorded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Ends the run: records what could not be recorded yet (heartbeat still beating, so other
    /// runs keep waiting on those claims), then stops the heartbeat and marks the run ended, so
    /// claims it still holds (calls abandoned at shutdown) are in doubt for the next run at
    /// once. With sends still unrecorded, the run is not marked ended: other runs then wait a
    /// full lease after its last heartbeat before they take its claims over as in doubt.
    pub async fn close(&self) {
        let pending = std::mem::take(
            &mut *self
                .state
                .unrecorded
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        // Rounds over everything still pending, with backoff, within one lease in all (not a
        // lease each: a dead ledger must not hold the exit for `concurrency` leases).
        let left = std::sync::Mutex::new(pending);
        let left = &left;
        let take = || std::mem::take(&mut *left.lock().unwrap_or_else(|e| e.into_inner()));
        Retry::new(&self.write_policy())
            .until(&self.give_up)
            .run_observed(
                |_| async move {
                    let mut failed = Vec::new();
                    for u in take() {
                        if self.write(&u.key, u.how, u.at).await.is_err() {
                            failed.push(u);
                        }
                    }
                    let still = failed.len();
                    *left.lock().unwrap_or_else(|e| e.into_inner()) = failed;
                    if still == 0 { Ok(()) } else { Err(still) }
                },
                |_, _| Verdict::Retry(Quota::Unknown),
                |_, _, _| crate::telemetry::metrics::ledger_retry("finish"),
            )
            .await;
        let left = take();
        self.stop_heartbeat.cancel();
        if !left.is_empty() {
            tracing::error!(
                "{} sent code(s) could not be recorded in the ledger; their claims stay, and a \
                 later run reports those users in doubt (dead_run) and sends again",
                left.len()
            );
            *self
                .state
                .unrecorded
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = left;
            return;
        }
        // A census in flight finishes first (the loop stops at the next one).
        let _census = match &self.state.fleet {
            Some(f) => Some(f.busy.lock().await),
            None => None,
        };
        if let Err(e) = self
            .bounded(self.store.end_run(&self.run, self.clock.now()))
            .await
        {
            tracing::warn!("{e}; claims of this run become in doubt after the claim lease");
        }
    }
}

/// Opens the store `spec` names (`None` for `none`) for a pool whose usernames are `case`.
/// For a case-insensitive pool (also the default, for a pool not known) the ledger's keys are
/// folded first, once per ledger ([`Store::fold_usernames`]); a case-sensitive pool's ledger
/// is never folded.
pub async fn open(
    spec: &StateSpec,
    aws: &dynamo::DynamoSettings,
    case: UsernameCase,
) -> Result<Option<Arc<dyn Store>>, LedgerError> {
    let store: Arc<dyn Store> = match spec {
        StateSpec::None => return Ok(None),
        StateSpec::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path)?),
        StateSpec::Dynamo { table } => Arc::new(dynamo::DynamoStore::connect(table, aws).await?),
    };
    if case == UsernameCase::Insensitive {
        let folded = store.fold_usernames().await?;
        if folded.rows > 0 {
            tracing::info!(
                rows = folded.rows,
                users = folded.users,
                "ledger {}: the keys are folded for a case-insensitive pool: {} row(s) of \
                 another spelling merged into {} user(s)",
                store.describe(),
                folded.rows,
                folded.users
            );
        }
    }
    Ok(Some(store))
}

/// The decision both backends share, given a user's row as read inside their atomic step:
/// its last send, its count of codes sent, its claim (with the holding run's state), and its
/// in-doubt mark.
///
/// The cap comes first: a capped user never gets another code, so `capped` says more than
/// `cooldown` (a later wave would not reach them either). It holds across runs because a claim
/// is exclusive and a send's count is written in the same atomic step that ends its claim: the
/// next claim reads the count the last send left.
pub(crate) fn decide(
    me: &str,
    last_sent: Option<Millis>,
    sends: i64,
    holder: Option<Holder<'_>>,
    mark: Option<InDoubt>,
    take_over: Option<&Stale>,
    rules: Rules,
) -> Claim {
    if let Some(max) = rules.max_sends_per_user
        && u64::try_from(sends).is_ok_and(|n| n >= max)
    {
        return Claim::Capped { sends };
    }
    if let Some(sent) = last_sent
        && sent >= rules.cooldown_since
    {
        return Claim::Cooldown { last_sent: sent };
    }
    match holder {
        None => Claim::Granted { in_doubt: mark },
        Some(h)
            if h.run != me
                && (h.ended || take_over.is_some_and(|s| s.run == h.run && s.beats == h.beats)) =>
        {
            Claim::Granted {
                in_doubt: Some(InDoubt {
                    run: h.run.to_owned(),
                    claimed_at: h.claimed_at,
                }),
            }
        }
        Some(h) => Claim::Held {
            run: h.run.to_owned(),
            beats: h.beats,
            lease: h
                .lease
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
        },
    }
}

/// What a claim would find for a row with this last send and count, claims of runs aside
/// ([`Store::peek`], `--dry-run`): the same rules as [`decide`].
pub(crate) fn plan(last_sent: Option<Millis>, sends: i64, rules: Rules) -> Option<Claim> {
    match decide("", last_sent, sends, None, None, None, rules) {
        Claim::Granted { .. } => None,
        decided => Some(decided),
    }
}

/// The host name (for `ledger stats`), best effort and without a system call crate.
pub(crate) fn host_label() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            now: 10_000,
            cooldown_since: 5_000,
            alive_since: 9_000,
            max_sends_per_user: None,
        }
    }

    #[test]
    fn state_spec_parses_the_three_forms() {
        assert_eq!(StateSpec::parse("none").unwrap(), StateSpec::None);
        assert_eq!(
            StateSpec::parse("dynamodb://resend-ledger").unwrap(),
            StateSpec::Dynamo {
                table: "resend-ledger".into()
            }
        );
        assert_eq!(
            StateSpec::parse("/var/lib/x.db").unwrap(),
            StateSpec::Sqlite("/var/lib/x.db".into())
        );
        assert!(StateSpec::parse("dynamodb://a b").is_err());
        assert!(StateSpec::parse("s3://bucket").is_err());
        assert!(StateSpec::parse("").is_err());
    }

    fn holder(run: &str, beats: i64, ended: bool) -> Option<Holder<'_>> {
        Some(Holder {
            run,
            claimed_at: 7,
            beats,
            ended,
            lease: None,
        })
    }

    #[test]
    fn a_send_within_the_cooldown_wins_over_everything() {
        let d = decide(
            "me",
            Some(6_000),
            0,
            holder("r", 1, true),
            None,
            None,
            rules(),
        );
        assert_eq!(d, Claim::Cooldown { last_sent: 6_000 });
    }

    #[test]
    fn an_old_send_does_not_block() {
        let d = decide("me", Some(4_999), 0, None, None, None, rules());
        assert_eq!(d, Claim::Granted { in_doubt: None });
    }

    #[test]
    fn a_claim_is_taken_over_only_from_an_ended_run_or_a_counter_seen_standing_still() {
        let doubt = Claim::Granted {
            in_doubt: Some(InDoubt {
                run: "other".into(),
                claimed_at: 7,
            }),
        };
        let held = Claim::Held {
            run: "other".into(),
            beats: 3,
            lease: None,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                None,
                rules()
            ),
            held
        );
        assert_eq!(
            decide("me", None, 0, holder("other", 3, true), None, None, rules()),
            doubt
        );
        let stale = Stale {
            run: "other".into(),
            beats: 3,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                Some(&stale),
                rules()
            ),
            doubt
        );
        // The counter moved since it was judged: alive after all.
        let moved = Stale {
            run: "other".into(),
            beats: 2,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                Some(&moved),
                rules()
            ),
            held
        );
        // Another job of this same run: held, never taken over.
        let mine = decide("me", None, 0, holder("me", 3, true), None, None, rules());
        assert!(matches!(mine, Claim::Held { .. }), "{mine:?}");
    }

    #[test]
    fn an_unclaimed_user_with_a_mark_is_granted_in_doubt() {
        let mark = InDoubt {
            run: "dead".into(),
            claimed_at: 1,
        };
        let d = decide("me", None, 0, None, Some(mark.clone()), None, rules());
        assert_eq!(
            d,
            Claim::Granted {
                in_doubt: Some(mark)
            }
        );
    }

    #[test]
    fn a_user_at_the_cap_is_capped_before_anything_else_and_below_it_is_not() {
        let capped = Rules {
            max_sends_per_user: Some(2),
            ..rules()
        };
        // At the cap: capped, whether in cooldown, held, or free.
        assert_eq!(
            decide(
                "me",
                Some(6_000),
                2,
                holder("r", 1, false),
                None,
                None,
                capped
            ),
            Claim::Capped { sends: 2 }
        );
        assert_eq!(
            decide("me", None, 3, None, None, None, capped),
            Claim::Capped { sends: 3 }
        );
        // Below it, the other rules as before.
        assert_eq!(
            decide("me", None, 1, None, None, None, capped),
            Claim::Granted { in_doubt: None }
        );
        assert_eq!(
            decide("me", Some(6_000), 1, None, None, None, capped),
            Claim::Cooldown { last_sent: 6_000 }
        );
        // No cap: any count is granted.
        assert_eq!(
            decide("me", None, 1_000, None, None, None, rules()),
            Claim::Granted { in_doubt: None }
        );
        // A dry run plans by the same rules.
        assert_eq!(plan(None, 2, capped), Some(Claim::Capped { sends: 2 }));
        assert_eq!(plan(Some(4_000), 1, capped), None);
    }
}
