//! Progress while a one-shot command runs, and the summary when it ends.
//!
//! On a terminal: an indicatif bar (rows done, rate, ETA, counts per outcome). Off a terminal: a
//! log line every 10 s. Both read the recorder's [`Tally`]; nothing on the job path waits for
//! them.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::{OutcomeKind, Tally};
use crate::telemetry::BarSlot;
use crate::telemetry::metrics::AttemptResult;

/// How often the non-interactive progress line is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A running progress display.
pub(crate) struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    slot: BarSlot,
}

impl Progress {
    /// Starts showing progress of `tally`. `total` may arrive later through the returned setter.
    pub(crate) fn start(
        tally: Arc<Tally>,
        slot: BarSlot,
        quiet: bool,
        json_logs: bool,
    ) -> (Self, tokio::sync::watch::Sender<Option<u64>>) {
        let (total_tx, total_rx) = tokio::sync::watch::channel(None);
        let stop = CancellationToken::new();
        let interactive = !quiet && !json_logs && std::io::stderr().is_terminal();
        let task = if interactive {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(spinner_style());
            slot.set(Some(bar.clone()));
            tokio::spawn(draw_bar(bar, tally, total_rx, stop.clone()))
        } else if quiet {
            tokio::spawn(async {})
        } else {
            tokio::spawn(log_lines(tally, total_rx, stop.clone()))
        };
        (Self { stop, task, slot }, total_tx)
    }

    /// Stops the display and clears the bar.
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.slot.set(None);
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {pos} rows [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{bar:30} {pos}/{len} rows eta {eta} [{elapsed_precise}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn draw_bar(
    bar: ProgressBar,
    tally: Arc<Tally>,
    mut total: tokio::sync::watch::Receiver<Option<u64>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            Ok(()) = total.changed() => {
                if let Some(n) = *total.borrow() {
                    bar.set_length(n);
                    bar.set_style(bar_style());
                }
            }
        }
        let done = tally.done();
        bar.set_position(done);
        bar.set_message(format!(
            "{:.0} jobs/s {}",
            done as f64 / started.elapsed().as_secs_f64().max(0.001),
            tally.outcome_line(false)
        ));
    }
    bar.set_position(tally.done());
    bar.finish_and_clear();
}

async fn log_lines(
    tally: Arc<Tally>,
    total: tokio::sync::watch::Receiver<Option<u64>>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LOG_EVERY, LOG_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let total = *total.borrow();
        tracing::info!(
            "{}",
            progress_line(
                tally.done(),
                total,
                started.elapsed(),
                &tally.outcome_line(false)
            )
        );
    }
}

/// One progress line for a log (no terminal): jobs done (of the total, when known), the rate,
/// the time left at that rate (when the total is known), and the outcomes so far.
fn progress_line(done: u64, total: Option<u64>, elapsed: Duration, outcomes: &str) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let mut line = match total {
        Some(n) => format!("progress: {done}/{n} jobs, {rate:.1} jobs/s"),
        None => format!("progress: {done} jobs, {rate:.1} jobs/s"),
    };
    if let Some(n) = total
        && rate > 0.0
    {
        let left = Duration::from_secs_f64((n.saturating_sub(done) as f64 / rate).ceil());
        line.push_str(&format!(", ETA {}", humantime::format_duration(left)));
    }
    if !outcomes.is_empty() {
        line.push_str("; ");
        line.push_str(outcomes);
    }
    line
}

/// `1 job`, `2 jobs`.
fn jobs(n: u64) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

