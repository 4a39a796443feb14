//! `consume`: jobs from an SQS queue until a signal (or `--max-messages`), each message deleted
//! once its job has an outcome.

use std::time::Instant;

use super::parts::{Parts, run_engine};
use super::{Finished, RunError, Summary, stopped};
use crate::config::Settings;
use crate::shutdown::Shutdown;
use crate::source::sqs::{self, Pass, SqsSource};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics;

/// Runs `consume`.
pub(super) async fn run(settings: Settings, shutdown: Shutdown) -> Result<Finished, RunError> {
    let started = Instant::now();
    let queue_url = settings.sqs.queue_url.clone().ok_or_else(|| {
        RunError::Usage("consume needs a queue: --queue-url (sqs.queue_url)".into())
    })?;
    if settings.cognito.client_id.is_none() {
        tracing::warn!(
            "--client-id is not set: messages without their own client_id will be invalid, and so \
             will those naming one not given with --allow-client-id"
        );
    }
    let Parts {
        stop_server,
        ready,
        recorder,
        cognito,
        ledger,
        pool,
        ..
    } = Parts::start(&settings, "consume", "sqs").await?;
    metrics::register_sqs();
    let client = sqs::connect(
        settings.cognito.region.as_deref(),
        settings.sqs.endpoint.as_ref(),
        settings.sqs.wait_time,
    )
    .await;
    if let Some(warning) = sqs::check_queue(&client, &queue_url)
        .await
        .map_err(RunError::Usage)?
    {
        tracing::warn!("{warning}");
    }
    let mut source = SqsSource::start(
        sqs::SqsQueue::new(client, queue_url.clone()),
        settings.sqs.clone(),
        Pass {
            concurrency: settings.run.concurrency.get(),
            one_pass: settings.run.dry_run,
        },
        ready.clone(),
        shutdown.token.child_token(),
    );
    ready.set(true);
    tracing::info!("consuming {queue_url}");
    let cause = run_engine(
        &settings,
        &mut source,
        cognito,
        ledger,
        pool.as_ref(),
        &recorder,
        &shutdown,
    )
    .await;
    ready.set(false);
    source.close().await;
    recorder.finish();
    Summary {
        command: "consume",
        tally: &recorder.tally(),
        started,
        cause: &cause,
        stopped_early: false,
        total: None,
        format: LogFormat::Text,
        pool: pool.as_ref(),
    }
    .print(&settings);
    stop_server.cancel();
    stopped(cause)?;
    // A long-running consumer that drained after a signal did what it should: exit 0.
    super::done()
}
