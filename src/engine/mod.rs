//! The engine: takes jobs from a [`Source`] only as fast as it can start them, runs each under a
//! concurrency permit and the shared rate limit, retries what is retryable, and records exactly
//! one outcome per job.
//!
//! - `pipeline`: one job from start to outcome (claim → pool read and precheck → reservation →
//!   calls → record → settle), a panic included.
//! - `calls`: the job's calls to Cognito through the retry executor.
//! - `spend`: the spend guard, which every job reserves a send from and settles it with.
//! - `stop`: the stop latch holding why the run stops early, and the watches that trip it.
//! - [`identity`]: who a job is for (case rule, aliases, `sub`s, the pool reads).
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

mod calls;
pub(crate) mod identity;
mod pipeline;
pub(crate) mod rate;
pub(crate) mod resend_policy;
mod spend;
mod stop;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cognito::admin::{AdminError, UserState};
use crate::cognito::{Answer, CallError, Misconfiguration, Resend};
use crate::config::RetrySettings;
use crate::job::{
    CallTime, Input, Job, Reason, RequestDefaults, ResendRequest, Settle, Source, Timing, UserKey,
};
use crate::ledger::{Claim, Finish, Ledger, LedgerError, Medium, SpendCap, Spent};
use crate::outcome::{DoubtCause, Outcome, OutcomeKind, Recorder};
use crate::retry::{Failure, Quota, Retry, Verdict};
use crate::sync::Locked;
use crate::telemetry::metrics::{self, AttemptResult};
use identity::{Answers, IdentityConfig, Looked, PoolLookup};
use pipeline::run_job;
use rate::RateLimiter;
use resend_policy::{LAMBDA_ATTEMPTS, RetryPolicy};
pub(crate) use spend::DAY_TURN_SLACK;
pub use spend::SpendLimits;
use spend::{Refused, Reservation, SpendGuard};
pub(crate) use stop::MisconfigStop;
pub use stop::StopCause;
use stop::{MisconfigWatch, Reach, StopLatch};

/// What the engine needs besides its source: the settings it reads, and the working parts a
/// command built.
pub struct EngineConfig {
    /// `--concurrency`: calls in flight at most.
    pub concurrency: std::num::NonZeroUsize,
    /// `--rate`: calls per second at most (`None`: no limit; `--fleet-rate` sets the ceiling
    /// through the ledger's census instead).
    pub rate: Option<f64>,
    /// `--invite-rate`: invitations per second at most (`None`: no limit), under a rate
    /// controller of their own (AdminCreateUser's quota is not the resend's).
    pub invite_rate: Option<f64>,
    /// `--dry-run`: everything but the send.
    pub dry_run: bool,
    /// `[retry]`: retry budget and backoff.
    pub retry: RetrySettings,
    /// `--max-sends` and the per-day caps (these need `ledger`).
    pub spend: SpendLimits,
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
    /// resolution) with their rate.
    pub identity: IdentityConfig,
    /// The pool sends email through Cognito's default email account (its profile says so):
    /// Cognito's "Exceeded daily email limit" is then the day's known budget running out, a
    /// spend-cap stop (`--max-email-per-day`, exit 4), not a configuration error.
    pub default_email_account: bool,
    /// `--client-metadata`, `--analytics-endpoint-id`: merged under every job's own request
    /// fields as the engine takes it, so every source and shape gets them.
    pub request_defaults: RequestDefaults,
}

/// [`Resend`] behind a pointer: one boxed future per call (nothing beside an HTTP round trip),
/// and the job functions below stay free of a type parameter.
trait DynResend: Send + Sync {
    fn call<'a>(
        &'a self,
        req: &'a ResendRequest,
        client_id: &'a str,
        medium: Option<&'static str>,
    ) -> BoxFuture<'a, Result<Answer, CallError>>;
}

impl<C: Resend> DynResend for C {
    fn call<'a>(
        &'a self,
        req: &'a ResendRequest,
        client_id: &'a str,
        medium: Option<&'static str>,
    ) -> BoxFuture<'a, Result<Answer, CallError>> {
        Box::pin(Resend::resend(self, req, client_id, medium))
    }
}

/// The run's pool reads, their own rate limit, and the answers so far.
struct Lookup {
    pool: PoolLookup,
    rate: RateLimiter,
    answers: Answers,
}