/// The end-of-run summary: counts per outcome, attempts, throttles, wall time, jobs per second.
///
/// `stopped_early`: the run ended before its input did; `total`: the input's size, when known;
/// `dry_run`: the plan line is said whatever it plans.
pub(crate) fn summary(
    command: &str,
    tally: &Tally,
    wall: Duration,
    stopped_early: bool,
    total: Option<u64>,
    dry_run: bool,
) -> String {
    let done = tally.done();
    let secs = wall.as_secs_f64().max(0.001);
    let mut s = format!(
        "{command}: {} in {:.1}s ({:.1} jobs/s)\n  outcomes: {}\n  attempts: {} \
         (ok {}, throttled {}, transient {}, permanent {})",
        jobs(done),
        wall.as_secs_f64(),
        done as f64 / secs,
        tally.outcome_line(true),
        tally.attempts_total(),
        tally.attempts(AttemptResult::Ok),
        tally.attempts(AttemptResult::Throttled),
        tally.attempts(AttemptResult::Transient),
        tally.attempts(AttemptResult::Permanent),
    );
    if stopped_early {
        let not_attempted = match total {
            Some(t) => t.saturating_sub(done).to_string(),
            None => format!("{} read and the rest of the input", tally.untouched()),
        };
        s.push_str(&format!(
            "\n  stopped before the end of the input: not attempted: {not_attempted} \
             (no outcome, no report line)"
        ));
    }
    // A dry run says its plan even when it would send nobody (every user in cooldown, say).
    let planned = tally.count(OutcomeKind::DryRun);
    if dry_run || planned > 0 {
        s.push_str(&format!(
            "\n  plan (dry run, nothing sent): would send {planned}; would skip {} already \
             confirmed, {} not found, {} in cooldown, {} capped",
            tally.count(OutcomeKind::AlreadyConfirmed),
            tally.count(OutcomeKind::NotFound),
            tally.count(OutcomeKind::Cooldown),
            tally.count(OutcomeKind::Capped),
        ));
        let known =
            [OutcomeKind::KnownConfirmed, OutcomeKind::KnownMissing].map(|k| tally.count(k));
        if known.iter().any(|&n| n > 0) {
            s.push_str(&format!(
                ", {} known confirmed, {} known missing (--recheck-after)",
                known[0], known[1]
            ));
        }
    }
    if tally.in_doubt() > 0 {
        s.push_str(&format!(
            "\n  in doubt: {} (a run that died had claimed these users mid-call, so a code may \
             already have gone out; they were sent again)",
            tally.in_doubt()
        ));
    }
    let bad = tally.count(OutcomeKind::Failed) + tally.count(OutcomeKind::Invalid);
    if bad > 0 {
        s.push_str(&format!(
            "\n  {bad} jobs failed or were invalid: see the report (--report) or the warnings above"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_is_one_job() {
        assert_eq!(jobs(1), "1 job");
        assert_eq!(jobs(0), "0 jobs");
        assert_eq!(jobs(2), "2 jobs");
    }

    #[test]
    fn a_dry_run_says_its_plan_when_every_user_is_in_cooldown() {
        let tally = Tally::default();
        tally.add(OutcomeKind::Cooldown, 3);
        let said = summary(
            "backfill",
            &tally,
            Duration::from_secs(1),
            false,
            None,
            true,
        );
        assert!(
            said.contains("plan (dry run, nothing sent): would send 0")
                && said.contains("3 in cooldown"),
            "{said}"
        );
        let run = summary(
            "backfill",
            &tally,
            Duration::from_secs(1),
            false,
            None,
            false,
        );
        assert!(!run.contains("plan (dry run"), "{run}");
    }

    #[test]
    fn a_log_progress_line_has_an_eta_when_the_total_is_known_and_no_dangling_separator() {
        let line = progress_line(100, Some(400), Duration::from_secs(10), "sent=100");
        assert_eq!(
            line,
            "progress: 100/400 jobs, 10.0 jobs/s, ETA 30s; sent=100"
        );
        let line = progress_line(0, None, Duration::from_secs(10), "");
        assert_eq!(line, "progress: 0 jobs, 0.0 jobs/s");
        let line = progress_line(7, None, Duration::from_secs(1), "sent=7");
        assert_eq!(line, "progress: 7 jobs, 7.0 jobs/s; sent=7");
    }
}
