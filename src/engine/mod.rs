//! The engine: takes jobs from a [`Source`] only as fast as it can start them, runs each under a
//! concurrency permit and the shared rate limit, retries what is retryable, and records exactly
//! one outcome per job.
//!
//! - [`rate`]: the adaptive token bucket shared by all tasks.
//! - [`resend_policy`]: the `retry.*` settings as the executor's policy for resends ([`crate::retry`]).
//!
//! The ledger. With one ([`crate::ledger`]), a job claims its user before the first call and
//! writes the result before its source is told or the outcome recorded: a user in cooldown is
//! `cooldown` without a call, one at `--max-sends-per-user` is `capped`; a user another live
//! call holds waits for it; a user a dead run held is sent again and reported as in doubt. A
//! ledger that fails stops the run: without a claim nothing is sent.
//!
//! Spend caps. Next to the claim, a job reserves one send against `--max-sends` (this run, in
//! memory) and the per-day caps (in the ledger, atomically, shared by every run on it); the
//! reservation is settled once on every path, a panic included: given back if nothing was sent,
//! kept if a code went out or may have. A refused reservation stops the run, and its
//! job is handed back like one never started (its claim released, no outcome); the source is
//! told first how long the budget is spent ([`Settle::hold_back`]: until the UTC day turns for a
//! per-day cap), so a queue keeps those jobs away until then instead of redelivering them.
//!
//! Stopping. Five things end a run: the source runs dry; a signal (the `shutdown` token); or
//! the same configuration error a few times in a row (a wrong secret, an unknown client, a spent
//! email quota), or Cognito unreachable from the start; a ledger failure; a spend cap reached.
//! In each case the engine stops taking jobs first. Calls in flight finish (after a
//! signal, within the grace period; past it they are abandoned and their jobs fail as
//! `interrupted`). Jobs that had not made their first call yet get no outcome and are handed
//! back to the source as untouched, so a rerun (or the queue) picks them up.
//!
//! Unreachable. A connection that cannot be made (refused, a DNS lookup or TLS handshake that
//! fails, a connect timeout) is retried like any transient error, but the run watches them
//! (`Reach`): before any call of the run has been answered they mean a wrong endpoint, region,
//! proxy or network, so the first is logged at once and the run stops early (exit 1, as for a
//! configuration error) once `UNREACHABLE_STOP` (5 s) has passed without an answer. After calls
//! have been answered it is an outage: the calls keep retrying within their budget, and a
//! warning says why, again every `UNREACHABLE_REPEAT` (30 s) while it lasts.

pub mod identity;
pub(crate) mod rate;
pub mod resend_policy;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cognito::admin::{AdminError, UserState};
use crate::cognito::{Answer, CallError, Misconfiguration, Resend};
use crate::config::{LimitSettings, RetrySettings, RunSettings};
use crate::job::{
    CallTime, Input, Job, Reason, RequestDefaults, ResendRequest, Settle, Source, Timing, UserKey,
};
use crate::ledger::{
    Claim, DayCaps, DayReservation, Finish, Ledger, LedgerError, Medium, SpendCap, Spent,
};
use crate::outcome::{DoubtCause, Outcome, OutcomeKind, Recorder};
use crate::retry::{Failure, Quota, Retry, Verdict};
use crate::sync::Locked;
use crate::telemetry::metrics::{self, AttemptResult};
use identity::{Answers, IdentityConfig, Looked, PoolLookup};
use rate::RateLimiter;
use resend_policy::{LAMBDA_ATTEMPTS, RetryPolicy};

/// What the engine needs besides its source: the settings sections it reads, as they are, and
/// the working parts a command built.
pub struct EngineConfig {
    /// `[run]`: concurrency, rate, `--dry-run` and the precheck's rate (`fleet_rate` is the
    /// ledger's, and `precheck` is whether `precheck` below is given).
    pub run: RunSettings,
    /// `[retry]`: retry budget and backoff.
    pub retry: RetrySettings,
    /// `[limits]`: `--max-sends` and the per-day caps (these need `ledger`).
    pub limits: LimitSettings,
    /// `--client-id`, for jobs that carry none.
    pub default_client_id: Option<String>,
    /// `--allow-client-id`: the app client ids a job may name besides `default_client_id`
    /// (always allowed). A job naming another is `invalid` and never called, so whoever writes
    /// the queue cannot make the run call (and be stopped by) a client the operator never chose.
    pub allowed_client_ids: Vec<String>,
    /// After a signal, how long in-flight calls may take.
    pub shutdown_grace: Duration,
    /// The send ledger (`None`: `--state none`).
    pub ledger: Option<Ledger>,
    /// Who a job is for: the pool's case rule, and the pool reads (`--precheck`, alias
    /// resolution; their rate is `run.precheck_rate`).
    pub identity: IdentityConfig,
    /// The pool sends email through Cognito's default email account (its profile says so):
    /// Cognito's "Exceeded daily email limit" is then the day's known budget running out, a
    /// spend-cap stop (`--max-email-per-day`, exit 4), not a configuration error.
    pub default_email_account: bool,
    /// `--client-metadata`, `--analytics-endpoint-id`: merged under every job's own request
    /// fields as the engine takes it, so every source and shape gets them.
    pub request_defaults: RequestDefaults,
}

/// The spend caps a run enforces, from `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SpendLimits {
    /// `--max-sends`: codes this run may send.
    run: Option<u64>,
    /// The per-day caps, kept in the ledger.
    day: DayCaps,
}

/// [`Resend`] behind a pointer: one boxed future per call (nothing beside an HTTP round trip),
/// and the job functions below stay free of a type parameter.
trait DynResend: Send + Sync {
    fn call<'a>(
        &'a self,
        req: &'a ResendRequest,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Answer, CallError>>;
}

impl<C: Resend> DynResend for C {
    fn call<'a>(
        &'a self,
        req: &'a ResendRequest,
        client_id: &'a str,
    ) -> BoxFuture<'a, Result<Answer, CallError>> {
        Box::pin(Resend::resend(self, req, client_id))
    }
}

/// The run's pool reads, their own rate limit, and the answers so far.
struct Lookup {
    pool: PoolLookup,
    rate: RateLimiter,
    answers: Answers,
}

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// The source ran dry: every job it yielded has an outcome.
    EndOfInput,
    /// The shutdown token was cancelled (SIGINT/SIGTERM).
    Shutdown,
    /// The configuration is wrong; the run stopped early.
    Misconfigured(MisconfigStop),
    /// The ledger failed; the run stopped early.
    LedgerFailed(LedgerError),
    /// A spend cap was reached; the run stopped taking work.
    SpendCapped(SpendCap),
}

/// The configuration error that stopped a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisconfigStop {
    /// Which problem.
    pub kind: Misconfiguration,
    /// The client id the last such error came back for.
    pub client_id: String,
    /// Cognito's code and message.
    pub detail: String,
    /// How many in a row.
    pub in_a_row: u32,
}

