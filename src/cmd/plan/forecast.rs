//! What a plan finds: jobs by expected outcome, codes by medium, the spend caps and when they
//! stop the run, the time at the rate, the SMS cost. Serialized as `plan --json`.

use serde::Serialize;

use super::*;

/// Jobs by expected outcome.
#[derive(Debug, Default, Serialize)]
pub(super) struct Jobs {
    /// A code would go out: the run's `sent` (without the pool, also its `already_confirmed`
    /// and `not_found`, which only Cognito's answer tells).
    pub(super) would_send: u64,
    /// The user's status is not UNCONFIRMED.
    pub(super) already_confirmed: u64,
    /// The pool has no such user.
    pub(super) not_found: u64,
    /// The ledger shows a code within `--cooldown`.
    pub(super) cooldown: u64,
    /// The ledger shows `--max-sends-per-user` codes.
    pub(super) capped: u64,
    /// The ledger recorded, within `--recheck-after`, that the user is confirmed.
    pub(super) known_confirmed: u64,
    /// The ledger recorded, within `--recheck-after`, that there is no such user.
    pub(super) known_missing: u64,
    /// An earlier row named the same person by an alias (or the row is the alias): the run's
    /// `cooldown`.
    pub(super) aliases_merged: u64,
    /// An earlier row named the same person in another case: the run's `cooldown`.
    pub(super) case_variants_merged: u64,
    /// An earlier row named the same person the same way: the run's `cooldown`.
    pub(super) duplicates_merged: u64,
    /// Unreadable rows, no client id, a client id not allowed.
    pub(super) invalid: u64,
    /// `AdminGetUser` failed for the row (after its retries): its fate is unknown.
    pub(super) pool_read_failed: u64,
}

impl Jobs {
    pub(super) fn total(&self) -> u64 {
        self.would_send
            + self.already_confirmed
            + self.not_found
            + self.cooldown
            + self.capped
            + self.known_confirmed
            + self.known_missing
            + self.aliases_merged
            + self.case_variants_merged
            + self.duplicates_merged
            + self.invalid
            + self.pool_read_failed
    }
}

/// Codes by the medium Cognito would use ([`crate::cognito::profile::PoolProfile::medium_for`]).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(super) struct Codes {
    pub(super) sms: u64,
    pub(super) email: u64,
    /// The medium cannot be told: no pool, or the user has no auto-verified attribute.
    pub(super) unknown: u64,
}

impl Codes {
    pub(super) fn total(&self) -> u64 {
        self.sms + self.email + self.unknown
    }
}

/// One spend cap the run would apply.
#[derive(Debug, Serialize)]
pub(super) struct Limit {
    /// The setting, as a person looks for it.
    pub(super) setting: String,
    #[serde(skip)]
    pub(super) cap: SpendCap,
    /// Its value.
    pub(super) limit: u64,
    /// What the ledger counts as spent today (UTC) against it; `None` for `--max-sends`.
    pub(super) spent_today: Option<u64>,
    /// After how many of this run's codes it is reached, if it is.
    pub(super) reached_after_codes: Option<u64>,
}

impl Limit {
    /// Whether it is reached after `codes` (of which `sms` and `email` by those media).
    pub(super) fn reached(&self, codes: Codes) -> bool {
        let spent = self.spent_today.unwrap_or(0);
        let ours = match self.cap {
            SpendCap::Run | SpendCap::Day => codes.total(),
            SpendCap::SmsDay => codes.sms,
            SpendCap::EmailDay => codes.email,
        };
        spent.saturating_add(ours) >= self.limit
    }
}

/// Where a spend cap stops the run.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Stop {
    /// The cap that refuses the next job.
    pub(super) setting: String,
    /// Codes sent before it.
    pub(super) after_codes: u64,
    /// Of them, by SMS.
    pub(super) after_sms: u64,
    /// `ResendConfirmationCode` calls made before it.
    pub(super) after_calls: u64,
    /// Input rows done before it.
    pub(super) after_rows: u64,
    /// When, from the start, at the rate.
    pub(super) after_seconds: f64,
    #[serde(skip)]
    pub(super) after_lookups: u64,
}

