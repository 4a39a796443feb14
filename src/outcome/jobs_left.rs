//! How much of a run is left, as metrics: `cognito_resend_jobs_known` (the jobs the run knows it
//! has, once it knows: a backfill's CSV rows, counted in the background for the progress bar) and
//! `cognito_resend_jobs_remaining` (those without an outcome yet). Over the rate of
//! `cognito_resend_jobs_total` they give a dashboard the time left.
//!
//! A run whose size is never known ahead (`--from-pool`, which discovers users as it goes; a
//! queue) sets neither, so an ETA panel shows nothing rather than a wrong time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Tally;
use crate::telemetry::metrics;

/// How often the remaining count is refreshed: well under any scrape interval.
const EVERY: Duration = Duration::from_secs(1);

/// The task keeping the two gauges current while a run goes.
pub(crate) struct JobsLeft {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl JobsLeft {
    /// Follows `tally` against `total` (the size of the run, once it is known).
    pub(crate) fn start(tally: Arc<Tally>, total: watch::Receiver<Option<u64>>) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(tally, total, stop.clone()));
        Self { stop, task }
    }

    /// Stops following, with the gauges set one last time (what a `--metrics-linger` scrape or
    /// a `--pushgateway` push then shows: 0 remaining after a complete run).
    pub(crate) async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn follow(
    tally: Arc<Tally>,
    mut total: watch::Receiver<Option<u64>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        let stopped = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
            // A closed channel (the counter gave up) leaves the size unknown; ticks go on.
            Ok(()) = total.changed() => false,
        };
        if let Some(known) = *total.borrow() {
            metrics::jobs_left(known, tally.done());
        }
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::OutcomeKind;

    /// A closed `total` channel must not spin the loop (`changed()` returns at once when the
    /// sender is gone): the task stays parked on its ticks and ends when told.
    #[tokio::test(start_paused = true)]
    async fn a_size_never_known_sets_nothing_and_the_task_ends_when_told() {
        let tally = Arc::new(Tally::default());
        tally.add(OutcomeKind::Sent, 3);
        let (tx, rx) = watch::channel(None);
        drop(tx);
        let left = JobsLeft::start(tally, rx);
        tokio::time::sleep(Duration::from_secs(5)).await;
        tokio::time::timeout(Duration::from_secs(1), left.finish())
            .await
            .expect("the task ends when told");
    }
}
