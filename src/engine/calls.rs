//! A job's calls to Cognito: through the one retry executor ([`crate::retry`]) under the
//! run's rate limit, each attempt cut short when the grace period after a signal is over,
//! classified for the executor ([`verdict`]) and told to the stop watches (a configuration
//! error repeated, Cognito unreachable). What comes before the calls and after them is
//! [`super::pipeline`]'s.

use super::pipeline::{Progress, Tried};
use super::*;
use crate::job::Action;

/// Calls Cognito until the job has an answer or its budget is spent. A job with an ambiguous
/// attempt (Cognito may have acted on it) that ends `sent` (a retry after it), `failed`, or
/// abandoned is in doubt: the user may hold two codes, or one we do not know of.
pub(super) async fn attempt(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
    medium: Option<Medium>,
) -> Tried {
    let mut ambiguous = None;
    let tried = calls(shared, job, client_id, progress, medium, &mut ambiguous).await;
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
pub(super) enum Failed {
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
pub(super) fn verdict(error: &CallError, attempts: u32) -> Verdict {
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

/// A job's calls' pace: the rate controller of its action (each action draws on a quota
/// category of its own, so a throttle of one never slows the other), and for resends with a
/// fleet budget the fleet, which hears of every throttle this run's controller acts on (see
/// [`crate::ledger::fleet`]).
struct Paced<'a> {
    shared: &'a Shared,
    action: Action,
}

impl Paced<'_> {
    fn limiter(&self) -> &RateLimiter {
        match self.action {
            Action::Confirm => &self.shared.rate,
            Action::Invite => &self.shared.invite_rate,
        }
    }
}

impl crate::retry::Pace for Paced<'_> {
    fn acquire(&self) -> impl Future<Output = ()> + Send {
        self.limiter().acquire()
    }
    fn on_success(&self) {
        self.limiter().on_success();
    }
    fn on_throttle(&self) {
        if self.limiter().on_throttle()
            && self.action == Action::Confirm
            && let Some(ledger) = &self.shared.ledger
        {
            ledger.note_throttle();
        }
    }
}

/// [`attempt`]'s calls, through the retry executor. `ambiguous` is set to the first ambiguous
/// error.
pub(super) async fn calls(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
    medium: Option<Medium>,
    ambiguous: &mut Option<String>,
) -> Tried {
    let pace = Paced {
        shared,
        action: job.request.action(),
    };
    let ran = Retry::new(shared.retry.policy())
        .paced(&pace)
        .until(shared.latch.stopping())
        .run(
            |attempts| one_call(shared, job, client_id, progress, medium, attempts),
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
                Answer::NotInvited => outcome.kind = OutcomeKind::AlreadySignedIn,
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
pub(super) async fn one_call(
    shared: &Shared,
    job: &Job,
    client_id: &str,
    progress: &Progress,
    medium: Option<Medium>,
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
            r = shared.cognito.call(&job.request, client_id, medium.map(Medium::as_str)) => Some(r),
            _ = shared.latch.aborted().cancelled() => None,
        }
    };
    let took = started.elapsed();
    let count = |result| {
        shared
            .recorder
            .attempt(job.request.action(), result, took.as_secs_f64());
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

/// `cognito_resend_in_flight` while a call runs: +1 now, -1 when dropped (also by a panic or an
/// abandoned call).
pub(super) struct InFlight;

impl InFlight {
    pub(super) fn enter() -> Self {
        metrics::in_flight(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::in_flight(-1.0);
    }
}