impl std::fmt::Display for MisconfigStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == Misconfiguration::Unreachable {
            return write!(
                f,
                "stopped early: cannot connect to Cognito at {} ({} attempts failed over {} s \
                 or more, and no call of this run was ever answered); {}. Jobs not yet \
                 attempted were left untouched: rerun after fixing it.",
                self.detail,
                self.in_a_row,
                UNREACHABLE_STOP.as_secs(),
                self.kind.fix()
            );
        }
        write!(
            f,
            "stopped early: Cognito answered {} for client id {} ({} in a row); {}. Jobs not yet \
             attempted were left untouched: rerun after fixing it.",
            self.detail,
            self.client_id,
            self.in_a_row,
            self.kind.fix()
        )
    }
}

/// Counts consecutive configuration errors (and delivery or trigger failures) per client id and
/// kind, across all tasks. Per client id: an allowed second client that is broken trips its own
/// count, and the first client's successes do not hide it.
#[derive(Default)]
struct MisconfigWatch {
    in_a_row: std::collections::HashMap<(String, Misconfiguration), u32>,
    tripped: Option<MisconfigStop>,
}

/// A run that has never been answered stops after connection failures lasting this long.
const UNREACHABLE_STOP: Duration = Duration::from_secs(5);
/// While connections fail after calls were answered, the warning is repeated this often.
const UNREACHABLE_REPEAT: Duration = Duration::from_secs(30);

/// Whether Cognito can be reached: the connection failures of the run so far (see the module
/// doc, "Unreachable").
#[derive(Default)]
struct Reach {
    /// A call of this run has been answered: the endpoint, region and network are right, and a
    /// connection failure from now on is an outage.
    answered: bool,
    /// The connection failures since the last answer, if the last call did not connect.
    outage: Option<Outage>,
}

/// Connection failures with no answer between.
struct Outage {
    /// The first one.
    since: Instant,
    /// When the last warning about it was logged.
    said: Instant,
    /// How many.
    failures: u32,
}

/// How long after the UTC day turns a job held back by a per-day cap comes back: the ledger's
/// day is each run's clock's, and a peer whose clock runs behind would still count yesterday.
pub(crate) const DAY_TURN_SLACK: Duration = Duration::from_secs(60);

/// What every job task shares.
struct Shared {
    /// Cognito, or a fake in tests; type-erased so the job functions need no type parameter.
    cognito: Box<dyn DynResend>,
    rate: RateLimiter,
    retry: RetryPolicy,
    recorder: Arc<Recorder>,
    settler: Arc<dyn Settle>,
    dry_run: bool,
    default_client_id: Option<String>,
    /// Every client id a job may name (`--client-id` included).
    allowed_client_ids: std::collections::HashSet<String>,
    /// Stop starting calls (signal or misconfiguration).
    stop: CancellationToken,
    /// Abandon calls in flight (the grace period is over).
    abort: CancellationToken,
    misconfig: Mutex<MisconfigWatch>,
    /// Whether Cognito can be reached at all.
    reach: Mutex<Reach>,
    ledger: Option<Ledger>,
    ledger_failed: Mutex<Option<LedgerError>>,
    /// How the pool compares usernames: the ledger key's case rule.
    case: crate::job::UsernameCase,
    lookup: Option<Lookup>,
    /// See [`EngineConfig::default_email_account`].
    default_email_account: bool,
    /// `--client-metadata`: a job whose metadata is more than this carries its own, and a
    /// trigger failure it meets may be its own doing ([`Shared::counts_toward_a_storm`]).
    run_metadata: std::collections::BTreeMap<String, String>,
    spend: SpendLimits,
    /// Sends reserved against `--max-sends` and not given back.
    run_reserved: std::sync::atomic::AtomicU64,
    /// Of those, the ones settled as sent or possibly sent.
    run_kept: std::sync::atomic::AtomicU64,
    /// Woken when a `--max-sends` reservation is settled.
    run_settled: tokio::sync::Notify,
    /// The first spend cap that refused a reservation.
    spend_capped: Mutex<Option<SpendCap>>,
    /// Cancelled at a spend cap: no more jobs are taken or claimed, but jobs holding a
    /// reservation still make their call (unlike `stop`, which would hand them back and end the
    /// run short of the cap).
    capped: CancellationToken,
}

