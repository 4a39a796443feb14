//! The values every ledger file speaks: where the ledger lives, times, run ids, the rules a
//! claim is decided by and what it finds, rows for people, day caps and spend, the run's
//! settings, and the ledger's error.
//!
//! They sit at the bottom of the ledger: the [`Store`](super::Store) trait, the claim
//! decision, the spend rules, both backends and the run handle all name them, and they name
//! nothing of those back (a first cut that kept them beside the trait and the decision closed
//! an import circle).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where the ledger lives, as `--state` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateSpec {
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
    pub(crate) fn parse(s: &str) -> Result<Self, StateSpecError> {
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
                return Err(StateSpecError::TableName(s.to_owned()));
            }
            return Ok(Self::Dynamo {
                table: table.to_owned(),
            });
        }
        if s.is_empty() {
            return Err(StateSpecError::Empty);
        }
        if s.contains("://") {
            return Err(StateSpecError::Scheme(s.to_owned()));
        }
        Ok(Self::Sqlite(s.into()))
    }
}

/// Why a `--state` value names no ledger.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateSpecError {
    /// `dynamodb://` with a name DynamoDB would refuse.
    #[error("`{0}`: a DynamoDB table name is 3-255 characters of a-z, A-Z, 0-9, _, - and .")]
    TableName(String),
    /// Nothing given.
    #[error("empty: give a file, dynamodb://TABLE or none")]
    Empty,
    /// A scheme other than `dynamodb://`.
    #[error("`{0}`: unknown scheme; give a file, dynamodb://TABLE or none")]
    Scheme(String),
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
pub(crate) fn to_millis(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// [`Millis`] as RFC 3339, for people.
pub(crate) fn rfc3339(ms: Millis) -> String {
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
    /// `--recheck-after`: a user whose last outcome, recorded at or after this, says they are
    /// confirmed or missing ([`Known`]) is not claimed. `None`: no such skip (`--recheck-after
    /// 0`, or a job whose status was just read from the pool).
    pub recheck_since: Option<Millis>,
}

/// What the ledger already knows about a user, from the outcome last recorded for them: a
/// claim within `--recheck-after` of it ends without a call ([`Claim::Known`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// `already_confirmed`, or `already_signed_in` (an invited user who signed in is
    /// confirmed): outcome `known_confirmed`.
    Confirmed,
    /// `not_found`: outcome `known_missing`.
    Missing,
}

impl Known {
    /// The ledger's `last_outcome` values that say what is known.
    pub(crate) const OUTCOMES: [(&'static str, Known); 3] = [
        ("already_confirmed", Known::Confirmed),
        ("already_signed_in", Known::Confirmed),
        ("not_found", Known::Missing),
    ];

    /// What a recorded `last_outcome` says, if anything lasting.
    pub(crate) fn of(last_outcome: &str) -> Option<Known> {
        Self::OUTCOMES
            .iter()
            .find(|(o, _)| *o == last_outcome)
            .map(|&(_, k)| k)
    }
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
    /// The ledger's last outcome for the user, within `--recheck-after`, says they are
    /// confirmed or missing: no call.
    Known {
        /// What is known.
        known: Known,
        /// When it was recorded.
        at: Millis,
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
    /// Users whose last code went out today (UTC, by the reader's clock): kept whether or not a
    /// day cap is set, unlike the day's spend counters.
    pub users_sent_today: u64,
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

    /// Cognito's name for it (`DeliveryMediumType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "SMS",
            Self::Email => "EMAIL",
        }
    }
}

/// One send reserved on a day's counters ([`Ledger::reserve_send`](super::Ledger::reserve_send)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayReservation {
    /// The UTC day it counts on, `YYYY-MM-DD`.
    pub day: String,
    /// Its own random token, written with it and taken away by its settlement, so that a write
    /// whose answer was lost and that is sent again (DynamoDB's SDK retries) reserves or
    /// settles once, not twice.
    pub token: String,
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

/// Timing settings of the ledger.
#[derive(Debug, Clone, Copy)]
pub struct LedgerTiming {
    /// `--cooldown`.
    pub cooldown: Duration,
    /// `--claim-lease`: how long another run must see this run's heartbeat counter standing
    /// still before it treats this run's claims as in doubt.
    pub lease: Duration,
    /// `--recheck-after`: how long a recorded `already_confirmed` or `not_found` spares the
    /// user a call (zero: never).
    pub recheck_after: Duration,
}

impl Rules {
    /// The start of today (UTC) by this rule's clock.
    pub fn day_start(&self) -> Millis {
        self.now - self.now.rem_euclid(86_400_000)
    }
}

impl LedgerTiming {
    /// The rules of a claim made at `now`. `status_read`: the job's status was just read from
    /// the pool (its listing, `--precheck`, an alias lookup), which says more than an outcome
    /// the ledger recorded earlier, so `--recheck-after` does not apply.
    pub fn rules(&self, now: Millis, max_sends_per_user: Option<u64>, status_read: bool) -> Rules {
        let since = |d: Duration| now.saturating_sub(super::duration_millis(d));
        Rules {
            now,
            cooldown_since: since(self.cooldown),
            alive_since: since(self.lease),
            max_sends_per_user,
            recheck_since: (!status_read && !self.recheck_after.is_zero())
                .then(|| since(self.recheck_after)),
        }
    }
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

/// What a store answers a census with ([`Store::census`](super::Store::census)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every run the store lists as running, with its counter.
    pub runs: Vec<(String, i64)>,
    /// The `--claim-lease` of each listed run that recorded one (runs of older builds did not):
    /// a run is judged dead by its own lease, as its claims are.
    pub leases: HashMap<String, Duration>,
    /// Throttles counted by every run of the fleet so far, this run's latest included.
    pub throttles: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            StateSpec::parse("dynamodb://a b"),
            Err(StateSpecError::TableName("dynamodb://a b".into()))
        );
        assert_eq!(
            StateSpec::parse("s3://bucket"),
            Err(StateSpecError::Scheme("s3://bucket".into()))
        );
        assert_eq!(StateSpec::parse(""), Err(StateSpecError::Empty));
    }
}
