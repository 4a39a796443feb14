//! The requests-per-second quota as it changes over time, and the per-second record of what it
//! let through.
//!
//! Cognito's quota for `ResendConfirmationCode` is shared with the live sign-up traffic of the
//! whole account, so the spare quota a resend tool sees drops when sign-ups surge and comes back
//! afterwards. The emulator reproduces that with a [`QuotaSchedule`] (`0s=50,20s=20,40s=50`:
//! from each offset on, the quota is that many requests per second), given at start or at any
//! moment through `POST /_emulator/quota`, and a plain quota that can be set at any moment.
//!
//! To judge a client by what the *server* saw rather than by the client's own account, every
//! request that reaches the quota check is counted in one-second buckets (seconds since the
//! emulator started): accepted (took a token) or throttled (answered `TooManyRequestsException`),
//! with the quota in force. `GET /_emulator/rates` serves them; [`super::Stats`] has the totals.
//!
//! Everything sits behind one short mutex, taken once per request (a few comparisons and an
//! increment; never across an await). Time is passed in, so the unit tests below drive it with
//! made-up instants.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::state::{Bucket, lock};

/// How many one-second buckets are kept (the oldest are dropped beyond it): an hour, 32 bytes
/// each, so a long-running emulator stays small.
const SECONDS_KEPT: usize = 3600;

/// A quota that changes over time: steps `(offset, quota)`, each in force from its offset (from
/// when the schedule was set) until the next one. `None` is no quota. Before the first step's
/// offset the quota already in force stays.
///
/// Parsed from `OFFSET=RPS[,OFFSET=RPS...]`, offsets as humantime durations in increasing order,
/// `RPS` a number or `off`: `0s=50,20s=20,40s=50` is 50/s, then 20/s for 20 s, then 50/s again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaSchedule {
    steps: Vec<(Duration, Option<u32>)>,
}

impl QuotaSchedule {
    /// A schedule from its steps; offsets must be strictly increasing.
    pub fn new(steps: Vec<(Duration, Option<u32>)>) -> Result<Self, QuotaScheduleError> {
        if steps.is_empty() {
            return Err(QuotaScheduleError(
                "a schedule needs at least one step".into(),
            ));
        }
        if steps.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(QuotaScheduleError(
                "the offsets must be in strictly increasing order".into(),
            ));
        }
        Ok(Self { steps })
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[(Duration, Option<u32>)] {
        &self.steps
    }

    /// The quota the schedule sets at `elapsed` after it was set: `None` before its first step
    /// (the quota in force then stays), else `Some` of the last step reached.
    pub fn at(&self, elapsed: Duration) -> Option<Option<u32>> {
        self.steps
            .iter()
            .take_while(|(offset, _)| *offset <= elapsed)
            .last()
            .map(|(_, quota)| *quota)
    }
}

impl FromStr for QuotaSchedule {
    type Err = QuotaScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let steps = s
            .split(',')
            .map(|step| {
                let (offset, quota) = step.split_once('=').ok_or_else(|| {
                    QuotaScheduleError(format!("step {step:?} is not OFFSET=RPS, e.g. 20s=20"))
                })?;
                let offset = humantime::parse_duration(offset.trim())
                    .map_err(|e| QuotaScheduleError(format!("offset {offset:?}: {e}")))?;
                let quota = match quota.trim() {
                    "off" => None,
                    n => Some(n.parse::<u32>().map_err(|e| {
                        QuotaScheduleError(format!("quota {n:?}: {e} (a number or off)"))
                    })?),
                };
                Ok((offset, quota))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(steps)
    }
}

impl fmt::Display for QuotaSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (offset, quota)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}=", humantime::format_duration(*offset))?;
            match quota {
                Some(q) => write!(f, "{q}")?,
                None => f.write_str("off")?,
            }
        }
        Ok(())
    }
}

/// A request-rate category with a quota of its own. Cognito budgets its operations per category
/// (*Quotas in Amazon Cognito*: "these operations are grouped into categories of common use
/// cases like UserAuthentication or UserCreation"), so throttling in one never touches another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaCategory {
    /// The category ResendConfirmationCode draws on. The emulator puts every operation it
    /// implements here but AdminCreateUser (as before it had categories): the quota of
    /// [`EmulatorBuilder::quota_rps`](super::EmulatorBuilder::quota_rps). Wire name `resend`.
    Resend,
    /// `UserCreation`: AdminCreateUser. Wire name `user_creation`.
    UserCreation,
}

impl QuotaCategory {
    /// Every category.
    pub const ALL: [QuotaCategory; 2] = [Self::Resend, Self::UserCreation];

    /// The name `/_emulator/quota` and `/_emulator/rates` take as `category=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resend => "resend",
            Self::UserCreation => "user_creation",
        }
    }

    /// The category an operation draws on.
    pub(crate) fn of(op: super::state::Operation) -> Self {
        match op {
            super::state::Operation::AdminCreateUser => Self::UserCreation,
            _ => Self::Resend,
        }
    }
}