/// Runs every job of `source` and returns why it stopped.
pub async fn run<S: Source, C: Resend>(
    config: EngineConfig,
    source: &mut S,
    cognito: C,
    recorder: Arc<Recorder>,
    shutdown: CancellationToken,
) -> StopCause {
    let stop = shutdown.child_token();
    let shared = Arc::new(Shared {
        cognito: Box::new(cognito),
        rate: RateLimiter::new(config.run.rate),
        retry: RetryPolicy::new(config.retry),
        recorder,
        settler: source.settler(),
        dry_run: config.run.dry_run,
        allowed_client_ids: config
            .allowed_client_ids
            .into_iter()
            .chain(config.default_client_id.clone())
            .collect(),
        default_client_id: config.default_client_id,
        stop: stop.clone(),
        abort: CancellationToken::new(),
        misconfig: Mutex::new(MisconfigWatch::default()),
        reach: Mutex::new(Reach::default()),
        ledger: config.ledger,
        ledger_failed: Mutex::new(None),
        case: config.identity.case,
        lookup: config.identity.lookup.map(|pool| Lookup {
            pool,
            rate: RateLimiter::unreported(config.run.precheck_rate),
            answers: Answers::default(),
        }),
        default_email_account: config.default_email_account,
        run_metadata: config.request_defaults.client_metadata.clone(),
        spend: SpendLimits {
            run: config.limits.max_sends,
            day: config.limits.day(),
        },
        run_reserved: Default::default(),
        run_kept: Default::default(),
        run_settled: tokio::sync::Notify::new(),
        spend_capped: Mutex::new(None),
        capped: CancellationToken::new(),
    });
    let permits = Arc::new(Semaphore::new(config.run.concurrency.get()));
    let tracker = TaskTracker::new();
    // A fenced ledger (this run's heartbeat failing for half a lease) stops the run at once,
    // so jobs already claimed but not yet called do not call.
    let watching = CancellationToken::new();
    let _stop_watching = watching.clone().drop_guard();
    // `--fleet-rate`: this run's share of the fleet budget is the limiter's ceiling, followed
    // as runs come and go (the ledger's census, every heartbeat).
    // A throttle a peer counted is this run's too: the fleet cuts together.
    if let Some(mut share) = shared.ledger.as_ref().and_then(Ledger::fleet_share) {
        let (mut heard, mut runs) = {
            let first = share.borrow_and_update();
            shared.rate.set_ceiling(first.rate);
            shared.rate.fleet_changed(1, first.runs);
            (first.peer_throttles, first.runs)
        };
        let (shared, watching) = (shared.clone(), watching.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = share.changed() => {
                        if changed.is_err() { return; }
                        let now = *share.borrow_and_update();
                        shared.rate.set_ceiling(now.rate);
                        shared.rate.fleet_changed(runs, now.runs);
                        runs = now.runs;
                        if now.peer_throttles > heard {
                            heard = now.peer_throttles;
                            shared.rate.on_peer_throttle();
                        }
                    }
                    _ = watching.cancelled() => return,
                }
            }
        });
    }
    if let Some(ledger) = &shared.ledger {
        let (fenced, shared) = (ledger.fenced(), shared.clone());
        let error = ledger.fence_error();
        tokio::spawn(async move {
            tokio::select! {
                _ = fenced.cancelled() => { let _ = shared.ledger_failed(error, 0); }
                _ = watching.cancelled() => {}
            }
        });
    }

    loop {
        // A permit first, then a job: the source is never asked for more than can start now.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.capped.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed; a closed semaphore would mean we are done
            },
        };
        let input = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = shared.capped.cancelled() => break,
            i = source.next() => i,
        };
        match input {
            None => break,
            Some(Input::Unreadable(u)) => {
                drop(permit);
                let outcome = Outcome {
                    reason: Some(Reason::Text(u.reason.clone())),
                    ..Outcome::new(OutcomeKind::Invalid, 0)
                };
                // Leaving a message for the redrive policy cannot fail.
                let _ = shared.settler.settle(&u.origin, Some(&outcome)).await;
                shared
                    .recorder
                    .record(u.username.as_deref(), None, &u.origin, &outcome);
            }
            Some(Input::Job(mut job)) => {
                // The one place every job passes: the run's defaults go under its own fields.
                config.request_defaults.apply(&mut job.request);
                let shared = shared.clone();
                tracker.spawn(async move { run_job(&shared, job, permit).await });
            }
        }
    }
    tracker.close();

    let drained = tracker.wait();
    tokio::pin!(drained);
    tokio::select! {
        _ = &mut drained => {}
        _ = shutdown.cancelled() => {
            if tokio::time::timeout(config.shutdown_grace, &mut drained).await.is_err() {
                tracing::warn!(
                    "calls still in flight after the {:?} grace period: abandoning them",
                    config.shutdown_grace
                );
                shared.abort.cancel();
                drained.await;
            }
        }
    }

    let tripped = shared.misconfig.locked().tripped.clone();
    let ledger_failed = shared.ledger_failed.locked().clone();
    let capped = *shared.spend_capped.locked();
    match (tripped, ledger_failed, capped) {
        (_, Some(e), _) => StopCause::LedgerFailed(e),
        (Some(m), None, _) => StopCause::Misconfigured(m),
        (None, None, Some(cap)) => StopCause::SpendCapped(cap),
        (None, None, None) if shutdown.is_cancelled() => StopCause::Shutdown,
        (None, None, None) => StopCause::EndOfInput,
    }
}

/// One job from start to recorded outcome. The permit is held through the calls and the waits
/// between them (so jobs in progress stay bounded), and given back before recording, which
/// needs no slot.
///
/// A panic in the job's work (a bug, in our code or a dependency) is caught here and becomes
/// outcome `failed`, reason `internal_error`: the job still settles (a queue gets its message
/// back, an SQS credit returns), is reported, and its ledger claim is finished (see
/// [`panicked`]). Without this, tokio would swallow the panic with the task, and the job would
/// lose its outcome and its source its settle.
async fn run_job(shared: &Shared, job: Job, permit: OwnedSemaphorePermit) {
    use futures::FutureExt as _;
    let req = &job.request;
    let client_id = req
        .client_id
        .as_deref()
        .or(shared.default_client_id.as_deref());
    let progress = Progress::default();
    let outcome = match client_id {
        Some(client_id) if !shared.allowed_client_ids.contains(client_id) => Some(Outcome {
            reason: Some(Reason::Text(
                "client id not allowed: only --client-id and the ids given with \
                 --allow-client-id (cognito.allowed_client_ids) may be named by a job"
                    .into(),
            )),
            ..Outcome::new(OutcomeKind::Invalid, 0)
        }),
        Some(client_id) => {
            // Unwind safety: after a panic, only `progress` (atomics) and `shared` (whose locks
            // are all taken poison-tolerant) are used again.
            let work = std::panic::AssertUnwindSafe(guarded(shared, &job, client_id, &progress));
            match work.catch_unwind().await {
                Ok(outcome) => outcome,
                Err(panic) => Some(panicked(shared, &job, &progress, panic).await),
            }
        }
        None => Some(Outcome {
            reason: Some(Reason::Text(
                "no client_id: the job carries none and --client-id is not set".into(),
            )),
            ..Outcome::new(OutcomeKind::Invalid, 0)
        }),
    };
    drop(permit);
    // The source first (a queue deletes the message), then the report: a job is reported done
    // only once its source agrees it is.
    let settled = shared.settler.settle(&job.origin, outcome.as_ref()).await;
    let Some(mut outcome) = outcome else {
        shared.recorder.untouched();
        return;
    };
    if let Err(detail) = settled {
        // The job is not done, but what its calls did stands: a user who may hold a code from
        // them stays in doubt (the redelivery will be `cooldown`, and only this line says so).
        outcome = Outcome {
            delivery: outcome.delivery.take(),
            in_doubt: outcome.in_doubt,
            ..Outcome::failed(
                Reason::AckFailed,
                Some(format!(
                    "{} (outcome was {}); the job will come back",
                    detail,
                    outcome.kind.as_str()
                )),
                outcome.attempts,
            )
        };
    }
    outcome.timing = progress.take_timing();
    let key = progress.key.locked().take();
    shared.recorder.record_for(
        Some(&req.username),
        client_id,
        key.as_ref().map(|k| k.username.as_str()),
        &job.origin,
        &outcome,
    );
}

/// How far a job got, kept outside its future so that after a panic we know what it held.
#[derive(Default)]
struct Progress {
    /// The job holds a ledger claim.
    claimed: std::sync::atomic::AtomicBool,
    /// Calls started (the first may have reached Cognito).
    calls: std::sync::atomic::AtomicU32,
    /// When the calls happened, for the report.
    timing: Mutex<CallLog>,
    /// Who the job is for, once known: the ledger key, and the report's `user_key`.
    key: Mutex<Option<UserKey>>,
    /// The job's spend reservation while it holds one: settled by the job, or, if it panics,
    /// by [`panicked`], so that a `--max-sends` run never waits for a settlement nobody makes.
    reservation: Mutex<Option<Reservation>>,
}

/// The calls of one job as they happen: the first call's start (by both clocks: the wall clock
/// for the report, the monotonic one for the offsets) and every call's [`CallTime`].
#[derive(Default)]
struct CallLog {
    first: Option<(SystemTime, Instant)>,
    calls: Vec<CallTime>,
}

