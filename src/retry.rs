//! The one retry executor: every call this tool repeats (the resend, the pool calls, the SQS
//! calls of the consumer and of `enqueue`, the ledger's writes of results) goes through
//! [`Retry::run`]. The AWS SDK's own retries are off for the Cognito and SQS clients, so none
//! of their calls is retried by two layers at once. The DynamoDB client is the one exception
//! (see `aws::SdkOptions::sdk_retries`): its SDK retries stay on, under the ledger's executor,
//! because every ledger write is conditional and carries a token, so a repeat cannot apply
//! twice, and the ledger's reads and claims have no retry of their own: the SDK's few quick
//! attempts are what keeps one dropped connection from stopping the run. A ledger result write
//! may so be attempted up to the SDK's attempts times the executor's; its budget of time bounds
//! both.
//!
//! The split follows tower's retry layer:
//!
//! - **Policy**: the caller's classifier says, for each failed attempt, whether to go on and what
//!   the answer says about the quota ([`Verdict`], [`Quota`]). This module knows no error type:
//!   Cognito's, SQS's and the pool's are classified where they are defined.
//! - **Backoff** ([`Backoff`]): how long to wait before the next attempt. The `backoff` crate
//!   computes the exponential, capped interval; the jitter is applied here with an injectable
//!   random source, so a test can pin it.
//! - **Budget** ([`Budget`]): how many attempts, and how much time, a call may take in all. Time
//!   is tokio's clock, so tests run on paused time.
//! - **Executor** ([`Retry`]): waits for the rate limiter ([`Pace`]) before each attempt, tells
//!   it how each attempt was answered, sleeps the backoff, and stops at once when its stop token
//!   is cancelled (before an attempt or during a backoff; an attempt in flight is the caller's
//!   to cut short).
//!
//! It imports nothing from the rest of the crate, so every layer may use it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use backoff::SystemClock;
use backoff::backoff::Backoff as _;
use backoff::exponential::ExponentialBackoff;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What a failed attempt's answer says about the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quota {
    /// Answered (with an error): the call used quota the service granted, so the rate
    /// controller counts it as accepted, or it would underestimate the quota when many calls
    /// fail.
    Granted,
    /// Throttled: the rate controller slows down.
    Throttled,
    /// No answer (a timeout, a dropped connection, a 5xx): nothing learnt about the quota.
    Unknown,
}

/// The classifier's decision about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again after a backoff, if the budget allows.
    Retry(Quota),
    /// Give up now: the error is permanent (or the caller caps this kind of error).
    Stop(Quota),
}

impl Verdict {
    fn quota(self) -> Quota {
        match self {
            Self::Retry(q) | Self::Stop(q) => q,
        }
    }
}

/// An error type that classifies itself, for callers that need no context to decide.
pub(crate) trait Classify {
    /// The verdict on an attempt that failed with this error (`attempts` so far, this one
    /// included).
    fn verdict(&self, attempts: u32) -> Verdict;
}

/// The rate limiter the executor waits for before each attempt and tells about each answer.
pub(crate) trait Pace: Sync {
    /// Waits until an attempt may start.
    fn acquire(&self) -> impl Future<Output = ()> + Send;
    /// The service answered (successfully, or with an error that used quota).
    fn on_success(&self);
    /// The service throttled the attempt.
    fn on_throttle(&self);
}

/// No rate limit (the SQS calls).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Unpaced;

impl Pace for Unpaced {
    async fn acquire(&self) {}
    fn on_success(&self) {}
    fn on_throttle(&self) {}
}

/// Backoff parameters that are not usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum BackoffError {
    /// The first delay is zero.
    #[error("the initial backoff must be positive")]
    ZeroInitial,
    /// The cap is below the first delay.
    #[error("the maximum backoff ({max:?}) is shorter than the initial backoff ({initial:?})")]
    MaxBelowInitial {
        /// The first delay.
        initial: Duration,
        /// The cap.
        max: Duration,
    },
    /// The multiplier is below 1 (delays would shrink) or not a number.
    #[error("the backoff multiplier ({0}) must be at least 1")]
    Multiplier(f64),
    /// The jitter is outside 0..=1.
    #[error("the backoff jitter ({0}) must be between 0 and 1")]
    Jitter(f64),
}

