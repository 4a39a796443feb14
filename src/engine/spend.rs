//! Spend caps on the engine's side: a job's reservation of one send against `--max-sends`
//! (this run, in memory) and the per-day caps (in the ledger), settled once on every path; and
//! how long a reached cap keeps jobs away ([`DAY_TURN_SLACK`]).

use super::*;

/// The spend caps a run enforces, from `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SpendLimits {
    /// `--max-sends`: codes this run may send.
    pub(super) run: Option<u64>,
    /// The per-day caps, kept in the ledger.
    pub(super) day: DayCaps,
}

/// How long after the UTC day turns a job held back by a per-day cap comes back: the ledger's
/// day is each run's clock's, and a peer whose clock runs behind would still count yesterday.
pub(crate) const DAY_TURN_SLACK: Duration = Duration::from_secs(60);

/// A send reserved against the spend caps.
pub(super) struct Reservation {
    /// Counted against `--max-sends`.
    pub(super) run: bool,
    /// Reserved in the ledger, on its UTC day.
    pub(super) day: Option<DayReservation>,
    /// The medium reserved with it, when known before the call.
    pub(super) medium: Option<Medium>,
}

/// Reserves one send against every spend cap set. `Err(None)`: a cap refused it (the run is
/// stopping, see [`Shared::spend_capped`]); `Err(Some(e))`: the ledger failed. Nothing stays
/// reserved on either.
pub(super) async fn reserve(
    shared: &Shared,
    medium: Option<Medium>,
) -> Result<Reservation, Option<LedgerError>> {
    use std::sync::atomic::Ordering::SeqCst;
    let run = match shared.spend.run {
        None => false,
        Some(max) => loop {
            // Registered before the check, so a settle in between is not missed.
            let settled = shared.run_settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let took = shared
                .run_reserved
                .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1));
            if took.is_ok() {
                break true;
            }
            // Every reservation is held. Once `max` codes are sent (or may be), the cap is
            // reached; until then, a call in flight may yet send nothing and give its
            // reservation back, so wait for it rather than stop short of the cap.
            if shared.run_kept.load(SeqCst) >= max {
                shared.spend_capped(SpendCap::Run);
                return Err(None);
            }
            tokio::select! {
                biased;
                _ = shared.stop.cancelled() => return Err(None),
                _ = shared.capped.cancelled() => return Err(None),
                _ = settled => {}
            }
        },
    };
    let give_back_run = || {
        if run {
            shared.run_reserved.fetch_sub(1, SeqCst);
        }
    };
    let day = match &shared.ledger {
        Some(ledger) if !shared.spend.day.is_empty() => {
            match ledger.reserve_send(shared.spend.day, medium).await {
                Ok(Ok(r)) => Some(r),
                Ok(Err(cap)) => {
                    give_back_run();
                    shared.spend_capped(cap);
                    return Err(None);
                }
                Err(e) => {
                    give_back_run();
                    return Err(Some(e));
                }
            }
        }
        _ => None,
    };
    Ok(Reservation { run, day, medium })
}

/// Settles a reservation, once, whatever the job's end (see [`super::pipeline::spent_of`]; a panic, see
/// [`super::pipeline::panicked`]): the `--max-sends` count, and the day's counters, where the count of the code's
/// medium grows from Cognito's answer (or, reserved ahead, moves if Cognito used the other
/// medium). Every day reservation is settled, kept ones too, so the ledger can let go of its
/// token.
pub(super) async fn settle_spend(shared: &Shared, r: Reservation, spent: Spent) {
    if r.run {
        use std::sync::atomic::Ordering::SeqCst;
        if spent == Spent::Nothing {
            shared.run_reserved.fetch_sub(1, SeqCst);
        } else {
            shared.run_kept.fetch_add(1, SeqCst);
        }
        shared.run_settled.notify_waiters();
    }
    // A medium reserved ahead was counted with the reservation.
    let spent = match (r.medium, spent) {
        (Some(reserved), Spent::Nothing) => Spent::NothingOf(reserved),
        (Some(reserved), Spent::Code(sent)) if sent == reserved => Spent::Kept,
        (Some(reserved), Spent::Code(sent)) => Spent::Moved { reserved, sent },
        (_, spent) => spent,
    };
    if let (Some(day), Some(ledger)) = (r.day, &shared.ledger)
        && let Err(e) = ledger.settle_send(&day, spent).await
    {
        // A reservation not given back only lowers the day's budget; a medium not counted
        // could let that medium pass its cap: either way, stop rather than guess.
        let _ = shared.ledger_failed(e, 0);
    }
}

impl Shared {
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