impl Progress {
    /// A call starts now (`at`).
    fn call_starts(&self, at: Instant) {
        let mut log = self.timing.locked();
        log.first.get_or_insert_with(|| (SystemTime::now(), at));
    }

    /// The call that started at `at` ended so.
    fn call_ended(&self, at: Instant, took: Duration, result: AttemptResult) {
        let mut log = self.timing.locked();
        let first = log.first.map_or(at, |(_, first)| first);
        log.calls.push(CallTime {
            offset: at.saturating_duration_since(first),
            took,
            result: result.as_str(),
        });
    }

    /// The job's calls, if it made any; taken once, when its outcome is recorded.
    fn take_timing(&self) -> Option<Timing> {
        let mut log = self.timing.locked();
        let calls = std::mem::take(&mut log.calls);
        log.first
            .map(|(started_at, _)| Timing { started_at, calls })
    }
}

/// The job panicked: logs the panic message, settles its spend reservation, finishes its ledger
/// claim as the outcome `failed` (`internal_error`) it gets, and returns that outcome. A panic
/// after a call started is treated as possibly sent: the job is in doubt, its reservation is
/// kept, and its claim is finished `MaybeSent`, so the cooldown keeps a rerun from sending again.
async fn panicked(
    shared: &Shared,
    job: &Job,
    progress: &Progress,
    panic: Box<dyn std::any::Any + Send>,
) -> Outcome {
    use std::sync::atomic::Ordering::SeqCst;
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let attempts = progress.calls.load(SeqCst);
    let maybe_sent = attempts > 0;
    tracing::error!(
        source = %job.origin,
        user = %shared.recorder.user(&job.request.username),
        attempts,
        "internal error: the job panicked: {message}; it fails with reason internal_error"
    );
    let mut outcome = Outcome::failed(
        Reason::InternalError,
        Some(format!("the job panicked: {message}")),
        attempts,
    );
    if maybe_sent {
        outcome.in_doubt = Some(DoubtCause::AmbiguousAttempt);
    }
    // A reservation is kept if a call started (a code may have gone out), else given back.
    let reservation = progress.reservation.locked().take();
    if let Some(r) = reservation {
        let spent = if maybe_sent {
            Spent::Kept
        } else {
            Spent::Nothing
        };
        settle_spend(shared, r, spent).await;
    }
    let key = progress.key.locked().clone();
    if progress.claimed.load(SeqCst)
        && let Some(ledger) = &shared.ledger
        && let Some(key) = key
    {
        let how = if maybe_sent {
            Finish::MaybeSent(OutcomeKind::Failed.as_str())
        } else {
            Finish::NotSent(OutcomeKind::Failed.as_str())
        };
        if let Err(e) = ledger.finish(&key, how).await {
            let mut failed = shared.ledger_failed(e, attempts);
            failed.in_doubt = outcome.in_doubt;
            return failed;
        }
    }
    outcome
}

/// How the calls of one job went.
enum Tried {
    /// The run stopped before the first call.
    NotStarted,
    /// Cognito answered, or the budget ran out, or the run stopped between calls.
    Done(Outcome),
    /// A call was abandoned at shutdown: Cognito may or may not have sent a code.
    Abandoned(Outcome),
}