/// A random number in `[0, 1)`.
type Random = Arc<dyn Fn() -> f64 + Send + Sync>;

/// Exponential delays, capped, with jitter: the n-th delay is `initial × multiplierⁿ⁻¹` (at most
/// `max`), spread uniformly over ±`jitter` of itself.
#[derive(Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    jitter: f64,
    random: Random,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("initial", &self.initial)
            .field("max", &self.max)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// Checked parameters; the jitter's randomness is `fastrand`'s.
    pub(crate) fn new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
    ) -> Result<Self, BackoffError> {
        if initial.is_zero() {
            return Err(BackoffError::ZeroInitial);
        }
        if max < initial {
            return Err(BackoffError::MaxBelowInitial { initial, max });
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(BackoffError::Multiplier(multiplier));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Self {
            initial,
            max,
            multiplier,
            jitter,
            random: Arc::new(fastrand::f64),
        })
    }

    /// The same delays with another random source (`[0, 1)`), for tests.
    #[cfg(test)]
    pub(crate) fn with_random(mut self, random: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// A fresh sequence of delays.
    fn delays(&self) -> Delays {
        Delays {
            // Without randomization: the crate computes the interval, `Delays` jitters it.
            intervals: ExponentialBackoff::<SystemClock> {
                current_interval: self.initial,
                initial_interval: self.initial,
                randomization_factor: 0.0,
                multiplier: self.multiplier,
                max_interval: self.max,
                max_elapsed_time: None,
                clock: SystemClock::default(),
                start_time: std::time::Instant::now(),
            },
            jitter: self.jitter,
            random: self.random.clone(),
        }
    }
}

/// One call's delays.
struct Delays {
    intervals: ExponentialBackoff<SystemClock>,
    jitter: f64,
    random: Random,
}

impl Delays {
    fn next(&mut self) -> Duration {
        // Never `None`: the crate's elapsed-time limit is off (the budget is ours).
        let interval = self
            .intervals
            .next_backoff()
            .unwrap_or(self.intervals.max_interval);
        if self.jitter == 0.0 {
            return interval;
        }
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * (self.random)().clamp(0.0, 1.0);
        interval.mul_f64(spread)
    }
}

/// How much one call may take in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Attempts in all (`None`: no limit).
    pub max_attempts: Option<NonZeroU32>,
    /// Time from the first attempt to the start of the last, counting the backoff before it
    /// (`None`: no limit).
    pub max_elapsed: Option<Duration>,
}

impl Budget {
    /// At most `n` attempts (at least one), however long they take.
    pub(crate) fn attempts(n: u32) -> Self {
        Self {
            max_attempts: Some(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)),
            max_elapsed: None,
        }
    }

    /// Retry for as long as it takes (until the stop token).
    pub(crate) const UNLIMITED: Self = Self {
        max_attempts: None,
        max_elapsed: None,
    };
}

/// Backoff and budget: how a call is retried, whatever its errors.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    backoff: Backoff,
    budget: Budget,
}

impl Policy {
    /// `backoff` between attempts, within `budget`.
    pub(crate) fn new(backoff: Backoff, budget: Budget) -> Self {
        Self { backoff, budget }
    }

    /// A fresh schedule for one call whose first attempt starts now.
    fn schedule(&self) -> Schedule {
        Schedule {
            delays: self.backoff.delays(),
            started: Instant::now(),
            budget: self.budget,
        }
    }
}

/// One call's retry state.
struct Schedule {
    delays: Delays,
    started: Instant,
    budget: Budget,
}

