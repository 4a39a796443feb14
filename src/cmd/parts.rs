//! The working parts a command that sends builds, in the order they depend on each other: the
//! metrics endpoint, the recorder, the Cognito client, the pool client for `--precheck`, and
//! last the ledger (a run is registered there only once nothing else can fail).

use std::sync::Arc;

use super::RunError;
use crate::cognito::admin::PoolAdmin;
use crate::cognito::{Cognito, Misconfiguration};
use crate::config::Settings;
use crate::engine::{self, EngineConfig, StopCause};
use crate::job::Source;
use crate::ledger::{self, Ledger, LedgerTiming, Waves};
use crate::outcome::Recorder;
use crate::shutdown::Shutdown;
use crate::telemetry::metrics;
use crate::telemetry::server::{self, Readiness};

/// What every command that sends needs, built in the order they depend on each other.
pub(super) struct Parts {
    pub(super) stop_server: tokio_util::sync::CancellationToken,
    pub(super) ready: Readiness,
    pub(super) server: Option<std::net::SocketAddr>,
    pub(super) recorder: Arc<Recorder>,
    pub(super) cognito: Cognito,
    pub(super) ledger: Option<Ledger>,
    pub(super) precheck: Option<PoolAdmin>,
}

impl Parts {
    pub(super) async fn start(
        settings: &Settings,
        command: &str,
        source: &'static str,
    ) -> Result<Self, RunError> {
        // The recorder registers its counters: the metrics recorder must exist first.
        let stop_server = tokio_util::sync::CancellationToken::new();
        let ready = Readiness::default();
        let server = start_metrics(settings, ready.clone(), stop_server.clone()).await?;
        let recorder = Recorder::new(
            source,
            settings.report.path.as_deref(),
            settings.log.usernames,
        )
        .map(|r| r.with_wave(settings.run.wave.clone()))
        .map_err(|e| {
            RunError::Usage(format!(
                "--report (report.path): cannot create {}: {e}",
                settings
                    .report
                    .path
                    .as_deref()
                    .unwrap_or(std::path::Path::new("the report"))
                    .display()
            ))
        })?;
        let cognito = Cognito::connect(
            &settings.cognito.connection(),
            settings.cognito.client_secret(),
        )
        .await;
        if cognito.region().is_none() {
            return Err(RunError::Usage(
                "no AWS region: set --region (aws.region) or AWS_REGION".into(),
            ));
        }
        let precheck = if settings.run.precheck {
            Some(
                PoolAdmin::connect(
                    &settings.cognito.connection(),
                    settings.cognito.user_pool_id.as_deref(),
                    "--precheck",
                )
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
                let started =
                    started.map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))?;
                Some(started.with_waves(Waves {
                    wave: settings.run.wave.clone(),
                    max_sends_per_user: settings.ledger.max_sends_per_user,
                }))
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
pub(super) async fn open_ledger(
    settings: &Settings,
) -> Result<Option<Arc<dyn ledger::Store>>, RunError> {
    ledger::open(
        &settings.ledger.path,
        &ledger::dynamo::DynamoSettings {
            region: settings.cognito.region.clone(),
            endpoint: settings.ledger.dynamodb_endpoint.clone(),
        },
    )
    .await
    .map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))
}

pub(super) async fn run_engine<S: Source>(
    settings: &Settings,
    source: &mut S,
    cognito: Cognito,
    ledger: Option<Ledger>,
    precheck: Option<PoolAdmin>,
    recorder: &Arc<Recorder>,
    shutdown: &Shutdown,
) -> StopCause {
    let config = EngineConfig {
        run: settings.run.clone(),
        retry: settings.retry.clone(),
        limits: settings.limits.clone(),
        default_client_id: settings.cognito.client_id.clone(),
        allowed_client_ids: settings.cognito.allowed_client_ids.clone(),
        shutdown_grace: settings.sqs.shutdown_grace,
        ledger: ledger.clone(),
        precheck,
        request_defaults: settings.cognito.request_defaults(),
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
pub(super) async fn push_final(settings: &Settings, command: &str) {
    if let Some(url) = &settings.metrics.pushgateway {
        match crate::telemetry::push::push(url, command).await {
            Ok(to) => tracing::info!("pushed the final metrics to {to}"),
            Err(e) => tracing::error!("pushing the final metrics failed: {e}"),
        }
    }
}

/// Installs the recorder and, unless `none`, serves it. Returns the bound address.
pub(super) async fn start_metrics(
    settings: &Settings,
    ready: Readiness,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<std::net::SocketAddr>, RunError> {
    let handle = metrics::install(&Misconfiguration::ALL.map(Misconfiguration::reason))
        .map_err(RunError::Fatal)?;
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