/// A job's path: who it is for (the pool read, when one is made), the ledger's claim of that
/// person (or, in a dry run, its cooldown check), the precheck, the call, and the ledger's
/// record of the result. `None`: the run stopped before the first call,
/// and the claim (if any) was given back.
async fn guarded(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
) -> Option<Outcome> {
    let looked = match look_up(shared, job, client_id).await {
        Ok(looked) => looked,
        Err(ended) => return ended,
    };
    // The row may be an alias or a `sub`: the call names the user as the pool does.
    let resolved;
    let job = match &looked {
        Some(Looked::Found(user)) if user.username != job.request.username => {
            resolved = Job {
                origin: job.origin.clone(),
                attributes: None,
                request: ResendRequest {
                    username: user.username.clone(),
                    ..job.request.clone()
                },
            };
            &resolved
        }
        _ => job,
    };
    let username = &job.request.username;
    let key = UserKey::new(client_id, username, shared.case);
    *progress.key.locked() = Some(key.clone());
    if let Some(Looked::Missing) = &looked {
        let precheck = shared.lookup.as_ref().is_some_and(|l| l.pool.precheck);
        return Some(Outcome {
            reason: Some(if precheck {
                Reason::Precheck
            } else {
                Reason::PoolLookup
            }),
            ..Outcome::new(OutcomeKind::NotFound, 0)
        });
    }
    let mut in_doubt = None;
    let mut claimed = None;
    if let Some(ledger) = &shared.ledger {
        if shared.dry_run {
            match ledger.peek(&key).await {
                Ok(Some(Claim::Capped { .. })) => {
                    return Some(Outcome::new(OutcomeKind::Capped, 0));
                }
                Ok(Some(_)) => return Some(Outcome::new(OutcomeKind::Cooldown, 0)),
                Ok(None) => {}
                Err(e) => return Some(shared.ledger_failed(e, 0)),
            }
        } else {
            match claim(shared, ledger, &key).await {
                Claimed::Granted(doubt) => in_doubt = doubt,
                Claimed::Ended(outcome) => return outcome,
            }
            claimed = Some(ledger);
            progress
                .claimed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    // The medium the code will go by, when the pool says (its profile and the user's contacts,
    // from the read above or the pool's listing): reserved ahead, so its cap holds exactly.
    let medium = shared.lookup.as_ref().and_then(|l| {
        let attributes = match &looked {
            Some(Looked::Found(user)) => Some(user.attributes.as_slice()),
            _ => job.attributes.as_deref(),
        };
        l.pool.profile.medium_for(attributes?)
    });
    // The spend reservation, next to the claim: a job refused one is a job never started.
    if !shared.dry_run {
        match reserve(shared, medium).await {
            // Kept outside this future, so that a panic from here on still settles it.
            Ok(r) => *progress.reservation.locked() = Some(r),
            Err(refused) => {
                if let Some(ledger) = claimed {
                    progress
                        .claimed
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                    if let Err(e) = ledger.finish(&key, Finish::Release).await {
                        return Some(shared.ledger_failed(e, 0));
                    }
                }
                return refused.map(|e| shared.ledger_failed(e, 0));
            }
        }
    }
    let tried = match precheck(shared, looked.as_ref()) {
        None if shared.dry_run => Tried::Done(Outcome::new(OutcomeKind::DryRun, 0)),
        None => attempt(shared, job, client_id, progress).await,
        Some(outcome) => Tried::Done(outcome),
    };
    let reservation = progress.reservation.locked().take();
    if let Some(r) = reservation {
        settle_spend(shared, r, spent_of(&tried)).await;
    }
    if let Tried::Done(o) = &tried
        && o.kind == OutcomeKind::Sent
    {
        let medium = o.delivery.as_ref().and_then(|d| d.medium.as_deref());
        metrics::code_sent(match medium.and_then(Medium::parse) {
            Some(Medium::Sms) => "sms",
            Some(Medium::Email) => "email",
            None => "unknown",
        });
    }
    let Some(ledger) = claimed else {
        return match tried {
            Tried::NotStarted => None,
            Tried::Done(o) | Tried::Abandoned(o) => Some(o),
        };
    };
    let (how, outcome) = match tried {
        Tried::NotStarted => (Some(Finish::Release), None),
        // The claim stays: when this run ends, the next one sees the user as in doubt.
        Tried::Abandoned(o) => (None, Some(o)),
        Tried::Done(o) if o.kind == OutcomeKind::Sent => (Some(Finish::Sent), Some(o)),
        // Failed after an ambiguous attempt: the user may hold a code, so the cooldown starts.
        Tried::Done(o) if o.in_doubt.is_some() => {
            (Some(Finish::MaybeSent(o.kind.as_str())), Some(o))
        }
        Tried::Done(o) => (Some(Finish::NotSent(o.kind.as_str())), Some(o)),
    };
    if let Some(how) = how
        && let Err(e) = ledger.record(&key, how).await
    {
        if let (Finish::Sent | Finish::MaybeSent(_), Some(o)) = (how, &outcome) {
            // Cognito sent (or may have sent) a code and the ledger cannot confirm it: the job
            // keeps its outcome, in doubt; the claim stays (never released) so no other run
            // sends while this one lives; and the run stops, since nothing can be recorded.
            let error = format!(
                "Cognito's answer was {}, but the ledger could not record it: {e}",
                o.kind.as_str()
            );
            let _ = shared.ledger_failed(e, o.attempts);
            let doubt = o.in_doubt.or(Some(DoubtCause::Unrecorded));
            return outcome.map(|o| Outcome {
                error: Some(error),
                in_doubt: in_doubt.as_ref().map(|_| DoubtCause::DeadRun).or(doubt),
                ..o
            });
        }
        let attempts = outcome.as_ref().map_or(0, |o| o.attempts);
        let mut failed = shared.ledger_failed(e, attempts);
        if let Some(o) = &outcome {
            failed.error = Some(format!(
                "Cognito's answer was {}, but the ledger could not record it: {}",
                o.kind.as_str(),
                failed.error.unwrap_or_default()
            ));
        }
        failed.in_doubt = in_doubt.as_ref().map(|_| DoubtCause::DeadRun);
        return Some(failed);
    }
    outcome.map(|o| Outcome {
        in_doubt: in_doubt
            .as_ref()
            .map(|_| DoubtCause::DeadRun)
            .or(o.in_doubt),
        ..o
    })
}

/// A send reserved against the spend caps.
struct Reservation {
    /// Counted against `--max-sends`.
    run: bool,
    /// Reserved in the ledger, on its UTC day.
    day: Option<DayReservation>,
    /// The medium reserved with it, when known before the call.
    medium: Option<Medium>,
}

/// Reserves one send against every spend cap set. `Err(None)`: a cap refused it (the run is
/// stopping, see [`Shared::spend_capped`]); `Err(Some(e))`: the ledger failed. Nothing stays
/// reserved on either.
async fn reserve(
    shared: &Shared,
    medium: Option<Medium>,
) -> Result<Reservation, Option<LedgerError>> {
    use std::sync::atomic::Ordering::SeqCst;
    let run = match shared.spend.run {
        None => false,
        Some(max) => loop {
            // Registered before the check, so a settle in between is not missed.
            let settled = shared.run_settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let took = shared
                .run_reserved
                .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1));
            if took.is_ok() {
                break true;
            }
            // Every reservation is held. Once `max` codes are sent (or may be), the cap is
            // reached; until then, a call in flight may yet send nothing and give its
            // reservation back, so wait for it rather than stop short of the cap.
            if shared.run_kept.load(SeqCst) >= max {
                shared.spend_capped(SpendCap::Run);
                return Err(None);
            }
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => return Err(None),
                _ = shared.capped.cancelled() => return Err(None),
                _ = settled => {}
            }
        },
    };
    let give_back_run = || {
        if run {
            shared.run_reserved.fetch_sub(1, SeqCst);
        }
    };
    let day = match &shared.ledger {
        Some(ledger) if !shared.spend.day.is_empty() => {
            match ledger.reserve_send(shared.spend.day, medium).await {
                Ok(Ok(r)) => Some(r),
                Ok(Err(cap)) => {
                    give_back_run();
                    shared.spend_capped(cap);
                    return Err(None);
                }
                Err(e) => {
                    give_back_run();
                    return Err(Some(e));
                }
            }
        }
        _ => None,
    };
    Ok(Reservation { run, day, medium })
}

/// How a job's calls spent its reservation: kept for a code sent or possibly sent (an
/// ambiguous attempt, a call abandoned at shutdown), given back otherwise; a code's medium from
/// Cognito's answer.
fn spent_of(tried: &Tried) -> Spent {
    match tried {
        Tried::NotStarted => Spent::Nothing,
        Tried::Abandoned(_) => Spent::Kept,
        Tried::Done(o) if o.kind == OutcomeKind::Sent => o
            .delivery
            .as_ref()
            .and_then(|d| d.medium.as_deref())
            .and_then(Medium::parse)
            .map_or(Spent::Kept, Spent::Code),
        Tried::Done(o) if o.in_doubt.is_some() => Spent::Kept,
        Tried::Done(_) => Spent::Nothing,
    }
}

/// Settles a reservation, once, whatever the job's end (see [`spent_of`]; a panic, see
/// [`panicked`]): the `--max-sends` count, and the day's counters, where the count of the code's
/// medium grows from Cognito's answer (or, reserved ahead, moves if Cognito used the other
/// medium). Every day reservation is settled, kept ones too, so the ledger can let go of its
/// token.
async fn settle_spend(shared: &Shared, r: Reservation, spent: Spent) {
    if r.run {
        use std::sync::atomic::Ordering::SeqCst;
        if spent == Spent::Nothing {
            shared.run_reserved.fetch_sub(1, SeqCst);
        } else {
            shared.run_kept.fetch_add(1, SeqCst);
        }
        shared.run_settled.notify_waiters();
    }
    // A medium reserved ahead was counted with the reservation.
    let spent = match (r.medium, spent) {
        (Some(reserved), Spent::Nothing) => Spent::NothingOf(reserved),
        (Some(reserved), Spent::Code(sent)) if sent == reserved => Spent::Kept,
        (Some(reserved), Spent::Code(sent)) => Spent::Moved { reserved, sent },
        (_, spent) => spent,
    };
    if let (Some(day), Some(ledger)) = (r.day, &shared.ledger)
        && let Err(e) = ledger.settle_send(&day, spent).await
    {
        // A reservation not given back only lowers the day's budget; a medium not counted
        // could let that medium pass its cap: either way, stop rather than guess.
        let _ = shared.ledger_failed(e, 0);
    }
}

