//! Spend caps on the engine's side: the [`SpendGuard`] every job reserves one send from before
//! its call — against `--max-sends` (this run, in memory) and the per-day caps (in the ledger,
//! shared by every run on it) — and settles once on every path; and how long a reached cap keeps
//! jobs away ([`DAY_TURN_SLACK`]).
//!
//! The guard decides and counts; what a refusal does to the run (stop taking work, tell the
//! source to hold its jobs back) is the stop latch's business ([`super::stop`]).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use tokio::sync::Notify;

use super::stop::StopLatch;
use crate::ledger::{DayCaps, DayReservation, Ledger, LedgerError, Medium, SpendCap, Spent};

/// The spend caps a run enforces, from `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendLimits {
    /// `--max-sends`: codes this run may send.
    pub run: Option<u64>,
    /// The per-day caps, kept in the ledger (they need one).
    pub day: DayCaps,
}

/// How long after the UTC day turns a job held back by a per-day cap comes back: the ledger's
/// day is each run's clock's, and a peer whose clock runs behind would still count yesterday.
pub(crate) const DAY_TURN_SLACK: Duration = Duration::from_secs(60);

/// A send reserved against the spend caps.
pub(super) struct Reservation {
    /// Counted against `--max-sends`.
    run: bool,
    /// Reserved in the ledger, on its UTC day.
    day: Option<DayReservation>,
    /// The medium reserved with it, when known before the call.
    medium: Option<Medium>,
}

/// Why a reservation was refused. Nothing stays reserved on any of them.
pub(super) enum Refused {
    /// A cap is reached.
    Cap(SpendCap),
    /// The run is stopping (or already capped) while the job waited for a `--max-sends` slot.
    Stopping,
    /// The ledger failed.
    Ledger(LedgerError),
}

/// The run's spend caps and what is reserved against them: one per engine, shared by its jobs.
pub(super) struct SpendGuard {
    limits: SpendLimits,
    /// Where the per-day counters live (`None`: `--state none`, no per-day caps).
    ledger: Option<Ledger>,
    /// Sends reserved against `--max-sends` and not given back.
    run_reserved: AtomicU64,
    /// Of those, the ones settled as sent or possibly sent.
    run_kept: AtomicU64,
    /// Woken when a `--max-sends` reservation is settled.
    run_settled: Notify,
}

impl SpendGuard {
    pub(super) fn new(limits: SpendLimits, ledger: Option<Ledger>) -> Self {
        Self {
            limits,
            ledger,
            run_reserved: AtomicU64::new(0),
            run_kept: AtomicU64::new(0),
            run_settled: Notify::new(),
        }
    }

    /// Reserves one send (of `medium`, when known) against every spend cap set. A job waits
    /// here while every `--max-sends` slot is held by a call that may yet give it back, until
    /// one is given back or `latch` says the run stops taking work.
    pub(super) async fn reserve(
        &self,
        medium: Option<Medium>,
        latch: &StopLatch,
    ) -> Result<Reservation, Refused> {
        let run = match self.limits.run {
            None => false,
            Some(max) => loop {
                // Registered before the check, so a settle in between is not missed.
                let settled = self.run_settled.notified();
                tokio::pin!(settled);
                settled.as_mut().enable();
                let took = self
                    .run_reserved
                    .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1));
                if took.is_ok() {
                    break true;
                }
                // Every reservation is held. Once `max` codes are sent (or may be), the cap is
                // reached; until then, a call in flight may yet send nothing and give its
                // reservation back, so wait for it rather than stop short of the cap.
                if self.run_kept.load(SeqCst) >= max {
                    return Err(Refused::Cap(SpendCap::Run));
                }
                tokio::select! {
                    biased;
                    _ = latch.taking_ends() => return Err(Refused::Stopping),
                    _ = settled => {}
                }
            },
        };
        let give_back_run = || {
            if run {
                self.run_reserved.fetch_sub(1, SeqCst);
            }
        };
        let day = match &self.ledger {
            Some(ledger) if !self.limits.day.is_empty() => {
                match ledger.reserve_send(self.limits.day, medium).await {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(cap)) => {
                        give_back_run();
                        return Err(Refused::Cap(cap));
                    }
                    Err(e) => {
                        give_back_run();
                        return Err(Refused::Ledger(e));
                    }
                }
            }
            _ => None,
        };
        Ok(Reservation { run, day, medium })
    }

    /// Settles a reservation, once, whatever the job's end (see [`super::pipeline::spent_of`];
    /// a panic, see [`super::pipeline::panicked`]): the `--max-sends` count, and the day's
    /// counters, where the count of the code's medium grows from Cognito's answer (or, reserved
    /// ahead, moves if Cognito used the other medium). Every day reservation is settled, kept
    /// ones too, so the ledger can let go of its token. An error: the ledger did not take it.
    pub(super) async fn settle(&self, r: Reservation, spent: Spent) -> Result<(), LedgerError> {
        if r.run {
            if spent == Spent::Nothing {
                self.run_reserved.fetch_sub(1, SeqCst);
            } else {
                self.run_kept.fetch_add(1, SeqCst);
            }
            self.run_settled.notify_waiters();
        }
        // A medium reserved ahead was counted with the reservation.
        let spent = match (r.medium, spent) {
            (Some(reserved), Spent::Nothing) => Spent::NothingOf(reserved),
            (Some(reserved), Spent::Code(sent)) if sent == reserved => Spent::Kept,
            (Some(reserved), Spent::Code(sent)) => Spent::Moved { reserved, sent },
            (_, spent) => spent,
        };
        match (r.day, &self.ledger) {
            (Some(day), Some(ledger)) => ledger.settle_send(&day, spent).await,
            _ => Ok(()),
        }
    }

    /// How long until `cap` lets a send through again: at once for `--max-sends` (the next run
    /// has a budget of its own); for a per-day cap, when the UTC day turns by the ledger's
    /// clock, and [`DAY_TURN_SLACK`] past it for peers whose clocks run a little behind.
    pub(super) fn budget_back_in(&self, cap: SpendCap) -> Duration {
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
}
