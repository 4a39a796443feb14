//! Orchestrates a command: builds the source, the Cognito client, the recorder and the metrics
//! endpoint from validated settings, runs the engine, and reports how it went. The result is
//! mapped to an exit code by `main`, and nowhere else.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::cli::{Command, LogFormat};
use crate::cognito::Cognito;
use crate::cognito::admin::PoolAdmin;
use crate::config::Settings;
use crate::engine::{self, EngineConfig, MisconfigStop, StopCause};
use crate::ledger::{self, Ledger, LedgerTiming};
use crate::outcome::{OutcomeKind, Recorder};
use crate::shutdown::Shutdown;
use crate::source::Source;
use crate::source::csv::{CsvSource, count_records};
use crate::source::pool::{Discovery, PoolSource};
use crate::source::sqs::{self, SqsSettings, SqsSource};
use crate::telemetry::progress::{self, Progress};
use crate::telemetry::server::{self, Readiness};
use crate::telemetry::{BarSlot, metrics};

/// How a command ended without a run-level error.
#[derive(Debug)]
pub struct Finished {
    /// Every job read had an outcome (false when a signal stopped the run).
    pub complete: bool,
    /// Jobs that ended `failed` or `invalid`.
    pub failed_or_invalid: u64,
}

/// Why a command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Usage or configuration: nothing was sent (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong in a way only Cognito could tell (exit 1).
    #[error("{0}")]
    StoppedEarly(MisconfigStop),
    /// Anything else that ended the run (exit 1).
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
    /// A spend cap was reached: the run stopped taking work, and jobs not attempted were left
    /// for a later run (exit 4).
    #[error("{}", spend_capped(*.0))]
    SpendCapped(crate::ledger::SpendCap),
}

/// What the summary and the last line say when a spend cap stopped the run.
pub fn spend_capped(cap: crate::ledger::SpendCap) -> String {
    let when = match cap {
        crate::ledger::SpendCap::Run => "rerun to go on",
        _ => "rerun after midnight UTC (or raise the cap) to go on",
    };
    format!(
        "stopped at a spend cap: {} reached; jobs not yet attempted have no outcome: {when}",
        cap.setting()
    )
}

/// Runs `command`.
pub async fn run(
    command: Command,
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    match command {
        Command::Check => check(&settings),
        Command::Ledger { action } => crate::ledger::inspect::run(action, &settings).await,
        Command::Backfill { input, from_pool } => match (input, from_pool) {
            (Some(path), false) => backfill_csv(path, settings, shutdown, bar).await,
            (None, true) => backfill_pool(settings, shutdown, bar).await,
            _ => Err(RunError::Usage(
                "backfill takes a CSV file (or -) or --from-pool, not both".into(),
            )),
        },
        Command::Discover {
            out,
            attributes,
            to_queue,
        } => crate::discover::run(out, attributes, to_queue, &settings, &shutdown).await,
        Command::Consume => consume(settings, shutdown).await,
        Command::Enqueue {
            input,
            fifo_group_id,
        } => crate::enqueue::run(input, fifo_group_id, settings, shutdown, bar).await,
    }
}

fn check(settings: &Settings) -> Result<Finished, RunError> {
    print!("{}", settings.render_redacted());
    if settings.cognito.client_id.is_none() {
        eprintln!(
            "note: --client-id is not set; sending works only if every job carries its own client_id, \
             one of those given with --allow-client-id"
        );
    }
    Ok(Finished {
        complete: true,
        failed_or_invalid: 0,
    })
}

async fn backfill_csv(
    input: PathBuf,
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let mut source = CsvSource::open(input.clone())
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?;
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
    backfill(started, &mut source, Some(input), settings, shutdown, bar).await
}

/// `backfill --from-pool`: the pool's UNCONFIRMED users, discovered as the run goes.
async fn backfill_pool(
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
    let admin = PoolAdmin::connect(&settings.cognito, "backfill --from-pool")
        .await
        .map_err(RunError::Usage)?;
    let mut source = PoolSource::start(
        discovery(&settings, admin, Vec::new()),
        shutdown.token.child_token(),
    );
    backfill(started, &mut source, None, settings, shutdown, bar).await
}