/// The rate the forecast's times are at.
#[derive(Debug, Serialize)]
pub(super) struct Rate {
    /// Calls per second.
    pub(super) per_second: f64,
    /// `--rate`, `--fleet-rate` or `quota` (`--rate 0`: the lowest default quota of Cognito's
    /// user-operation categories, [`RESEND_DEFAULT_QUOTA_RPS`]).
    pub(super) from: &'static str,
}

/// What `--sms-price` makes of the SMS codes.
#[derive(Debug, Serialize)]
pub(super) struct SmsCost {
    /// USD per message.
    pub(super) price_usd: f64,
    /// Every SMS code the input would get.
    pub(super) total_usd: f64,
    /// Those sent before a spend cap stops the run (the total when none does).
    pub(super) until_stop_usd: f64,
}

/// The forecast, as printed.
#[derive(Debug, Serialize)]
pub(super) struct Forecast {
    /// The input (file, stdin or the pool).
    pub(super) input: String,
    /// Rows (or discovered users) read.
    pub(super) rows: u64,
    /// The pool read, if any.
    pub(super) pool: Option<String>,
    /// `AdminGetUser` calls this plan made.
    pub(super) plan_pool_reads: u64,
    /// The ledger (`--state`).
    pub(super) ledger: String,
    /// Jobs by expected outcome.
    pub(super) jobs: Jobs,
    /// Codes by medium (all `unknown` without the pool).
    pub(super) codes: Codes,
    /// `ResendConfirmationCode` calls the run would make (codes, and the calls Cognito answers
    /// with already confirmed or not found).
    pub(super) calls: u64,
    /// `AdminGetUser` calls the run would make (alias resolution, `--precheck`, `sub` rows), at
    /// `--precheck-rate`.
    pub(super) run_pool_reads: u64,
    /// The rate of the calls.
    pub(super) rate: Rate,
    /// The run's wall time at the rate (to the stop, if a cap stops it), in seconds.
    pub(super) wall_seconds: f64,
    /// Spend caps the run would apply.
    pub(super) limits: Vec<Limit>,
    /// Where a cap stops the run, if one does.
    pub(super) stop: Option<Stop>,
    /// With `--sms-price`.
    pub(super) sms_cost: Option<SmsCost>,
    /// What else the operator should know.
    pub(super) notes: Vec<String>,
}

/// How a pool read of a row ended.
pub(super) enum Read {
    Answer(Looked),
    Failed,
    Stopped,
}

/// The plan's own pool reads: `AdminGetUser` at `--precheck-rate` through the one retry layer,
/// answers cached as the engine caches them.
pub(super) struct Reads {
    pub(super) limiter: RateLimiter,
    pub(super) retry: RetryPolicy,
    pub(super) answers: Answers,
    pub(super) made: u64,
}

/// The ledger, read-only.
pub(super) struct LedgerView {
    /// `None`: `--state none`, or a SQLite file that does not exist yet (nobody in it).
    pub(super) store: Option<Arc<dyn Store>>,
    /// Whether the run has a ledger at all (cooldown, merges, day caps).
    pub(super) present: bool,
    pub(super) describe: String,
    pub(super) rules: Rules,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_cap_counts_what_the_ledger_spent_today() {
        let l = Limit {
            setting: String::new(),
            cap: SpendCap::EmailDay,
            limit: 50,
            spent_today: Some(48),
            reached_after_codes: None,
        };
        let mut codes = Codes {
            email: 1,
            sms: 5,
            unknown: 0,
        };
        assert!(!l.reached(codes));
        codes.email = 2;
        assert!(l.reached(codes));
    }
}