impl Schedule {
    /// After `attempts` failed attempts, the delay before the next one, or `None` when the
    /// budget (attempts, or elapsed time counting the delay) is spent.
    fn next_delay(&mut self, attempts: u32) -> Option<Duration> {
        if self
            .budget
            .max_attempts
            .is_some_and(|max| attempts >= max.get())
        {
            return None;
        }
        let delay = self.delays.next();
        if self
            .budget
            .max_elapsed
            .is_some_and(|max| self.started.elapsed() + delay > max)
        {
            return None;
        }
        Some(delay)
    }
}

/// Why a call ended without success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure<E> {
    /// The classifier said [`Verdict::Stop`] for this error.
    Refused(E),
    /// Retryable, but the budget is spent: the last error.
    Exhausted(E),
    /// The stop token was cancelled before an attempt or during a backoff: the last error, if
    /// an attempt was made.
    Stopped(Option<E>),
}

impl<E> Failure<E> {
    /// The last error, if an attempt was made (always, for a call without a stop token).
    pub(crate) fn into_last(self) -> Option<E> {
        match self {
            Self::Refused(e) | Self::Exhausted(e) | Self::Stopped(Some(e)) => Some(e),
            Self::Stopped(None) => None,
        }
    }
}

/// How a call ended, and after how many attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ran<T, E> {
    /// Attempts made (each counted once).
    pub attempts: u32,
    /// The answer, or why there is none.
    pub result: Result<T, Failure<E>>,
}

/// The executor: a policy, a rate limiter and a stop token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry<'a, P = Unpaced> {
    policy: &'a Policy,
    pace: &'a P,
    stop: Option<&'a CancellationToken>,
}

impl<'a> Retry<'a> {
    /// Retries by `policy`, with no rate limit and no stop token.
    pub(crate) fn new(policy: &'a Policy) -> Self {
        Self {
            policy,
            pace: &Unpaced,
            stop: None,
        }
    }
}