/// Discovery as the settings configure it.
pub(crate) fn discovery(
    settings: &Settings,
    admin: PoolAdmin,
    attributes: Vec<String>,
) -> Discovery {
    Discovery {
        admin,
        window: settings.discover.window,
        attributes,
        list_rate: settings.discover.list_rate,
        retry: engine::retry::RetryPolicy::new(settings.retry.clone()),
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
        precheck,
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
    if let Some(count_path) = counted {
        tokio::task::spawn_blocking(move || {
            if let Some(n) = count_records(&count_path) {
                let _ = total.send(Some(n));
            }
        });
    }

    let cause = run_engine(
        &settings, source, cognito, ledger, precheck, &recorder, &shutdown,
    )
    .await;
    progress.finish().await;
    let report_ok = recorder.finish();

    let tally = recorder.tally();
    let total_rows = *total_rows_rx.borrow();
    let mut summary = progress::summary(
        "backfill",
        &tally,
        started.elapsed(),
        cause != StopCause::EndOfInput,
        total_rows,
    );
    if let StopCause::SpendCapped(cap) = cause {
        summary.push_str(&format!("\n  {}", spend_capped(cap)));
    }
    if !quiet {
        match settings.log.format {
            LogFormat::Text => eprintln!("{summary}"),
            LogFormat::Json => tracing::info!(
                sent = tally.count(OutcomeKind::Sent),
                already_confirmed = tally.count(OutcomeKind::AlreadyConfirmed),
                not_found = tally.count(OutcomeKind::NotFound),
                cooldown = tally.count(OutcomeKind::Cooldown),
                dry_run = tally.count(OutcomeKind::DryRun),
                invalid = tally.count(OutcomeKind::Invalid),
                failed = tally.count(OutcomeKind::Failed),
                not_attempted = tally.untouched(),
                in_doubt = tally.in_doubt(),
                attempts = tally.attempts_total(),
                throttled = tally.attempts(metrics::AttemptResult::Throttled),
                wall_seconds = started.elapsed().as_secs_f64(),
                "{summary}"
            ),
        }
    }

    push_final(&settings, "backfill").await;
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
    match cause {
        StopCause::Misconfigured(m) => Err(RunError::StoppedEarly(m)),
        StopCause::LedgerFailed(e) => Err(RunError::Fatal(e.into())),
        StopCause::SpendCapped(cap) => Err(RunError::SpendCapped(cap)),
        StopCause::Shutdown => Ok(Finished {
            complete: false,
            failed_or_invalid,
        }),
        StopCause::EndOfInput => Ok(Finished {
            complete: true,
            failed_or_invalid,
        }),
    }
}

async fn consume(settings: Settings, shutdown: Shutdown) -> Result<Finished, RunError> {
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
        precheck,
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
        SqsSettings {
            queue_url: queue_url.clone(),
            batch_size: settings.sqs.batch_size,
            wait_time: settings.sqs.wait_time,
            visibility_timeout: settings.sqs.visibility_timeout,
            max_extension: settings.sqs.max_extension,
            concurrency: settings.run.concurrency.get(),
            one_pass: settings.run.dry_run,
            max_messages: settings.sqs.max_messages,
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
        precheck,
        &recorder,
        &shutdown,
    )
    .await;
    ready.set(false);
    source.close().await;
    recorder.finish();
    if settings.log.verbosity >= 0 {
        let mut summary =
            progress::summary("consume", &recorder.tally(), started.elapsed(), false, None);
        if let StopCause::SpendCapped(cap) = cause {
            summary.push_str(&format!("\n  {}", spend_capped(cap)));
        }
        eprintln!("{summary}");
    }
    stop_server.cancel();
    match cause {
        StopCause::Misconfigured(m) => Err(RunError::StoppedEarly(m)),
        StopCause::LedgerFailed(e) => Err(RunError::Fatal(e.into())),
        StopCause::SpendCapped(cap) => Err(RunError::SpendCapped(cap)),
        // A long-running consumer that drained after a signal did what it should: exit 0.
        StopCause::Shutdown | StopCause::EndOfInput => Ok(Finished {
            complete: true,
            failed_or_invalid: 0,
        }),
    }
}

/// What every command that sends needs, built in the order they depend on each other.
struct Parts {
    stop_server: tokio_util::sync::CancellationToken,
    ready: Readiness,
    server: Option<std::net::SocketAddr>,
    recorder: Arc<Recorder>,
    cognito: Cognito,
    ledger: Option<Ledger>,
    precheck: Option<PoolAdmin>,
}

impl Parts {
    async fn start(
        settings: &Settings,
        command: &str,
        source: &'static str,
    ) -> Result<Self, RunError> {
        // The recorder registers its counters: the metrics recorder must exist first.
        let stop_server = tokio_util::sync::CancellationToken::new();
        let ready = Readiness::default();
        let server = start_metrics(settings, ready.clone(), stop_server.clone()).await?;
        let recorder = Recorder::new(source, settings.report.as_deref(), settings.log.usernames)
            .map_err(|e| {
                RunError::Usage(format!(
                    "--report (report.path): cannot create {}: {e}",
                    settings
                        .report
                        .as_deref()
                        .unwrap_or(std::path::Path::new("the report"))
                        .display()
                ))
            })?;
        let cognito = Cognito::connect(&settings.cognito).await;
        if cognito.region().is_none() {
            return Err(RunError::Usage(
                "no AWS region: set --region (aws.region) or AWS_REGION".into(),
            ));
        }
        let precheck = if settings.run.precheck {
            Some(
                PoolAdmin::connect(&settings.cognito, "--precheck")
                    .await
                    .map_err(RunError::Usage)?,
            )
        } else {
            None
        };
        // Last: a run is registered in the ledger only once nothing else can fail.
        let ledger = match open_ledger(settings).await? {
            Some(store) => {
                let timing = LedgerTiming {
                    cooldown: settings.ledger.cooldown,
                    lease: settings.ledger.claim_lease,
                };
                // `--fleet-rate`: the run's share of the budget replaces `--rate` (the engine
                // follows it as runs come and go).
                let started = match settings.run.fleet_rate {
                    Some(budget) => Ledger::start_in_fleet(store, command, timing, budget).await,
                    None => Ledger::start(store, command, timing).await,
                };
                Some(started.map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))?)
            }
            None => {
                tracing::warn!(
                    "--state none: no ledger. A rerun, a duplicate row or a redelivered message \
                     sends another code; there is no cooldown"
                );
                None
            }
        };
        Ok(Self {
            stop_server,
            ready,
            server,
            recorder: Arc::new(recorder),
            cognito,
            ledger,
            precheck,
        })
    }
}

