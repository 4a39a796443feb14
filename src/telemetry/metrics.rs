//! Metric names and the Prometheus recorder. The names are the contract's (docs/contract.md); no label ever carries a
//! username or other personal data.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::job::{DoubtCause, OutcomeKind};

/// Jobs by source and outcome.
pub(crate) const JOBS_TOTAL: &str = "cognito_resend_jobs_total";
/// Cognito calls by result.
pub(crate) const ATTEMPTS_TOTAL: &str = "cognito_resend_attempts_total";
/// Latency of each Cognito call.
pub(crate) const REQUEST_DURATION: &str = "cognito_resend_request_duration_seconds";
/// Cognito calls in flight.
pub(crate) const IN_FLIGHT: &str = "cognito_resend_in_flight";
/// The rate limiter's current rate (0 = no limit).
pub(crate) const RATE_LIMIT: &str = "cognito_resend_rate_limit_per_second";
/// Jobs whose user a dead run had claimed (sent again: at-least-once).
pub(crate) const IN_DOUBT_TOTAL: &str = "cognito_resend_in_doubt_total";
/// Runs that stopped early, by reason (a configuration error's reason, `ledger_error`, or
/// `spend_cap`).
pub(crate) const STOPPED_TOTAL: &str = "cognito_resend_stopped_total";
/// Codes sent, by delivery medium.
pub(crate) const CODES_SENT_TOTAL: &str = "cognito_resend_codes_sent_total";
/// ListUsers / AdminGetUser calls by operation and result.
pub(crate) const POOL_CALLS: &str = "cognito_resend_pool_calls_total";
/// SQS messages by what happened to them.
pub(crate) const SQS_MESSAGES: &str = "cognito_resend_sqs_messages_total";
/// Failed ReceiveMessage calls.
pub(crate) const SQS_RECEIVE_ERRORS: &str = "cognito_resend_sqs_receive_errors_total";
/// Visibility extensions made by the heartbeat.
pub(crate) const SQS_VISIBILITY_EXTENSIONS: &str = "cognito_resend_sqs_visibility_extensions_total";
/// Delete entries retried after a partial batch failure.
pub(crate) const SQS_DELETE_RETRIES: &str = "cognito_resend_sqs_delete_retries_total";
/// Ledger writes retried (a result that could not be recorded at the first try).
pub(crate) const LEDGER_RETRIES: &str = "cognito_resend_ledger_retries_total";
/// Live runs sharing the fleet budget (`--fleet-rate`), this one included.
pub(crate) const FLEET_RUNS: &str = "cognito_resend_fleet_runs";
/// 1 while `consume` waits, receiving nothing, for a spent per-day cap's budget to come back.
pub(crate) const SPEND_CAP_WAITING: &str = "cognito_resend_spend_cap_waiting";
/// Always 1; its labels say which build is running (`version`, `arch`, `os`).
pub(crate) const BUILD_INFO: &str = "cognito_resend_build_info";
/// The jobs a run knows it has, once it knows (a backfill's CSV rows, counted in the background).
pub(crate) const JOBS_KNOWN: &str = "cognito_resend_jobs_known";
/// Of those, the jobs without an outcome yet: with the rate of `cognito_resend_jobs_total`, the
/// time left.
pub(crate) const JOBS_REMAINING: &str = "cognito_resend_jobs_remaining";

/// The delivery media `cognito_resend_codes_sent_total{medium}` starts at zero for, spelled as
/// Cognito's `DeliveryMediumType` and the report's `delivery.medium` spell them; `unknown` (when
/// Cognito named none) is the report summary's word too.
pub(crate) const MEDIA: [&str; 2] = ["SMS", "EMAIL"];

/// The `action` values of [`SQS_MESSAGES`]: the contract's four, `enqueued` for `enqueue`, and
/// `delete_failed` for a delete that failed for good (the message will be redelivered).
pub(crate) const SQS_ACTIONS: [&str; 6] = [
    "received",
    "deleted",
    "returned",
    "invalid",
    "enqueued",
    "delete_failed",
];

/// How one Cognito call ended, for `cognito_resend_attempts_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// Cognito gave a definitive answer about the user (sent, already confirmed, not found).
    Ok = 0,
    /// TooManyRequestsException.
    Throttled = 1,
    /// A retryable error: 5xx, timeout, dropped connection.
    Transient = 2,
    /// An error retrying cannot fix.
    Permanent = 3,
}

impl AttemptResult {
    /// Every result.
    pub const ALL: [AttemptResult; 4] =
        [Self::Ok, Self::Throttled, Self::Transient, Self::Permanent];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        }
    }
}

