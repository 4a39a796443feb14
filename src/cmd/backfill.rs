//! `backfill`: a one-shot run over a CSV file (or stdin), or over the pool's UNCONFIRMED users
//! (`--from-pool`), with progress, a summary and an exit status.

use std::path::PathBuf;
use std::time::Instant;

use super::parts::{Parts, push_final, run_engine};
use super::{Finished, RunError, Summary, stopped};
use crate::cognito::admin::PoolAdmin;
use crate::config::Settings;
use crate::engine::{self, StopCause};
use crate::job::Source;
use crate::outcome::OutcomeKind;
use crate::outcome::jobs_left::JobsLeft;
use crate::outcome::progress::Progress;
use crate::shutdown::Shutdown;
use crate::source::csv::{CsvSource, count_records};
use crate::source::pool::{Discovery, PoolSource};
use crate::telemetry::BarSlot;
use crate::telemetry::LogFormat;

/// `backfill FILE`.
pub(super) async fn csv(
    input: PathBuf,
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let mut source = CsvSource::open(input.clone())
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?;
    check_client_ids(&settings, &source)?;
    backfill(started, &mut source, Some(input), settings, shutdown, bar).await
}

/// A CSV run needs a client id for its rows: `--client-id`, or a `client_id` column whose ids
/// `--allow-client-id` allows.
pub(super) fn check_client_ids(settings: &Settings, source: &CsvSource) -> Result<(), RunError> {
    if settings.cognito.client_id.is_none() && !source.has_client_id_column() {
        return Err(RunError::Usage(
            "missing --client-id (cognito.client_id): the CSV has no client_id column either"
                .into(),
        ));
    }
    if settings.cognito.client_id.is_none() && settings.cognito.allowed_client_ids.is_empty() {
        return Err(RunError::Usage(
            "missing --client-id (cognito.client_id): rows may name their own client_id only \
             among those given with --allow-client-id (cognito.allowed_client_ids), and none is"
                .into(),
        ));
    }
    Ok(())
}

/// `backfill --from-pool`: the pool's UNCONFIRMED users, discovered as the run goes.
pub(super) async fn pool(
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    if settings.cognito.client_id.is_none() {
        return Err(RunError::Usage(
            "backfill --from-pool needs --client-id (cognito.client_id)".into(),
        ));
    }
    let admin = PoolAdmin::connect(
        &settings.cognito.connection(),
        settings.cognito.user_pool_id.as_deref(),
        "backfill --from-pool",
    )
    .await
    .map_err(|e| RunError::Usage(e.to_string()))?;
    let mut source = PoolSource::start(
        discovery(&settings, admin, Vec::new()),
        shutdown.token.child_token(),
    );
    backfill(started, &mut source, None, settings, shutdown, bar).await
}

/// Discovery as the settings configure it.
pub(super) fn discovery(
    settings: &Settings,
    admin: PoolAdmin,
    attributes: Vec<String>,
) -> Discovery {
    Discovery {
        admin,
        window: settings.discover.window(),
        attributes,
        list_rate: settings.discover.list_rate,
        retry: engine::resend_policy::RetryPolicy::new(settings.retry.clone()),
        statuses: settings.discover.status.clone(),
    }
}

/// A one-shot run of `source`: progress, summary, exit status. `counted` is the CSV whose rows
/// are counted in the background for the progress total.
async fn backfill<S: Source>(
    started: Instant,
    source: &mut S,
    counted: Option<PathBuf>,
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    let Parts {
        stop_server,
        ready,
        server,
        recorder,
        cognito,
        ledger,
        pool,
    } = Parts::start(&settings, "backfill", source.label()).await?;
    ready.set(true);

    let quiet = settings.log.verbosity < 0;
    let (progress, total) = Progress::start(
        recorder.tally(),
        bar,
        quiet,
        settings.log.format == LogFormat::Json,
    );
    let total_rows_rx = total.subscribe();
    // `cognito_resend_jobs_known` / `_remaining`, from the same count as the progress bar.
    let jobs_left = JobsLeft::start(recorder.tally(), total.subscribe());
    if let Some(count_path) = counted {
        tokio::task::spawn_blocking(move || {
            if let Some(n) = count_records(&count_path) {
                let _ = total.send(Some(n));
            }
        });
    }

    let time_up = super::parts::time_up_after_signal(&settings, &shutdown);
    let cause = run_engine(
        &settings,
        source,
        cognito,
        ledger,
        pool.as_ref(),
        &recorder,
        &shutdown,
        &time_up,
    )
    .await;
    progress.finish().await;
    jobs_left.finish().await;
    let report_ok = recorder.finish(Some((cause.label(), cause.detail())));

    let tally = recorder.tally();
    let total_rows = *total_rows_rx.borrow();
    Summary {
        command: "backfill",
        tally: &tally,
        started,
        stopped_early: cause != StopCause::EndOfInput,
        total: total_rows,
        format: settings.log.format,
        // A run over the pool's own users names no one the pool does not have.
        pool: pool.as_ref().filter(|_| source.label() != "pool"),
    }
    .print(&settings);

    push_final(&settings, "backfill", None).await;
    if let Some(addr) = server
        && !settings.metrics.linger.is_zero()
    {
        tracing::info!(
            "serving final metrics on http://{addr}/metrics for {} (SIGINT/SIGTERM ends it)",
            humantime::format_duration(settings.metrics.linger)
        );
        tokio::select! {
            _ = tokio::time::sleep(settings.metrics.linger) => {}
            _ = shutdown.token.cancelled() => {}
        }
    }
    stop_server.cancel();

    if let Some(failure) = source.take_failure() {
        return Err(RunError::Fatal(anyhow::anyhow!(
            "{failure}; rows before it have their outcomes"
        )));
    }
    if !report_ok {
        return Err(RunError::Fatal(anyhow::anyhow!(
            "the report could not be written completely"
        )));
    }
    let failed_or_invalid = tally.count(OutcomeKind::Failed) + tally.count(OutcomeKind::Invalid);
    let cause_complete = cause == StopCause::EndOfInput;
    stopped(cause)?;
    // Stopped by a signal: the jobs not yet read have no outcome (the exit code says so).
    Ok(Finished {
        complete: cause_complete,
        failed_or_invalid,
    })
}