/// Opens the store `--state` names; a failure is a configuration error (nothing was sent).
pub(crate) async fn open_ledger(
    settings: &Settings,
) -> Result<Option<Arc<dyn ledger::Store>>, RunError> {
    ledger::open(
        &settings.ledger.state,
        &ledger::dynamo::DynamoSettings {
            region: settings.cognito.region.clone(),
            endpoint: settings.ledger.dynamodb_endpoint.clone(),
        },
    )
    .await
    .map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))
}

async fn run_engine<S: Source>(
    settings: &Settings,
    source: &mut S,
    cognito: Cognito,
    ledger: Option<Ledger>,
    precheck: Option<PoolAdmin>,
    recorder: &Arc<Recorder>,
    shutdown: &Shutdown,
) -> StopCause {
    let config = EngineConfig {
        concurrency: settings.run.concurrency.get(),
        rate: settings.run.rate,
        retry: engine::retry::RetryPolicy::new(settings.retry.clone()),
        dry_run: settings.run.dry_run,
        default_client_id: settings.cognito.client_id.clone(),
        allowed_client_ids: settings.cognito.allowed_client_ids.clone(),
        shutdown_grace: settings.run.shutdown_grace,
        ledger: ledger.clone(),
        precheck: precheck.map(|admin| (admin, settings.run.precheck_rate)),
        spend: engine::SpendLimits {
            run: settings.limits.max_sends,
            day: settings.limits.day,
        },
    };
    let cause = engine::run(
        config,
        source,
        cognito,
        recorder.clone(),
        shutdown.token.clone(),
    )
    .await;
    // Every job has its ledger result by now; claims still held belong to calls abandoned at
    // shutdown, and are in doubt for the next run from this moment.
    if let Some(l) = &ledger {
        l.close().await;
    }
    cause
}

/// `--pushgateway`: pushes a one-shot run's final metrics. A failed push is logged, not fatal:
/// the jobs are done and reported either way.
pub(crate) async fn push_final(settings: &Settings, command: &str) {
    if let Some(url) = &settings.metrics.pushgateway {
        match crate::telemetry::push::push(url, command).await {
            Ok(to) => tracing::info!("pushed the final metrics to {to}"),
            Err(e) => tracing::error!("pushing the final metrics failed: {e}"),
        }
    }
}

/// Installs the recorder and, unless `none`, serves it. Returns the bound address.
pub(crate) async fn start_metrics(
    settings: &Settings,
    ready: Readiness,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<std::net::SocketAddr>, RunError> {
    let handle = metrics::install().map_err(RunError::Fatal)?;
    let Some(addr) = settings.metrics.listen else {
        return Ok(None);
    };
    let (bound, _task) = server::serve(addr, handle, ready, stop)
        .await
        .map_err(|e| {
            RunError::Usage(format!(
                "metrics.listen (--metrics-addr): cannot listen on {addr}: {e}"
            ))
        })?;
    tracing::info!("metrics on http://{bound}/metrics (also /healthz, /readyz)");
    Ok(Some(bound))
}
