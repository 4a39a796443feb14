//! Why a run stops early, and the watches that decide it: a configuration error repeated
//! ([`MisconfigWatch`]), Cognito unreachable from the start (`Reach`), a ledger failure, a
//! spend cap reached. Whichever comes, the [`StopLatch`] holds it and cancels what it stops.

use super::*;

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopCause {
    /// The source ran dry: every job it yielded has an outcome.
    EndOfInput,
    /// The shutdown token was cancelled (SIGINT/SIGTERM).
    Shutdown,
    /// The configuration is wrong; the run stopped early.
    Misconfigured(MisconfigStop),
    /// The ledger failed; the run stopped early.
    LedgerFailed(LedgerError),
    /// A spend cap was reached; the run stopped taking work.
    SpendCapped(SpendCap),
}

impl StopCause {
    /// What stopped the run, as the report's `run_end` record says it: `end_of_input`,
    /// `shutdown` (a signal), `misconfigured`, `ledger_error` or `spend_cap`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::EndOfInput => "end_of_input",
            Self::Shutdown => "shutdown",
            Self::Misconfigured(_) => "misconfigured",
            Self::LedgerFailed(_) => "ledger_error",
            Self::SpendCapped(_) => "spend_cap",
        }
    }

    /// Which one, where the label leaves it open: the misconfiguration's reason, or the spend
    /// cap's setting.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Misconfigured(m) => Some(m.kind.reason().to_owned()),
            Self::SpendCapped(cap) => Some(cap.setting().to_owned()),
            _ => None,
        }
    }
}

/// The configuration error that stopped a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisconfigStop {
    /// Which problem.
    pub kind: Misconfiguration,
    /// The client id the last such error came back for.
    pub client_id: String,
    /// Cognito's code and message.
    pub detail: String,
    /// How many in a row.
    pub in_a_row: u32,
}

impl std::fmt::Display for MisconfigStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind == Misconfiguration::Unreachable {
            return write!(
                f,
                "stopped early: cannot connect to Cognito at {} ({} attempts failed over {} s \
                 or more, and no call of this run was ever answered); {}. Jobs not yet \
                 attempted were left untouched: rerun after fixing it.",
                self.detail,
                self.in_a_row,
                UNREACHABLE_STOP.as_secs(),
                self.kind.fix()
            );
        }
        write!(
            f,
            "stopped early: Cognito answered {} for client id {} ({} in a row); {}. Jobs not yet \
             attempted were left untouched: rerun after fixing it.",
            self.detail,
            self.client_id,
            self.in_a_row,
            self.kind.fix()
        )
    }
}

/// An early stop, as the latch holds it.
#[derive(Debug, Clone)]
pub(super) enum EarlyStop {
    /// A spend cap refused a reservation: take no more jobs; those holding a reservation still
    /// make their call.
    Capped(SpendCap),
    /// The configuration is wrong: start no more calls.
    Misconfigured(MisconfigStop),
    /// The ledger failed: start no more calls (nothing is sent without a claim).
    LedgerFailed(LedgerError),
}

impl EarlyStop {
    /// Which cause the run reports when more than one comes: a ledger failure (what is sent
    /// is no longer known) over a configuration error (nothing can be sent) over a cap (the
    /// run did what it was allowed to).
    fn weight(&self) -> u8 {
        match self {
            EarlyStop::Capped(_) => 0,
            EarlyStop::Misconfigured(_) => 1,
            EarlyStop::LedgerFailed(_) => 2,
        }
    }
}

/// Why the run stops, held once, and the tokens it cancels. Every early stop goes through
/// [`StopLatch::trip`]: the cause it holds is the first of the weightiest kind that came.
pub(super) struct StopLatch {
    cause: Mutex<Option<EarlyStop>>,
    /// Start no more calls: a signal (a child of the shutdown token), a configuration error, a
    /// ledger failure.
    stop: CancellationToken,
    /// Take no more jobs: a spend cap (jobs holding a reservation still call).
    capped: CancellationToken,
    /// Abandon calls in flight: the grace period after a signal is over.
    abort: CancellationToken,
}

impl StopLatch {
    pub(super) fn new(shutdown: &CancellationToken) -> Self {
        Self {
            cause: Mutex::new(None),
            stop: shutdown.child_token(),
            capped: CancellationToken::new(),
            abort: CancellationToken::new(),
        }
    }

    /// Holds `cause` unless one as weighty is held already, and cancels what it stops. `true`:
    /// it is now the run's cause (the caller logs it and counts it, once).
    pub(super) fn trip(&self, cause: EarlyStop) -> bool {
        let mut held = self.cause.locked();
        if held.as_ref().is_some_and(|h| h.weight() >= cause.weight()) {
            return false;
        }
        match cause {
            EarlyStop::Capped(_) => self.capped.cancel(),
            EarlyStop::Misconfigured(_) | EarlyStop::LedgerFailed(_) => self.stop.cancel(),
        }
        *held = Some(cause);
        true
    }

