//! The shared client-side rate limit: a token bucket whose rate adapts to throttling (AIMD).
//!
//! Each TooManyRequestsException halves the current rate (at most once per second, so a burst
//! of throttles from calls already in flight counts once); each success adds a little back, about
//! 5 % of the ceiling per second, until `--rate` is reached again. Many replicas doing this settle
//! under the account quota without talking to each other. With `--rate 0` there is no ceiling:
//! the bucket starts unlimited and only begins limiting after the first throttle, from half the
//! rate observed then.
//!
//! Waiters reserve their slot under the lock and sleep outside it, so callers are served in
//! order and the lock is held for a few arithmetic operations only.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::metrics;

/// Never limit below this many calls per second: the slowest a limited run goes.
const MIN_RATE: f64 = 0.5;
/// Multiplicative decrease on a throttle.
const DECREASE: f64 = 0.5;
/// At most one decrease per this long.
const DECREASE_EVERY: Duration = Duration::from_secs(1);
/// Additive increase per second of success, as a share of the ceiling (or of the current rate
/// when there is no ceiling).
const INCREASE_SHARE: f64 = 0.05;

/// The limiter shared by every task of a run.
#[derive(Debug)]
pub struct RateLimiter {
    /// `None`: `--rate 0`, no ceiling.
    ceiling: Option<f64>,
    /// Whether this is the resend limiter, whose rate the gauge shows.
    reported: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Current rate; `None` = unlimited (only before the first throttle of a `--rate 0` run).
    rate: Option<f64>,
    /// Tokens available; negative when callers have reserved future slots.
    tokens: f64,
    last_refill: Instant,
    last_decrease: Option<Instant>,
    /// Calls admitted in the current one-second window, to know the rate when first throttled.
    window_start: Instant,
    window_calls: u64,
    last_window_rate: f64,
}

impl RateLimiter {
    /// The resend limiter: ceiling `rate` calls per second (`None` = no ceiling), shown by the
    /// `cognito_resend_rate_limit_per_second` gauge.
    pub fn new(rate: Option<f64>) -> Self {
        metrics::rate_limit(rate.unwrap_or(0.0));
        Self::build(rate, true)
    }

    /// A limiter for another API (ListUsers, AdminGetUser), not shown by the gauge.
    pub fn unreported(rate: Option<f64>) -> Self {
        Self::build(rate, false)
    }

    fn build(rate: Option<f64>, reported: bool) -> Self {
        let now = Instant::now();
        Self {
            ceiling: rate,
            reported,
            state: Mutex::new(State {
                rate,
                tokens: rate.map_or(0.0, burst),
                last_refill: now,
                last_decrease: None,
                window_start: now,
                window_calls: 0,
                last_window_rate: 0.0,
            }),
        }
    }

    /// The current rate, `None` when unlimited.
    pub fn current(&self) -> Option<f64> {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, consistent after every statement: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for permission to make one call.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.lock();
            let now = Instant::now();
            s.count_call(now);
            match s.rate {
                None => return,
                Some(rate) => {
                    s.refill(now, rate);
                    s.tokens -= 1.0;
                    if s.tokens >= 0.0 {
                        return;
                    }
                    Duration::from_secs_f64(-s.tokens / rate)
                }
            }
        };
        tokio::time::sleep(wait).await;
    }

    /// A call was throttled: slow down.
    pub fn on_throttle(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.last_decrease
            .is_some_and(|t| now.duration_since(t) < DECREASE_EVERY)
        {
            return;
        }
        s.last_decrease = Some(now);
        let base = match s.rate {
            Some(r) => {
                s.refill(now, r);
                r
            }
            None => s.observed_rate(now),
        };
        let new = (base * DECREASE).max(MIN_RATE);
        s.rate = Some(new);
        s.tokens = s.tokens.min(burst(new));
        drop(s);
        tracing::debug!(rate = new, "throttled: lowering the request rate");
        if self.reported {
            metrics::rate_limit(new);
        }
    }

    /// A call succeeded: speed up a little, back towards the ceiling.
    pub fn on_success(&self) {
        let mut s = self.lock();
        let Some(rate) = s.rate else { return };
        if self.ceiling.is_some_and(|c| rate >= c) {
            return;
        }
        let step = self.ceiling.unwrap_or(rate) * INCREASE_SHARE;
        // `rate` successes arrive per second, so this adds about `step` per second.
        let mut new = rate + step.max(MIN_RATE) / rate;
        if let Some(c) = self.ceiling {
            new = new.min(c);
        }
        let now = Instant::now();
        s.refill(now, rate);
        s.rate = Some(new);
        drop(s);
        if self.reported {
            metrics::rate_limit(new);
        }
    }
}

/// The bucket's depth: a tenth of a second of calls, at least one.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

impl State {
    fn refill(&mut self, now: Instant, rate: f64) {
        let dt = now.duration_since(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst(rate));
        self.last_refill = now;
    }

    fn count_call(&mut self, now: Instant) {
        let dt = now.duration_since(self.window_start);
        if dt >= Duration::from_secs(1) {
            self.last_window_rate = self.window_calls as f64 / dt.as_secs_f64();
            self.window_start = now;
            self.window_calls = 0;
        }
        self.window_calls += 1;
    }

    fn observed_rate(&self, now: Instant) -> f64 {
        let dt = now.duration_since(self.window_start).as_secs_f64();
        let current = if dt > 0.1 {
            self.window_calls as f64 / dt
        } else {
            0.0
        };
        current.max(self.last_window_rate).max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn calls_in(limiter: &RateLimiter, span: Duration) -> u32 {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed() < span {
            limiter.acquire().await;
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn holds_the_configured_rate() {
        let limiter = RateLimiter::new(Some(10.0));
        let n = calls_in(&limiter, Duration::from_secs(10)).await;
        assert!((100..=102).contains(&n), "{n} calls in 10 s at 10/s");
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_halves_once_per_second_then_recovers_slowly() {
        let limiter = RateLimiter::new(Some(40.0));
        limiter.on_throttle();
        limiter.on_throttle(); // same second: ignored
        assert_eq!(limiter.current(), Some(20.0));
        tokio::time::advance(Duration::from_millis(1100)).await;
        limiter.on_throttle();
        assert_eq!(limiter.current(), Some(10.0));
        // About 2/s of increase per second of success at ceiling 40.
        for _ in 0..100 {
            limiter.acquire().await;
            limiter.on_success();
        }
        let r = limiter.current().unwrap();
        assert!(r > 10.0 && r < 40.0, "recovers gradually, got {r}");
        for _ in 0..5_000 {
            limiter.acquire().await;
            limiter.on_success();
        }
        assert_eq!(
            limiter.current(),
            Some(40.0),
            "back to the ceiling, never above"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_until_throttled_then_half_the_observed_rate() {
        let limiter = RateLimiter::new(None);
        // 200 calls at 2 ms apart = 500/s observed.
        for _ in 0..200 {
            limiter.acquire().await;
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        assert_eq!(limiter.current(), None);
        limiter.on_throttle();
        let r = limiter.current().unwrap();
        assert!((200.0..=260.0).contains(&r), "about half of 500/s, got {r}");
    }

    #[tokio::test(start_paused = true)]
    async fn never_below_the_floor() {
        let limiter = RateLimiter::new(Some(1.0));
        for _ in 0..10 {
            limiter.on_throttle();
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert_eq!(limiter.current(), Some(MIN_RATE));
    }
}
