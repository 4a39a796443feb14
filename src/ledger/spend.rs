//! The spend caps per UTC day: the day a reservation counts on, its token, the rule that
//! refuses one, and the run handle's side (reserve, settle, today's counters). The counters
//! themselves live in the store, so every run and replica sharing it counts against one budget.

use std::time::Duration;

use super::Ledger;
use super::types::{
    DayCaps, DayReservation, DaySpend, LedgerError, Medium, Millis, RunId, SpendCap, Spent, rfc3339,
};

impl DayReservation {
    /// A new reservation on `day`, with a fresh token.
    pub fn new(day: impl Into<String>) -> Self {
        Self {
            day: day.into(),
            token: RunId::new().0,
        }
    }
}

/// How long from `ms` until the next UTC day begins: when the per-day caps' budgets come back.
pub(crate) fn until_next_day(ms: Millis) -> Duration {
    const DAY: Millis = 86_400_000;
    Duration::from_millis((DAY - ms.rem_euclid(DAY)) as u64)
}

/// The UTC day of `ms`, `YYYY-MM-DD`: the key of the day's spend counters.
pub(crate) fn utc_day(ms: Millis) -> String {
    rfc3339(ms)[..10].to_owned()
}

/// The reservation rule both backends apply inside their atomic step: the first cap that a
/// new reservation would break, given the day's counters.
///
/// When the medium of the code is known before the call (`medium`: from the pool profile's
/// auto-verified attributes and the user's contacts), the reservation counts toward that
/// medium at once, so its cap holds exactly, whatever is in flight; the other medium's cap does
/// not concern it. When it is not known (no pool access), per-medium caps compare against the
/// codes counted so far, and calls in flight when a medium's count reaches its cap may still go
/// out by that medium: the overshoot is at most the calls in flight across the fleet then.
pub(crate) fn refused_by(
    spend: &DaySpend,
    caps: DayCaps,
    medium: Option<Medium>,
) -> Option<SpendCap> {
    if caps.sends.is_some_and(|c| spend.sends >= c) {
        return Some(SpendCap::Day);
    }
    match medium {
        Some(Medium::Sms) => {
            return caps
                .sms
                .is_some_and(|c| spend.sms >= c)
                .then_some(SpendCap::SmsDay);
        }
        Some(Medium::Email) => {
            return caps
                .email
                .is_some_and(|c| spend.email >= c)
                .then_some(SpendCap::EmailDay);
        }
        None => {}
    }
    if caps.sms.is_some_and(|c| spend.sms >= c) {
        return Some(SpendCap::SmsDay);
    }
    if caps.email.is_some_and(|c| spend.email >= c) {
        return Some(SpendCap::EmailDay);
    }
    None
}

/// The cap that refuses every reservation a run could make now, given the day's counters: its
/// day's budget is spent. A run whose reservations carry no medium is refused as soon as any
/// cap is reached ([`refused_by`] with none); one that knows each code's medium ahead
/// (`mediums_known`) only once both media are refused.
pub(crate) fn spent_for_every_job(
    spend: &DaySpend,
    caps: DayCaps,
    mediums_known: bool,
) -> Option<SpendCap> {
    let cap = refused_by(spend, caps, None)?;
    if mediums_known {
        refused_by(spend, caps, Some(Medium::Sms))?;
        refused_by(spend, caps, Some(Medium::Email))?;
    }
    Some(cap)
}

/// The run handle's side of the spend caps.
impl Ledger {
    /// Reserves one send against the per-day caps, on today's UTC day by this run's clock.
    /// `Ok(Ok(r))`: granted, settle it (once, however it ends) with [`Ledger::settle_send`];
    /// `Ok(Err(cap))`: refused.
    pub async fn reserve_send(
        &self,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> Result<Result<DayReservation, SpendCap>, LedgerError> {
        let r = DayReservation::new(utc_day(self.clock.now()));
        Ok(
            match self
                .bounded(self.store.reserve_send(&r, caps, medium))
                .await?
            {
                None => Ok(r),
                Some(cap) => Err(cap),
            },
        )
    }

    /// How long until the next UTC day by this run's clock: when the per-day caps' budgets
    /// come back.
    pub fn until_next_day(&self) -> Duration {
        until_next_day(self.clock.now())
    }

    /// Today's spend counters (UTC, by this run's clock).
    pub async fn today_spend(&self) -> Result<DaySpend, LedgerError> {
        self.store.day_spend(&utc_day(self.clock.now())).await
    }

    /// Settles a reservation [`Ledger::reserve_send`] granted.
    pub async fn settle_send(&self, r: &DayReservation, spent: Spent) -> Result<(), LedgerError> {
        self.bounded(self.store.settle_send(r, spent)).await
    }
}