/// What every job task shares.
struct Shared {
    /// Cognito, or a fake in tests; type-erased so the job functions need no type parameter.
    cognito: Box<dyn DynResend>,
    /// The resends' rate controller (ResendConfirmationCode's quota; the fleet's share).
    rate: RateLimiter,
    /// The invitations' own (AdminCreateUser: the UserCreation quota).
    invite_rate: RateLimiter,
    retry: RetryPolicy,
    recorder: Arc<Recorder>,
    settler: Arc<dyn Settle>,
    dry_run: bool,
    default_client_id: Option<String>,
    /// Every client id a job may name (`--client-id` included).
    allowed_client_ids: std::collections::HashSet<String>,
    /// Why the run stops, and the tokens that stop it.
    latch: StopLatch,
    misconfig: Mutex<MisconfigWatch>,
    /// Whether Cognito can be reached at all.
    reach: Mutex<Reach>,
    ledger: Option<Ledger>,
    /// How the pool compares usernames: the ledger key's case rule.
    case: crate::job::UsernameCase,
    lookup: Option<Lookup>,
    /// See [`EngineConfig::default_email_account`].
    default_email_account: bool,
    /// `--client-metadata`: a job whose metadata is more than this carries its own, and a
    /// trigger failure it meets may be its own doing ([`Shared::counts_toward_a_storm`]).
    run_metadata: std::collections::BTreeMap<String, String>,
    /// The spend caps and what is reserved against them.
    spend: SpendGuard,
    /// The run sends invitations to the FORCE_CHANGE_PASSWORD users it meets
    /// ([`RequestDefaults::invites`]).
    invites: bool,
}

/// Runs every job of `source` and returns why it stopped.
pub async fn run<S: Source, C: Resend>(
    config: EngineConfig,
    source: &mut S,
    cognito: C,
    recorder: Arc<Recorder>,
    shutdown: CancellationToken,
) -> StopCause {
    let shared = Arc::new(Shared {
        cognito: Box::new(cognito),
        rate: RateLimiter::new(config.rate),
        invite_rate: RateLimiter::of(crate::job::Action::Invite, config.invite_rate),
        retry: RetryPolicy::new(config.retry),
        recorder,
        settler: source.settler(),
        dry_run: config.dry_run,
        allowed_client_ids: config
            .allowed_client_ids
            .into_iter()
            .chain(config.default_client_id.clone())
            .collect(),
        default_client_id: config.default_client_id,
        latch: StopLatch::new(&shutdown),
        misconfig: Mutex::new(MisconfigWatch::default()),
        reach: Mutex::new(Reach::default()),
        spend: SpendGuard::new(config.spend, config.ledger.clone()),
        ledger: config.ledger,
        case: config.identity.case,
        lookup: config.identity.lookup.map(|pool| Lookup {
            rate: RateLimiter::unreported(pool.rate),
            pool,
            answers: Answers::default(),
        }),
        default_email_account: config.default_email_account,
        run_metadata: config.request_defaults.client_metadata.clone(),
        invites: config.request_defaults.invites,
    });
    let permits = Arc::new(Semaphore::new(config.concurrency.get()));
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
            _ = shared.latch.taking_ends() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed; a closed semaphore would mean we are done
            },
        };
        let input = tokio::select! {
            biased;
            _ = shared.latch.taking_ends() => break,
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
                shared.latch.abort();
                drained.await;
            }
        }
    }

    shared.latch.cause(shutdown.is_cancelled())
}

impl Shared {
    /// Reserves one send for a job about to call (see [`SpendGuard::reserve`]). `Err(None)`:
    /// refused by a cap (the run is stopping at it) or by the run stopping; `Err(Some(e))`: the
    /// ledger failed. Nothing stays reserved on either.
    async fn reserve(&self, medium: Option<Medium>) -> Result<Reservation, Option<LedgerError>> {
        match self.spend.reserve(medium, &self.latch).await {
            Ok(r) => Ok(r),
            Err(Refused::Cap(cap)) => {
                self.spend_capped(cap);
                Err(None)
            }
            Err(Refused::Stopping) => Err(None),
            Err(Refused::Ledger(e)) => Err(Some(e)),
        }
    }

    /// Settles a job's reservation (see [`SpendGuard::settle`]). A ledger that does not take
    /// it stops the run: a reservation not given back only lowers the day's budget, but a
    /// medium not counted could let that medium pass its cap, so stop rather than guess.
    async fn settle_spend(&self, r: Reservation, spent: Spent) {
        if let Err(e) = self.spend.settle(r, spent).await {
            let _ = self.ledger_failed(e, 0);
        }
    }
}

#[cfg(test)]
mod tests;
