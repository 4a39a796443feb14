//! The resend's retry settings (`retry.*`) as a [`crate::retry::Policy`]. The executor itself,
//! and the classification interface it takes, are [`crate::retry`]'s; whether a Cognito error is
//! retryable is [`crate::cognito::classify`]'s business.

use crate::config::RetrySettings;
use crate::retry::{Backoff, Budget, Classify, Failure, Policy, Quota, Retry, Verdict};
use crate::telemetry::metrics;

/// UnexpectedLambdaException is retried, but only this many attempts in all: a trigger that
/// keeps failing is a bug in the trigger, not a blip.
pub(crate) const LAMBDA_ATTEMPTS: u32 = 3;

/// The retry budget and backoff of one job (the resend, and the pool calls of discovery and
/// `--precheck`), from the `retry.*` settings.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    policy: Policy,
}

impl RetryPolicy {
    /// From validated settings. `config` checks the backoff with the same rules as
    /// [`Backoff::new`]; settings built by hand that break them fall back to its bounds.
    pub(crate) fn new(s: RetrySettings) -> Self {
        let backoff = Backoff::new(s.initial_backoff, s.max_backoff, s.multiplier, s.jitter)
            .unwrap_or_else(|e| {
                tracing::warn!("retry settings: {e}; using the nearest valid backoff");
                let initial = s.initial_backoff.max(std::time::Duration::from_millis(1));
                Backoff::new(
                    initial,
                    s.max_backoff.max(initial),
                    if s.multiplier.is_finite() {
                        s.multiplier.max(1.0)
                    } else {
                        2.0
                    },
                    if s.jitter.is_finite() {
                        s.jitter.clamp(0.0, 1.0)
                    } else {
                        0.0
                    },
                )
                .unwrap_or_else(|_| unreachable!("every bound is clamped"))
            });
        let budget = Budget {
            max_attempts: Some(s.max_attempts),
            max_elapsed: Some(s.max_elapsed),
        };
        Self {
            policy: Policy::new(backoff, budget),
        }
    }

    /// The policy for [`crate::retry::Retry`].
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// Calls a pool API (ListUsers, AdminGetUser) until it answers, its error is not retryable, the
/// budget of `policy` is spent, or `stop` is cancelled (then `None`). Each attempt waits for
/// `limiter` and is counted once in `cognito_resend_pool_calls_total`; throttling slows the
/// limiter, and an error answer counts as quota granted (see [`crate::retry::Quota`]).
pub(crate) async fn pool_call<T, E, F, Fut>(
    policy: &RetryPolicy,
    limiter: &super::rate::RateLimiter,
    stop: &tokio_util::sync::CancellationToken,
    operation: &'static str,
    mut call: F,
) -> Option<Result<T, E>>
where
    E: Classify + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let ran = Retry::new(policy.policy())
        .paced(limiter)
        .until(stop)
        .run(
            |_| {
                let answer = call();
                async move {
                    let answer = answer.await;
                    let result = match &answer {
                        Ok(_) => "ok",
                        Err(e) => match e.verdict(0) {
                            Verdict::Retry(Quota::Throttled) | Verdict::Stop(Quota::Throttled) => {
                                "throttled"
                            }
                            Verdict::Retry(_) => "transient",
                            Verdict::Stop(_) => "permanent",
                        },
                    };
                    metrics::pool_call(operation, result);
                    answer
                }
            },
            |e: &E, attempts| {
                let verdict = e.verdict(attempts);
                if let Verdict::Retry(_) = verdict {
                    tracing::debug!(attempts, error = %e, "pool call failed; retrying");
                }
                verdict
            },
        )
        .await;
    match ran.result {
        Ok(v) => Some(Ok(v)),
        Err(Failure::Refused(e) | Failure::Exhausted(e)) => Some(Err(e)),
        Err(Failure::Stopped(_)) => None,
    }
}