    /// Cancelled when no more calls may start (a signal included).
    pub(super) fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Resolves when the run takes no more jobs: stopping, or capped.
    pub(super) async fn taking_ends(&self) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.capped.cancelled() => {}
        }
    }

    /// Abandons the calls in flight.
    pub(super) fn abort(&self) {
        self.abort.cancel();
    }

    /// Cancelled when calls in flight are abandoned.
    pub(super) fn aborted(&self) -> &CancellationToken {
        &self.abort
    }

    /// Why the run ended: its early stop, else a signal (`shutdown`) or the end of the input.
    pub(super) fn cause(&self, shutdown: bool) -> StopCause {
        match self.cause.locked().clone() {
            Some(EarlyStop::LedgerFailed(e)) => StopCause::LedgerFailed(e),
            Some(EarlyStop::Misconfigured(m)) => StopCause::Misconfigured(m),
            Some(EarlyStop::Capped(cap)) => StopCause::SpendCapped(cap),
            None if shutdown => StopCause::Shutdown,
            None => StopCause::EndOfInput,
        }
    }
}

/// Counts consecutive configuration errors (and delivery or trigger failures) per client id and
/// kind, across all tasks. Per client id: an allowed second client that is broken trips its own
/// count, and the first client's successes do not hide it.
#[derive(Default)]
pub(super) struct MisconfigWatch {
    pub(super) in_a_row: std::collections::HashMap<(String, Misconfiguration), u32>,
}

/// A run that has never been answered stops after connection failures lasting this long.
pub(super) const UNREACHABLE_STOP: Duration = Duration::from_secs(5);
/// While connections fail after calls were answered, the warning is repeated this often.
pub(super) const UNREACHABLE_REPEAT: Duration = Duration::from_secs(30);

/// Whether Cognito can be reached: the connection failures of the run so far (see the module
/// doc, "Unreachable").
#[derive(Default)]
pub(super) struct Reach {
    /// A call of this run has been answered: the endpoint, region and network are right, and a
    /// connection failure from now on is an outage.
    pub(super) answered: bool,
    /// The connection failures since the last answer, if the last call did not connect.
    pub(super) outage: Option<Outage>,
}

/// Connection failures with no answer between.
pub(super) struct Outage {
    /// The first one.
    pub(super) since: Instant,
    /// When the last warning about it was logged.
    pub(super) said: Instant,
    /// How many.
    pub(super) failures: u32,
}

impl Shared {
    /// A ledger operation failed: this job fails (its source keeps it: a queue redelivers it,
    /// a rerun of the CSV retries it) and the run stops taking work.
    pub(super) fn ledger_failed(&self, e: LedgerError, attempts: u32) -> Outcome {
        if self.latch.trip(EarlyStop::LedgerFailed(e.clone())) {
            // The command says the error itself, once, as its last line.
            tracing::warn!(
                "the ledger {} failed: stopping (nothing is sent without a ledger claim)",
                e.state
            );
            metrics::stopped("ledger_error");
        }
        Outcome::failed(Reason::LedgerError, Some(e.to_string()), attempts)
    }

    /// A spend cap refused a reservation: the run stops taking work (once, for the first cap).
    pub(super) fn spend_capped(&self, cap: SpendCap) {
        if self.latch.trip(EarlyStop::Capped(cap)) {
            tracing::warn!(
                "spend cap reached: {}; stopping. Jobs not yet attempted are left untouched: \
                 a rerun (or the queue) takes them once the budget allows",
                cap.setting()
            );
            metrics::stopped("spend_cap");
            self.settler.hold_back(self.spend.budget_back_in(cap));
        }
    }

    /// Cognito answered a call: it can be reached, and an outage (if one was on) is over.
    pub(super) fn answered(&self) {
        let mut r = self.reach.locked();
        r.answered = true;
        if let Some(outage) = r.outage.take() {
            tracing::info!(
                "Cognito answers again, after {:.1} s and {} failed connections",
                outage.since.elapsed().as_secs_f64(),
                outage.failures
            );
        }
    }

    /// A call of `client_id` could not connect (`detail` names the endpoint, the region and the
    /// error). Never answered: logged at once, and the run stops once the failures have lasted
    /// `UNREACHABLE_STOP`. Answered before: an outage, warned about while it lasts.
    pub(super) fn unreachable(&self, client_id: &str, detail: &str) {
        let now = Instant::now();
        let mut r = self.reach.locked();
        let answered = r.answered;
        let Some(outage) = &mut r.outage else {
            r.outage = Some(Outage {
                since: now,
                said: now,
                failures: 1,
            });
            if answered {
                tracing::warn!(
                    "cannot connect to Cognito at {detail}; it answered before, so the calls \
                     keep retrying"
                );
            } else {
                tracing::error!(
                    "cannot connect to Cognito at {detail}; no call has been answered yet: the \
                     run stops unless one is within {} s",
                    UNREACHABLE_STOP.as_secs()
                );
            }
            return;
        };
        outage.failures += 1;
        let lasted = now.duration_since(outage.since);
        if answered {
            if now.duration_since(outage.said) >= UNREACHABLE_REPEAT {
                outage.said = now;
                tracing::warn!(
                    "cannot connect to Cognito at {detail}, for {:.0} s now ({} failed \
                     connections); the calls keep retrying",
                    lasted.as_secs_f64(),
                    outage.failures
                );
            }
            return;
        }
        if lasted < UNREACHABLE_STOP {
            return;
        }
        let stop = MisconfigStop {
            kind: Misconfiguration::Unreachable,
            client_id: client_id.to_owned(),
            detail: detail.to_owned(),
            in_a_row: outage.failures,
        };
        drop(r);
        self.misconfig_stop(stop);
    }

