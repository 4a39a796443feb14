//! The settings as clap reads them, one struct per section of the TOML file: each field is a
//! setting's flag, its environment variable `COGNITO_RESEND_<SECTION>_<KEY>`, its `--help` text and
//! (by serde) its key, declared together once. The same structs are the raw layered form:
//! [`super::Settings::load`] merges them into figment as the top layer, over the TOML file and the
//! built-in defaults, and extracts the result back into them before validating it.
//!
//! A field is serialized only when it was given: `None`, an empty value (typically an empty
//! environment variable), an empty list or an absent boolean flag leave the key to a lower layer.
//! Numbers and durations stay strings until [`super::Settings`] validates them, so every bad
//! value, whichever layer it came from, gets the same error naming its key and flag.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Deserializer, Serialize};

/// Whether a flag's value says nothing, so a lower layer decides.
trait Unset {
    fn is_unset(&self) -> bool;
}

impl Unset for Option<String> {
    fn is_unset(&self) -> bool {
        self.as_deref().is_none_or(|s| s.trim().is_empty())
    }
}

impl Unset for Option<PathBuf> {
    fn is_unset(&self) -> bool {
        self.as_ref()
            .is_none_or(|p| p.to_string_lossy().trim().is_empty())
    }
}

impl Unset for Vec<String> {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

/// A boolean flag that is absent says nothing: it must not undo `true` from the file.
impl Unset for bool {
    fn is_unset(&self) -> bool {
        !*self
    }
}

fn unset<T: Unset>(value: &T) -> bool {
    value.is_unset()
}

/// A value as text, whether TOML wrote it as a number or a string (flags and environment
/// variables always give text): numbers and durations are parsed once, by the validation, so a
/// bad one gets the same error naming its key whichever layer it came from.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Int(i64),
        Float(f64),
        Str(String),
    }
    Ok(Some(match Text::deserialize(d)? {
        Text::Int(n) => n.to_string(),
        Text::Float(x) => x.to_string(),
        Text::Str(s) => s,
    }))
}

/// Every setting as a flag, by section. The two boolean flags of `run` and `log.usernames` read
/// their environment variables in [`super::Settings::load`] instead of through clap, which rejects
/// an empty value for a flag.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsArgs {
    /// TOML settings file (see config/example.toml for every key).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_CONFIG",
        value_name = "FILE"
    )]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    #[serde(skip)]
    pub verbose: u8,

    /// Less output: warnings and errors only, no progress and no summary.
    #[arg(short, long, global = true)]
    #[serde(skip)]
    pub quiet: bool,

    /// The `[cognito]` section.
    #[command(flatten)]
    pub cognito: CognitoArgs,

    /// The `[aws]` section.
    #[command(flatten)]
    pub aws: AwsArgs,

    /// The `[run]` section.
    #[command(flatten)]
    pub run: RunArgs,

    /// The `[retry]` section.
    #[command(flatten)]
    pub retry: RetryArgs,

    /// The `[report]` section.
    #[command(flatten)]
    pub report: ReportArgs,

    /// The `[ledger]` section.
    #[command(flatten)]
    pub ledger: LedgerArgs,

    /// The `[discover]` section.
    #[command(flatten)]
    pub discover: DiscoverArgs,

    /// The `[metrics]` section.
    #[command(flatten)]
    pub metrics: MetricsArgs,

    /// The `[sqs]` section.
    #[command(flatten)]
    pub sqs: SqsArgs,

    /// The `[log]` section.
    #[command(flatten)]
    pub log: LogArgs,

    /// The `[limits]` section.
    #[command(flatten)]
    pub limits: LimitsArgs,

    /// The `[lambda]` section.
    #[command(flatten)]
    pub lambda: LambdaArgs,
}

