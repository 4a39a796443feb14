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
//! Telling a live claim from a dead one: every run writes a row of its own and refreshes its
//! heartbeat every `lease / 3`. A claim whose run has ended, or whose heartbeat is older than the
//! lease, is dead. Clocks matter only across hosts (DynamoDB), and only to within the lease.
//!
//! Backends ([`Store`]):
//! - [`sqlite`]: a file (default `cognito-resend.db`), WAL, one writer thread that commits in
//!   groups, so durability does not cost one fsync per call. Several processes on one host may
//!   share it.
//! - [`dynamo`]: a DynamoDB table (`--state dynamodb://TABLE`) with conditional writes, for
//!   replicas on many hosts — the pattern Powertools' idempotency utility uses.

pub mod dynamo;
pub mod inspect;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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

fn duration_millis(d: Duration) -> Millis {
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
    /// Runs whose heartbeat is older than this are dead.
    pub alive_since: Millis,
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
    /// A live call holds the user: wait and ask again.
    Held {
        /// Its run.
        run: String,
    },
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
    /// The most recent runs, newest first.
    pub recent_runs: Vec<RunRow>,
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
    /// Records that `run` started (and refreshes its heartbeat).
    fn begin_run<'a>(
        &'a self,
        run: &'a RunId,
        command: &'a str,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Refreshes `run`'s heartbeat.
    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Records that `run` ended cleanly: its remaining claims are in doubt from now on.
    fn end_run<'a>(&'a self, run: &'a RunId, now: Millis)
    -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Claims (client id, username) for `run`.
    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>>;
    /// The last send, if within the cooldown; writes nothing (`--dry-run`).
    fn peek<'a>(
        &'a self,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Millis>, LedgerError>>;
    /// Ends `run`'s claim on (client id, username), durably.
    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        how: Finish,
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
}

/// Timing settings of the ledger.
#[derive(Debug, Clone, Copy)]
pub struct LedgerTiming {
    /// `--cooldown`.
    pub cooldown: Duration,
    /// `--claim-lease`: how stale a run's heartbeat may be before its claims are in doubt.
    pub lease: Duration,
}

/// The ledger as the engine uses it: a store, this run's id, and the heartbeat that keeps its
/// claims alive.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    run: RunId,
    timing: LedgerTiming,
    stop_heartbeat: CancellationToken,
}

impl Ledger {
    /// Registers a new run in `store` and starts its heartbeat.
    pub async fn start(
        store: Arc<dyn Store>,
        command: &str,
        timing: LedgerTiming,
    ) -> Result<Self, LedgerError> {
        let run = RunId::new();
        store.begin_run(&run, command, now_millis()).await?;
        let stop_heartbeat = CancellationToken::new();
        let ledger = Self {
            store,
            run,
            timing,
            stop_heartbeat,
        };
        tokio::spawn(ledger.clone().beat());
        tracing::info!(run = %ledger.run, "ledger: {}", ledger.store.describe());
        Ok(ledger)
    }

    async fn beat(self) {
        let every = (self.timing.lease / 3).max(Duration::from_millis(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.stop_heartbeat.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.store.heartbeat(&self.run, now_millis()).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("ledger heartbeat works again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "{e}; if this lasts longer than the claim lease ({:?}), other runs will \
                         treat this run's claims as in doubt",
                        self.timing.lease
                    );
                }
                Err(_) => {}
            }
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

    fn rules(&self) -> Rules {
        let now = now_millis();
        Rules {
            now,
            cooldown_since: now.saturating_sub(duration_millis(self.timing.cooldown)),
            alive_since: now.saturating_sub(duration_millis(self.timing.lease)),
        }
    }

    /// How long to wait before asking again about a user a live call holds.
    pub fn held_poll(&self) -> Duration {
        (self.timing.lease / 20).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Claims a user for a call.
    pub async fn claim(&self, client_id: &str, username: &str) -> Result<Claim, LedgerError> {
        self.store
            .claim(&self.run, client_id, username, self.rules())
            .await
    }

    /// The last send within the cooldown, if any (`--dry-run`).
    pub async fn peek(
        &self,
        client_id: &str,
        username: &str,
    ) -> Result<Option<Millis>, LedgerError> {
        self.store.peek(client_id, username, self.rules()).await
    }

    /// Ends this run's claim on a user.
    pub async fn finish(
        &self,
        client_id: &str,
        username: &str,
        how: Finish,
    ) -> Result<(), LedgerError> {
        self.store
            .finish(&self.run, client_id, username, how, now_millis())
            .await
    }

    /// Ends the run: stops the heartbeat and marks it ended, so claims it still holds (calls
    /// abandoned at shutdown) are in doubt for the next run at once.
    pub async fn close(&self) {
        self.stop_heartbeat.cancel();
        if let Err(e) = self.store.end_run(&self.run, now_millis()).await {
            tracing::warn!("{e}; claims of this run become in doubt after the claim lease");
        }
    }
}

/// Opens the store `spec` names (`None` for `none`).
pub async fn open(
    spec: &StateSpec,
    aws: &dynamo::DynamoSettings,
) -> Result<Option<Arc<dyn Store>>, LedgerError> {
    Ok(match spec {
        StateSpec::None => None,
        StateSpec::Sqlite(path) => Some(Arc::new(sqlite::SqliteStore::open(path)?)),
        StateSpec::Dynamo { table } => {
            Some(Arc::new(dynamo::DynamoStore::connect(table, aws).await?))
        }
    })
}

/// The decision both backends share, given a user's row as read inside their atomic step.
pub(crate) fn decide(
    last_sent: Option<Millis>,
    claim: Option<(&str, Millis)>,
    claim_alive: impl FnOnce(&str) -> bool,
    rules: Rules,
) -> Claim {
    if let Some(sent) = last_sent
        && sent >= rules.cooldown_since
    {
        return Claim::Cooldown { last_sent: sent };
    }
    match claim {
        None => Claim::Granted { in_doubt: None },
        Some((run, _)) if claim_alive(run) => Claim::Held {
            run: run.to_owned(),
        },
        Some((run, claimed_at)) => Claim::Granted {
            in_doubt: Some(InDoubt {
                run: run.to_owned(),
                claimed_at,
            }),
        },
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

    #[test]
    fn a_send_within_the_cooldown_wins_over_everything() {
        let d = decide(Some(6_000), Some(("r", 1)), |_| true, rules());
        assert_eq!(d, Claim::Cooldown { last_sent: 6_000 });
    }

    #[test]
    fn an_old_send_does_not_block() {
        let d = decide(Some(4_999), None, |_| true, rules());
        assert_eq!(d, Claim::Granted { in_doubt: None });
    }

    #[test]
    fn a_live_claim_holds_and_a_dead_one_is_in_doubt() {
        let held = decide(None, Some(("live", 1)), |r| r == "live", rules());
        assert_eq!(held, Claim::Held { run: "live".into() });
        let taken = decide(None, Some(("dead", 7)), |r| r == "live", rules());
        assert_eq!(
            taken,
            Claim::Granted {
                in_doubt: Some(InDoubt {
                    run: "dead".into(),
                    claimed_at: 7
                })
            }
        );
    }
}