/// How a claim attempt ended.
enum Claimed {
    /// The user is ours; `Some` if a dead run's claim was taken over.
    Granted(Option<crate::ledger::InDoubt>),
    /// The job ends without a call (`cooldown`, a ledger failure), or `None`: the run stopped
    /// while waiting.
    Ended(Option<Outcome>),
}

/// Claims the user, waiting while a live call holds it.
async fn claim(shared: &Shared, ledger: &Ledger, key: &UserKey) -> Claimed {
    let username = &key.username;
    let mut waited = false;
    loop {
        match ledger.claim(key).await {
            Ok(Claim::Granted { in_doubt }) => {
                if let Some(doubt) = &in_doubt {
                    tracing::warn!(
                        user = %shared.recorder.user(username),
                        run = %doubt.run,
                        claimed_at = %crate::ledger::rfc3339(doubt.claimed_at),
                        "in doubt: a run that died had claimed this user and may have sent a \
                         code; sending again"
                    );
                }
                return Claimed::Granted(in_doubt);
            }
            Ok(Claim::Cooldown { .. }) => {
                return Claimed::Ended(Some(Outcome::new(OutcomeKind::Cooldown, 0)));
            }
            Ok(Claim::Capped { .. }) => {
                return Claimed::Ended(Some(Outcome::new(OutcomeKind::Capped, 0)));
            }
            Ok(Claim::Held { run, .. }) => {
                if !waited {
                    waited = true;
                    tracing::debug!(
                        user = %shared.recorder.user(username),
                        run = %run,
                        "another call holds this user: waiting for it"
                    );
                }
                // A call of this run ends soon and is cheap to ask about again; another
                // run's is polled more gently.
                let pause = if run == ledger.run().0 {
                    Duration::from_millis(50)
                } else {
                    ledger.held_poll()
                };
                tokio::select! {
                    biased;
                    _ = shared.stop.cancelled() => return Claimed::Ended(None),
                    _ = shared.capped.cancelled() => return Claimed::Ended(None),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(e) => return Claimed::Ended(Some(shared.ledger_failed(e, 0))),
        }
    }
}

/// Reads the user a row names from the pool, when the run reads the pool for it (see
/// [`identity`]): `Ok(None)` when no read is made, `Err` with the job's end when the read
/// failed (`None`: the run stopped first). Without pool access, a row shaped like an alias is
/// only counted.
async fn look_up(
    shared: &Shared,
    job: &Job,
    client_id: &str,
) -> Result<Option<Looked>, Option<Outcome>> {
    let username = &job.request.username;
    // A user the pool listed is named by its canonical username already.
    let listed = matches!(job.origin, crate::job::Origin::Pool { .. });
    let Some(lookup) = &shared.lookup else {
        if !listed && identity::looks_like_alias(username) {
            shared.recorder.alias_like();
        }
        return Ok(None);
    };
    if (listed && !lookup.pool.precheck) || !lookup.pool.wants(username) {
        return Ok(None);
    }
    let spelling = shared.case.key(username);
    if let Some(looked) = lookup.answers.get(&spelling) {
        return Ok(Some(looked));
    }
    let answer = resend_policy::pool_call(
        &shared.retry,
        &lookup.rate,
        &shared.stop,
        "AdminGetUser",
        || lookup.pool.admin.user_state(username),
    )
    .await;
    let looked = match answer {
        None => return Err(None),
        Some(Ok(UserState::Found(user))) => Looked::Found(user),
        Some(Ok(UserState::Missing)) => Looked::Missing,
        Some(Err(AdminError::Denied(detail))) => {
            shared.misconfigured(Misconfiguration::PoolAccess, client_id, &detail);
            let reason = Reason::Misconfigured(Misconfiguration::PoolAccess.reason());
            return Err(Some(Outcome::failed(reason, Some(detail), 0)));
        }
        Some(Err(e)) => {
            let reason = if e.retryable() {
                Reason::RetriesExhausted
            } else {
                Reason::PrecheckFailed
            };
            return Err(Some(Outcome::failed(
                reason,
                Some(format!("AdminGetUser: {e}")),
                0,
            )));
        }
    };
    lookup.answers.put(spelling, looked.clone());
    Ok(Some(looked))
}

/// `--precheck`: the status the pool read found decides. `None`: send (UNCONFIRMED, or no
/// precheck); `Some`: this outcome, no send.
fn precheck(shared: &Shared, looked: Option<&Looked>) -> Option<Outcome> {
    if !shared.lookup.as_ref().is_some_and(|l| l.pool.precheck) {
        return None;
    }
    match looked? {
        // Not reached: a missing user ends before its claim.
        Looked::Missing => Some(Outcome {
            reason: Some(Reason::Precheck),
            ..Outcome::new(OutcomeKind::NotFound, 0)
        }),
        Looked::Found(user) if user.status == "UNCONFIRMED" => None,
        Looked::Found(user) => Some(Outcome {
            reason: Some(Reason::Text(format!("precheck: {}", user.status))),
            ..Outcome::new(OutcomeKind::AlreadyConfirmed, 0)
        }),
    }
}

/// Calls Cognito until the job has an answer or its budget is spent. A job with an ambiguous
/// attempt (Cognito may have acted on it) that ends `sent` (a retry after it), `failed`, or
/// abandoned is in doubt: the user may hold two codes, or one we do not know of.
async fn attempt(shared: &Shared, job: &Job, client_id: &str, progress: &Progress) -> Tried {
    let mut ambiguous = None;
    let tried = calls(shared, job, client_id, progress, &mut ambiguous).await;
    let Some(first) = ambiguous else {
        return tried;
    };
    let mark = |mut o: Outcome| {
        if matches!(o.kind, OutcomeKind::Sent | OutcomeKind::Failed) {
            tracing::warn!(
                user = %shared.recorder.user(&job.request.username),
                outcome = o.kind.as_str(),
                attempts = o.attempts,
                "in doubt: an attempt may have reached Cognito without an answer ({first}); the \
                 user may hold a code from it"
            );
            o.in_doubt = Some(DoubtCause::AmbiguousAttempt);
        }
        o
    };
    match tried {
        Tried::NotStarted => Tried::NotStarted,
        Tried::Done(o) => Tried::Done(mark(o)),
        Tried::Abandoned(o) => Tried::Abandoned(mark(o)),
    }
}

/// Why one attempt of the resend did not answer.
enum Failed {
    /// Cognito's error (or the SDK's, classified).
    Call(CallError),
    /// The grace period ended with the call in flight: it was dropped.
    Abandoned,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Call(e) => e.fmt(f),
            Self::Abandoned => f.write_str("call abandoned at shutdown"),
        }
    }
}