/// Installs the global recorder. Histograms get buckets (otherwise the exporter renders
/// summaries, which cannot be aggregated across replicas).
///
/// Must be called inside the runtime: it starts the exporter's upkeep, which folds recorded
/// histogram samples into their buckets. Without it (no scrapes, e.g. `--metrics-addr none`) the
/// raw samples pile up, and memory grows with the number of calls.
///
/// `stop_reasons` are the names `cognito_resend_stopped_total` starts at zero for besides
/// `ledger_error` and `spend_cap`: the configuration errors the Cognito client tells apart,
/// passed as plain names so that metrics need not know the client's types.
pub(crate) fn install(stop_reasons: &[&'static str]) -> anyhow::Result<PrometheusHandle> {
    let handle = install_recorder(stop_reasons)?;
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// The installed recorder, for rendering outside the server (the Pushgateway push).
static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The current exposition, if the recorder is installed.
pub(crate) fn render() -> Option<String> {
    HANDLE.get().map(|h| {
        collect_process();
        h.run_upkeep();
        h.render()
    })
}

/// The standard process metrics (`process_start_time_seconds`, `process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
/// `process_max_fds`, ...), read from `/proc` when an exposition is rendered: a scrape or a push
/// sees them as of that moment, and nothing reads `/proc` while nobody asks.
static PROCESS: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();

/// Reads the process metrics now (a no-op before the recorder is installed).
pub(crate) fn collect_process() {
    if let Some(c) = PROCESS.get() {
        c.collect();
    }
}

fn install_recorder(stop_reasons: &[&'static str]) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(REQUEST_DURATION.to_owned()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install_recorder()?;
    describe_counter!(
        JOBS_TOTAL,
        "Jobs that reached an outcome, by source, action (confirm, invite) and outcome."
    );
    describe_counter!(
        ATTEMPTS_TOTAL,
        "Calls to Cognito by action (confirm: ResendConfirmationCode, invite: AdminCreateUser \
         RESEND) and result."
    );
    describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Duration of each call to Cognito, by action."
    );
    describe_gauge!(IN_FLIGHT, "Calls to Cognito in flight.");
    describe_counter!(
        POOL_CALLS,
        "Pool reads (ListUsers, AdminGetUser, DescribeUserPool, DescribeUserPoolClient), by \
         operation and result."
    );
    describe_gauge!(
        RATE_LIMIT,
        "Current client-side rate limit in calls per second (0 = no limit), by action: each \
         action has a rate controller of its own."
    );
    for action in crate::job::Action::ALL {
        for result in AttemptResult::ALL {
            counter!(ATTEMPTS_TOTAL, "action" => action.as_str(), "result" => result.as_str())
                .absolute(0);
        }
    }
    gauge!(IN_FLIGHT).set(0.0);
    describe_counter!(
        STOPPED_TOTAL,
        "Early stops of the run, by reason: a configuration error (email_quota, not_authorized, \
         ...), ledger_error, or spend_cap."
    );
    for &reason in stop_reasons {
        counter!(STOPPED_TOTAL, "reason" => reason).absolute(0);
    }
    counter!(STOPPED_TOTAL, "reason" => "ledger_error").absolute(0);
    counter!(STOPPED_TOTAL, "reason" => "spend_cap").absolute(0);
    describe_counter!(
        CODES_SENT_TOTAL,
        "Codes Cognito confirmed sent, by delivery medium as Cognito names it (SMS, EMAIL; \
         unknown when it named none)."
    );
    for medium in MEDIA {
        counter!(CODES_SENT_TOTAL, "medium" => medium).absolute(0);
    }
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the labels say which build of cognito-resend is running."
    );
    gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "arch" => std::env::consts::ARCH,
        "os" => std::env::consts::OS
    )
    .set(1.0);
    describe_gauge!(
        JOBS_KNOWN,
        "Jobs this run knows it has (a backfill's CSV rows, once counted); absent until known."
    );
    describe_gauge!(
        JOBS_REMAINING,
        "Jobs of cognito_resend_jobs_known without an outcome yet; over the rate of \
         cognito_resend_jobs_total, the time left."
    );
    let process = PROCESS.get_or_init(|| metrics_process::Collector::new(""));
    process.describe();
    process.collect();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Makes the SQS counters visible at 0 (for `consume` and `enqueue`).
pub(crate) fn register_sqs() {
    describe_counter!(SQS_MESSAGES, "SQS messages, by what happened to them.");
    describe_counter!(SQS_RECEIVE_ERRORS, "ReceiveMessage calls that failed.");
    describe_counter!(
        SQS_VISIBILITY_EXTENSIONS,
        "Message visibility extensions made while jobs ran."
    );
    describe_counter!(
        SQS_DELETE_RETRIES,
        "DeleteMessageBatch entries retried after a partial failure."
    );
    for action in SQS_ACTIONS {
        counter!(SQS_MESSAGES, "action" => action).absolute(0);
    }
    counter!(SQS_RECEIVE_ERRORS).absolute(0);
    counter!(SQS_VISIBILITY_EXTENSIONS).absolute(0);
    counter!(SQS_DELETE_RETRIES).absolute(0);
    describe_gauge!(
        SPEND_CAP_WAITING,
        "1 while consume waits, receiving nothing, for a spent per-day spend cap's budget to \
         come back when the UTC day turns."
    );
    gauge!(SPEND_CAP_WAITING).set(0.0);
}

/// `consume` waits for a spent day cap's budget (`true`), or no longer does.
pub(crate) fn spend_cap_waiting(waiting: bool) {
    gauge!(SPEND_CAP_WAITING).set(if waiting { 1.0 } else { 0.0 });
}

/// Counts an SQS message event (one of [`SQS_ACTIONS`]).
pub(crate) fn sqs_message(action: &'static str) {
    counter!(SQS_MESSAGES, "action" => action).increment(1);
}

/// Counts a failed receive.
pub(crate) fn sqs_receive_error() {
    counter!(SQS_RECEIVE_ERRORS).increment(1);
}

/// Counts visibility extensions.
pub(crate) fn sqs_visibility_extended(n: u64) {
    counter!(SQS_VISIBILITY_EXTENSIONS).increment(n);
}

/// Counts retried delete entries.
pub(crate) fn sqs_delete_retried(n: u64) {
    counter!(SQS_DELETE_RETRIES).increment(n);
}

/// Makes every outcome of `source` visible at 0 from the start, so rates and alerts work before
/// the first job of each kind.
pub(crate) fn register_outcomes(source: &'static str) {
    for action in crate::job::Action::ALL {
        for kind in OutcomeKind::ALL {
            counter!(
                JOBS_TOTAL,
                "source" => source,
                "action" => action.as_str(),
                "outcome" => kind.as_str()
            )
            .increment(0);
        }
    }
    describe_counter!(
        IN_DOUBT_TOTAL,
        "Jobs whose user a run that died had claimed mid-call; sent again (at-least-once)."
    );
    counter!(IN_DOUBT_TOTAL, "source" => source).increment(0);
}

/// Counts a ListUsers or AdminGetUser call (`result` as for resend attempts).
pub(crate) fn pool_call(operation: &'static str, result: &'static str) {
    counter!(POOL_CALLS, "operation" => operation, "result" => result).increment(1);
}

/// Counts a code Cognito confirmed sent, by delivery medium (one of [`MEDIA`], or `unknown`).
pub(crate) fn code_sent(medium: &'static str) {
    counter!(CODES_SENT_TOTAL, "medium" => medium).increment(1);
}

/// Counts an early stop of the run.
pub(crate) fn stopped(reason: &'static str) {
    counter!(STOPPED_TOTAL, "reason" => reason).increment(1);
}

/// Counts a job whose user is in doubt, by cause.
pub(crate) fn in_doubt(source: &'static str, cause: DoubtCause) {
    counter!(IN_DOUBT_TOTAL, "source" => source, "cause" => cause.as_str()).increment(1);
}

/// Counts a job's outcome.
pub(crate) fn job(source: &'static str, action: &'static str, kind: OutcomeKind) {
    counter!(JOBS_TOTAL, "source" => source, "action" => action, "outcome" => kind.as_str())
        .increment(1);
}

/// Counts a call of `action` and observes its duration.
pub(crate) fn attempt(action: &'static str, result: AttemptResult, seconds: f64) {
    counter!(ATTEMPTS_TOTAL, "action" => action, "result" => result.as_str()).increment(1);
    histogram!(REQUEST_DURATION, "action" => action).record(seconds);
}

/// Moves the in-flight gauge.
pub(crate) fn in_flight(delta: f64) {
    gauge!(IN_FLIGHT).increment(delta);
}

/// Sets the current rate limit of `action`'s calls (0 = none).
pub(crate) fn rate_limit(action: &'static str, per_second: f64) {
    gauge!(RATE_LIMIT, "action" => action).set(per_second);
}

/// Sets the live runs sharing the fleet budget (`--fleet-rate`), as this run's census counts
/// them: this run's ceiling is the budget over this number.
pub(crate) fn fleet_runs(runs: usize) {
    describe_gauge!(
        FLEET_RUNS,
        "Live runs sharing the fleet budget (--fleet-rate), this one included; each takes the budget over this number."
    );
    gauge!(FLEET_RUNS).set(runs as f64);
}

/// Counts a retried ledger write (`op`: `finish`).
pub(crate) fn ledger_retry(op: &'static str) {
    describe_counter!(
        LEDGER_RETRIES,
        "Ledger writes retried after a failure, by operation (finish: recording a result)."
    );
    counter!(LEDGER_RETRIES, "op" => op).increment(1);
}

/// Sets the jobs the run knows it has (once known) and how many of them have no outcome yet.
pub(crate) fn jobs_left(known: u64, done: u64) {
    gauge!(JOBS_KNOWN).set(known as f64);
    gauge!(JOBS_REMAINING).set(known.saturating_sub(done) as f64);
}
