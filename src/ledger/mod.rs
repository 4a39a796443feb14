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
//! - [`sqlite`]: a file (default `ledger.db` in the XDG data home), WAL, one writer thread that commits in
//!   groups, so durability does not cost one fsync per call. Several processes on one host may
//!   share it.
//! - [`dynamo`]: a DynamoDB table (`--state dynamodb://TABLE`) with conditional writes, for
//!   replicas on many hosts — the pattern Powertools' idempotency utility uses.
//!
//! # Layout
//!
//! Values at the bottom, logic above them: [`types`] (what every file speaks), [`store`] (the
//! [`Store`] trait), [`claim`] (the pure claim decision both backends share), [`spend`] (the
//! per-day caps), [`fleet`] (the census task), [`fold`] (folding usernames), the two backends,
//! and this file: the run handle ([`Ledger`]: begin, heartbeat, claim, record, close) and
//! [`open`].

mod claim;
pub(crate) mod dynamo;
pub(crate) mod fleet;
pub(crate) mod fold;
mod spend;
pub(crate) mod sqlite;
mod store;
mod types;

pub use fold::Folded;
pub(crate) use spend::{until_next_day, utc_day};
pub use store::Store;
pub use types::*;

pub(crate) use claim::{decide, plan};
pub(crate) use spend::{refused_by, spent_for_every_job};
pub(crate) use store::host_label;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::job::UserKey;
use crate::job::UsernameCase;
use crate::retry::{Backoff, Budget, Policy, Quota, Retry, Verdict};
use crate::sync::Locked;

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
    /// `--fleet-rate`: the census task, and the share it publishes.
    fleet: Option<fleet::FleetCensus>,
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
        let stop_heartbeat = CancellationToken::new();
        let fleet = match budget {
            None => None,
            // The first share is known before the first call: a run that cannot take the
            // census does not start (and ends its row, so nobody waits a lease on it).
            Some(budget) => {
                let every = beat_every(timing.lease).min(fleet::CENSUS_EVERY);
                let started = fleet::FleetCensus::start(
                    store.clone(),
                    run.clone(),
                    timing.lease,
                    every,
                    budget,
                    stop_heartbeat.clone(),
                )
                .await;
                match started {
                    Ok(census) => Some(census),
                    Err(e) => {
                        let _ = store.end_run(&run, clock.now()).await;
                        return Err(e);
                    }
                }
            }
        };
        let ledger = Self {
            store,
            run,
            timing,
            clock,
            stop_heartbeat,
            waves: Arc::default(),
            give_up: CancellationToken::new(),
            state: Arc::new(RunState {
                seen: Default::default(),
                fenced: CancellationToken::new(),
                unrecorded: Default::default(),
                fleet,
            }),
        };
        tokio::spawn(ledger.clone().beat());
        tracing::info!(run = %ledger.run, "ledger: {}", ledger.store.describe());
        Ok(ledger)
    }

    /// How often the heartbeat beats, and how long one beat may take before it counts as
    /// failed. A sixth of the lease: a run fences itself at most `lease/2 + lease/6 + lease/6`
    /// after its last successful beat was sent, before anyone can have seen its counter still
    /// for a full lease.
    fn beat_every(&self) -> Duration {
        beat_every(self.timing.lease)
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
        self.state.fleet.as_ref().map(fleet::FleetCensus::share)
    }

    /// `--fleet-rate`: this run's controller acted on a throttle. The fleet hears of it at a
    /// census taken now rather than at the next second, so the other runs cut with this one
    /// ([`fleet`], "Throttles are shared too"). Nothing without a fleet budget.
    pub fn note_throttle(&self) {
        if let Some(census) = &self.state.fleet {
            census.note_throttle();
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

    /// The rules of a claim made now ([`LedgerTiming::rules`]).
    fn rules(&self, status_read: bool) -> Rules {
        self.timing
            .rules(self.clock.now(), self.waves.max_sends_per_user, status_read)
    }

    /// How long to wait before asking again about a user a live call holds.
    pub fn held_poll(&self) -> Duration {
        (self.timing.lease / 20).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Claims a user for a call. A claim of another run is judged by that run's heartbeat
    /// counter: once this run has seen it unchanged for a full lease of that run's (its
    /// `--claim-lease`, from its row; this run's own for a row without one), on this run's
    /// monotonic clock, the claim is taken over as in doubt; until then it is [`Claim::Held`]
    /// and the caller asks again. `status_read`: see [`Claim::Known`] and `rules`.
    pub async fn claim(&self, key: &UserKey, status_read: bool) -> Result<Claim, LedgerError> {
        if self.state.fenced.is_cancelled() {
            return Err(self.fence_error());
        }
        let first = self
            .bounded(
                self.store
                    .claim(&self.run, key, self.rules(status_read), None),
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
                .claim(&self.run, key, self.rules(status_read), Some(&stale)),
        )
        .await
    }

    /// Notes `run`'s counter; true once it has stood still for a full `lease` (that run's).
    fn stood_still(&self, run: &str, beats: i64, lease: Duration) -> bool {
        let now = tokio::time::Instant::now();
        let mut seen = self.state.seen.locked();
        match seen.get(run) {
            Some(&(b, since)) if b == beats => now.duration_since(since) >= lease,
            _ => {
                seen.insert(run.to_owned(), (beats, now));
                false
            }
        }
    }

    /// What a claim would find, claims aside: a send within the cooldown, the cap reached, an
    /// outcome that is known, or `None` (`--dry-run`).
    pub async fn peek(
        &self,
        key: &UserKey,
        status_read: bool,
    ) -> Result<Option<Claim>, LedgerError> {
        self.bounded(self.store.peek(key, self.rules(status_read)))
            .await
    }

    /// Ends this run's claim on a user: one write, no retry.
    pub async fn finish(&self, key: &UserKey, how: Finish) -> Result<(), LedgerError> {
        self.write(key, how, self.clock.now()).await
    }

    /// One write of a claim's end, under this run and its wave.
    async fn write(&self, key: &UserKey, how: Finish, at: Millis) -> Result<(), LedgerError> {
        self.bounded(
            self.store
                .finish(&self.run, key, how, self.waves.wave.as_deref(), at),
        )
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
            self.state.unrecorded.locked().push(Unrecorded {
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

    /// Sends this run could not record, so far.
    pub fn unrecorded(&self) -> usize {
        self.state.unrecorded.locked().len()
    }

    /// Ends the run: records what could not be recorded yet (heartbeat still beating, so other
    /// runs keep waiting on those claims), then stops the heartbeat and marks the run ended, so
    /// claims it still holds (calls abandoned at shutdown) are in doubt for the next run at
    /// once. With sends still unrecorded, the run is not marked ended: other runs then wait a
    /// full lease after its last heartbeat before they take its claims over as in doubt.
    pub async fn close(&self) {
        let pending = std::mem::take(&mut *self.state.unrecorded.locked());
        // Rounds over everything still pending, with backoff, within one lease in all (not a
        // lease each: a dead ledger must not hold the exit for `concurrency` leases).
        let left = std::sync::Mutex::new(pending);
        let left = &left;
        let take = || std::mem::take(&mut *left.locked());
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
                    *left.locked() = failed;
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
            *self.state.unrecorded.locked() = left;
            return;
        }
        // A census in flight finishes first (the loop stops at the next one).
        if let Some(census) = &self.state.fleet {
            census.stop().await;
        }
        if let Err(e) = self
            .bounded(self.store.end_run(&self.run, self.clock.now()))
            .await
        {
            tracing::warn!("{e}; claims of this run become in doubt after the claim lease");
        }
    }
}

/// How often the heartbeat beats, for a run of this claim lease: a sixth of it (at least
/// 50 ms).
fn beat_every(lease: Duration) -> Duration {
    (lease / 6).max(Duration::from_millis(50))
}

/// Opens the store `spec` names (`None` for `none`) for a pool whose usernames are `case`.
/// For a case-insensitive pool (also the default, for a pool not known) the ledger's keys are
/// folded first, once per ledger ([`Store::fold_usernames`]); a case-sensitive pool's ledger
/// is never folded.
pub(crate) async fn open(
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