impl<'a, P: Pace> Retry<'a, P> {
    /// Each attempt waits for `pace` first and tells it how it was answered.
    pub(crate) fn paced<Q: Pace>(self, pace: &'a Q) -> Retry<'a, Q> {
        Retry {
            policy: self.policy,
            pace,
            stop: self.stop,
        }
    }

    /// No attempt starts, and no backoff goes on, once `stop` is cancelled.
    pub(crate) fn until(self, stop: &'a CancellationToken) -> Self {
        Self {
            stop: Some(stop),
            ..self
        }
    }

    /// Calls `call` (given the attempt's number, from 1) until it succeeds, `classify` stops
    /// it, the budget is spent, or the stop token is cancelled.
    pub(crate) async fn run<T, E, F, Fut, C>(&self, call: F, classify: C) -> Ran<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: FnMut(&E, u32) -> Verdict,
    {
        self.run_observed(call, classify, |_, _, _| {}).await
    }

    /// [`Retry::run`], telling `before_backoff` each error that is retried, the attempts so far
    /// and the delay before the next one (to log it).
    pub(crate) async fn run_observed<T, E, F, Fut, C, B>(
        &self,
        mut call: F,
        mut classify: C,
        mut before_backoff: B,
    ) -> Ran<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: FnMut(&E, u32) -> Verdict,
        B: FnMut(&E, u32, Duration),
    {
        let mut schedule = self.policy.schedule();
        let mut attempts = 0u32;
        let mut last: Option<E> = None;
        let ran = |attempts, result| Ran { attempts, result };
        loop {
            match self.stop {
                Some(stop) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return ran(attempts, Err(Failure::Stopped(last))),
                    _ = self.pace.acquire() => {}
                },
                None => self.pace.acquire().await,
            }
            attempts += 1;
            let error = match call(attempts).await {
                Ok(value) => {
                    self.pace.on_success();
                    return ran(attempts, Ok(value));
                }
                Err(e) => e,
            };
            let verdict = classify(&error, attempts);
            match verdict.quota() {
                Quota::Granted => self.pace.on_success(),
                Quota::Throttled => self.pace.on_throttle(),
                Quota::Unknown => {}
            }
            if let Verdict::Stop(_) = verdict {
                return ran(attempts, Err(Failure::Refused(error)));
            }
            let Some(delay) = schedule.next_delay(attempts) else {
                return ran(attempts, Err(Failure::Exhausted(error)));
            };
            before_backoff(&error, attempts, delay);
            last = Some(error);
            match self.stop {
                Some(stop) => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return ran(attempts, Err(Failure::Stopped(last))),
                    _ = tokio::time::sleep(delay) => {}
                },
                None => tokio::time::sleep(delay).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn backoff(jitter: f64) -> Backoff {
        Backoff::new(
            Duration::from_millis(250),
            Duration::from_secs(2),
            2.0,
            jitter,
        )
        .unwrap()
    }

    fn policy(attempts: u32) -> Policy {
        Policy::new(backoff(0.0), Budget::attempts(attempts))
    }

    #[test]
    fn the_constructor_refuses_unusable_parameters() {
        let ms = Duration::from_millis;
        assert_eq!(
            Backoff::new(Duration::ZERO, ms(1), 2.0, 0.0).unwrap_err(),
            BackoffError::ZeroInitial
        );
        assert!(matches!(
            Backoff::new(ms(2), ms(1), 2.0, 0.0),
            Err(BackoffError::MaxBelowInitial { .. })
        ));
        assert!(matches!(
            Backoff::new(ms(1), ms(1), 0.5, 0.0),
            Err(BackoffError::Multiplier(_))
        ));
        assert!(matches!(
            Backoff::new(ms(1), ms(1), f64::NAN, 0.0),
            Err(BackoffError::Multiplier(_))
        ));
        assert!(matches!(
            Backoff::new(ms(1), ms(1), 1.0, 1.5),
            Err(BackoffError::Jitter(_))
        ));
        assert!(Backoff::new(ms(1), ms(1), 1.0, 1.0).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn exponential_then_capped_without_jitter() {
        let mut s = policy(8).schedule();
        let delays: Vec<_> = (1..8)
            .map(|n| s.next_delay(n).unwrap().as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 2000, 2000, 2000]);
        assert_eq!(s.next_delay(8), None, "8 attempts is the budget");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_spreads_by_the_injected_randomness() {
        let low = Policy::new(backoff(0.5).with_random(|| 0.0), Budget::UNLIMITED);
        let high = Policy::new(backoff(0.5).with_random(|| 0.999_999), Budget::UNLIMITED);
        let (mut low, mut high) = (low.schedule(), high.schedule());
        assert_eq!(low.next_delay(1), Some(Duration::from_millis(125)));
        assert_eq!(low.next_delay(2), Some(Duration::from_millis(250)));
        let top = high.next_delay(1).unwrap();
        assert!(top > Duration::from_millis(374) && top <= Duration::from_millis(375));
    }

    #[tokio::test(start_paused = true)]
    async fn elapsed_budget_counts_the_coming_delay() {
        let p = Policy::new(
            backoff(0.0),
            Budget {
                max_attempts: None,
                max_elapsed: Some(Duration::from_secs(1)),
            },
        );
        let mut s = p.schedule();
        assert_eq!(s.next_delay(1), Some(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(400)).await;
        // 400ms + 500ms fits in 1s.
        assert_eq!(s.next_delay(2), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        // 900ms + 1s does not.
        assert_eq!(s.next_delay(3), None);
    }

    /// Records what the executor tells the rate limiter.
    #[derive(Default)]
    struct Recorded {
        acquired: AtomicU32,
        events: Mutex<Vec<&'static str>>,
    }

    impl Pace for Recorded {
        async fn acquire(&self) {
            self.acquired.fetch_add(1, Ordering::SeqCst);
        }
        fn on_success(&self) {
            self.events.lock().unwrap().push("success");
        }
        fn on_throttle(&self) {
            self.events.lock().unwrap().push("throttle");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_budget_and_counts_every_attempt() {
        let pace = Recorded::default();
        let p = policy(4);
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let ran: Ran<(), &str> = Retry::new(&p)
            .paced(&pace)
            .run(
                |n| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { if n > 0 { Err("busy") } else { Ok(()) } }
                },
                |_, _| Verdict::Retry(Quota::Throttled),
            )
            .await;
        assert_eq!(ran.attempts, 4);
        assert_eq!(ran.result, Err(Failure::Exhausted("busy")));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "one call per attempt");
        assert_eq!(
            pace.acquired.load(Ordering::SeqCst),
            4,
            "one permit per attempt"
        );
        assert_eq!(*pace.events.lock().unwrap(), ["throttle"; 4]);
        // 250 + 500 + 1000 ms of backoff between the four attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(1750));
    }

    #[tokio::test(start_paused = true)]
    async fn the_observer_sees_each_backoff_before_it_is_slept() {
        let p = policy(3);
        let mut seen = Vec::new();
        let ran: Ran<(), &str> = Retry::new(&p)
            .run_observed(
                |_| async { Err("busy") },
                |_, _| Verdict::Retry(Quota::Unknown),
                |e, n, delay| seen.push((*e, n, delay.as_millis())),
            )
            .await;
        assert_eq!(ran.attempts, 3);
        assert_eq!(seen, [("busy", 1, 250), ("busy", 2, 500)]);
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_what_the_classifier_stops() {
        let pace = Recorded::default();
        let p = policy(8);
        let ran: Ran<(), &str> = Retry::new(&p)
            .paced(&pace)
            .run(
                |_| async { Err("denied") },
                |_, _| Verdict::Stop(Quota::Granted),
            )
            .await;
        assert_eq!(ran.attempts, 1);
        assert_eq!(ran.result, Err(Failure::Refused("denied")));
        assert_eq!(*pace.events.lock().unwrap(), ["success"]);
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_a_transient_error() {
        let pace = Recorded::default();
        let p = policy(8);
        let ran: Ran<u32, &str> = Retry::new(&p)
            .paced(&pace)
            .run(
                |n| async move { if n < 3 { Err("timeout") } else { Ok(n) } },
                |_, _| Verdict::Retry(Quota::Unknown),
            )
            .await;
        assert_eq!(
            ran,
            Ran {
                attempts: 3,
                result: Ok(3)
            }
        );
        assert_eq!(
            *pace.events.lock().unwrap(),
            ["success"],
            "an unanswered attempt tells the limiter nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_classifier_sees_the_attempt_number() {
        // The resend caps one kind of error below the budget (UnexpectedLambdaException).
        let p = policy(8);
        let ran: Ran<(), &str> = Retry::new(&p)
            .run(
                |_| async { Err("lambda") },
                |_, n| {
                    if n >= 3 {
                        Verdict::Stop(Quota::Granted)
                    } else {
                        Verdict::Retry(Quota::Granted)
                    }
                },
            )
            .await;
        assert_eq!(ran.attempts, 3);
        assert_eq!(ran.result, Err(Failure::Refused("lambda")));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_the_token_during_a_backoff() {
        let stop = CancellationToken::new();
        let p = Policy::new(backoff(0.0), Budget::UNLIMITED);
        let calls = AtomicU32::new(0);
        let retry = Retry::new(&p).until(&stop);
        let run = retry.run(
            |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("down") }
            },
            |_, _| Verdict::Retry(Quota::Unknown),
        );
        let cancel = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stop.cancel();
        };
        let (ran, ()) = tokio::join!(run, cancel);
        // Attempts at 0, 0.25, 0.75, 1.75 s; the next (3.75 s) never starts.
        assert_eq!(ran.attempts, 4);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(ran.result, Err(Failure::Stopped(Some("down"))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_token_starts_no_attempt() {
        let stop = CancellationToken::new();
        stop.cancel();
        let p = policy(8);
        let ran: Ran<(), &str> = Retry::new(&p)
            .until(&stop)
            .run(
                |_| async { unreachable!("no attempt after a stop") },
                |_, _| Verdict::Retry(Quota::Unknown),
            )
            .await;
        assert_eq!(
            ran,
            Ran {
                attempts: 0,
                result: Err(Failure::Stopped(None))
            }
        );
    }
}
