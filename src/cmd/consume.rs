//! `consume`: jobs from an SQS queue until a signal (or `--max-messages`), each message deleted
//! once its job has an outcome.
//!
//! A consumer that starts with a per-day spend cap already spent receives nothing until the UTC
//! day turns ([`wait_for_the_days_budget`]): receiving would only hand every message back, and
//! each receive counts toward the queue's redrive policy, so a restart loop at the cap (a
//! Deployment's pod exiting 4 and restarted) would drain the queue into its DLQ with no outcome.

use std::sync::Arc;
use std::time::Instant;

use super::parts::{Parts, Prepared, effective_limits, run_engine, time_up_after_signal};
use super::{Finished, RunError, Summary, stopped};
use crate::config::Settings;
use crate::engine::StopCause;
use crate::ledger::{self, Store};
use crate::shutdown::Shutdown;
use crate::source::sqs::{self, Pass, SqsSource};
use crate::telemetry::LogFormat;
use crate::telemetry::metrics;
use crate::telemetry::server::Readiness;

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
    let prepared = Prepared::start(&settings, "sqs").await?;
    metrics::register_sqs();
    let client = sqs::connect(
        settings.cognito.region.as_deref(),
        settings.cognito.profile.as_deref(),
        settings.sqs.endpoint.as_ref(),
        settings.sqs.wait_time,
    )
    .await;
    if let Some(warning) = sqs::check_queue(&client, &queue_url)
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?
    {
        tracing::warn!("{warning}");
    }
    // Before the run is registered in the ledger: a consumer waiting for tomorrow's budget is
    // no live run (it holds no claim, and takes no share of a `--fleet-rate` budget).
    let budget = match &prepared.store {
        Some(store) => {
            wait_for_the_days_budget(
                &settings,
                store,
                prepared.pool.as_ref(),
                &shutdown,
                &prepared.ready,
            )
            .await?
        }
        None => Budget::Left,
    };
    let Parts {
        stop_server,
        ready,
        recorder,
        cognito,
        ledger,
        pool,
        ..
    } = prepared.register(&settings, "consume").await?;
    let time_up = time_up_after_signal(&settings, &shutdown);
    let cause = match budget {
        Budget::Left => {
            let mut source = SqsSource::start(
                sqs::SqsQueue::new(client, queue_url.clone()),
                settings.sqs.clone(),
                Pass {
                    concurrency: settings.run.concurrency.get(),
                    one_pass: settings.run.dry_run,
                },
                ready.clone(),
                shutdown.token.child_token(),
                time_up.clone(),
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
                &time_up,
            )
            .await;
            ready.set(false);
            source.close().await;
            cause
        }
        Budget::Signalled => {
            if let Some(l) = &ledger {
                l.close().await;
            }
            StopCause::Shutdown
        }
    };
    recorder.finish(Some((cause.label(), cause.detail())));
    Summary {
        command: "consume",
        tally: &recorder.tally(),
        started,
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

/// Whether the consumer may receive.
enum Budget {
    /// No per-day cap is spent (or the day turned while it waited).
    Left,
    /// A signal came while it waited: nothing was received, nothing is to be done.
    Signalled,
}

/// Waits, receiving nothing and calling nothing but the ledger's day counters, while a per-day
/// spend cap is spent for every job this consumer could run ([`ledger::spent_for_every_job`]),
/// until the UTC day turns (and a minute past it, as the engine holds messages back for).
/// Meanwhile `/readyz` answers 200 (the consumer does what it should; a rollout is not held
/// up) and `cognito_resend_spend_cap_waiting` is 1. A signal ends the wait.
async fn wait_for_the_days_budget(
    settings: &Settings,
    store: &Arc<dyn Store>,
    pool: Option<&super::parts::PoolAccess>,
    shutdown: &Shutdown,
    ready: &Readiness,
) -> Result<Budget, RunError> {
    let caps = effective_limits(settings, true, pool).day();
    // A dry run reserves nothing: no cap stops it.
    if caps.is_empty() || settings.run.dry_run {
        return Ok(Budget::Left);
    }
    let mediums_known = settings.run.precheck && pool.is_some();
    loop {
        let now = ledger::now_millis();
        let spend = store
            .day_spend(&ledger::utc_day(now))
            .await
            .map_err(|e| RunError::Fatal(anyhow::anyhow!("{e}: reading today's spend")))?;
        let Some(cap) = ledger::spent_for_every_job(&spend, caps, mediums_known) else {
            metrics::spend_cap_waiting(false);
            return Ok(Budget::Left);
        };
        let wait = ledger::until_next_day(now) + crate::engine::DAY_TURN_SLACK;
        metrics::spend_cap_waiting(true);
        ready.set(true);
        tracing::warn!(
            day = %spend.day,
            sends = spend.sends,
            sms = spend.sms,
            email = spend.email,
            "spend cap {} is spent for {} (UTC): waiting until the day turns, in {}, receiving \
             nothing meanwhile (the messages stay in the queue, and no receive counts toward its \
             redrive policy)",
            cap.setting(),
            spend.day,
            humantime::format_duration(std::time::Duration::from_secs(wait.as_secs()))
        );
        tokio::select! {
            _ = shutdown.token.cancelled() => {
                metrics::spend_cap_waiting(false);
                return Ok(Budget::Signalled);
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
