//! An invocation's time budget. Lambda ends an invocation that runs past its deadline without a
//! word: records in flight would then be in an unknown state, and the whole batch would come
//! back. So the function stops taking work `lambda.margin` before the deadline, lets calls in
//! flight run for half the margin, and keeps the other half for what comes after: a quarter of
//! the margin to record results, close the run in the ledger, hold back records a spend cap
//! stopped and push the metrics (each given up when that quarter is over: [`Budget::finish`]),
//! and the last quarter to answer which records must come back and write the EMF lines.
//!
//! The deadline is the runtime's (`Lambda-Runtime-Deadline-Ms`), bounded by `lambda.timeout`
//! when that is set. A runtime deadline that had already passed when the invocation arrived
//! cannot be AWS's: local runtime emulators send a constant (cargo-lambda 1.9's sends 600000,
//! ten minutes after the Unix epoch). It is ignored, with a warning, in favour of
//! `lambda.timeout`, or Lambda's longest timeout if that is unset.

use std::time::{Duration, SystemTime};

/// Lambda's longest function timeout: the bound when nothing better is known.
pub(crate) const MAX_LAMBDA_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How an invocation spends its time, from its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Take work for this long.
    pub(crate) work: Duration,
    /// Then let calls in flight finish for at most this long; past it they are abandoned (their
    /// records in doubt, and returned).
    pub(crate) grace: Duration,
    /// Everything after the calls (ledger writes and their retries, closing the run, holding
    /// records back, the Pushgateway push) ends by this time from the arrival: what is not
    /// done by then is given up, so the answer still comes before Lambda's deadline.
    pub(crate) finish: Duration,
    /// The runtime's deadline was not usable (already past on arrival).
    pub(crate) runtime_deadline_ignored: bool,
}

/// The budget of an invocation that arrived at `arrived` with the runtime's `deadline`.
pub(crate) fn budget(
    deadline: SystemTime,
    arrived: SystemTime,
    timeout: Option<Duration>,
    margin: Duration,
) -> Budget {
    let from_runtime = deadline
        .duration_since(arrived)
        .ok()
        .filter(|left| !left.is_zero());
    let left = match (from_runtime, timeout) {
        (Some(runtime), Some(timeout)) => runtime.min(timeout),
        (Some(runtime), None) => runtime,
        (None, Some(timeout)) => timeout,
        (None, None) => MAX_LAMBDA_TIMEOUT,
    };
    Budget {
        work: left.saturating_sub(margin),
        grace: margin / 2,
        finish: left.saturating_sub(margin / 4),
        runtime_deadline_ignored: from_runtime.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_earlier_of_the_runtimes_deadline_and_the_timeout_less_the_margin() {
        let now = SystemTime::UNIX_EPOCH + S(1_800_000_000);
        let b = budget(now + S(60), now, None, S(5));
        assert_eq!((b.work, b.grace), (S(55), Duration::from_millis(2500)));
        // Recording, closing and pushing end a quarter margin before the deadline.
        assert_eq!(b.finish, Duration::from_millis(58_750));
        assert!(!b.runtime_deadline_ignored);
        assert_eq!(budget(now + S(60), now, Some(S(20)), S(5)).work, S(15));
        assert_eq!(budget(now + S(10), now, Some(S(20)), S(5)).work, S(5));
        // Less left than the margin: no work at all, every record comes back.
        assert_eq!(budget(now + S(3), now, None, S(5)).work, Duration::ZERO);
    }

    #[test]
    fn a_deadline_already_past_on_arrival_is_a_local_emulators_and_ignored() {
        let now = SystemTime::UNIX_EPOCH + S(1_800_000_000);
        let emulator = SystemTime::UNIX_EPOCH + Duration::from_millis(600_000);
        let b = budget(emulator, now, Some(S(3)), S(1));
        assert_eq!(b.work, S(2));
        assert!(b.runtime_deadline_ignored);
        assert_eq!(
            budget(emulator, now, None, S(5)).work,
            MAX_LAMBDA_TIMEOUT - S(5)
        );
    }
}