impl fmt::Display for QuotaCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QuotaCategory {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not a quota category (resend or user_creation)"))
    }
}

/// A schedule that does not parse or is out of order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quota schedule: {0}")]
pub struct QuotaScheduleError(String);

/// What the quota check saw in one second of the emulator's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecondCount {
    /// Whole seconds since the emulator started.
    pub second: u64,
    /// Requests that took a token (every request when no quota is set).
    pub accepted: u64,
    /// Requests answered `TooManyRequestsException`.
    pub throttled: u64,
    /// The quota in force at the end of the second (as far as requests saw it); `None` is none.
    pub quota: Option<u32>,
}

/// The quota, its schedule, and the per-second counts, behind one lock.
pub(crate) struct RateQuota {
    inner: Mutex<Inner>,
}

struct Inner {
    bucket: Bucket,
    quota: Option<u32>,
    /// The schedule still to apply, with the instant it counts from; the next step to apply.
    schedule: Option<(QuotaSchedule, Instant)>,
    next_step: usize,
    /// Second 0 of the per-second counts.
    origin: Instant,
    seconds: VecDeque<SecondCount>,
    accepted: u64,
    throttled: u64,
}

impl RateQuota {
    pub(crate) fn new(quota: Option<u32>, schedule: Option<QuotaSchedule>, now: Instant) -> Self {
        let rq = Self {
            inner: Mutex::new(Inner {
                bucket: Bucket::new(quota),
                quota,
                schedule: None,
                next_step: 0,
                origin: now,
                seconds: VecDeque::new(),
                accepted: 0,
                throttled: 0,
            }),
        };
        if let Some(schedule) = schedule {
            rq.set_schedule(schedule, now);
        }
        rq
    }

    /// Sets the quota now (the bucket restarts full) and drops what is left of any schedule: the
    /// operator's latest word wins.
    pub(crate) fn set(&self, quota: Option<u32>) {
        let mut inner = lock(&self.inner);
        inner.schedule = None;
        inner.set_quota(quota);
    }

    /// Replaces any schedule with `schedule`, counting its offsets from `now`; a step at offset
    /// zero takes effect at once.
    pub(crate) fn set_schedule(&self, schedule: QuotaSchedule, now: Instant) {
        let mut inner = lock(&self.inner);
        inner.schedule = Some((schedule, now));
        inner.next_step = 0;
        inner.apply_schedule(now);
    }

    /// Takes a token, or says the request is over the quota; counts it either way.
    pub(crate) fn try_acquire(&self, now: Instant) -> bool {
        let mut inner = lock(&self.inner);
        inner.apply_schedule(now);
        let ok = inner.bucket.try_acquire(now);
        inner.count(now, ok);
        ok
    }

    /// The quota in force (as of the last request or change).
    pub(crate) fn current(&self) -> Option<u32> {
        lock(&self.inner).quota
    }

    /// Total accepted and throttled requests.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let inner = lock(&self.inner);
        (inner.accepted, inner.throttled)
    }

    /// Time since second 0 of the per-second counts (the emulator's start).
    pub(crate) fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(lock(&self.inner).origin)
    }

    /// The kept one-second buckets, oldest first (seconds without a request are absent).
    pub(crate) fn seconds(&self) -> Vec<SecondCount> {
        lock(&self.inner).seconds.iter().copied().collect()
    }
}

impl Inner {
    fn set_quota(&mut self, quota: Option<u32>) {
        self.quota = quota;
        self.bucket.set_quota(quota);
    }

    /// Applies every step whose time has come (the last one wins when several have).
    fn apply_schedule(&mut self, now: Instant) {
        let Some((schedule, since)) = &self.schedule else {
            return;
        };
        let elapsed = now.saturating_duration_since(*since);
        let mut due = None;
        while let Some((offset, quota)) = schedule.steps.get(self.next_step) {
            if *offset > elapsed {
                break;
            }
            due = Some(*quota);
            self.next_step += 1;
        }
        let finished = self.next_step >= schedule.steps.len();
        if let Some(quota) = due {
            self.set_quota(quota);
        }
        if finished {
            self.schedule = None;
        }
    }

    fn count(&mut self, now: Instant, accepted: bool) {
        if accepted {
            self.accepted += 1;
        } else {
            self.throttled += 1;
        }
        let second = now.saturating_duration_since(self.origin).as_secs();
        let quota = self.quota;
        // Usually the newest bucket. A request that read the clock just before another but
        // took the lock after it can belong to an earlier second: it is counted there.
        let at = self.seconds.iter().rposition(|s| s.second <= second);
        match at {
            Some(i) if self.seconds[i].second == second => {
                if i + 1 == self.seconds.len() {
                    self.seconds[i].quota = quota;
                }
                bump(&mut self.seconds[i], accepted);
            }
            _ => {
                let mut fresh = SecondCount {
                    second,
                    accepted: 0,
                    throttled: 0,
                    quota,
                };
                bump(&mut fresh, accepted);
                self.seconds.insert(at.map_or(0, |i| i + 1), fresh);
                if self.seconds.len() > SECONDS_KEPT {
                    self.seconds.pop_front();
                }
            }
        }
    }
}

