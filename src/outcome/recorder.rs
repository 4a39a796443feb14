//! The [`Recorder`]: the one place an outcome is counted, reported and logged.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::report_writer::{CreateError, IfExists, ReportWriter};
use super::run_record::{RunEnd, RunRecord};
use super::{Outcome, OutcomeKind, Reason};
use crate::job::Origin;
use crate::sync::Locked;
use crate::telemetry::UserRef;
use crate::telemetry::metrics::{self, AttemptResult};

/// Running counts, read by the progress display and the final summary.
#[derive(Debug, Default)]
pub struct Tally {
    outcomes: [AtomicU64; OutcomeKind::ALL.len()],
    attempts: [AtomicU64; 4],
    untouched: AtomicU64,
    in_doubt: AtomicU64,
    alias_like: AtomicU64,
}

impl Tally {
    /// Counts `n` jobs of `kind`, as the recorder does, for tests of what is said of a tally.
    #[cfg(test)]
    pub(crate) fn add(&self, kind: OutcomeKind, n: u64) {
        self.outcomes[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Jobs that reached an outcome.
    pub fn done(&self) -> u64 {
        self.outcomes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Jobs that ended so.
    pub fn count(&self, kind: OutcomeKind) -> u64 {
        self.outcomes[kind.index()].load(Ordering::Relaxed)
    }

    /// Attempts that ended so.
    pub fn attempts(&self, result: AttemptResult) -> u64 {
        self.attempts[result as usize].load(Ordering::Relaxed)
    }

    /// All attempts.
    pub fn attempts_total(&self) -> u64 {
        self.attempts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Jobs read but never attempted because the run stopped first.
    pub fn untouched(&self) -> u64 {
        self.untouched.load(Ordering::Relaxed)
    }

    /// Jobs whose user a dead run had claimed (see [`crate::ledger`]).
    pub fn in_doubt(&self) -> u64 {
        self.in_doubt.load(Ordering::Relaxed)
    }

    /// Rows that look like an email, a phone number or a `sub`, keyed as written because the
    /// run could not read the pool to resolve them.
    pub fn alias_like(&self) -> u64 {
        self.alias_like.load(Ordering::Relaxed)
    }

    /// `sent=3 already_confirmed=1 ...`, the non-zero ones (all of them when `all`).
    pub fn outcome_line(&self, all: bool) -> String {
        let mut parts = Vec::new();
        for kind in OutcomeKind::ALL {
            let n = self.count(kind);
            if all || n > 0 {
                parts.push(format!("{}={n}", kind.as_str()));
            }
        }
        parts.join(" ")
    }
}

/// Records outcomes: metrics, tally, report line, log line.
pub struct Recorder {
    source: &'static str,
    report: Option<Mutex<ReportWriter>>,
    report_failed: std::sync::atomic::AtomicBool,
    tally: std::sync::Arc<Tally>,
    log_usernames: bool,
    /// The run whose `run` record opened the report ([`Recorder::begin_run`]): its `run_end`
    /// is owed when the run finishes.
    run_id: Mutex<Option<String>>,
}

impl Recorder {
    /// A recorder for jobs of `source` (the metric label), writing `report` if given (an
    /// existing file dealt with as its [`IfExists`] says).
    pub fn new(
        source: &'static str,
        report: Option<(&Path, IfExists)>,
        log_usernames: bool,
    ) -> Result<Self, CreateError> {
        let report = match report {
            Some((path, if_exists)) => Some(Mutex::new(ReportWriter::create(path, if_exists)?)),
            None => None,
        };
        metrics::register_outcomes(source);
        Ok(Self {
            source,
            report,
            report_failed: Default::default(),
            tally: Default::default(),
            log_usernames,
            run_id: Mutex::new(None),
        })
    }

    /// Names every report line's wave (`--wave`); not a metric label.
    pub fn with_wave(mut self, wave: Option<String>) -> Self {
        if let Some(report) = self.report.as_mut() {
            report.locked_mut().set_wave(wave);
        }
        self
    }

    /// Whether a report is written (`--report`): else a run record would go nowhere.
    pub(crate) fn writes_report(&self) -> bool {
        self.report.is_some()
    }

    /// Writes the report's first record, about the run (with no report, nothing): called once
    /// the run is certain to start, before its first job. [`Recorder::finish`] closes it.
    pub(crate) fn begin_run(&self, record: &RunRecord) {
        let Some(report) = &self.report else { return };
        if let Err(e) = report.locked().write_record(&record.tagged()) {
            self.report_failed.store(true, Ordering::Relaxed);
            tracing::error!("writing the report's run record failed: {e}");
        }
        *self.run_id.locked() = Some(record.run_id.clone());
    }

    /// The running counts.
    pub fn tally(&self) -> std::sync::Arc<Tally> {
        self.tally.clone()
    }

    /// How a username appears in logs.
    pub fn user<'a>(&self, username: &'a str) -> UserRef<'a> {
        UserRef::new(username, self.log_usernames)
    }

    /// Counts one call to Cognito for `action`.
    pub fn attempt(&self, action: crate::job::Action, result: AttemptResult, seconds: f64) {
        self.tally.attempts[result as usize].fetch_add(1, Ordering::Relaxed);
        metrics::attempt(action.as_str(), result, seconds);
    }

    /// Notes a job that was read but never attempted (the run stopped first).
    pub fn untouched(&self) {
        self.tally.untouched.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a row that looks like an alias, keyed as written (see [`Tally::alias_like`]).
    pub fn alias_like(&self) {
        self.tally.alias_like.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a job ended, with no known user key. Called exactly once per job (this or
    /// [`Recorder::record_for`]).
    pub fn record(
        &self,
        username: Option<&str>,
        client_id: Option<&str>,
        origin: &Origin,
        outcome: &Outcome,
    ) {
        self.record_for(username, client_id, None, origin, outcome);
    }

    /// Records how a job ended; `user_key` is the person's ledger key (the canonical username,
    /// folded for a case-insensitive pool), when the job got that far.
    pub fn record_for(
        &self,
        username: Option<&str>,
        client_id: Option<&str>,
        user_key: Option<&str>,
        origin: &Origin,
        outcome: &Outcome,
    ) {
        self.tally.outcomes[outcome.kind.index()].fetch_add(1, Ordering::Relaxed);
        metrics::job(
            self.source,
            outcome.action.unwrap_or_default().as_str(),
            outcome.kind,
        );
        if let Some(cause) = outcome.in_doubt {
            self.tally.in_doubt.fetch_add(1, Ordering::Relaxed);
            metrics::in_doubt(self.source, cause);
        }
        let source = origin.to_string();
        let user = username.map(|u| self.user(u));
        match outcome.kind {
            OutcomeKind::Failed => tracing::warn!(
                source = %source,
                user = user.as_ref().map(tracing::field::display),
                reason = outcome.reason.as_ref().map(Reason::as_str),
                error = outcome.error.as_deref(),
                attempts = outcome.attempts,
                "job failed"
            ),
            OutcomeKind::Invalid => tracing::warn!(
                source = %source,
                reason = outcome.reason.as_ref().map(Reason::as_str),
                "invalid input"
            ),
            _ => tracing::debug!(
                source = %source,
                user = user.as_ref().map(tracing::field::display),
                outcome = outcome.kind.as_str(),
                attempts = outcome.attempts,
                "job done"
            ),
        }
        if let Some(report) = &self.report {
            // A poisoned lock means a writer panicked mid-line; keep writing the rest.
            let mut w = report.locked();
            if let Err(e) = w.write(username, client_id, user_key, &source, outcome) {
                if !self.report_failed.swap(true, Ordering::Relaxed) {
                    tracing::error!("writing the report failed: {e}; later lines may be missing");
                }
            }
        }
    }

    /// Closes the report: the run's `run_end` record (when [`Recorder::begin_run`] wrote its
    /// `run` record), saying what stopped it (`stopped`: a label and its detail, see
    /// [`RunEnd::stopped_by`]), then a flush. Returns false if any line could not be written.
    pub fn finish(&self, stopped: Option<(&str, Option<String>)>) -> bool {
        if let Some(report) = &self.report {
            let mut w = report.locked();
            if let Some(run_id) = self.run_id.locked().take() {
                let end = RunEnd {
                    run_id,
                    ended_at: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                        .to_string(),
                    jobs: self.tally.done(),
                    outcomes: OutcomeKind::ALL
                        .iter()
                        .map(|k| (k.as_str().to_owned(), self.tally.count(*k)))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    untouched: self.tally.untouched(),
                    stopped_by: stopped.as_ref().map(|(by, _)| (*by).to_owned()),
                    stop_detail: stopped.and_then(|(_, detail)| detail),
                };
                if let Err(e) = w.write_record(&end.tagged()) {
                    tracing::error!("writing the report's run_end record failed: {e}");
                    self.report_failed.store(true, Ordering::Relaxed);
                }
            }
            if let Err(e) = w.flush() {
                tracing::error!("flushing the report failed: {e}");
                return false;
            }
        }
        !self.report_failed.load(Ordering::Relaxed)
    }
}
