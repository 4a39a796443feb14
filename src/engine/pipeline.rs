//! One job, start to end: claim its user in the ledger, look it up in the pool and precheck it,
//! reserve a send, make the calls (through the retry executor, under the rate limit), record
//! the result, settle its source, and record its one outcome — a panic included ([`panicked`]).

use super::calls::attempt;
use super::*;
use crate::job::Action;
use crate::ledger::Known;

/// One job from start to recorded outcome. The permit is held through the calls and the waits
/// between them (so jobs in progress stay bounded), and given back before recording, which
/// needs no slot.
///
/// A panic in the job's work (a bug, in our code or a dependency) is caught here and becomes
/// outcome `failed`, reason `internal_error`: the job still settles (a queue gets its message
/// back, an SQS credit returns), is reported, and its ledger claim is finished (see
/// [`panicked`]). Without this, tokio would swallow the panic with the task, and the job would
/// lose its outcome and its source its settle.
pub(super) async fn run_job(shared: &Shared, job: Job, permit: OwnedSemaphorePermit) {
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
    outcome.action = Some(progress.action.locked().unwrap_or_else(|| req.action()));
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
pub(super) struct Progress {
    /// The job holds a ledger claim.
    pub(super) claimed: std::sync::atomic::AtomicBool,
    /// Calls started (the first may have reached Cognito).
    pub(super) calls: std::sync::atomic::AtomicU32,
    /// When the calls happened, for the report.
    pub(super) timing: Mutex<CallLog>,
    /// Who the job is for, once known: the ledger key, and the report's `user_key`.
    pub(super) key: Mutex<Option<UserKey>>,
    /// The job's spend reservation while it holds one: settled by the job, or, if it panics,
    /// by [`panicked`], so that a `--max-sends` run never waits for a settlement nobody makes.
    pub(super) reservation: Mutex<Option<Reservation>>,
    /// What the job sends, once the pool's status had its say (the report's `action`).
    pub(super) action: Mutex<Option<Action>>,
}

/// The calls of one job as they happen: the first call's start (by both clocks: the wall clock
/// for the report, the monotonic one for the offsets) and every call's [`CallTime`].
#[derive(Default)]
pub(super) struct CallLog {
    pub(super) first: Option<(SystemTime, Instant)>,
    pub(super) calls: Vec<CallTime>,
}

impl Progress {
    /// A call starts now (`at`).
    pub(super) fn call_starts(&self, at: Instant) {
        let mut log = self.timing.locked();
        log.first.get_or_insert_with(|| (SystemTime::now(), at));
    }

    /// The call that started at `at` ended so.
    pub(super) fn call_ended(&self, at: Instant, took: Duration, result: AttemptResult) {
        let mut log = self.timing.locked();
        let first = log.first.map_or(at, |(_, first)| first);
        log.calls.push(CallTime {
            offset: at.saturating_duration_since(first),
            took,
            result: result.as_str(),
        });
    }

    /// The job's calls, if it made any; taken once, when its outcome is recorded.
    pub(super) fn take_timing(&self) -> Option<Timing> {
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
pub(super) async fn panicked(
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
        shared.settle_spend(r, spent).await;
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
pub(super) enum Tried {
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
pub(super) async fn guarded(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
) -> Option<Outcome> {
    let looked = match look_up(shared, job, client_id).await {
        Ok(looked) => looked,
        Err(ended) => return ended,
    };
    // The row may be an alias or a `sub`: the call names the user as the pool does. And the
    // user's status, when read, picks the action (see [`action_by_status`]).
    let resolved;
    let job = match &looked {
        Some(Looked::Found(user)) => {
            let action = action_by_status(shared, job, &user.status);
            if user.username != job.request.username || action != job.request.action {
                resolved = Job {
                    origin: job.origin.clone(),
                    attributes: (user.username == job.request.username)
                        .then(|| job.attributes.clone())
                        .flatten(),
                    request: ResendRequest {
                        username: user.username.clone(),
                        action,
                        ..job.request.clone()
                    },
                };
                &resolved
            } else {
                job
            }
        }
        _ => job,
    };
    *progress.action.locked() = Some(job.request.action());
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
    // A status read from the pool (its listing, or a read just now) says more than an
    // outcome the ledger recorded earlier: `--recheck-after` is for jobs nobody looked up.
    let status_read = matches!(looked, Some(Looked::Found(_)))
        || matches!(job.origin, crate::job::Origin::Pool { .. });
    let mut in_doubt = None;
    let mut claimed = None;
    if let Some(ledger) = &shared.ledger {
        if shared.dry_run {
            match ledger.peek(&key, status_read).await {
                Ok(Some(Claim::Capped { .. })) => {
                    return Some(Outcome::new(OutcomeKind::Capped, 0));
                }
                Ok(Some(Claim::Known { known, .. })) => return Some(known_outcome(known)),
                Ok(Some(_)) => return Some(Outcome::new(OutcomeKind::Cooldown, 0)),
                Ok(None) => {}
                Err(e) => return Some(shared.ledger_failed(e, 0)),
            }
        } else {
            match claim(shared, ledger, &key, status_read).await {
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
    // from the read above or the pool's listing): reserved ahead, so its cap holds exactly. An
    // invitation goes by the contact the user has (email first), asked for by name.
    let attributes = match &looked {
        Some(Looked::Found(user)) => Some(user.attributes.as_slice()),
        _ => job.attributes.as_deref(),
    };
    let invite_medium = match job.request.action() {
        Action::Invite => attributes.and_then(invite_medium),
        Action::Confirm => None,
    };
    let medium = match job.request.action() {
        Action::Invite => invite_medium,
        Action::Confirm => shared
            .lookup
            .as_ref()
            .and_then(|l| l.pool.profile.medium_for(attributes?)),
    };
    // The spend reservation, next to the claim: a job refused one is a job never started.
    if !shared.dry_run {
        match shared.reserve(medium).await {
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
    let tried = match precheck(shared, job, looked.as_ref()) {
        None if shared.dry_run => Tried::Done(Outcome::new(OutcomeKind::DryRun, 0)),
        None => attempt(shared, job, client_id, progress, invite_medium).await,
        Some(outcome) => Tried::Done(outcome),
    };
    let reservation = progress.reservation.locked().take();
    if let Some(r) = reservation {
        shared.settle_spend(r, spent_of(&tried)).await;
    }
    if let Tried::Done(o) = &tried
        && o.kind == OutcomeKind::Sent
    {
        let medium = o.delivery.as_ref().and_then(|d| d.medium.as_deref());
        // Cognito's spelling (`SMS`, `EMAIL`), as the report's `delivery.medium` has it.
        metrics::code_sent(
            medium
                .and_then(Medium::parse)
                .map_or("unknown", Medium::as_str),
        );
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

/// How a job's calls spent its reservation: kept for a code sent or possibly sent (an
/// ambiguous attempt, a call abandoned at shutdown), given back otherwise; a code's medium from
/// Cognito's answer.
pub(super) fn spent_of(tried: &Tried) -> Spent {
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

/// How a claim attempt ended.
pub(super) enum Claimed {
    /// The user is ours; `Some` if a dead run's claim was taken over.
    Granted(Option<crate::ledger::InDoubt>),
    /// The job ends without a call (`cooldown`, a ledger failure), or `None`: the run stopped
    /// while waiting.
    Ended(Option<Outcome>),
}

/// The outcome of a job the ledger knows about (`--recheck-after`): no call.
fn known_outcome(known: Known) -> Outcome {
    Outcome::new(
        match known {
            Known::Confirmed => OutcomeKind::KnownConfirmed,
            Known::Missing => OutcomeKind::KnownMissing,
        },
        0,
    )
}

/// Claims the user, waiting while a live call holds it.
pub(super) async fn claim(
    shared: &Shared,
    ledger: &Ledger,
    key: &UserKey,
    status_read: bool,
) -> Claimed {
    let username = &key.username;
    let mut waited = false;
    loop {
        match ledger.claim(key, status_read).await {
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
            Ok(Claim::Known { known, .. }) => return Claimed::Ended(Some(known_outcome(known))),
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
                    _ = shared.latch.taking_ends() => return Claimed::Ended(None),
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
pub(super) async fn look_up(
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
    // An invitation's user is read too: their contacts pick the medium it is asked to go by
    // (Cognito's own default is SMS, which a user without a phone number cannot get).
    let invite = job.request.action() == Action::Invite;
    if (listed && !lookup.pool.precheck) || !(invite || lookup.pool.wants(username)) {
        return Ok(None);
    }
    let spelling = shared.case.key(username);
    if let Some(looked) = lookup.answers.get(&spelling) {
        return Ok(Some(looked));
    }
    let answer = resend_policy::pool_call(
        &shared.retry,
        &lookup.rate,
        shared.latch.stopping(),
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

/// The action a job takes once its user's `status` is read from the pool: with `--precheck`
/// the status decides (UNCONFIRMED a code, FORCE_CHANGE_PASSWORD an invitation; any other
/// status leaves the job's own, and [`precheck`] ends it without a call); without it, the
/// status decides only for a job that does not say (the run's `--action` applies later).
fn action_by_status(shared: &Shared, job: &Job, status: &str) -> Option<Action> {
    let precheck = shared.lookup.as_ref().is_some_and(|l| l.pool.precheck);
    match Action::for_status(status) {
        // An invited user's status invites only in a run that invites (or for a job that asked
        // to): a run of codes finds them `already_confirmed` with `--precheck`, as before.
        Some(Action::Invite) if !shared.invites && job.request.action != Some(Action::Invite) => {
            job.request.action
        }
        Some(a) if precheck || job.request.action.is_none() => Some(a),
        _ => job.request.action,
    }
}

/// The medium an invitation is asked to go by: email when the user has an address, else SMS
/// when they have a phone number.
fn invite_medium(attributes: &[(String, String)]) -> Option<Medium> {
    let has = |name: &str| attributes.iter().any(|(n, v)| n == name && !v.is_empty());
    if has("email") {
        Some(Medium::Email)
    } else if has("phone_number") {
        Some(Medium::Sms)
    } else {
        None
    }
}

/// `--precheck`: the status the pool read found decides. `None`: send (UNCONFIRMED for a code,
/// FORCE_CHANGE_PASSWORD for an invitation, or no precheck); `Some`: this outcome, no send — a
/// code's user confirmed already (`already_confirmed`), an invitation's signed in
/// (`already_signed_in`).
pub(super) fn precheck(shared: &Shared, job: &Job, looked: Option<&Looked>) -> Option<Outcome> {
    if !shared.lookup.as_ref().is_some_and(|l| l.pool.precheck) {
        return None;
    }
    match looked? {
        // Not reached: a missing user ends before its claim.
        Looked::Missing => Some(Outcome {
            reason: Some(Reason::Precheck),
            ..Outcome::new(OutcomeKind::NotFound, 0)
        }),
        Looked::Found(user) if Action::for_status(&user.status) == Some(job.request.action()) => {
            None
        }
        Looked::Found(user) => Some(Outcome {
            reason: Some(Reason::Text(format!("precheck: {}", user.status))),
            ..Outcome::new(
                match job.request.action() {
                    Action::Confirm => OutcomeKind::AlreadyConfirmed,
                    Action::Invite => OutcomeKind::AlreadySignedIn,
                },
                0,
            )
        }),
    }
}