/// The `[cognito]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CognitoArgs {
    /// App client id. A job (CSV column or message field `client_id`) may carry its own.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CLIENT_ID",
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub client_id: Option<String>,

    /// Another app client id jobs may name (repeatable; env: comma-separated). A job naming a
    /// client id that is neither this nor --client-id is `invalid` and never called.
    #[arg(
        long = "allow-client-id",
        global = true,
        env = "COGNITO_RESEND_COGNITO_ALLOWED_CLIENT_IDS",
        value_delimiter = ',',
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", rename = "allowed_client_ids")]
    pub allow_client_id: Vec<String>,

    /// File holding the app client secret (or set env COGNITO_RESEND_CLIENT_SECRET). When set,
    /// each request carries SecretHash = Base64(HMAC-SHA256(secret, username + client_id)). The
    /// secret itself is never accepted as a flag value and never logged.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "unset")]
    pub client_secret_file: Option<PathBuf>,

    /// Cognito endpoint URL, for emulators and VPC endpoints (default: AWS's).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_ENDPOINT",
        value_name = "URL"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "endpoint"
    )]
    pub cognito_endpoint: Option<String>,

    /// User pool id: read once at the start of every command (its profile: case sensitivity,
    /// aliases, media, clients), and for discover, backfill --from-pool, --precheck and the
    /// resolution of aliases. Needs IAM credentials.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_USER_POOL_ID",
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub user_pool_id: Option<String>,

    /// The user pool tells usernames apart by case (`alice` and `Alice` are two users): ledger
    /// keys are then the username as written. Without it, usernames are folded to lower case
    /// for the key (a case-insensitive pool, the console's default). With --user-pool-id the
    /// pool's own setting decides, and this flag must agree with it.
    /// [env: COGNITO_RESEND_COGNITO_CASE_SENSITIVE_USERNAMES=true]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "unset")]
    pub case_sensitive_usernames: bool,

    /// Per-attempt timeout of a Cognito call [default: 10s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_ATTEMPT_TIMEOUT",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub attempt_timeout: Option<String>,

    /// Connect timeout of a Cognito call [default: 3s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CONNECT_TIMEOUT",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub connect_timeout: Option<String>,

    /// A ClientMetadata key every request carries, for the pool's Lambda triggers (repeatable;
    /// env: comma-separated). A job's own key (CSV column client_metadata.KEY, message field
    /// client_metadata) wins. Flags add to or replace the keys of the file's
    /// [cognito.client_metadata] table.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CLIENT_METADATA",
        value_delimiter = ',',
        value_name = "KEY=VALUE",
        value_parser = key_value
    )]
    #[serde(
        skip_serializing_if = "no_pairs",
        serialize_with = "pairs_as_table",
        deserialize_with = "table_as_pairs"
    )]
    pub client_metadata: Vec<(String, String)>,

    /// AnalyticsMetadata.AnalyticsEndpointId for every request whose job carries none.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_ANALYTICS_ENDPOINT_ID",
        value_name = "ID"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub analytics_endpoint_id: Option<String>,
}

/// The `[aws]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsArgs {
    /// AWS region (default: the AWS config chain: AWS_REGION, profile, ...).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_AWS_REGION",
        value_name = "REGION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub region: Option<String>,
}

/// The `[run]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunArgs {
    /// Max Cognito calls in flight (the semaphore) [default: 16].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_CONCURRENCY",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub concurrency: Option<String>,

    /// Max Cognito calls per second across the process (a ceiling for the rate controller, which
    /// settles under the quota it measures); 0 = no ceiling (slow start from 10/s). Cognito's
    /// quota is per account and region and shared with live sign-ups: stay below it [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_RATE",
        value_name = "PER_SECOND"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub rate: Option<String>,

    /// A calls-per-second budget for every run sharing the ledger (needs --state FILE or
    /// dynamodb://TABLE): each live run takes budget / live runs as its ceiling, recomputed with
    /// every heartbeat as runs come and go, and replacing --rate. 0 = none [default: none].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_FLEET_RATE",
        value_name = "PER_SECOND"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub fleet_rate: Option<String>,

    /// Do everything but the send: every job gets outcome `dry_run`, or `cooldown` when the
    /// ledger says so (with --precheck also `already_confirmed` / `not_found`): the plan.
    /// [env: COGNITO_RESEND_RUN_DRY_RUN=true]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "unset")]
    pub dry_run: bool,

    /// AdminGetUser before each send (needs --user-pool-id and IAM credentials): only
    /// UNCONFIRMED users are sent; others end `already_confirmed` / `not_found` without spending
    /// a resend. [env: COGNITO_RESEND_RUN_PRECHECK=true]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "unset")]
    pub precheck: bool,

    /// Max AdminGetUser calls per second for --precheck; 0 = no limit [default: 20].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_PRECHECK_RATE",
        value_name = "PER_SECOND"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub precheck_rate: Option<String>,

    /// A name for this run's sends (e.g. day-3): recorded with each send in the ledger and on
    /// every report line; `ledger stats` counts sends per wave. 1 to 64 of letters, digits,
    /// `-`, `_`, `.`, `:`.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_WAVE",
        value_name = "NAME"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub wave: Option<String>,
}

/// The `[retry]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryArgs {
    /// Max attempts per job [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_ATTEMPTS",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_attempts: Option<String>,

    /// Max time from a job's first attempt to its last [default: 10m].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_ELAPSED",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_elapsed: Option<String>,

    /// First retry delay [default: 250ms].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_INITIAL_BACKOFF",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub initial_backoff: Option<String>,

    /// Longest retry delay [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_BACKOFF",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_backoff: Option<String>,

    /// Growth factor of the retry delay [default: 2.0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MULTIPLIER",
        value_name = "X"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub multiplier: Option<String>,

    /// Randomization factor of the retry delay, 0 to 1 [default: 0.5].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_JITTER",
        value_name = "X"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub jitter: Option<String>,
}

