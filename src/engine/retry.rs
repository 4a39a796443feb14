//! The retry *backoff* and budget: how long to wait before the next attempt, and whether one may
//! start at all. Whether an error is retryable is [`crate::cognito::classify`]'s business; the
//! engine applies both.
//!
//! Delays come from the `backoff` crate's `ExponentialBackoff` (initial, multiplier, max
//! interval, randomization factor). The elapsed-time budget is kept here on tokio's clock rather
//! than by the crate's wall clock, so it is testable with paused time.

use std::time::Duration;

use backoff::SystemClock;
use backoff::backoff::Backoff;
use backoff::exponential::ExponentialBackoff;
use tokio::time::Instant;

use crate::cognito::admin::AdminError;
use crate::config::RetrySettings;
use crate::telemetry::metrics;

/// UnexpectedLambdaException is retried, but only this many attempts in all: a trigger that
/// keeps failing is a bug in the trigger, not a blip.
pub const LAMBDA_ATTEMPTS: u32 = 3;

/// Builds a [`Schedule`] per job.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    settings: RetrySettings,
}

impl RetryPolicy {
    /// From validated settings.
    pub fn new(settings: RetrySettings) -> Self {
        Self { settings }
    }

    /// A fresh schedule for one job whose first attempt starts now.
    pub fn schedule(&self) -> Schedule {
        let s = &self.settings;
        let backoff = ExponentialBackoff::<SystemClock> {
            current_interval: s.initial_backoff,
            initial_interval: s.initial_backoff,
            randomization_factor: s.jitter,
            multiplier: s.multiplier,
            max_interval: s.max_backoff,
            // The budget is enforced by `Schedule` on tokio's clock.
            max_elapsed_time: None,
            clock: SystemClock::default(),
            start_time: std::time::Instant::now(),
        };
        Schedule {
            backoff,
            started: Instant::now(),
            max_attempts: s.max_attempts.get(),
            max_elapsed: s.max_elapsed,
        }
    }
}

/// Calls a pool API (ListUsers, AdminGetUser) until it answers, its error is not retryable, the
/// budget of `policy` is spent, or `stop` is cancelled (then `None`). Throttling slows `limiter`.
pub async fn pool_call<T, F, Fut>(
    policy: &RetryPolicy,
    limiter: &super::rate::RateLimiter,
    stop: &tokio_util::sync::CancellationToken,
    operation: &'static str,
    mut call: F,
) -> Option<Result<T, AdminError>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AdminError>>,
{
    let mut schedule = policy.schedule();
    let mut attempts = 0;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            _ = limiter.acquire() => {}
        }
        attempts += 1;
        let error = match call().await {
            Ok(v) => {
                limiter.on_success();
                metrics::pool_call(operation, "ok");
                return Some(Ok(v));
            }
            Err(e) => e,
        };
        metrics::pool_call(
            operation,
            match error {
                AdminError::Throttled(_) => "throttled",
                AdminError::Transient(_) => "transient",
                AdminError::Denied(_) | AdminError::Failed(_) => "permanent",
            },
        );
        match error {
            AdminError::Throttled(_) => limiter.on_throttle(),
            // Answered, not throttled: quota Cognito granted (see the resend's attempt loop).
            AdminError::Denied(_) | AdminError::Failed(_) => limiter.on_success(),
            AdminError::Transient(_) => {}
        }
        if !error.retryable() {
            return Some(Err(error));
        }
        tracing::debug!(attempts, error = %error, "pool call failed; retrying");
        let Some(delay) = schedule.next_delay(attempts) else {
            return Some(Err(error));
        };
        tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One job's retry state.
pub struct Schedule {
    backoff: ExponentialBackoff<SystemClock>,
    started: Instant,
    max_attempts: u32,
    max_elapsed: Duration,
}

impl Schedule {
    /// After `attempts` failed attempts, the delay before the next one, or `None` when the
    /// budget (attempts or elapsed time, counting the delay) is spent.
    pub fn next_delay(&mut self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let delay = self.backoff.next_backoff()?;
        if self.started.elapsed() + delay > self.max_elapsed {
            return None;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn settings(jitter: f64) -> RetrySettings {
        RetrySettings {
            max_attempts: NonZeroU32::new(8).unwrap(),
            max_elapsed: Duration::from_secs(600),
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            jitter,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_then_capped_without_jitter() {
        let mut s = RetryPolicy::new(settings(0.0)).schedule();
        let delays: Vec<_> = (1..8)
            .map(|n| s.next_delay(n).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000, 2000]);
        assert_eq!(s.next_delay(8), None, "8 attempts is the budget");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_stays_within_its_band() {
        for _ in 0..200 {
            let mut s = RetryPolicy::new(settings(0.5)).schedule();
            let first = s.next_delay(1).unwrap();
            assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(376));
            let second = s.next_delay(2).unwrap();
            assert!(second >= Duration::from_millis(250) && second <= Duration::from_millis(751));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_budget_counts_the_coming_delay() {
        let mut st = settings(0.0);
        st.max_elapsed = Duration::from_secs(1);
        let mut s = RetryPolicy::new(st).schedule();
        assert_eq!(s.next_delay(1), Some(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(400)).await;
        // 400ms + 500ms fits in 1s.
        assert_eq!(s.next_delay(2), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        // 900ms + 1s does not.
        assert_eq!(s.next_delay(3), None);
    }
}
