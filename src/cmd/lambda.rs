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
//! throttle storm never lets Lambda end it with records in an unknown state; and what comes
//! after the calls (the ledger's writes, closing the run, the push) is given up a quarter
//! margin before it ([`deadline::Budget::finish`]), so a slow ledger or Pushgateway cannot make the whole
//! batch come back either.
//!
//! At a per-day spend cap, the records never started are answered as failures, as any record
//! not done, and held back (ChangeMessageVisibility) until the UTC day turns, at most 12 hours:
//! the event source mapping would otherwise deliver them again at the visibility timeout, each
//! delivery counted toward the queue's redrive policy, and the cap would drain the queue into
//! its DLQ with no outcome ([`Container::hold_back`]).
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::parts::{
    PoolAccess, cognito, engine_config, install_metrics, open_ledger, pool_access, push_final,
    recorder, start_ledger, username_case, with_invites,
};
use super::{Finished, RunError};
use crate::cognito::Cognito;
use crate::config::{SecretSource, Settings};
use crate::engine::{self, StopCause};
use crate::job::Source;
use crate::lambda::deadline;
use crate::lambda::emf;
use crate::lambda::event::{self, Event, Receipt};
use crate::lambda::secret;
use crate::ledger::{self, StateSpec};
use crate::outcome::{OutcomeKind, Tally};
use crate::source::lambda_batch::BatchSource;
use crate::source::pool::PoolSource;
use crate::source::sqs::{self, Queue as _};
use crate::sync::Locked;
use crate::telemetry::metrics;

/// Builds the container's parts, then serves invocations until the runtime stops.
/// The `cognito-resend-lambda` binary's whole life once its command line (the environment:
/// Lambda passes no arguments) is parsed: the settings (exit 2 when they are wrong), logging,
/// the runtime, the region, then [`serve`] until the runtime stops the container.
pub fn main(cli: crate::cli::LambdaCli) -> std::process::ExitCode {
    let mut settings = match Settings::load(&cli.settings) {
        Ok(s) => s,
        Err(e) => {
            super::say_error(crate::telemetry::LogFormat::Text, &e);
            return std::process::ExitCode::from(2);
        }
    };
    crate::telemetry::init_logging(settings.log.format, settings.log.verbosity);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let Err(e) = runtime.block_on(settings.resolve_region()) {
        super::say_error(settings.log.format, &e);
        return std::process::ExitCode::from(2);
    }
    let format = settings.log.format;
    let result = runtime.block_on(serve(settings));
    super::exit_code(&result, None, format)
}