/// The `[report]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportArgs {
    /// Write one JSON line per job outcome to this file.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_REPORT_PATH",
        value_name = "FILE"
    )]
    #[serde(skip_serializing_if = "unset", rename = "path")]
    pub report: Option<PathBuf>,

    /// When the report file already holds lines (an earlier run's record of who was sent a
    /// code): `refuse` to start, `append` this run's lines, or `overwrite` it [default: refuse].
    #[arg(
        long = "report-if-exists",
        global = true,
        env = "COGNITO_RESEND_REPORT_IF_EXISTS",
        value_name = "refuse|append|overwrite"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub if_exists: Option<String>,

    /// Add this run's lines to an existing report (`--report-if-exists append`).
    #[arg(long, global = true)]
    #[serde(skip)]
    pub append: bool,

    /// Replace an existing report (`--report-if-exists overwrite`).
    #[arg(long, global = true)]
    #[serde(skip)]
    pub overwrite: bool,
}

/// The `[ledger]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerArgs {
    /// The send ledger: a SQLite file, `dynamodb://TABLE` (shared by replicas on many hosts), or
    /// `none` (no claim, no cooldown: a rerun or a redelivered message sends again)
    /// [default: cognito-resend.db].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_PATH",
        value_name = "FILE|dynamodb://TABLE|none"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "path"
    )]
    pub state: Option<String>,

    /// Never send the same client id + username twice within this window [default: 24h].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_COOLDOWN",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub cooldown: Option<String>,

    /// A run whose ledger heartbeat is older than this is taken for dead: users it had claimed
    /// are "in doubt" and sent again [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_CLAIM_LEASE",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub claim_lease: Option<String>,

    /// DynamoDB endpoint URL for --state dynamodb://TABLE (local DynamoDB, VPC endpoints).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub dynamodb_endpoint: Option<String>,

    /// Retention: user rows with nothing written for this long are deleted — by DynamoDB's TTL
    /// (attribute `expires_at`), or for SQLite when a run opens the ledger; at least the
    /// cooldown. Also what `ledger prune` keeps by default. 0s = keep forever [default: 0s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_RETENTION",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub retention: Option<String>,

    /// Lifetime cap: a user who already got N codes from this tool (every run and wave the
    /// ledger has seen) is `capped`, never called; needs a ledger. 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_MAX_SENDS_PER_USER",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends_per_user: Option<String>,
}

/// The `[discover]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverArgs {
    /// Discovery: only users created at or after this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_CREATED_AFTER",
        value_name = "TIME"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub created_after: Option<String>,

    /// Discovery: only users created before this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_CREATED_BEFORE",
        value_name = "TIME"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub created_before: Option<String>,

    /// Discovery: only users created at least this long ago, e.g. 1h (skips users who signed up
    /// minutes ago).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_OLDER_THAN",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub older_than: Option<String>,

    /// Discovery: max ListUsers calls per second (its quota is low and shared); 0 = no limit
    /// [default: 5].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_LIST_RATE",
        value_name = "PER_SECOND"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub list_rate: Option<String>,
}

/// The `[metrics]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsArgs {
    /// Serve /metrics, /healthz and /readyz here; port 0 picks a free port and logs it; `none`
    /// serves nothing [default: 127.0.0.1:9464].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "listen"
    )]
    pub metrics_addr: Option<String>,

    /// After a one-shot command finishes, keep serving /metrics this long so a scraper sees the
    /// final counts (SIGINT/SIGTERM ends it sooner) [default: 0s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_METRICS_LINGER",
        value_name = "DURATION"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "linger"
    )]
    pub metrics_linger: Option<String>,

    /// When a one-shot command (backfill, enqueue, discover --to-queue) ends, push its final
    /// metrics to this Pushgateway (http://host:9091), under job="cognito-resend" and
    /// command=<command>.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_METRICS_PUSHGATEWAY",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub pushgateway: Option<String>,
}