    /// Whether a failure of `kind` met by `job` counts toward the early stop. A Lambda trigger
    /// gets the request's ClientMetadata, so a trigger that fails on metadata a job carries of
    /// its own (beyond the run's `--client-metadata`) may be failing on that job's doing: whoever
    /// writes the queue could otherwise stop every consumer with ten such messages. Only jobs
    /// with nothing but the run's own metadata count toward `trigger_broken`; the others fail
    /// one by one.
    pub(super) fn counts_toward_a_storm(&self, kind: Misconfiguration, job: &Job) -> bool {
        kind != Misconfiguration::TriggerBroken || job.request.client_metadata == self.run_metadata
    }

    /// Cognito answered a call of `client_id`: its runs of errors are broken.
    pub(super) fn misconfig_cleared(&self, client_id: &str) {
        let mut w = self.misconfig.locked();
        if !w.in_a_row.is_empty() {
            w.in_a_row.retain(|(c, _), _| c != client_id);
        }
    }

    /// Counts one configuration error (or delivery or trigger failure) of `client_id`, and
    /// stops the run when its kind has come [`Misconfiguration::stop_after`] times in a row.
    pub(super) fn misconfigured(&self, kind: Misconfiguration, client_id: &str, detail: &str) {
        if kind == Misconfiguration::EmailQuota && self.default_email_account {
            tracing::warn!(
                "{detail}: Cognito's default email account sent its 50 emails for today"
            );
            self.spend_capped(SpendCap::EmailDay);
            return;
        }
        let mut w = self.misconfig.locked();
        let in_a_row = {
            let n = w.in_a_row.entry((client_id.to_owned(), kind)).or_default();
            *n += 1;
            *n
        };
        drop(w);
        if in_a_row >= kind.stop_after() {
            self.misconfig_stop(MisconfigStop {
                kind,
                client_id: client_id.to_owned(),
                detail: detail.to_owned(),
                in_a_row,
            });
        }
    }

    /// A configuration error stops the run (noted and counted if it is the run's cause; the
    /// command says the whole of it once, as its last line).
    fn misconfig_stop(&self, stop: MisconfigStop) {
        let reason = stop.kind.reason();
        if self.latch.trip(EarlyStop::Misconfigured(stop)) {
            tracing::warn!(
                reason,
                "stopping early: the configuration is wrong ({reason}); calls in flight finish, \
                 no new ones start"
            );
            metrics::stopped(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_error() -> LedgerError {
        LedgerError {
            state: "test.db".into(),
            detail: "disk full".into(),
        }
    }

    fn misconfig(client_id: &str) -> MisconfigStop {
        MisconfigStop {
            kind: Misconfiguration::UnknownClient,
            client_id: client_id.into(),
            detail: "ResourceNotFoundException".into(),
            in_a_row: 3,
        }
    }

    #[test]
    fn a_cap_stops_taking_jobs_but_not_the_calls_and_reports_itself() {
        let shutdown = CancellationToken::new();
        let latch = StopLatch::new(&shutdown);
        assert!(latch.trip(EarlyStop::Capped(SpendCap::Day)));
        assert!(!latch.stopping().is_cancelled(), "reserved jobs still call");
        assert!(
            !latch.trip(EarlyStop::Capped(SpendCap::Run)),
            "the first cap is kept"
        );
        assert_eq!(latch.cause(false), StopCause::SpendCapped(SpendCap::Day));
    }

    #[test]
    fn a_ledger_failure_outweighs_whatever_came_before_or_after_it() {
        let shutdown = CancellationToken::new();
        let latch = StopLatch::new(&shutdown);
        assert!(latch.trip(EarlyStop::Capped(SpendCap::Run)));
        assert!(latch.trip(EarlyStop::Misconfigured(misconfig("a"))));
        assert!(latch.stopping().is_cancelled());
        assert!(!latch.trip(EarlyStop::Misconfigured(misconfig("b"))));
        assert_eq!(latch.cause(true), StopCause::Misconfigured(misconfig("a")));
        assert!(latch.trip(EarlyStop::LedgerFailed(ledger_error())));
        assert!(!latch.trip(EarlyStop::Misconfigured(misconfig("c"))));
        assert_eq!(latch.cause(true), StopCause::LedgerFailed(ledger_error()));
    }

    #[test]
    fn without_an_early_stop_the_run_ended_by_signal_or_input() {
        let shutdown = CancellationToken::new();
        let latch = StopLatch::new(&shutdown);
        assert_eq!(latch.cause(false), StopCause::EndOfInput);
        shutdown.cancel();
        assert!(latch.stopping().is_cancelled(), "a signal stops the calls");
        assert_eq!(latch.cause(true), StopCause::Shutdown);
    }
}