pub(crate) async fn serve(mut settings: Settings) -> Result<Finished, RunError> {
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
    /// The SQS client, made at the first spend cap that holds records back.
    sqs: tokio::sync::OnceCell<aws_sdk_sqs::Client>,
    /// Queue URLs by ARN, as GetQueueUrl answered.
    queue_urls: Mutex<HashMap<String, String>>,
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
        let pool = pool_access(&settings).await?;
        let cognito = with_invites(cognito(&settings).await?, pool.as_ref());
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
            sqs: tokio::sync::OnceCell::new(),
            queue_urls: Mutex::default(),
        })
    }

    /// One invocation: an SQS event's answer, or a scheduled backfill's summary.
    async fn invoke(
        &self,
        invocation: lambda_runtime::LambdaEvent<Value>,
    ) -> Result<Value, lambda_runtime::Error> {
        let arrived = SystemTime::now();
        let arrived_at = tokio::time::Instant::now();
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
        let times = Times {
            arrived: arrived_at,
            stop_at: arrived_at + budget.work,
            finish_by: arrived_at + budget.finish,
            grace: budget.grace,
        };
        let request_id = invocation.context.request_id.clone();
        let event = event::decode(invocation.payload).map_err(|e| {
            tracing::error!("{e}");
            e
        })?;
        let (kind, result) = match event {
            Event::Sqs { inputs, receipts } => ("sqs", self.batch(inputs, &receipts, times).await),
            Event::Scheduled { id, args } => {
                tracing::info!(
                    event = %id,
                    args = ?redacted(&args),
                    "scheduled backfill from the pool"
                );
                let result = match scheduled_settings(&self.settings, &args) {
                    Ok(settings) => self.backfill(&settings, times).await,
                    Err(e) => {
                        tracing::error!("{e}");
                        Err(e.into())
                    }
                };
                ("schedule", result)
            }
        };
        self.emit(kind, &request_id, times.finish_by).await;
        tracing::info!(
            event = kind,
            seconds = started.elapsed().as_secs_f64(),
            "invocation done"
        );
        result.map_err(Into::into)
    }

    /// The records of an SQS event; the answer names those that must come back.
    async fn batch(
        &self,
        inputs: Vec<crate::job::Input>,
        receipts: &[Receipt],
        times: Times,
    ) -> anyhow::Result<Value> {
        let records = inputs.len();
        let mut source = BatchSource::new(inputs);
        let (cause, tally) = self.pass(&self.settings, &mut source, times).await?;
        let returned = source.finish();
        if let Some((hold, ids)) = source.held_back() {
            self.hold_back(receipts, &ids, hold, times).await;
        }
        tracing::info!(
            records,
            returned = returned.len(),
            stopped = stop_label(&cause),
            outcomes = %tally.outcome_line(false),
            "SQS batch done"
        );
        Ok(serde_json::to_value(event::batch_response(returned))?)
    }

    /// `backfill --from-pool`, until the pool is done or the deadline comes.
    async fn backfill(&self, settings: &Settings, times: Times) -> anyhow::Result<Value> {
        let admin = self.pool.as_ref().map(|p| p.admin.clone()).ok_or_else(|| {
            anyhow!(
                "a scheduled backfill needs the user pool: COGNITO_RESEND_COGNITO_USER_POOL_ID \
                 (cognito.user_pool_id)"
            )
        })?;
        if settings.cognito.client_id.is_none() {
            bail!(
                "a scheduled backfill needs COGNITO_RESEND_COGNITO_CLIENT_ID (cognito.client_id)"
            );
        }
        let discovery_stop = CancellationToken::new();
        let _stop_discovery = discovery_stop.clone().drop_guard();
        let mut source = PoolSource::start(
            super::backfill::discovery(settings, admin, Vec::new()),
            discovery_stop,
        );
        let (cause, tally) = self.pass(settings, &mut source, times).await?;
        if let Some(failure) = source.take_failure() {
            bail!("{failure}; users before it have their outcomes");
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
        times: Times,
    ) -> anyhow::Result<(StopCause, Arc<Tally>)> {
        let Times {
            stop_at,
            finish_by,
            grace,
            ..
        } = times;
        let recorder = recorder(settings, source.label())?;
        // At `finish_by` every ledger call still pending gives up (its retries, the SDK's,
        // closing the run): a result not recorded by then is kept as unrecorded, its claim
        // left for the next run to judge, rather than the whole batch lost to Lambda's timeout.
        let time_up = CancellationToken::new();
        let _time_up_timer = {
            let time_up = time_up.clone();
            AbortOnDrop(tokio::spawn(async move {
                tokio::time::sleep_until(finish_by).await;
                tracing::warn!(
                    "the invocation's deadline is a quarter margin away: giving up on ledger \
                     calls still pending"
                );
                time_up.cancel();
            }))
        };
        let ledger = match &self.store {
            Some(store) => Some(
                start_ledger(settings, store.clone(), "lambda")
                    .await?
                    .with_give_up(time_up),
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
        config.shutdown_grace = grace;
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
        recorder.finish(None);
        match &cause {
            StopCause::Misconfigured(stop) => tracing::error!("{stop}"),
            StopCause::LedgerFailed(e) => tracing::error!("{e}: records not done come back"),
            StopCause::SpendCapped(cap) => tracing::error!("{}", super::spend_capped(*cap)),
            StopCause::Shutdown | StopCause::EndOfInput => {}
        }
        Ok((cause, recorder.tally()))
    }

    /// Holds back the records `ids` for `hold` (a spend cap's budget comes back then): their
    /// visibility is pushed out, within SQS's 12 hours after the receive, so the event source
    /// mapping does not deliver them again meanwhile. Bounded by the invocation's `finish_by`;
    /// a record not held back comes back after the queue's visibility timeout, as before.
    async fn hold_back(&self, receipts: &[Receipt], ids: &[String], hold: Duration, times: Times) {
        let wanted: Vec<&Receipt> = receipts
            .iter()
            .filter(|r| ids.contains(&r.message_id))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let now = tokio::time::Instant::now();
        // Received before the invocation, by up to a batching window (at most 5 minutes).
        let received = times.arrived - Duration::from_secs(300);
        let delay = sqs::held_back_delay(now + hold, received, now);
        let held = tokio::time::timeout_at(times.finish_by, self.change_visibility(&wanted, delay))
            .await
            .unwrap_or_else(|_| Err(anyhow!("no answer before the invocation's deadline")));
        match held {
            Ok(()) => tracing::info!(
                records = wanted.len(),
                "a spend cap stopped the batch: its records not started are held back for {} \
                 (until the budget comes back), and answered as failures",
                humantime::format_duration(Duration::from_secs(delay.as_secs()))
            ),
            Err(e) => tracing::warn!(
                records = wanted.len(),
                "could not hold back the records a spend cap stopped ({e}): they come back \
                 after the queue's visibility timeout"
            ),
        }
    }

    /// ChangeMessageVisibilityBatch of `records` to `delay`, queue by queue, in tens.
    async fn change_visibility(&self, records: &[&Receipt], delay: Duration) -> anyhow::Result<()> {
        let client = self
            .sqs
            .get_or_init(|| {
                sqs::connect(
                    self.settings.cognito.region.as_deref(),
                    self.settings.cognito.profile.as_deref(),
                    self.settings.sqs.endpoint.as_ref(),
                    self.settings.sqs.wait_time,
                )
            })
            .await;
        let mut by_queue: HashMap<&str, Vec<String>> = HashMap::new();
        for r in records {
            by_queue
                .entry(r.queue_arn.as_str())
                .or_default()
                .push(r.receipt_handle.clone());
        }
        let mut failed = 0;
        for (arn, handles) in by_queue {
            let url = self.queue_url(client, arn).await?;
            let queue = sqs::SqsQueue::new(client.clone(), url);
            for chunk in handles.chunks(10) {
                failed += queue.change_visibility_batch(chunk, delay).await?.len();
            }
        }
        match failed {
            0 => Ok(()),
            n => Err(anyhow!("{n} of them were refused")),
        }
    }

    /// The URL of the queue `arn` names (GetQueueUrl, once per queue and container).
    async fn queue_url(&self, client: &aws_sdk_sqs::Client, arn: &str) -> anyhow::Result<String> {
        if let Some(url) = self.queue_urls.locked().get(arn) {
            return Ok(url.clone());
        }
        let (name, account) =
            event::queue_of(arn).ok_or_else(|| anyhow!("{arn:?} is not an SQS queue's ARN"))?;
        let url = client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "GetQueueUrl {name}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?
            .queue_url
            .ok_or_else(|| anyhow!("GetQueueUrl {name}: no URL in the answer"))?;
        self.queue_urls.locked().insert(arn.to_owned(), url.clone());
        Ok(url)
    }

    /// The invocation's metrics: EMF lines on stdout, and the Pushgateway if set (given up at
    /// `finish_by`).
    async fn emit(&self, event: &str, request_id: &str, finish_by: tokio::time::Instant) {
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
            let mut emitted = self.emitted.locked();
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
        push_final(&self.settings, "lambda", Some(finish_by)).await;
    }
}

/// Why a pass stopped, for the logs and the scheduled summary.
fn stop_label(cause: &StopCause) -> &'static str {
    match cause {
        // An invocation's shutdown is its deadline.
        StopCause::Shutdown => "deadline",
        cause => cause.label(),
    }
}

/// An invocation's times (see [`deadline::budget`]), on the monotonic clock.
#[derive(Debug, Clone, Copy)]
struct Times {
    /// When it arrived.
    arrived: tokio::time::Instant,
    /// When it stops taking work.
    stop_at: tokio::time::Instant,
    /// When everything after the calls is given up.
    finish_by: tokio::time::Instant,
    /// How long calls in flight may take after `stop_at`.
    grace: Duration,
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
pub(crate) fn scheduled_settings(
    base: &Settings,
    args: &[String],
) -> Result<Settings, BadScheduleArgs> {
    scheduled_settings_with(base, args, Settings::load)
}

/// [`scheduled_settings`], with the settings loaded (flags over the environment) by `load`.
fn scheduled_settings_with(
    base: &Settings,
    args: &[String],
    load: impl Fn(&crate::config::SettingsArgs) -> Result<Settings, crate::config::ConfigError>,
) -> Result<Settings, BadScheduleArgs> {
    use clap::Parser;
    if args.is_empty() {
        return Ok(base.clone());
    }
    let said = |e: &dyn std::fmt::Display| BadScheduleArgs(e.to_string());
    let parse = |args: &[String]| {
        crate::cli::LambdaCli::try_parse_from(
            std::iter::once("cognito-resend-lambda").chain(args.iter().map(String::as_str)),
        )
        .map_err(|e| said(&e.render()))
    };
    let cli = parse(args)?;
    let mut settings = load(&cli.settings).map_err(|e| said(&e))?;
    // The secret as the environment alone gives it (COGNITO_RESEND_CLIENT_SECRET, or the file
    // COGNITO_RESEND_COGNITO_CLIENT_SECRET_FILE names): the container's own, not the
    // schedule's. Only a secret the args bring (a flag, a settings file) changes it.
    let environment = load(&parse(&[])?.settings).map_err(|e| said(&e))?;
    let source = |s: &Settings| s.cognito.secret.as_ref().map(|(_, source)| source.clone());
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
            source(&settings) == source(&environment)
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

/// A scheduled event's flags that cannot be taken: the invocation fails, naming the flag.
#[derive(Debug, thiserror::Error)]
#[error("the scheduled event's detail.args: {0}")]
pub(crate) struct BadScheduleArgs(String);

/// A scheduled event's flags as the logs may show them: the values of the secret flags
/// (`--client-secret-file`, `--lambda-client-secret-id`) replaced, and in every URL (a
/// Pushgateway behind basic auth, a token in a query) the user, password and query values.
fn redacted(args: &[String]) -> Vec<String> {
    const SECRET_FLAGS: [&str; 2] = ["--client-secret-file", "--lambda-client-secret-id"];
    let mut out = Vec::with_capacity(args.len());
    let mut secret_value_next = false;
    for arg in args {
        if std::mem::take(&mut secret_value_next) {
            out.push(REDACTED.to_owned());
            continue;
        }
        if SECRET_FLAGS.contains(&arg.as_str()) {
            secret_value_next = true;
            out.push(arg.clone());
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if SECRET_FLAGS.contains(&flag) => {
                out.push(format!("{flag}={REDACTED}"))
            }
            Some((flag, value)) if flag.starts_with("--") => {
                out.push(format!("{flag}={}", redacted_url(value)));
            }
            _ => out.push(redacted_url(arg)),
        }
    }
    out
}

/// What stands for a value the logs must not show.
const REDACTED: &str = "<redacted>";

/// `text` as it is, unless it is a URL with a user, a password or a query: those replaced.
fn redacted_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return text.to_owned();
    };
    if !url.has_host() {
        return text.to_owned();
    }
    let mut changed = false;
    if !url.username().is_empty() || url.password().is_some() {
        // Cannot fail: the URL has a host.
        let _ = url.set_username("redacted");
        let _ = url.set_password(None);
        changed = true;
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "redacted")));
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cognito::ClientSecret;
    use crate::config::{ConfigError, SecretSource, SettingsArgs};

    /// Settings as the function's environment gives them, with the client secret in
    /// COGNITO_RESEND_CLIENT_SECRET (the test cannot set the variable itself).
    fn with_secret_in_the_environment(args: &SettingsArgs) -> Result<Settings, ConfigError> {
        let mut settings = Settings::load(args)?;
        if settings.cognito.secret.is_none() {
            settings.cognito.secret = Some((ClientSecret::new("from-env"), SecretSource::Env));
        }
        Ok(settings)
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_schedules_own_flags_are_taken_when_the_secret_comes_from_the_environment() {
        let base = base_args();
        let wave = scheduled_settings_with(
            &base,
            &args(&["--wave", "day-3", "--older-than", "3d"]),
            with_secret_in_the_environment,
        )
        .expect("a wave's flags are not the container's");
        assert_eq!(wave.run.wave.as_deref(), Some("day-3"));
        assert!(matches!(wave.cognito.secret, Some((_, SecretSource::Env))));

        // A secret the args bring is the container's to set: refused, named.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "another").unwrap();
        let refused = scheduled_settings_with(
            &base,
            &args(&[
                "--wave",
                "day-3",
                "--client-secret-file",
                file.to_str().unwrap(),
            ]),
            with_secret_in_the_environment,
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("--client-secret-file"), "{refused}");
    }

    /// What the container starts from: the environment alone.
    fn base_args() -> Settings {
        with_secret_in_the_environment(&SettingsArgs::default()).expect("default settings")
    }

    #[test]
    fn secrets_in_a_schedules_flags_never_reach_the_logs() {
        let shown = redacted(&args(&[
            "--wave",
            "day-3",
            "--pushgateway",
            "https://metrics:hunter2@push.example:9091/?token=s3cret&x=1",
            "--client-secret-file",
            "/run/secret",
            "--lambda-client-secret-id=prod/secret",
            "--cognito-endpoint=http://user:pw@127.0.0.1:9/",
        ]))
        .join(" ");
        for secret in [
            "hunter2",
            "metrics:",
            "s3cret",
            "/run/secret",
            "prod/secret",
            "pw@",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("--wave day-3"), "{shown}");
        assert!(shown.contains("push.example:9091"), "{shown}");
    }
}