/// The resend's classification: what [`crate::retry::Retry`] does with each failed attempt.
/// Any answer but a throttle (or a failure to get one) used quota that Cognito granted: the rate
/// controller counts it as accepted, or it underestimates the quota when many jobs fail.
fn verdict(error: &CallError, attempts: u32) -> Verdict {
    match error {
        CallError::Throttled(_) => Verdict::Retry(Quota::Throttled),
        CallError::Unreachable(_) | CallError::Transient(_) | CallError::Ambiguous(_) => {
            Verdict::Retry(Quota::Unknown)
        }
        CallError::LambdaUnavailable(_) if attempts >= LAMBDA_ATTEMPTS => {
            Verdict::Stop(Quota::Granted)
        }
        CallError::LambdaUnavailable(_) => Verdict::Retry(Quota::Granted),
        CallError::AttemptLimit(_)
        | CallError::Permanent { .. }
        | CallError::Broken { .. }
        | CallError::Misconfigured { .. } => Verdict::Stop(Quota::Granted),
    }
}

/// The resend calls' pace: the rate limiter, and with a fleet budget the fleet, which hears of
/// every throttle this run's controller acts on (see [`crate::ledger::fleet`]).
impl crate::retry::Pace for Shared {
    fn acquire(&self) -> impl Future<Output = ()> + Send {
        self.rate.acquire()
    }
    fn on_success(&self) {
        self.rate.on_success();
    }
    fn on_throttle(&self) {
        if self.rate.on_throttle()
            && let Some(ledger) = &self.ledger
        {
            ledger.note_throttle();
        }
    }
}

/// [`attempt`]'s calls, through the retry executor. `ambiguous` is set to the first ambiguous
/// error.
async fn calls(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
    ambiguous: &mut Option<String>,
) -> Tried {
    let ran = Retry::new(shared.retry.policy())
        .paced(shared)
        .until(&shared.stop)
        .run(
            |attempts| one_call(shared, job, client_id, progress, attempts),
            |failed, attempts| {
                let verdict = match failed {
                    Failed::Abandoned => {
                        ambiguous.get_or_insert_with(|| failed.to_string());
                        return Verdict::Stop(Quota::Unknown);
                    }
                    Failed::Call(e) => {
                        if let CallError::Ambiguous(d) = e {
                            ambiguous.get_or_insert_with(|| d.clone());
                        }
                        verdict(e, attempts)
                    }
                };
                if let Verdict::Retry(_) = verdict {
                    tracing::debug!(
                        user = %shared.recorder.user(&job.request.username),
                        attempts,
                        error = %failed,
                        "retryable error"
                    );
                }
                verdict
            },
        )
        .await;
    let attempts = ran.attempts;
    match ran.result {
        Ok(answer) => {
            let mut outcome = Outcome::new(OutcomeKind::Sent, attempts);
            match answer {
                Answer::Sent(d) => outcome.delivery = Some(d),
                Answer::AlreadyConfirmed => outcome.kind = OutcomeKind::AlreadyConfirmed,
                Answer::NotFound => outcome.kind = OutcomeKind::NotFound,
            }
            Tried::Done(outcome)
        }
        Err(Failure::Stopped(_)) if attempts == 0 => Tried::NotStarted,
        Err(Failure::Stopped(last)) => Tried::Done(Outcome::failed(
            Reason::Interrupted,
            last.map(|e| e.to_string()),
            attempts,
        )),
        Err(Failure::Refused(Failed::Abandoned) | Failure::Exhausted(Failed::Abandoned)) => {
            Tried::Abandoned(Outcome::failed(
                Reason::Interrupted,
                Some(
                    "call abandoned at shutdown; Cognito may or may not have sent the code".into(),
                ),
                attempts,
            ))
        }
        Err(Failure::Exhausted(Failed::Call(e))) => Tried::Done(Outcome::failed(
            Reason::RetriesExhausted,
            Some(e.to_string()),
            attempts,
        )),
        Err(Failure::Refused(Failed::Call(e))) => {
            let (reason, detail) = match e {
                CallError::LambdaUnavailable(d) => (Reason::LambdaError, d),
                CallError::AttemptLimit(d) => (Reason::AttemptLimit, d),
                CallError::Permanent { reason, detail }
                | CallError::Broken { reason, detail, .. } => (reason, detail),
                CallError::Misconfigured { kind, detail } => {
                    (Reason::Misconfigured(kind.reason()), detail)
                }
                // Never refused by `verdict`; as if the budget were spent.
                e @ (CallError::Throttled(_)
                | CallError::Unreachable(_)
                | CallError::Transient(_)
                | CallError::Ambiguous(_)) => (Reason::RetriesExhausted, e.to_string()),
            };
            Tried::Done(Outcome::failed(reason, Some(detail), attempts))
        }
    }
}

