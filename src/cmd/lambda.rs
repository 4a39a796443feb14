//! The AWS Lambda function (feature `lambda`, binary `cognito-resend-lambda`, docs/lambda.md):
//! the same engine, ledger, Cognito client and recorder as the commands, driven by Lambda's
//! runtime instead of a CSV, a queue poller or a signal.
//!
//! - An **SQS event** (an event source mapping with `ReportBatchItemFailures`): its records are
//!   jobs, run concurrently under the semaphore, the rate limit and the retry layer; the answer
//!   names every record that must come back (`failed`, `invalid` — for the queue's redrive policy,
//!   as `consume` leaves them —, interrupted, or never started), and only those. A record is
//!   answered as done only once the ledger has its result.
//! - An **EventBridge scheduled event**: `backfill --from-pool` for the time the invocation has;
//!   the ledger (DynamoDB) makes the next invocation go on where this one stopped, since users
//!   already sent are `cooldown`. A rule's constant input may carry flags for its backfill
//!   (`{"detail-type": "Scheduled Event", "detail": {"args": ["--wave", "day-3", ...]}}`), over
//!   the environment as a CronJob's `args` are: one function, several schedules, one per
//!   reminder wave ([`scheduled_settings`]).
//!
//! Each invocation stops taking work `lambda.margin` before its deadline ([`deadline`]), so a
//! throttle storm never lets Lambda end it with records in an unknown state.
//!
//! What is built once per container, at its cold start ([`Container`]): the settings (from the
//! environment, exactly as the CLI reads them), the client secret (a file, or AWS Secrets
//! Manager), the Cognito and pool clients, the metrics recorder and the ledger's store (the
//! DynamoDB client). What is per invocation: the recorder's tally and a *run* in the ledger
//! (one write to begin it, one to end it). A run cannot span invocations: Lambda freezes the
//! container between them, so its heartbeat would stand still, other containers would judge it
//! dead, and it would fence itself when thawed. Ended with the invocation, it leaves no claim
//! behind but those of calls abandoned at the deadline, which the next run reports in doubt.
//!
//! Metrics: CloudWatch Embedded Metric Format lines on stdout at the end of each invocation
//! ([`emf`]), and with `--pushgateway` a push (job `cognito-resend`, command `lambda`).
//! `metrics.listen` is not served: nothing can scrape a function.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::parts::{
    PoolAccess, cognito, engine_config, install_metrics, open_ledger, pool_access, push_final,
    recorder, start_ledger, username_case,
};
use super::{Finished, RunError};
use crate::cognito::Cognito;
use crate::config::{SecretSource, Settings};
use crate::engine::{self, StopCause};
use crate::job::Source;
use crate::lambda::deadline::{self, Budget};
use crate::lambda::emf;
use crate::lambda::event::{self, Event};
use crate::lambda::secret;
use crate::ledger::{self, StateSpec};
use crate::outcome::{OutcomeKind, Tally};
use crate::source::batch::BatchSource;
use crate::source::pool::PoolSource;
use crate::telemetry::metrics;

/// Builds the container's parts, then serves invocations until the runtime stops.
pub async fn serve(mut settings: Settings) -> Result<Finished, RunError> {
    let started = Instant::now();
    if let Some(id) = settings.lambda.client_secret_id.clone() {
        let secret = secret::fetch(settings.cognito.region.as_deref(), &id)
            .await
            .map_err(|e| RunError::Usage(e.to_string()))?;
        settings.cognito.secret = Some((secret, SecretSource::SecretsManager(id)));
    }
    let container = Arc::new(Container::start(settings).await?);
    tracing::info!(
        init_seconds = started.elapsed().as_secs_f64(),
        "cognito-resend Lambda function ready"
    );
    lambda_runtime::run(lambda_runtime::service_fn(
        move |invocation: lambda_runtime::LambdaEvent<Value>| {
            let container = container.clone();
            async move { container.invoke(invocation).await }
        },
    ))
    .await
    .map_err(|e| RunError::Fatal(anyhow::anyhow!("the Lambda runtime stopped: {e}")))?;
    super::done()
}

/// What one container builds at its cold start and keeps for every invocation.
struct Container {
    settings: Settings,
    cognito: Cognito,
    /// With `--user-pool-id`: the pool client and its profile, read at the cold start (for
    /// scheduled events, `--precheck` and alias resolution; a scheduled event fails without).
    pool: Option<PoolAccess>,
    /// The ledger's store (the DynamoDB client); each invocation is a run in it.
    store: Option<Arc<dyn ledger::Store>>,
    /// What the metrics were at the end of the previous invocation (EMF sends the increase).
    emitted: Mutex<emf::Snapshot>,
    /// No invocation has run yet in this container.
    cold: std::sync::atomic::AtomicBool,
}

