//! The working parts a command that sends builds, in the order they depend on each other: the
//! metrics endpoint, the recorder, the Cognito client, the pool client for `--precheck`, and
//! last the ledger (a run is registered there only once nothing else can fail).

use std::sync::Arc;

use super::RunError;
use crate::cognito::admin::PoolAdmin;
use crate::cognito::{Cognito, Misconfiguration};
use crate::config::Settings;
use crate::engine::{self, EngineConfig, StopCause};
use crate::job::{Source, UsernameCase};
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
        let recorder = recorder(settings, source)?;
        let cognito = cognito(settings).await?;
        let precheck = precheck(settings).await?;
        // Last: a run is registered in the ledger only once nothing else can fail.
        // The pool's real case is not wired yet: the default (insensitive) folds the keys.
        let ledger = match open_ledger(settings, UsernameCase::default()).await? {
            Some(store) => Some(start_ledger(settings, store, command).await?),
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
            recorder,
            cognito,
            ledger,
            precheck,
        })
    }
}

/// The recorder of a run whose jobs come from `source` (the metric label), writing the report
/// `--report` names. Needs the metrics recorder installed.
pub(super) fn recorder(
    settings: &Settings,
    source: &'static str,
) -> Result<Arc<Recorder>, RunError> {
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
    Ok(Arc::new(recorder))
}

/// The Cognito client; no region anywhere is a usage error.
pub(super) async fn cognito(settings: &Settings) -> Result<Cognito, RunError> {
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
    Ok(cognito)
}

/// `--precheck`'s pool client, when it is on.
pub(super) async fn precheck(settings: &Settings) -> Result<Option<PoolAdmin>, RunError> {
    if !settings.run.precheck {
        return Ok(None);
    }
    PoolAdmin::connect(
        &settings.cognito.connection(),
        settings.cognito.user_pool_id.as_deref(),
        "--precheck",
    )
    .await
    .map(Some)
    .map_err(RunError::Usage)
}

/// Registers a run of `command` in the ledger `store`, in the fleet with `--fleet-rate`.
pub(super) async fn start_ledger(
    settings: &Settings,
    store: Arc<dyn ledger::Store>,
    command: &str,
) -> Result<Ledger, RunError> {
    let timing = LedgerTiming {
        cooldown: settings.ledger.cooldown,
        lease: settings.ledger.claim_lease,
    };
    // `--fleet-rate`: the run's share of the budget replaces `--rate` (the engine follows it as
    // runs come and go).
    let started = match settings.run.fleet_rate {
        Some(budget) => Ledger::start_in_fleet(store, command, timing, budget).await,
        None => Ledger::start(store, command, timing).await,
    };
    let started = started.map_err(|e| RunError::Usage(format!("ledger.path (--state): {e}")))?;
    Ok(started.with_waves(Waves {
        wave: settings.run.wave.clone(),
        max_sends_per_user: settings.ledger.max_sends_per_user,
    }))
}

/// Opens the store `--state` names for a pool whose usernames are `case` (a case-insensitive
/// pool's ledger has its keys folded once, see [`ledger::open`]); a failure is a configuration
/// error (nothing was sent).
pub(super) async fn open_ledger(
    settings: &Settings,
    case: UsernameCase,
) -> Result<Option<Arc<dyn ledger::Store>>, RunError> {
    ledger::open(
        &settings.ledger.path,
        &ledger::dynamo::DynamoSettings {
            region: settings.cognito.region.clone(),
            endpoint: settings.ledger.dynamodb_endpoint.clone(),
        },
        case,
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
    let cause = engine::run(
        engine_config(settings, ledger.clone(), precheck),
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

/// The engine's settings and parts for one run.
pub(super) fn engine_config(
    settings: &Settings,
    ledger: Option<Ledger>,
    precheck: Option<PoolAdmin>,
) -> EngineConfig {
    EngineConfig {
        run: settings.run.clone(),
        retry: settings.retry.clone(),
        limits: settings.limits.clone(),
        default_client_id: settings.cognito.client_id.clone(),
        allowed_client_ids: settings.cognito.allowed_client_ids.clone(),
        shutdown_grace: settings.sqs.shutdown_grace,
        ledger,
        precheck,
        request_defaults: settings.cognito.request_defaults(),
    }
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

/// Installs the process's metrics recorder (once), with every stop reason at 0.
pub(super) fn install_metrics() -> Result<metrics_exporter_prometheus::PrometheusHandle, RunError> {
    metrics::install(&Misconfiguration::ALL.map(Misconfiguration::reason)).map_err(RunError::Fatal)
}

/// Installs the recorder and, unless `none`, serves it. Returns the bound address.
pub(super) async fn start_metrics(
    settings: &Settings,
    ready: Readiness,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Option<std::net::SocketAddr>, RunError> {
    let handle = install_metrics()?;
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