/// One attempt: the call, cut short at the end of the grace period, counted once in the
/// attempt metrics, and its answer told to the configuration-error watch.
async fn one_call(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
    attempts: u32,
) -> Result<Answer, Failed> {
    progress
        .calls
        .store(attempts, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    progress.call_starts(started);
    let result = {
        // A guard, so that a call that panics leaves the gauge right.
        let _in_flight = InFlight::enter();
        tokio::select! {
            biased;
            r = shared.cognito.call(&job.request, client_id) => Some(r),
            _ = shared.abort.cancelled() => None,
        }
    };
    let took = started.elapsed();
    let count = |result| {
        shared.recorder.attempt(result, took.as_secs_f64());
        progress.call_ended(started, took, result);
    };
    let Some(result) = result else {
        count(AttemptResult::Transient);
        return Err(Failed::Abandoned);
    };
    let error = match result {
        Ok(answer) => {
            count(AttemptResult::Ok);
            shared.answered();
            shared.misconfig_cleared(client_id);
            return Ok(answer);
        }
        Err(e) => e,
    };
    match &error {
        CallError::Unreachable(detail) => shared.unreachable(client_id, detail),
        // No answer either, but a connection was made (or never tried): not a sign either way.
        CallError::Transient(_) | CallError::Ambiguous(_) => {}
        _ => shared.answered(),
    }
    let counted = match &error {
        CallError::Throttled(_) => AttemptResult::Throttled,
        CallError::Unreachable(_)
        | CallError::Transient(_)
        | CallError::Ambiguous(_)
        | CallError::LambdaUnavailable(_) => AttemptResult::Transient,
        CallError::AttemptLimit(_) | CallError::Permanent { .. } => AttemptResult::Permanent,
        CallError::Broken { kind, .. } if !shared.counts_toward_a_storm(*kind, job) => {
            tracing::debug!(
                user = %shared.recorder.user(&job.request.username),
                "a trigger failure of a job with client_metadata of its own: this job fails, \
                 and it does not count toward stopping the run"
            );
            AttemptResult::Permanent
        }
        CallError::Broken { kind, detail, .. } | CallError::Misconfigured { kind, detail } => {
            shared.misconfigured(*kind, client_id, detail);
            AttemptResult::Permanent
        }
    };
    count(counted);
    Err(Failed::Call(error))
}

impl Shared {
    /// A ledger operation failed: this job fails (its source keeps it: a queue redelivers it,
    /// a rerun of the CSV retries it) and the run stops taking work.
    fn ledger_failed(&self, e: LedgerError, attempts: u32) -> Outcome {
        let mut first = self.ledger_failed.locked();
        if first.is_none() {
            tracing::error!("{e}: stopping (nothing is sent without a ledger claim)");
            *first = Some(e.clone());
            metrics::stopped("ledger_error");
            self.stop.cancel();
        }
        Outcome::failed(Reason::LedgerError, Some(e.to_string()), attempts)
    }

    /// A spend cap refused a reservation: the run stops taking work (once, for the first cap).
    fn spend_capped(&self, cap: SpendCap) {
        let mut first = self.spend_capped.locked();
        if first.is_none() {
            tracing::error!(
                "spend cap reached: {}; stopping. Jobs not yet attempted are left untouched: \
                 a rerun (or the queue) takes them once the budget allows",
                cap.setting()
            );
            *first = Some(cap);
            metrics::stopped("spend_cap");
            self.settler.hold_back(self.budget_back_in(cap));
            self.capped.cancel();
        }
    }

    /// Cognito answered a call: it can be reached, and an outage (if one was on) is over.
    fn answered(&self) {
        let mut r = self.reach.locked();
        r.answered = true;
        if let Some(outage) = r.outage.take() {
            tracing::info!(
                "Cognito answers again, after {:.1} s and {} failed connections",
                outage.since.elapsed().as_secs_f64(),
                outage.failures
            );
        }
    }

    /// A call of `client_id` could not connect (`detail` names the endpoint, the region and the
    /// error). Never answered: logged at once, and the run stops once the failures have lasted
    /// `UNREACHABLE_STOP`. Answered before: an outage, warned about while it lasts.
    fn unreachable(&self, client_id: &str, detail: &str) {
        let now = Instant::now();
        let mut r = self.reach.locked();
        let answered = r.answered;
        let Some(outage) = &mut r.outage else {
            r.outage = Some(Outage {
                since: now,
                said: now,
                failures: 1,
            });
            if answered {
                tracing::warn!(
                    "cannot connect to Cognito at {detail}; it answered before, so the calls \
                     keep retrying"
                );
            } else {
                tracing::error!(
                    "cannot connect to Cognito at {detail}; no call has been answered yet: the \
                     run stops unless one is within {} s",
                    UNREACHABLE_STOP.as_secs()
                );
            }
            return;
        };
        outage.failures += 1;
        let lasted = now.duration_since(outage.since);
        if answered {
            if now.duration_since(outage.said) >= UNREACHABLE_REPEAT {
                outage.said = now;
                tracing::warn!(
                    "cannot connect to Cognito at {detail}, for {:.0} s now ({} failed \
                     connections); the calls keep retrying",
                    lasted.as_secs_f64(),
                    outage.failures
                );
            }
            return;
        }
        if lasted < UNREACHABLE_STOP {
            return;
        }
        let stop = MisconfigStop {
            kind: Misconfiguration::Unreachable,
            client_id: client_id.to_owned(),
            detail: detail.to_owned(),
            in_a_row: outage.failures,
        };
        drop(r);
        let mut w = self.misconfig.locked();
        if w.tripped.is_none() {
            tracing::error!("{stop}");
            w.tripped = Some(stop);
            metrics::stopped(Misconfiguration::Unreachable.reason());
            self.stop.cancel();
        }
    }

    /// How long until `cap` lets a send through again: at once for `--max-sends` (the next run
    /// has a budget of its own); for a per-day cap, when the UTC day turns by the ledger's
    /// clock, and [`DAY_TURN_SLACK`] past it for peers whose clocks run a little behind.
    fn budget_back_in(&self, cap: SpendCap) -> Duration {
        match cap {
            SpendCap::Run => Duration::ZERO,
            SpendCap::Day | SpendCap::SmsDay | SpendCap::EmailDay => {
                let left = match &self.ledger {
                    Some(ledger) => ledger.until_next_day(),
                    // Cognito's own email quota, met without a ledger.
                    None => crate::ledger::until_next_day(crate::ledger::now_millis()),
                };
                left + DAY_TURN_SLACK
            }
        }
    }

    /// Whether a failure of `kind` met by `job` counts toward the early stop. A Lambda trigger
    /// gets the request's ClientMetadata, so a trigger that fails on metadata a job carries of
    /// its own (beyond the run's `--client-metadata`) may be failing on that job's doing: whoever
    /// writes the queue could otherwise stop every consumer with ten such messages. Only jobs
    /// with nothing but the run's own metadata count toward `trigger_broken`; the others fail
    /// one by one.
    fn counts_toward_a_storm(&self, kind: Misconfiguration, job: &Job) -> bool {
        kind != Misconfiguration::TriggerBroken || job.request.client_metadata == self.run_metadata
    }

    /// Cognito answered a call of `client_id`: its runs of errors are broken.
    fn misconfig_cleared(&self, client_id: &str) {
        let mut w = self.misconfig.locked();
        if !w.in_a_row.is_empty() {
            w.in_a_row.retain(|(c, _), _| c != client_id);
        }
    }

    /// Counts one configuration error (or delivery or trigger failure) of `client_id`, and
    /// stops the run when its kind has come [`Misconfiguration::stop_after`] times in a row.
    fn misconfigured(&self, kind: Misconfiguration, client_id: &str, detail: &str) {
        if kind == Misconfiguration::EmailQuota && self.default_email_account {
            tracing::warn!(
                "{detail}: Cognito's default email account sent its 50 emails for today"
            );
            self.spend_capped(SpendCap::EmailDay);
            return;
        }
        let mut w = self.misconfig.locked();
        let in_a_row = {
            let n = w.in_a_row.entry((client_id.to_owned(), kind)).or_default();
            *n += 1;
            *n
        };
        if w.tripped.is_none() && in_a_row >= kind.stop_after() {
            let stop = MisconfigStop {
                kind,
                client_id: client_id.to_owned(),
                detail: detail.to_owned(),
                in_a_row,
            };
            tracing::error!("{stop}");
            w.tripped = Some(stop);
            metrics::stopped(kind.reason());
            self.stop.cancel();
        }
    }
}

/// `cognito_resend_in_flight` while a call runs: +1 now, -1 when dropped (also by a panic or an
/// abandoned call).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::in_flight(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::in_flight(-1.0);
    }
}

#[cfg(test)]
mod tests;