fn bump(s: &mut SecondCount, accepted: bool) {
    if accepted {
        s.accepted += 1;
    } else {
        s.throttled += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn schedule_parses_prints_and_rejects_nonsense() {
        let s: QuotaSchedule = "0s=50, 20s=20,40s=off".parse().expect("valid");
        assert_eq!(
            s.steps(),
            &[
                (Duration::ZERO, Some(50)),
                (Duration::from_secs(20), Some(20)),
                (Duration::from_secs(40), None)
            ]
        );
        assert_eq!(s.to_string(), "0s=50,20s=20,40s=off");
        assert_eq!(s.at(Duration::from_secs(19)), Some(Some(50)));
        assert_eq!(s.at(Duration::from_secs(20)), Some(Some(20)));
        assert_eq!(s.at(Duration::from_secs(99)), Some(None));
        let late: QuotaSchedule = "5s=10".parse().expect("valid");
        assert_eq!(late.at(Duration::from_secs(1)), None);
        for bad in [
            "",
            "20s",
            "x=5",
            "0s=-1",
            "0s=fifty",
            "10s=5,10s=6",
            "10s=5,5s=6",
        ] {
            assert!(
                bad.parse::<QuotaSchedule>().is_err(),
                "{bad:?} must not parse"
            );
        }
    }

    #[test]
    fn schedule_steps_change_the_quota_when_their_time_comes() {
        let t0 = Instant::now();
        let schedule = "0s=3,2s=1,4s=off".parse().expect("valid");
        let q = RateQuota::new(None, Some(schedule), t0);
        assert_eq!(q.current(), Some(3));
        // 3 tokens at the start, then none left at the same instant.
        let first: Vec<bool> = (0..4).map(|_| q.try_acquire(t0)).collect();
        assert_eq!(first, [true, true, true, false]);
        // At 2 s the quota drops to 1: the bucket restarts full at 1 token.
        let at2 = t0 + Duration::from_secs(2);
        assert!(q.try_acquire(at2));
        assert!(!q.try_acquire(at2));
        assert_eq!(q.current(), Some(1));
        // At 4 s there is no quota any more.
        let at4 = t0 + Duration::from_secs(4);
        assert!((0..100).all(|_| q.try_acquire(at4)));
        assert_eq!(q.current(), None);
    }

    #[test]
    fn setting_a_quota_cancels_the_rest_of_the_schedule() {
        let t0 = Instant::now();
        let q = RateQuota::new(Some(5), Some("10s=1".parse().expect("valid")), t0);
        assert_eq!(
            q.current(),
            Some(5),
            "before the first step the given quota holds"
        );
        q.set(Some(7));
        assert!(q.try_acquire(t0 + Duration::from_secs(11)));
        assert_eq!(q.current(), Some(7), "the 10 s step was dropped");
        // A schedule set later counts from when it was set.
        let t1 = t0 + Duration::from_secs(20);
        q.set_schedule("1s=2".parse().expect("valid"), t1);
        assert!(q.try_acquire(t1 + 500 * MS));
        assert_eq!(q.current(), Some(7));
        assert!(q.try_acquire(t1 + 1000 * MS));
        assert_eq!(q.current(), Some(2));
    }

    #[test]
    fn counts_accepted_and_throttled_per_second() {
        let t0 = Instant::now();
        let q = RateQuota::new(Some(2), None, t0);
        // Second 0: 2 accepted, 3 throttled.
        for _ in 0..5 {
            q.try_acquire(t0 + 100 * MS);
        }
        // Nothing in second 1; second 2: the bucket refilled (2 tokens), 1 throttled.
        for _ in 0..3 {
            q.try_acquire(t0 + 2500 * MS);
        }
        // A request that read the clock in second 0 but counts late lands in second 0.
        q.try_acquire(t0 + 900 * MS);
        assert_eq!(
            q.seconds(),
            [
                SecondCount {
                    second: 0,
                    accepted: 2,
                    throttled: 4,
                    quota: Some(2)
                },
                SecondCount {
                    second: 2,
                    accepted: 2,
                    throttled: 1,
                    quota: Some(2)
                },
            ]
        );
        assert_eq!(q.totals(), (4, 5));
        // Without a quota every request is accepted, and counted.
        q.set(None);
        assert!(q.try_acquire(t0 + 3000 * MS));
        let last = *q.seconds().last().expect("a bucket");
        assert_eq!((last.second, last.accepted, last.quota), (3, 1, None));
    }

    #[test]
    fn keeps_a_bounded_number_of_seconds() {
        let t0 = Instant::now();
        let q = RateQuota::new(None, None, t0);
        for s in 0..(SECONDS_KEPT as u64 + 10) {
            q.try_acquire(t0 + Duration::from_secs(s));
        }
        let seconds = q.seconds();
        assert_eq!(seconds.len(), SECONDS_KEPT);
        assert_eq!(seconds[0].second, 10);
        assert_eq!(q.totals(), (SECONDS_KEPT as u64 + 10, 0));
    }
}
