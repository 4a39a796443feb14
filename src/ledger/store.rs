//! The [`Store`] trait: what a ledger backend must do, each method atomic on its own. The
//! run handle ([`super::Ledger`]) and the `ledger` commands speak only to it; [`super::sqlite`]
//! and [`super::dynamo`] implement it.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::job::UserKey;

use super::fold::Folded;
use super::types::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, LedgerError, Listing, Medium, Millis, Page,
    Rules, RunId, SpendCap, Spent, Stale, Stats,
};

/// A ledger backend. Every method is atomic on its own.
pub trait Store: Send + Sync + 'static {
    /// `--state`, for messages.
    fn describe(&self) -> String;
    /// Records that `run` started (and refreshes its heartbeat), with its claim lease: other
    /// runs judge its claims by that lease, not by theirs.
    fn begin_run<'a>(
        &'a self,
        run: &'a RunId,
        command: &'a str,
        lease: Duration,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Refreshes `run`'s heartbeat time and adds one to its heartbeat counter.
    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Records that `run` ended cleanly: its remaining claims are in doubt from now on.
    fn end_run<'a>(&'a self, run: &'a RunId, now: Millis)
    -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Claims (client id, username) for `run`. A claim held by `take_over` (a run the caller
    /// judged dead, with the counter it saw) is taken over if that counter has not moved since.
    /// A claim of another job of `run` itself is [`Claim::Held`].
    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>>;
    /// What a claim would find, claims of runs aside: [`Claim::Cooldown`] or
    /// [`Claim::Capped`], or `None` when it would be granted (see [`plan`](super::plan)); writes nothing
    /// (`--dry-run`).
    fn peek<'a>(
        &'a self,
        key: &'a UserKey,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>>;
    /// Ends `run`'s claim on (client id, username), durably. A send ([`Finish::Sent`]) adds one
    /// to the user's count of codes, and to its count for `wave` when given, in the same write.
    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        how: Finish,
        wave: Option<&'a str>,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;
    /// Totals for `ledger stats`.
    fn stats(&self, rules: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>>;
    /// One page of user rows for `ledger export`, after `cursor` (from the previous page);
    /// returns the rows and the cursor of the next page (`None` at the end).
    fn export_page(
        &self,
        cursor: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, LedgerError>>;
    /// Folds the ledger's keys, once ([`fold`](super::fold)): every user row whose username differs from
    /// [`fold_username`](crate::job::fold_username) of it is merged ([`fold::merge`](super::fold::merge)) into the
    /// row of the folded key (created if missing) and removed, and a marker records that the
    /// keys are folded. Later calls only read the marker and return zeros. Safe to run from
    /// several processes or replicas at once: nothing is merged twice. Only for a ledger of a
    /// case-insensitive pool ([`open`](super::open) calls it then); the default refuses.
    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        let e = unsupported(self.describe(), "folding of usernames");
        Box::pin(async move { Err(e) })
    }
    // Personal data has an end: erasure requests and a retention policy.
    /// Erases the rows of these users (their sends, cooldown, claim, in-doubt mark and per-wave
    /// counts): `ledger forget`. Returns how many user rows were there.
    fn forget<'a>(&'a self, keys: &'a [UserKey]) -> BoxFuture<'a, Result<u64, LedgerError>> {
        let _ = keys;
        let e = unsupported(self.describe(), "erasure");
        Box::pin(async move { Err(e) })
    }
    /// Deletes every user row with no claim and nothing written since `before` (no send, no
    /// outcome, no claim, no in-doubt mark): `ledger prune`, and `ledger.retention` for SQLite.
    /// Returns how many rows went.
    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, LedgerError>> {
        let _ = before;
        let e = unsupported(self.describe(), "pruning");
        Box::pin(async move { Err(e) })
    }
    // Spend caps (see [`DayCaps`]). Defaults refuse, so a store without them cannot be used
    // with a per-day cap by mistake.
    /// Makes reservation `r` on its day unless a cap is reached, atomically: `None` if granted
    /// (the day's `sends` grew by one, and `medium`'s count too when the medium is known
    /// ahead), else the cap that refused it (nothing written). See [`refused_by`](super::refused_by). Asked twice
    /// for the same `r` (a write whose answer was lost, sent again), it reserves once.
    fn reserve_send<'a>(
        &'a self,
        r: &'a DayReservation,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> BoxFuture<'a, Result<Option<SpendCap>, LedgerError>> {
        let _ = (r, caps, medium);
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }
    /// Settles reservation `r`: gives it back, counts its code's medium, or keeps it as it is.
    /// Asked twice for the same `r`, it settles once.
    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let _ = (r, spent);
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }
    /// The spend counters of `day` (zeros if none).
    fn day_spend<'a>(&'a self, day: &'a str) -> BoxFuture<'a, Result<DaySpend, LedgerError>> {
        let _ = day;
        let e = unsupported(self.describe(), "spend counters");
        Box::pin(async move { Err(e) })
    }

    // --- the fleet census (`--fleet-rate`, see [`fleet`]) ---

    /// Notes that `run` is running, forgets `dead` (runs the caller saw standing still for a
    /// lease), adds `throttles` (counted by `run` since its last census) to the fleet's total,
    /// and returns every run the store lists as running, each with a counter that moves while
    /// the run lives, and that total. Cheap: called every half second.
    fn census<'a>(
        &'a self,
        run: &'a RunId,
        lease: Duration,
        dead: &'a [String],
        throttles: u64,
    ) -> BoxFuture<'a, Result<Listing, LedgerError>> {
        let _ = (run, lease, dead, throttles);
        let e = unsupported(self.describe(), "fleet census");
        Box::pin(async move { Err(e) })
    }
}

/// The error of a [`Store`] method a backend does not implement (test wrappers).
fn unsupported(state: String, what: &str) -> LedgerError {
    LedgerError {
        state,
        detail: format!("this ledger keeps no {what}"),
    }
}

/// The host name (for `ledger stats`), best effort and without a system call crate.
pub(crate) fn host_label() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}