/// The `[sqs]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqsArgs {
    /// The SQS queue URL (consume, enqueue).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_QUEUE_URL",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub queue_url: Option<String>,

    /// SQS endpoint URL, for emulators and VPC endpoints (default: AWS's).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_ENDPOINT",
        value_name = "URL"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "endpoint"
    )]
    pub sqs_endpoint: Option<String>,

    /// Messages per ReceiveMessage, 1 to 10 [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_BATCH_SIZE",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub batch_size: Option<String>,

    /// Long-poll wait of ReceiveMessage, 0s to 20s [default: 20s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_WAIT_TIME",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub wait_time: Option<String>,

    /// Visibility timeout of received messages; renewed while their job runs [default: 60s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_VISIBILITY_TIMEOUT",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub visibility_timeout: Option<String>,

    /// Stop renewing a message's visibility after it has been held this long [default: 1h].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_MAX_EXTENSION",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_extension: Option<String>,

    /// consume: stop receiving after N messages and exit once they are settled; with
    /// --dry-run, the pass also ends at the first empty long poll. 0 = no limit [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_MAX_MESSAGES",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_messages: Option<String>,

    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_SHUTDOWN_GRACE",
        value_name = "DURATION"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub shutdown_grace: Option<String>,
}

/// The `[log]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogArgs {
    /// Log format: text or json [default: text].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "format"
    )]
    pub log_format: Option<String>,

    /// Show usernames in logs (they are personal data; by default logs show a short stable hash).
    /// [env: COGNITO_RESEND_LOG_USERNAMES=true]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "unset", rename = "usernames")]
    pub log_usernames: bool,
}

/// The `[limits]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsArgs {
    /// Spend cap: codes this run may send; a job reserves one before its call and gives it back
    /// if nothing was sent. Reached: the run stops taking work, exit 4. 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends: Option<String>,

    /// Spend cap: codes a UTC day across every run sharing the ledger (reserved in the ledger
    /// before each call); needs a ledger. 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS_PER_DAY",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends_per_day: Option<String>,

    /// Spend cap: SMS codes a UTC day across the ledger; may overshoot by the calls in flight
    /// when it is reached (the medium is known only from the answer). 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SMS_PER_DAY",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sms_per_day: Option<String>,

    /// Spend cap: email codes a UTC day across the ledger, like --max-sms-per-day. 0 = no cap
    /// [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_EMAIL_PER_DAY",
        value_name = "N"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_email_per_day: Option<String>,
}

/// `--client-metadata KEY=VALUE`: split at the first `=` (a value may hold more). An empty
/// text (an empty environment variable) is no pair at all: it counts as unset.
fn key_value(text: &str) -> Result<(String, String), String> {
    if text.is_empty() {
        return Ok((String::new(), String::new()));
    }
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!(
            "`{text}` is not KEY=VALUE (a value holding a comma goes in the settings file's \
             [cognito.client_metadata] table)"
        )),
    }
}

/// Flags' `KEY=VALUE` pairs as the TOML table they stand for, so figment merges them into the
/// file's `[cognito.client_metadata]` key by key.
fn pairs_as_table<S: serde::Serializer>(
    pairs: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().filter(|p| !is_no_pair(p)).map(|(k, v)| (k, v)))
}

/// What [`key_value`] makes of an empty text.
fn is_no_pair((k, v): &(String, String)) -> bool {
    k.is_empty() && v.is_empty()
}

/// No `--client-metadata` given (or only empty ones): the file's table decides.
fn no_pairs(pairs: &[(String, String)]) -> bool {
    pairs.iter().all(is_no_pair)
}

/// The merged table back as pairs, in key order.
fn table_as_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
    Ok(
        std::collections::BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .collect(),
    )
}

/// The `[lambda]` section as flags: read by the Lambda function only (`cognito-resend-lambda`,
/// docs/lambda.md); the commands validate them and otherwise ignore them.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LambdaArgs {
    /// Lambda function: stop taking work when the invocation has less than this left, give
    /// calls in flight half of it, and return every record not done [default: 5s].
    #[arg(
        long = "lambda-margin",
        global = true,
        env = "COGNITO_RESEND_LAMBDA_MARGIN",
        value_name = "DURATION"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "margin"
    )]
    pub margin: Option<String>,

    /// Lambda function: the function's timeout; an invocation ends by its start plus this, or by
    /// the runtime's deadline if that is earlier (set it to the function's Timeout).
    #[arg(
        long = "lambda-timeout",
        global = true,
        env = "COGNITO_RESEND_LAMBDA_TIMEOUT",
        value_name = "DURATION"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "timeout"
    )]
    pub timeout: Option<String>,

    /// Lambda function: the AWS Secrets Manager secret (name or ARN) holding the app client
    /// secret, read once per container (instead of --client-secret-file).
    #[arg(
        long = "lambda-client-secret-id",
        global = true,
        env = "COGNITO_RESEND_LAMBDA_CLIENT_SECRET_ID",
        value_name = "ID"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "client_secret_id"
    )]
    pub client_secret_id: Option<String>,
}