impl Container {
    async fn start(settings: Settings) -> Result<Self, RunError> {
        if let StateSpec::Sqlite(path) = &settings.ledger.path {
            return Err(RunError::Usage(format!(
                "ledger.path (--state) is the SQLite file {}: a Lambda container's disk does not \
                 last, and other containers cannot see it, so nothing would keep a user from a \
                 second code. Use --state dynamodb://TABLE (or none)",
                path.display()
            )));
        }
        install_metrics()?;
        metrics::register_sqs();
        let cognito = cognito(&settings).await?;
        let pool = pool_access(&settings).await?;
        let store = open_ledger(&settings, username_case(&settings, pool.as_ref())).await?;
        if store.is_none() {
            tracing::warn!(
                "--state none: no ledger. A redelivered record or a second schedule sends \
                 another code; there is no cooldown"
            );
        }
        Ok(Self {
            settings,
            cognito,
            pool,
            store,
            emitted: Mutex::default(),
            cold: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// One invocation: an SQS event's answer, or a scheduled backfill's summary.
    async fn invoke(
        &self,
        invocation: lambda_runtime::LambdaEvent<Value>,
    ) -> Result<Value, lambda_runtime::Error> {
        let arrived = SystemTime::now();
        let stop_at = tokio::time::Instant::now();
        let started = Instant::now();
        let budget = deadline::budget(
            invocation.context.deadline(),
            arrived,
            self.settings.lambda.timeout,
            self.settings.lambda.margin,
        );
        if budget.runtime_deadline_ignored {
            tracing::warn!(
                "the runtime's deadline had passed when the invocation arrived (a local \
                 emulator?): working for {:?}, by --lambda-timeout (lambda.timeout) or Lambda's \
                 longest timeout",
                budget.work
            );
        }
        let stop_at = stop_at + budget.work;
        let request_id = invocation.context.request_id.clone();
        let event = event::decode(invocation.payload).map_err(|e| {
            tracing::error!("{e}");
            e
        })?;
        let (kind, result) = match event {
            Event::Sqs(inputs) => ("sqs", self.batch(inputs, stop_at, budget).await),
            Event::Scheduled { id, args } => {
                tracing::info!(event = %id, ?args, "scheduled backfill from the pool");
                let result = match scheduled_settings(&self.settings, &args) {
                    Ok(settings) => self.backfill(&settings, stop_at, budget).await,
                    Err(e) => {
                        tracing::error!("{e}");
                        Err(e)
                    }
                };
                ("schedule", result)
            }
        };
        tracing::info!(
            event = kind,
            seconds = started.elapsed().as_secs_f64(),
            "invocation done"
        );
        self.emit(kind, &request_id).await;
        result.map_err(Into::into)
    }

    /// The records of an SQS event; the answer names those that must come back.
    async fn batch(
        &self,
        inputs: Vec<crate::job::Input>,
        stop_at: tokio::time::Instant,
        budget: Budget,
    ) -> Result<Value, String> {
        let records = inputs.len();
        let mut source = BatchSource::new(inputs);
        let (cause, tally) = self
            .pass(&self.settings, &mut source, stop_at, budget)
            .await?;
        let returned = source.finish();
        tracing::info!(
            records,
            returned = returned.len(),
            stopped = stop_label(&cause),
            outcomes = %tally.outcome_line(false),
            "SQS batch done"
        );
        serde_json::to_value(event::batch_response(returned)).map_err(|e| e.to_string())
    }

    /// `backfill --from-pool`, until the pool is done or the deadline comes.
    async fn backfill(
        &self,
        settings: &Settings,
        stop_at: tokio::time::Instant,
        budget: Budget,
    ) -> Result<Value, String> {
        let admin = self.pool.as_ref().map(|p| p.admin.clone()).ok_or(
            "a scheduled backfill needs the user pool: COGNITO_RESEND_COGNITO_USER_POOL_ID \
             (cognito.user_pool_id)",
        )?;
        if settings.cognito.client_id.is_none() {
            return Err(
                "a scheduled backfill needs COGNITO_RESEND_COGNITO_CLIENT_ID (cognito.client_id)"
                    .into(),
            );
        }
        let discovery_stop = CancellationToken::new();
        let _stop_discovery = discovery_stop.clone().drop_guard();
        let mut source = PoolSource::start(
            super::backfill::discovery(settings, admin, Vec::new()),
            discovery_stop,
        );
        let (cause, tally) = self.pass(settings, &mut source, stop_at, budget).await?;
        if let Some(failure) = source.take_failure() {
            return Err(format!("{failure}; users before it have their outcomes"));
        }
        let complete = cause == StopCause::EndOfInput;
        tracing::info!(
            complete,
            stopped = stop_label(&cause),
            outcomes = %tally.outcome_line(false),
            "scheduled backfill done{}",
            if complete { "" } else { ": the next one goes on from the ledger" }
        );
        let outcomes: Map<String, Value> = OutcomeKind::ALL
            .iter()
            .map(|k| (k.as_str().to_owned(), json!(tally.count(*k))))
            .collect();
        Ok(json!({
            "complete": complete,
            "stopped": stop_label(&cause),
            "outcomes": outcomes,
            "not_attempted": tally.untouched(),
            "in_doubt": tally.in_doubt(),
        }))
    }

    /// One engine run of `source` within the invocation's budget, as a run of its own in the
    /// ledger.
    async fn pass<S: Source>(
        &self,
        settings: &Settings,
        source: &mut S,
        stop_at: tokio::time::Instant,
        budget: Budget,
    ) -> Result<(StopCause, Arc<Tally>), String> {
        let recorder = recorder(settings, source.label()).map_err(|e| e.to_string())?;
        let ledger = match &self.store {
            Some(store) => Some(
                start_ledger(settings, store.clone(), "lambda")
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        // The deadline is the engine's shutdown: no new work after `stop_at`, calls in flight
        // get the grace, then are abandoned (failed, interrupted, in doubt: returned).
        let deadline = CancellationToken::new();
        let _stop_timer = {
            let deadline = deadline.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep_until(stop_at).await;
                tracing::warn!("the invocation's deadline is near: taking no more work");
                deadline.cancel();
            });
            AbortOnDrop(timer)
        };
        let mut config = engine_config(settings, ledger.clone(), self.pool.as_ref());
        config.shutdown_grace = budget.grace;
        let cause = engine::run(
            config,
            source,
            self.cognito.clone(),
            recorder.clone(),
            deadline,
        )
        .await;
        if let Some(l) = &ledger {
            l.close().await;
        }
        recorder.finish();
        match &cause {
            StopCause::Misconfigured(stop) => tracing::error!("{stop}"),
            StopCause::LedgerFailed(e) => tracing::error!("{e}: records not done come back"),
            StopCause::SpendCapped(cap) => tracing::error!("{}", super::spend_capped(*cap)),
            StopCause::Shutdown | StopCause::EndOfInput => {}
        }
        Ok((cause, recorder.tally()))
    }

    /// The invocation's metrics: EMF lines on stdout, and the Pushgateway if set.
    async fn emit(&self, event: &str, request_id: &str) {
        let Some(exposition) = metrics::render() else {
            return;
        };
        let now = emf::parse(&exposition);
        let cold = self.cold.swap(false, std::sync::atomic::Ordering::Relaxed);
        let mut properties = Map::new();
        properties.insert("event".into(), json!(event));
        properties.insert("request_id".into(), json!(request_id));
        properties.insert("cold_start".into(), json!(cold));
        let timestamp = crate::ledger::now_millis();
        let lines = {
            let mut emitted = self.emitted.lock().unwrap_or_else(|e| e.into_inner());
            let lines = emf::lines(&emitted, &now, timestamp, &properties);
            *emitted = now;
            lines
        };
        {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
            let _ = out.flush();
        }
        push_final(&self.settings, "lambda").await;
    }
}

/// Why a pass stopped, for the logs and the scheduled summary.
fn stop_label(cause: &StopCause) -> &'static str {
    match cause {
        StopCause::EndOfInput => "end_of_input",
        StopCause::Shutdown => "deadline",
        StopCause::Misconfigured(_) => "misconfigured",
        StopCause::LedgerFailed(_) => "ledger_error",
        StopCause::SpendCapped(_) => "spend_cap",
    }
}

/// Aborts a task when dropped (the deadline timer of an invocation that ended first).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The settings of a scheduled backfill whose event carries `args`: the function's environment
/// with these flags over it, validated exactly as the CLI validates them (`--wave`,
/// `--older-than`, `--cooldown`, `--max-sends-per-user`, `--client-metadata`, ...). What the
/// container was built from (the ledger, the pool, the app client, the endpoints, the secret)
/// cannot change per invocation: a flag that changes it is refused, naming it.
pub(crate) fn scheduled_settings(base: &Settings, args: &[String]) -> Result<Settings, String> {
    use clap::Parser;
    if args.is_empty() {
        return Ok(base.clone());
    }
    let said = |e: &dyn std::fmt::Display| format!("the scheduled event's detail.args: {e}");
    let cli = crate::cli::LambdaCli::try_parse_from(
        std::iter::once("cognito-resend-lambda").chain(args.iter().map(String::as_str)),
    )
    .map_err(|e| said(&e.render()))?;
    let mut settings = Settings::load(&cli.settings).map_err(|e| said(&e))?;
    let fixed = [
        (
            "--state (ledger.path)",
            settings.ledger.path == base.ledger.path,
        ),
        (
            "--user-pool-id (cognito.user_pool_id)",
            settings.cognito.user_pool_id == base.cognito.user_pool_id,
        ),
        (
            "--client-id (cognito.client_id)",
            settings.cognito.client_id == base.cognito.client_id,
        ),
        (
            "--cognito-endpoint (cognito.endpoint)",
            settings.cognito.endpoint == base.cognito.endpoint,
        ),
        (
            "--client-secret-file / --lambda-client-secret-id",
            settings.cognito.secret.is_none()
                && settings.lambda.client_secret_id == base.lambda.client_secret_id,
        ),
    ];
    if let Some((name, _)) = fixed.iter().find(|(_, same)| !same) {
        return Err(said(&format!(
            "{name} is the container's, set in the function's environment; it cannot change \
             per invocation"
        )));
    }
    // As the container resolved them (the secret from Secrets Manager, the region from the
    // environment or the AWS config).
    settings.cognito.secret = base.cognito.secret.clone();
    settings.cognito.region = base.cognito.region.clone();
    Ok(settings)
}
