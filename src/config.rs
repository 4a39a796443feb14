//! Settings in two stages: a raw serde form layered from defaults, the TOML file and the command
//! line (the section structs of [`args`], whose fields are at once a flag, its
//! `COGNITO_RESEND_<SECTION>_<KEY>` environment variable read by clap, and a TOML key), then
//! validated into typed [`Settings`] that build the working objects.
//!
//! This is the only module that reads the environment (the client secret,
//! `COGNITO_RESEND_CLIENT_SECRET`, which is never a flag). Every validation error names the key
//! and, through figment, the layer it came from, so an operator can find the bad value.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;

pub use crate::cognito::ClientSecret;
use crate::outcome::report_writer::IfExists;
use crate::telemetry::LogFormat;

mod args;

pub use args::*;

/// The environment variable that may hold the client secret itself.
pub const CLIENT_SECRET_ENV: &str = "COGNITO_RESEND_CLIENT_SECRET";

/// A configuration problem: the run does not start and the process exits 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(crate) fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: the raw, layered form: [`SettingsArgs`], whose section structs are both the flags and
// the TOML keys. The built-in defaults are the bottom layer, written as the TOML file would.
// ---------------------------------------------------------------------------------------------

/// The built-in defaults, as a TOML file would give them (keys without a default are unset).
const DEFAULTS: &str = r#"
[cognito]
attempt_timeout = "10s"
connect_timeout = "3s"

[run]
concurrency = 16
rate = 10
precheck_rate = 20

[retry]
max_attempts = 10
max_elapsed = "10m"
initial_backoff = "250ms"
max_backoff = "30s"
multiplier = 2.0
jitter = 0.5

[discover]
list_rate = 5

[report]
if_exists = "refuse"

[ledger]
path = "cognito-resend.db"
cooldown = "24h"
claim_lease = "30s"
max_sends_per_user = 0
retention = "0s"

[metrics]
listen = "127.0.0.1:9464"
linger = "0s"

[sqs]
batch_size = 10
wait_time = "20s"
visibility_timeout = "60s"
max_extension = "1h"
max_messages = 0
shutdown_grace = "30s"

[limits]
max_sends = 0
max_sends_per_day = 0
max_sms_per_day = 0
max_email_per_day = 0

[log]
format = "text"

[lambda]
margin = "5s"
"#;

/// A layered value as text; the defaults give every key that validation parses, so an unset
/// one reads as empty and fails its parse naming the key.
fn given(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// `report.if_exists`.
fn if_exists(text: &str) -> Result<IfExists, ConfigError> {
    IfExists::parse(text).ok_or_else(|| {
        ConfigError::new(format!(
            "report.if_exists (--report-if-exists): {text:?} is not one of refuse, append, \
             overwrite"
        ))
    })
}

/// Boolean settings given in the environment (clap reads the others).
#[derive(Debug, Default, Clone, Copy)]
struct EnvFlags {
    dry_run: bool,
    precheck: bool,
    log_usernames: bool,
    case_sensitive_usernames: bool,
}

impl EnvFlags {
    fn read() -> Result<Self, ConfigError> {
        Ok(Self {
            dry_run: env_bool("COGNITO_RESEND_RUN_DRY_RUN")?,
            precheck: env_bool("COGNITO_RESEND_RUN_PRECHECK")?,
            log_usernames: env_bool("COGNITO_RESEND_LOG_USERNAMES")?,
            case_sensitive_usernames: env_bool("COGNITO_RESEND_COGNITO_CASE_SENSITIVE_USERNAMES")?,
        })
    }
}

/// `cognito.client_id`: Cognito's own constraint (1-128 of `[\w+]`), so a typo is a usage error
/// (exit 2) rather than an early stop after the first calls.
fn client_id(id: Option<String>) -> Result<Option<String>, ConfigError> {
    if let Some(id) = &id {
        crate::job::check_client_id(id)
            .map_err(|e| ConfigError::new(format!("cognito.client_id (--client-id): {e}")))?;
    }
    Ok(id)
}

/// `cognito.allowed_client_ids`: trimmed, no empty entry, no duplicates.
fn allowed_client_ids(raw: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut ids: Vec<String> = Vec::with_capacity(raw.len());
    for id in raw {
        let id = id.trim();
        if id.is_empty() {
            return Err(ConfigError::new(
                "cognito.allowed_client_ids (--allow-client-id): an empty client id",
            ));
        }
        crate::job::check_client_id(id).map_err(|e| {
            ConfigError::new(format!(
                "cognito.allowed_client_ids (--allow-client-id): {e}"
            ))
        })?;
        if !ids.iter().any(|known| known == id) {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}

/// `log.format`: text or json.
fn log_format(text: &str) -> Result<LogFormat, ConfigError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ConfigError::new(format!(
            "log.format (--log-format): {other:?} is not text or json"
        ))),
    }
}

fn env_bool(name: &str) -> Result<bool, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(false),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "false" | "0" | "no" | "off" => Ok(false),
            "true" | "1" | "yes" | "on" => Ok(true),
            other => Err(ConfigError::new(format!(
                "{name}: {other:?} is not a boolean (true or false)"
            ))),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 2: validated, typed settings.
// ---------------------------------------------------------------------------------------------

/// Where the client secret came from, for `check` (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The file named by `--client-secret-file` / `cognito.client_secret_file`.
    File(PathBuf),
    /// The `COGNITO_RESEND_CLIENT_SECRET` environment variable.
    Env,
    /// AWS Secrets Manager (`lambda.client_secret_id`), read by the Lambda function.
    SecretsManager(String),
}

/// Everything about talking to Cognito.
#[derive(Debug, Clone, Serialize)]
pub struct CognitoSettings {
    /// Default app client id; a job may carry its own.
    pub client_id: Option<String>,
    /// Other app client ids a job may name (`client_id` is always allowed); a job naming any
    /// other is `invalid`, so a queue writer cannot point the run at a client of its choosing.
    pub allowed_client_ids: Vec<String>,
    /// The app client secret and where it came from; shown as the file it was read from.
    #[serde(
        rename = "client_secret_file",
        serialize_with = "show::secret_file",
        skip_serializing_if = "show::no_secret_file"
    )]
    pub secret: Option<(ClientSecret, SecretSource)>,
    /// Endpoint override (emulator, VPC endpoint).
    #[serde(serialize_with = "show::url")]
    pub endpoint: Option<url::Url>,
    /// The pool: its profile is read at the start of every command; discovery (`discover`,
    /// `backfill --from-pool`), `--precheck` and alias resolution read its users.
    pub user_pool_id: Option<String>,
    /// `--case-sensitive-usernames`: the pool tells `alice` from `Alice` (ledger keys as
    /// written). The pool profile, when read, decides instead, and must agree.
    pub case_sensitive_usernames: bool,
    /// Region (`aws.region`, shown there by `check`); `None` leaves it to the AWS config chain.
    #[serde(skip)]
    pub region: Option<String>,
    /// Bounds one HTTP attempt, so a hung call cannot hold a permit forever.
    #[serde(serialize_with = "show::duration")]
    pub attempt_timeout: Duration,
    /// Bounds connection setup.
    #[serde(serialize_with = "show::duration")]
    pub connect_timeout: Duration,
    /// AnalyticsMetadata.AnalyticsEndpointId for jobs that carry none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics_endpoint_id: Option<String>,
    /// ClientMetadata every request carries under the job's own keys (last: a TOML table).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub client_metadata: std::collections::BTreeMap<String, String>,
}

impl CognitoSettings {
    /// Where and how the Cognito clients connect, as the client takes it.
    pub fn connection(&self) -> crate::cognito::Connection {
        crate::cognito::Connection {
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            attempt_timeout: self.attempt_timeout,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The client secret, if one was given.
    pub fn client_secret(&self) -> Option<ClientSecret> {
        self.secret.as_ref().map(|(s, _)| s.clone())
    }

    /// What the engine merges under every job's own request fields.
    pub fn request_defaults(&self) -> crate::job::RequestDefaults {
        crate::job::RequestDefaults {
            client_metadata: self.client_metadata.clone(),
            analytics_endpoint_id: self.analytics_endpoint_id.clone(),
        }
    }
}

/// How the engine runs jobs.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Max Cognito calls in flight.
    pub concurrency: NonZeroUsize,
    /// Calls per second ceiling; `None` = no limit (`--rate 0`).
    #[serde(serialize_with = "show::zero_if_none")]
    pub rate: Option<f64>,
    /// `--fleet-rate`: calls per second for every run sharing the ledger; each live run takes
    /// its share as its ceiling, instead of `rate`. `None`: no fleet budget.
    #[serde(serialize_with = "show::zero_if_none")]
    pub fleet_rate: Option<f64>,
    /// Everything but the send.
    pub dry_run: bool,
    /// AdminGetUser before each send; only UNCONFIRMED users are sent.
    pub precheck: bool,
    /// AdminGetUser calls per second (`None` = no limit).
    #[serde(serialize_with = "show::zero_if_none")]
    pub precheck_rate: Option<f64>,
    /// `--wave`: the name this run's sends are recorded under (ledger, report); not a metric
    /// label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
}

/// The retry budget and backoff schedule of one job.
#[derive(Debug, Clone, Serialize)]
pub struct RetrySettings {
    /// Attempts per job, including the first.
    pub max_attempts: NonZeroU32,
    /// Time from the first attempt after which no retry starts.
    #[serde(serialize_with = "show::duration")]
    pub max_elapsed: Duration,
    /// First delay.
    #[serde(serialize_with = "show::duration")]
    pub initial_backoff: Duration,
    /// Longest delay.
    #[serde(serialize_with = "show::duration")]
    pub max_backoff: Duration,
    /// Growth factor, at least 1.
    pub multiplier: f64,
    /// Randomization factor in [0, 1].
    pub jitter: f64,
}

/// The SQS side of `consume` and `enqueue`, and the shutdown grace of every command.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSettings {
    /// The queue; required by `consume` and `enqueue`.
    pub queue_url: Option<String>,
    /// Endpoint override (moto, VPC endpoints).
    #[serde(serialize_with = "show::url")]
    pub endpoint: Option<url::Url>,
    /// Messages per receive, 1 to 10.
    pub batch_size: u32,
    /// Long-poll wait, at most 20 s.
    #[serde(serialize_with = "show::duration")]
    pub wait_time: Duration,
    /// Visibility of received messages, 1 s to 12 h.
    #[serde(serialize_with = "show::duration")]
    pub visibility_timeout: Duration,
    /// Longest a message is kept invisible by heartbeats.
    #[serde(serialize_with = "show::duration")]
    pub max_extension: Duration,
    /// `consume` stops receiving after this many messages (`None`: no limit).
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_messages: Option<u64>,
    /// On a signal, how long in-flight calls may take to finish (every command, not only
    /// `consume`: the key lives in `[sqs]` for compatibility).
    #[serde(serialize_with = "show::duration")]
    pub shutdown_grace: Duration,
}

/// Discovery (`discover`, `backfill --from-pool`).
#[derive(Debug, Clone, Serialize)]
pub struct DiscoverSettings {
    /// Only users created at or after this time.
    #[serde(serialize_with = "show::time")]
    pub created_after: Option<std::time::SystemTime>,
    /// Only users created before this time.
    #[serde(serialize_with = "show::time")]
    pub created_before: Option<std::time::SystemTime>,
    /// Only users created at least this long ago.
    #[serde(serialize_with = "show::opt_duration")]
    pub older_than: Option<Duration>,
    /// ListUsers calls per second (`None` = no limit).
    #[serde(serialize_with = "show::zero_if_none")]
    pub list_rate: Option<f64>,
}

impl DiscoverSettings {
    /// The creation window these settings draw.
    pub fn window(&self) -> crate::job::Window {
        crate::job::Window {
            created_after: self.created_after,
            created_before: self.created_before,
            older_than: self.older_than,
        }
    }
}

/// The send ledger.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerSettings {
    /// `--state`: a file, `dynamodb://TABLE` or `none`.
    #[serde(serialize_with = "show::display")]
    pub path: crate::ledger::StateSpec,
    /// Never send the same client+username twice within this.
    #[serde(serialize_with = "show::duration")]
    pub cooldown: Duration,
    /// A run whose heartbeat is older than this is dead; its claims are in doubt.
    #[serde(serialize_with = "show::duration")]
    pub claim_lease: Duration,
    /// DynamoDB endpoint override (local DynamoDB, moto, VPC endpoints).
    #[serde(serialize_with = "show::url")]
    pub dynamodb_endpoint: Option<url::Url>,
    /// `--max-sends-per-user`: codes a user may get from this tool over the ledger's life.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends_per_user: Option<u64>,
    /// `--retention`: user rows idle this long are deleted (DynamoDB's TTL; SQLite when a run
    /// opens it). `None` keeps them.
    #[serde(serialize_with = "show::duration_or_zero")]
    pub retention: Option<Duration>,
}

/// Where metrics are served.
#[derive(Debug, Clone, Serialize)]
pub struct MetricsSettings {
    /// `None` = serve nothing.
    #[serde(serialize_with = "show::listen")]
    pub listen: Option<SocketAddr>,
    /// How long a finished one-shot run keeps serving its final metrics.
    #[serde(serialize_with = "show::duration")]
    pub linger: Duration,
    /// Where a one-shot run pushes its final metrics.
    #[serde(serialize_with = "show::url")]
    pub pushgateway: Option<url::Url>,
}

/// Spend caps (`limits.*`): 0 in the file or on the command line means no cap.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LimitSettings {
    /// `--max-sends`: codes this run may send.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends: Option<u64>,
    /// `--max-sends-per-day`: codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends_per_day: Option<u64>,
    /// `--max-sms-per-day`: SMS codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sms_per_day: Option<u64>,
    /// `--max-email-per-day`: email codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_email_per_day: Option<u64>,
}

impl LimitSettings {
    /// The per-day caps, kept in the ledger (UTC days).
    pub fn day(&self) -> crate::ledger::DayCaps {
        crate::ledger::DayCaps {
            sends: self.max_sends_per_day,
            sms: self.max_sms_per_day,
            email: self.max_email_per_day,
        }
    }
}

/// The JSON Lines report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReportSettings {
    /// One line per job outcome goes here.
    pub path: Option<PathBuf>,
    /// What to do when that file already holds an earlier run's lines.
    pub if_exists: IfExists,
}

/// How logs look.
#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// Show usernames instead of their hash.
    pub usernames: bool,
    /// -v count minus -q: 0 info, 1 debug, 2 trace, -1 warnings only.
    #[serde(skip)]
    pub verbosity: i8,
}

/// The Lambda function's own settings (`[lambda]`, docs/lambda.md).
#[derive(Debug, Clone, Serialize)]
pub struct LambdaSettings {
    /// Stop taking work when the invocation has less than this left; calls in flight get half
    /// of it, the other half is for recording, returning records and the metrics.
    #[serde(serialize_with = "show::duration")]
    pub margin: Duration,
    /// The function's timeout, a bound on each invocation besides the runtime's deadline.
    #[serde(serialize_with = "show::opt_duration")]
    pub timeout: Option<Duration>,
    /// The Secrets Manager secret holding the app client secret (read once per container).
    pub client_secret_id: Option<String>,
}

/// The validated settings every command starts from. Sections and keys serialize as the TOML
/// file spells them: that is what `check` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The TOML file, if any.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Settings that are allowed but weaken a guarantee (`--cooldown 0`, `--shutdown-grace
    /// 0`): said loudly when logging starts and by `check`.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Cognito connection.
    pub cognito: CognitoSettings,
    /// Engine.
    pub run: RunSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// JSON Lines report file.
    pub report: ReportSettings,
    /// The send ledger.
    pub ledger: LedgerSettings,
    /// Discovery.
    pub discover: DiscoverSettings,
    /// Metrics endpoint.
    pub metrics: MetricsSettings,
    /// SQS.
    pub sqs: QueueSettings,
    /// Logging.
    pub log: LogSettings,
    /// Spend caps.
    pub limits: LimitSettings,
    /// The Lambda function.
    pub lambda: LambdaSettings,
}

impl Settings {
    /// Layers defaults, the TOML file and the command line, then validates.
    pub fn load(args: &SettingsArgs) -> Result<Self, ConfigError> {
        let env_secret = std::env::var(CLIENT_SECRET_ENV)
            .ok()
            .filter(|v| !v.is_empty());
        Self::layered(args, EnvFlags::read()?, env_secret)
    }

    /// [`Settings::load`] with the environment it reads itself given.
    fn layered(
        args: &SettingsArgs,
        env: EnvFlags,
        env_secret: Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = &args.config {
            if !path.is_file() {
                return Err(ConfigError::new(format!(
                    "--config: settings file {} does not exist or is not a file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // The flags merge as they are: each section struct serializes only what was given.
        let mut given = args.clone();
        given.run.dry_run |= env.dry_run;
        given.run.precheck |= env.precheck;
        given.log.log_usernames |= env.log_usernames;
        given.cognito.case_sensitive_usernames |= env.case_sensitive_usernames;
        // `--append` and `--overwrite` are `--report-if-exists append|overwrite` spelled short.
        if given.report.append && given.report.overwrite {
            return Err(ConfigError::new(
                "--append and --overwrite (report.if_exists) say opposite things: give one",
            ));
        }
        if given.report.append {
            given.report.if_exists = Some("append".to_owned());
        } else if given.report.overwrite {
            given.report.if_exists = Some("overwrite".to_owned());
        }
        figment = figment.merge(Serialized::defaults(given));
        let raw: SettingsArgs = figment
            .extract()
            .map_err(|e| ConfigError::new(format!("invalid settings: {e}")))?;
        Self::validate(raw, args, env_secret)
    }

    fn validate(
        raw: SettingsArgs,
        args: &SettingsArgs,
        env_secret: Option<String>,
    ) -> Result<Self, ConfigError> {
        let secret = match (&raw.cognito.client_secret_file, env_secret) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(format!(
                    "both --client-secret-file (cognito.client_secret_file) and {CLIENT_SECRET_ENV} \
                     are set: give the client secret one way only"
                )));
            }
            (Some(path), None) => Some((read_secret_file(path)?, SecretSource::File(path.clone()))),
            (None, Some(value)) => Some((ClientSecret::new(value.trim()), SecretSource::Env)),
            (None, None) => None,
        };
        let endpoint = http_url(
            "cognito.endpoint (--cognito-endpoint)",
            non_empty(raw.cognito.cognito_endpoint),
        )?;
        let cognito = CognitoSettings {
            client_id: client_id(non_empty(raw.cognito.client_id))?,
            allowed_client_ids: allowed_client_ids(raw.cognito.allow_client_id)?,
            secret,
            endpoint,
            user_pool_id: non_empty(raw.cognito.user_pool_id),
            case_sensitive_usernames: raw.cognito.case_sensitive_usernames,
            region: non_empty(raw.aws.region),
            attempt_timeout: positive_duration(
                "cognito.attempt_timeout (--attempt-timeout)",
                given(&raw.cognito.attempt_timeout),
            )?,
            connect_timeout: positive_duration(
                "cognito.connect_timeout (--connect-timeout)",
                given(&raw.cognito.connect_timeout),
            )?,
            analytics_endpoint_id: analytics_endpoint_id(raw.cognito.analytics_endpoint_id)?,
            client_metadata: client_metadata(raw.cognito.client_metadata)?,
        };

        let concurrency: usize = parse_num(
            "run.concurrency (--concurrency)",
            given(&raw.run.concurrency),
        )?;
        let concurrency = NonZeroUsize::new(concurrency).ok_or_else(|| {
            ConfigError::new("run.concurrency (--concurrency): must be at least 1")
        })?;
        if concurrency.get() > MAX_CONCURRENCY {
            return Err(ConfigError::new(format!(
                "run.concurrency (--concurrency): {concurrency} is above the limit of \
                 {MAX_CONCURRENCY} calls in flight (Cognito's quota is tens of calls per second: \
                 more in flight only queues behind the rate limit)"
            )));
        }
        let rate = rate_setting("run.rate (--rate)", given(&raw.run.rate))?;
        let mut warnings = Vec::new();
        let precheck_rate = rate_setting(
            "run.precheck_rate (--precheck-rate)",
            given(&raw.run.precheck_rate),
        )?;
        let fleet_rate = match non_empty(raw.run.fleet_rate.clone()) {
            Some(r) => rate_setting("run.fleet_rate (--fleet-rate)", &r)?,
            None => None,
        };
        let run = RunSettings {
            concurrency,
            rate,
            fleet_rate,
            dry_run: raw.run.dry_run,
            precheck: raw.run.precheck,
            precheck_rate,
            wave: wave(raw.run.wave)?,
        };
        let shutdown_grace = duration(
            "sqs.shutdown_grace (--shutdown-grace)",
            given(&raw.sqs.shutdown_grace),
        )?;

        let max_attempts: u32 = parse_num(
            "retry.max_attempts (--max-attempts)",
            given(&raw.retry.max_attempts),
        )?;
        let max_attempts = NonZeroU32::new(max_attempts).ok_or_else(|| {
            ConfigError::new("retry.max_attempts (--max-attempts): must be at least 1")
        })?;
        let multiplier: f64 = parse_num(
            "retry.multiplier (--multiplier)",
            given(&raw.retry.multiplier),
        )?;
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(ConfigError::new(format!(
                "retry.multiplier (--multiplier): {multiplier} must be at least 1.0"
            )));
        }
        let jitter: f64 = parse_num("retry.jitter (--jitter)", given(&raw.retry.jitter))?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::new(format!(
                "retry.jitter (--jitter): {jitter} must be between 0 and 1"
            )));
        }
        let initial_backoff = positive_duration(
            "retry.initial_backoff (--initial-backoff)",
            given(&raw.retry.initial_backoff),
        )?;
        let max_backoff = positive_duration(
            "retry.max_backoff (--max-backoff)",
            given(&raw.retry.max_backoff),
        )?;
        if max_backoff < initial_backoff {
            return Err(ConfigError::new(format!(
                "retry.max_backoff (--max-backoff): {} is shorter than retry.initial_backoff ({})",
                given(&raw.retry.max_backoff),
                given(&raw.retry.initial_backoff)
            )));
        }
        let retry = RetrySettings {
            max_attempts,
            max_elapsed: duration(
                "retry.max_elapsed (--max-elapsed)",
                given(&raw.retry.max_elapsed),
            )?,
            initial_backoff,
            max_backoff,
            multiplier,
            jitter,
        };

        let discover = DiscoverSettings {
            created_after: timestamp(
                "discover.created_after (--created-after)",
                raw.discover.created_after.as_deref(),
            )?,
            created_before: timestamp(
                "discover.created_before (--created-before)",
                raw.discover.created_before.as_deref(),
            )?,
            older_than: match non_empty(raw.discover.older_than) {
                Some(d) => Some(duration("discover.older_than (--older-than)", &d)?),
                None => None,
            },
            list_rate: rate_setting(
                "discover.list_rate (--list-rate)",
                given(&raw.discover.list_rate),
            )?,
        };

        let claim_lease = positive_duration(
            "ledger.claim_lease (--claim-lease)",
            given(&raw.ledger.claim_lease),
        )?;
        if claim_lease < MIN_CLAIM_LEASE {
            return Err(ConfigError::new(format!(
                "ledger.claim_lease (--claim-lease): {} is shorter than six heartbeats (a run \
                 heartbeats at most every {}, so the lease must be at least {}); a shorter lease \
                 lets another run take over live claims and send twice",
                given(&raw.ledger.claim_lease),
                humantime::format_duration(MIN_HEARTBEAT),
                humantime::format_duration(MIN_CLAIM_LEASE),
            )));
        }
        let cooldown = duration("ledger.cooldown (--cooldown)", given(&raw.ledger.cooldown))?;
        if cooldown.is_zero() {
            warnings.push(
                "ledger.cooldown (--cooldown) is 0: the ledger will not stop a second code to a \
                 user who just got one (a rerun or a redelivered message sends again)"
                    .to_owned(),
            );
        }
        if shutdown_grace.is_zero() {
            warnings.push(
                "sqs.shutdown_grace (--shutdown-grace) is 0: on SIGTERM, calls in flight are \
                 abandoned at once, so their users are left in doubt (they may have got a code)"
                    .to_owned(),
            );
        }
        let state = crate::ledger::StateSpec::parse(given(&raw.ledger.state))
            .map_err(|e| ConfigError::new(format!("ledger.path (--state): {e}")))?;
        if run.fleet_rate.is_some() && state == crate::ledger::StateSpec::None {
            return Err(ConfigError::new(
                "run.fleet_rate (--fleet-rate) needs a ledger the runs share (--state FILE or \
                 --state dynamodb://TABLE): with --state none no run can see the others, so a \
                 fleet budget cannot be split; use --rate for this process alone",
            ));
        }
        let max_sends_per_user: u64 = parse_num(
            "ledger.max_sends_per_user (--max-sends-per-user)",
            given(&raw.ledger.max_sends_per_user),
        )?;
        let max_sends_per_user = (max_sends_per_user > 0).then_some(max_sends_per_user);
        if max_sends_per_user.is_some() && state == crate::ledger::StateSpec::None {
            return Err(ConfigError::new(
                "ledger.max_sends_per_user (--max-sends-per-user) counts each user's codes in \
                 the ledger: it needs one (--state FILE or dynamodb://TABLE, not none)",
            ));
        }
        let retention = duration(
            "ledger.retention (--retention)",
            given(&raw.ledger.retention),
        )?;
        let retention = (!retention.is_zero()).then_some(retention);
        if let Some(keep) = retention
            && keep < cooldown
        {
            return Err(ConfigError::new(format!(
                "ledger.retention (--retention): {} is shorter than ledger.cooldown (--cooldown)                  {}: a user's row would be deleted while they are in cooldown, and they could                  get a second code",
                humantime::format_duration(keep),
                humantime::format_duration(cooldown)
            )));
        }
        let ledger = LedgerSettings {
            path: state,
            cooldown,
            claim_lease,
            retention,
            dynamodb_endpoint: http_url(
                "ledger.dynamodb_endpoint (--dynamodb-endpoint)",
                non_empty(raw.ledger.dynamodb_endpoint),
            )?,
            max_sends_per_user,
        };

        let listen = given(&raw.metrics.metrics_addr).trim();
        let metrics = MetricsSettings {
            listen: if listen.eq_ignore_ascii_case("none") || listen.is_empty() {
                None
            } else {
                Some(listen.parse().map_err(|_| {
                    ConfigError::new(format!(
                        "metrics.listen (--metrics-addr): {listen:?} is not an address like \
                         127.0.0.1:9464 (or `none`)"
                    ))
                })?)
            },
            linger: duration(
                "metrics.linger (--metrics-linger)",
                given(&raw.metrics.metrics_linger),
            )?,
            pushgateway: match http_url(
                "metrics.pushgateway (--pushgateway)",
                non_empty(raw.metrics.pushgateway),
            )? {
                Some(u) if u.cannot_be_a_base() || u.host_str().is_none() => {
                    return Err(ConfigError::new(format!(
                        "metrics.pushgateway (--pushgateway): {} has no host",
                        redact_url(u.as_str())
                    )));
                }
                Some(u) if u.scheme() != "http" => {
                    return Err(ConfigError::new(
                        "metrics.pushgateway (--pushgateway): only http:// is supported (an \
                         in-cluster Pushgateway); put a TLS proxy in front for https",
                    ));
                }
                u => u,
            },
        };

        let batch_size: u32 =
            parse_num("sqs.batch_size (--batch-size)", given(&raw.sqs.batch_size))?;
        if !(1..=10).contains(&batch_size) {
            return Err(ConfigError::new(format!(
                "sqs.batch_size (--batch-size): {batch_size} must be between 1 and 10"
            )));
        }
        let wait_time = duration("sqs.wait_time (--wait-time)", given(&raw.sqs.wait_time))?;
        if wait_time > Duration::from_secs(20) {
            return Err(ConfigError::new(
                "sqs.wait_time (--wait-time): SQS long polls for at most 20s",
            ));
        }
        let visibility_timeout = positive_duration(
            "sqs.visibility_timeout (--visibility-timeout)",
            given(&raw.sqs.visibility_timeout),
        )?;
        if visibility_timeout < Duration::from_secs(1)
            || visibility_timeout > Duration::from_secs(12 * 3600)
        {
            return Err(ConfigError::new(
                "sqs.visibility_timeout (--visibility-timeout): must be between 1s and 12h",
            ));
        }
        let max_extension = duration(
            "sqs.max_extension (--max-extension)",
            given(&raw.sqs.max_extension),
        )?;
        if max_extension < visibility_timeout {
            return Err(ConfigError::new(format!(
                "sqs.max_extension (--max-extension): {} is shorter than \
                 sqs.visibility_timeout (--visibility-timeout, {}): a message could come back \
                 to another consumer while its first call is still running",
                given(&raw.sqs.max_extension),
                given(&raw.sqs.visibility_timeout)
            )));
        }
        let sqs = QueueSettings {
            queue_url: non_empty(raw.sqs.queue_url),
            endpoint: http_url(
                "sqs.endpoint (--sqs-endpoint)",
                non_empty(raw.sqs.sqs_endpoint),
            )?,
            batch_size,
            wait_time,
            visibility_timeout,
            max_extension,
            max_messages: {
                let n: u64 = parse_num(
                    "sqs.max_messages (--max-messages)",
                    given(&raw.sqs.max_messages),
                )?;
                (n > 0).then_some(n)
            },
            shutdown_grace,
        };

        let cap = |key: &str, v: &str| -> Result<Option<u64>, ConfigError> {
            let n: u64 = parse_num(key, v)?;
            Ok((n > 0).then_some(n))
        };
        let limits = LimitSettings {
            max_sends: cap(
                "limits.max_sends (--max-sends)",
                given(&raw.limits.max_sends),
            )?,
            max_sends_per_day: cap(
                "limits.max_sends_per_day (--max-sends-per-day)",
                given(&raw.limits.max_sends_per_day),
            )?,
            max_sms_per_day: cap(
                "limits.max_sms_per_day (--max-sms-per-day)",
                given(&raw.limits.max_sms_per_day),
            )?,
            max_email_per_day: cap(
                "limits.max_email_per_day (--max-email-per-day)",
                given(&raw.limits.max_email_per_day),
            )?,
        };
        if !limits.day().is_empty() && ledger.path == crate::ledger::StateSpec::None {
            return Err(ConfigError::new(
                "limits.max_sends_per_day, max_sms_per_day and max_email_per_day (--max-sends-per-day, \
                 --max-sms-per-day, --max-email-per-day) are counted in the ledger, shared by every \
                 run: they need one (--state FILE or dynamodb://TABLE, not none). --max-sends \
                 (this run only) works without",
            ));
        }

        let lambda = LambdaSettings {
            margin: positive_duration(
                "lambda.margin (--lambda-margin)",
                given(&raw.lambda.margin),
            )?,
            timeout: match non_empty(raw.lambda.timeout) {
                Some(t) => Some(positive_duration("lambda.timeout (--lambda-timeout)", &t)?),
                None => None,
            },
            client_secret_id: non_empty(raw.lambda.client_secret_id),
        };
        if lambda.client_secret_id.is_some() && cognito.secret.is_some() {
            return Err(ConfigError::new(format!(
                "lambda.client_secret_id (--lambda-client-secret-id) and a client secret from \
                 --client-secret-file (cognito.client_secret_file) or {CLIENT_SECRET_ENV} are both \
                 set: give the client secret one way only"
            )));
        }

        Ok(Self {
            lambda,
            limits,
            sqs,
            warnings,
            config_file: args.config.clone(),
            cognito,
            run,
            retry,
            report: ReportSettings {
                path: raw.report.report.filter(|p| !p.as_os_str().is_empty()),
                if_exists: if_exists(given(&raw.report.if_exists))?,
            },
            ledger,
            discover,
            metrics,
            log: LogSettings {
                format: log_format(given(&raw.log.log_format))?,
                usernames: raw.log.log_usernames,
                verbosity: if args.quiet {
                    -1
                } else {
                    args.verbose.min(2) as i8
                },
            },
        })
    }

    /// Finds the AWS region once, before any client is built, when no `--region` is set: from
    /// the AWS config chain (`AWS_REGION`, the profile, the instance metadata service). Without
    /// one, the error is a single line naming the settings to set; every later client then
    /// reuses the region found instead of probing the chain again (each probe of an absent
    /// metadata service costs a timeout and a screen of SDK warnings).
    pub async fn resolve_region(&mut self) -> Result<(), ConfigError> {
        if self.cognito.region.is_some() {
            return Ok(());
        }
        let found = aws_config::meta::region::RegionProviderChain::default_provider()
            .region()
            .await;
        match found {
            Some(region) => {
                self.cognito.region = Some(region.to_string());
                Ok(())
            }
            None => Err(ConfigError::new(
                "no AWS region: set --region (aws.region) or AWS_REGION",
            )),
        }
    }

    /// The effective settings as TOML, secrets redacted: what `check` prints. The typed
    /// settings serialize under the keys of the TOML file (URLs with their credentials
    /// redacted, the client secret as the file it came from), so the output is itself a valid
    /// settings file.
    pub fn render_redacted(&self) -> String {
        /// The region lives with the Cognito settings (every client reads it from there)
        /// but is the `aws` section's key.
        #[derive(Serialize)]
        struct Aws<'a> {
            region: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            settings: &'a Settings,
            aws: Aws<'a>,
        }
        let doc = toml::to_string(&Shown {
            settings: self,
            aws: Aws {
                region: self.cognito.region.as_deref(),
            },
        })
        .expect("the settings serialize as TOML");
        let mut head: String = self
            .warnings
            .iter()
            .map(|w| format!("# WARNING: {w}\n"))
            .collect();
        head.push_str("# effective settings");
        if let Some(p) = &self.config_file {
            head.push_str(&format!(" (file: {})", p.display()));
        }
        head.push('\n');
        match &self.cognito.secret {
            None => head.push_str("# client secret: not set (no SecretHash is sent)\n"),
            Some((_, SecretSource::File(_))) => {
                head.push_str("# client secret: <redacted>, read from client_secret_file\n")
            }
            Some((_, SecretSource::Env)) => head.push_str(&format!(
                "# client secret: <redacted>, from {CLIENT_SECRET_ENV}\n"
            )),
            Some((_, SecretSource::SecretsManager(id))) => head.push_str(&format!(
                "# client secret: <redacted>, from Secrets Manager secret {id}\n"
            )),
        }
        head + &doc
    }
}

/// How typed values serialize for `check`: as the TOML file writes them, so its output loads
/// back (0 for "no limit", durations as `30s`, URLs redacted).
mod show {
    use std::fmt::Display;
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    use serde::Serializer;

    use super::{ClientSecret, SecretSource};

    pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub(super) fn opt_duration<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration(d, s),
            None => s.serialize_none(),
        }
    }

    /// `None` means "keep forever", which the file writes as `0s`.
    pub(super) fn duration_or_zero<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        duration(&d.unwrap_or_default(), s)
    }

    pub(super) fn time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    /// `None` means "no limit" or "no cap", which the file writes as 0.
    pub(super) fn zero_if_none<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
    where
        T: serde::Serialize + Default,
        S: Serializer,
    {
        match v {
            Some(v) => v.serialize(s),
            None => T::default().serialize(s),
        }
    }

    /// A URL, its user and password (if any) redacted.
    pub(super) fn url<S: Serializer>(u: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
        match u {
            Some(u) => s.serialize_str(&super::redact_url(u.as_str())),
            None => s.serialize_none(),
        }
    }

    pub(super) fn listen<S: Serializer>(a: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("none"),
        }
    }

    pub(super) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// The client secret shows only as the file it was read from; never its value.
    pub(super) fn secret_file<S: Serializer>(
        secret: &Option<(ClientSecret, SecretSource)>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match secret {
            Some((_, SecretSource::File(p))) => s.collect_str(&p.display()),
            _ => s.serialize_none(),
        }
    }

    pub(super) fn no_secret_file(secret: &Option<(ClientSecret, SecretSource)>) -> bool {
        !matches!(secret, Some((_, SecretSource::File(_))))
    }
}

/// Every key the configuration reads, `section.key`: what [`SettingsArgs`] serializes when every
/// setting flag is given (each flag is its key).
pub fn config_keys() -> Vec<String> {
    use clap::{CommandFactory, Parser};

    /// The settings flags alone.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingsArgs,
    }
    let mut argv = vec!["keys".to_owned()];
    for arg in Flags::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "config", "verbose", "quiet"].contains(&long) {
            continue;
        }
        argv.push(format!("--{long}"));
        if arg.get_action().takes_values() {
            // A value every setting flag reads, `--client-metadata KEY=VALUE` included.
            argv.push("k=v".to_owned());
        }
    }
    let flags = Flags::try_parse_from(&argv).expect("every setting flag parses");
    let given = serde_json::to_value(&flags.settings).expect("the flags serialize");
    let mut keys = Vec::new();
    for (section, fields) in given.as_object().into_iter().flatten() {
        for key in fields.as_object().into_iter().flatten().map(|(k, _)| k) {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys
}

/// `cognito.client_metadata`: every key and value within Cognito's limit (its model's
/// `StringType`, at most [`crate::job::MAX_METADATA_CHARS`] characters), and no empty key (a
/// `--client-metadata =v` is a typo, not a key the trigger could read).
fn client_metadata(
    pairs: Vec<(String, String)>,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    use crate::job::MAX_METADATA_CHARS;
    let key = "cognito.client_metadata (--client-metadata)";
    let mut table = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        let name = k.trim();
        if name.is_empty() {
            return Err(ConfigError::new(format!("{key}: an empty key (`={v}`)")));
        }
        let shown: String = name.chars().take(40).collect();
        let chars = name.chars().count();
        if chars > MAX_METADATA_CHARS {
            return Err(ConfigError::new(format!(
                "{key}: the key `{shown}...` is {chars} characters long; Cognito allows at most \
                 {MAX_METADATA_CHARS}"
            )));
        }
        let chars = v.chars().count();
        if chars > MAX_METADATA_CHARS {
            return Err(ConfigError::new(format!(
                "{key}: the value of `{shown}` is {chars} characters long; Cognito allows at \
                 most {MAX_METADATA_CHARS}"
            )));
        }
        table.insert(name.to_owned(), v);
    }
    Ok(table)
}

/// `cognito.analytics_endpoint_id`: within Cognito's limit, like a ClientMetadata value.
fn analytics_endpoint_id(id: Option<String>) -> Result<Option<String>, ConfigError> {
    let id = non_empty(id);
    if let Some(chars) = id.as_ref().map(|i| i.chars().count())
        && chars > crate::job::MAX_METADATA_CHARS
    {
        return Err(ConfigError::new(format!(
            "cognito.analytics_endpoint_id (--analytics-endpoint-id): {chars} characters long; \
             Cognito allows at most {}",
            crate::job::MAX_METADATA_CHARS
        )));
    }
    Ok(id)
}

/// `run.wave`: a short name that reads the same in a report, the ledger and a DynamoDB
/// attribute name: 1 to 64 of letters, digits, `-`, `_`, `.` and `:`.
fn wave(name: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(name) = non_empty(name) else {
        return Ok(None);
    };
    let ok = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(ConfigError::new(format!(
            "run.wave (--wave): {name:?} must be 1 to 64 of letters, digits, `-`, `_`, `.` and `:`"
        )));
    }
    Ok(Some(name))
}

/// The most calls in flight `--concurrency` allows. Cognito's quota for ResendConfirmationCode is
/// tens of calls per second per account, shared with live sign-ups; beyond this many, calls only
/// wait behind the rate limit holding sockets, memory and (with a ledger) claims that another run
/// cannot take.
pub const MAX_CONCURRENCY: usize = 1024;

/// The smallest non-zero calls-per-second a rate setting accepts: one call every 1000 s. A
/// smaller one is almost certainly a typo, and its interval (1/rate) overflows the timers the
/// rate limiter works with.
pub const MIN_RATE: f64 = 0.001;

/// How often a run heartbeats its claims at the most (the ledger heartbeats every lease / 6, but
/// not more often than this).
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// The shortest `--claim-lease`: six heartbeats, so a live run's counter moves several times
/// before another run may judge it dead, and a run fences itself (half a lease without a
/// heartbeat) after three missed beats, well before that.
pub const MIN_CLAIM_LEASE: Duration = Duration::from_millis(300);

/// A calls-per-second setting: 0 means no limit.
fn rate_setting(key: &str, value: &str) -> Result<Option<f64>, ConfigError> {
    let rate: f64 = parse_num(key, value)?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(ConfigError::new(format!(
            "{key}: {rate} must be 0 (no limit) or a positive number of calls per second"
        )));
    }
    if rate > 0.0 && rate < MIN_RATE {
        return Err(ConfigError::new(format!(
            "{key}: {rate} calls per second is below the smallest rate, {MIN_RATE} (one call \
             every {} s); 0 means no limit",
            1.0 / MIN_RATE
        )));
    }
    Ok((rate > 0.0).then_some(rate))
}

/// A URL as it may be shown (`check`, logs, errors): user and password, if any, replaced by
/// `<redacted>`. Works on text, so a URL that does not even parse is redacted too.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &text[..scheme_end], &rest[at..]),
        None => text.to_owned(),
    }
}

/// An RFC 3339 time (`2026-11-01T00:00:00Z`), or a date (`2026-11-01`, midnight UTC).
fn timestamp(key: &str, value: Option<&str>) -> Result<Option<std::time::SystemTime>, ConfigError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let full = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    };
    humantime::parse_rfc3339_weak(&full).map(Some).map_err(|e| {
        ConfigError::new(format!(
            "{key}: {v:?} is not a time like 2026-11-01T00:00:00Z or a date like 2026-11-01: {e}"
        ))
    })
}

fn http_url(key: &str, text: Option<String>) -> Result<Option<url::Url>, ConfigError> {
    let Some(s) = text else { return Ok(None) };
    // Echoed redacted: a URL may carry a user and password (a Pushgateway behind basic auth).
    let shown = redact_url(&s);
    let url = url::Url::parse(&s)
        .map_err(|e| ConfigError::new(format!("{key}: {shown:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::new(format!(
            "{key}: {shown:?} must be an http or https URL"
        )));
    }
    Ok(Some(url))
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn read_secret_file(path: &Path) -> Result<ClientSecret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(format!(
            "cognito.client_secret_file (--client-secret-file): cannot read {}: {e}",
            path.display()
        ))
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::new(format!(
            "cognito.client_secret_file (--client-secret-file): {} is empty",
            path.display()
        )));
    }
    Ok(ClientSecret::new(value))
}

fn parse_num<T: std::str::FromStr>(key: &str, text: &str) -> Result<T, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::new(format!("{key}: {text:?} is not a valid number")))
}

/// Parses "250ms", "30s", "10m", "24h" (and combinations like "1h 30m"); a bare `0` is zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{t:?} is not a duration like 250ms, 30s, 10m or 24h ({e})"))
}

fn duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    parse_duration(text).map_err(|e| ConfigError::new(format!("{key}: {e}")))
}

fn positive_duration(key: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = duration(key, text)?;
    if d.is_zero() {
        return Err(ConfigError::new(format!("{key}: must be longer than 0")));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn load_with(argv: &[&str], env_secret: Option<&str>) -> Result<Settings, ConfigError> {
        /// The settings flags alone, as every command takes them.
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            settings: SettingsArgs,
            /// The command, which settings do not depend on.
            command: Option<String>,
        }
        let cli = Flags::try_parse_from(argv).expect("argv parses");
        Settings::layered(
            &cli.settings,
            EnvFlags::default(),
            env_secret.map(str::to_owned),
        )
    }

    /// The built-in defaults are one TOML text; `--help` says each as `[default: X]`. They must
    /// say the same: a flag's help names the value its key gets from [`DEFAULTS`], and a key
    /// without a default says `none` or nothing.
    #[test]
    fn every_default_in_help_is_the_default_the_settings_use() {
        use clap::CommandFactory;

        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            settings: SettingsArgs,
        }
        let defaults: SettingsArgs = Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the defaults load");
        let defaults = serde_json::to_value(&defaults).unwrap();
        let mut checked = 0;
        for arg in Flags::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(said) = help
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
            else {
                continue;
            };
            // The key of this flag: what the flags serialize when only it is given.
            let flags = Flags::try_parse_from(["keys", &format!("--{long}"), "x"])
                .unwrap_or_else(|e| panic!("--{long} takes a value: {e}"));
            let given = serde_json::to_value(&flags.settings).unwrap();
            let (section, key) = given
                .as_object()
                .unwrap()
                .iter()
                .find_map(|(section, fields)| {
                    let key = fields.as_object()?.keys().next()?;
                    Some((section.clone(), key.clone()))
                })
                .unwrap_or_else(|| panic!("--{long} has no key"));
            let used = defaults[&section][&key].as_str();
            match (said, used) {
                ("none", None) => {}
                (said, Some(used)) => {
                    let same = match (said.parse::<f64>(), used.parse::<f64>()) {
                        (Ok(a), Ok(b)) => a == b,
                        _ => said == used,
                    };
                    assert!(
                        same,
                        "--{long} says [default: {said}] but {section}.{key} defaults to {used}"
                    );
                }
                (said, None) => {
                    panic!("--{long} says [default: {said}] but {section}.{key} has no default")
                }
            }
            checked += 1;
        }
        assert!(checked > 20, "only {checked} defaults found in the help");
    }

    #[test]
    fn durations_parse_like_the_spec_writes_them() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration(" 1h 30m ").unwrap(),
            Duration::from_secs(5_400)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    fn refused(argv: &[&str]) -> String {
        let mut full = vec!["cognito-resend"];
        full.extend_from_slice(argv);
        full.push("check");
        match load_with(&full, None) {
            Ok(_) => panic!("{argv:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn settings_that_break_a_guarantee_are_refused_naming_the_limit() {
        let e = refused(&["--claim-lease", "200ms"]);
        assert!(
            e.contains("ledger.claim_lease") && e.contains("six heartbeats"),
            "{e}"
        );
        assert!(load_with(&["cognito-resend", "--claim-lease", "300ms", "check"], None).is_ok());

        let e = refused(&["--visibility-timeout", "5m", "--max-extension", "1m"]);
        assert!(
            e.contains("sqs.max_extension") && e.contains("visibility_timeout"),
            "{e}"
        );
        let e = refused(&["--max-extension", "0"]);
        assert!(e.contains("sqs.max_extension"), "{e}");

        let e = refused(&["--concurrency", "100000"]);
        assert!(e.contains("run.concurrency") && e.contains("1024"), "{e}");
        assert!(load_with(&["cognito-resend", "--concurrency", "1024", "check"], None).is_ok());

        // 1/rate would overflow a Duration (and any timer long before that).
        for (flag, key) in [
            ("--rate", "run.rate"),
            ("--precheck-rate", "run.precheck_rate"),
            ("--list-rate", "discover.list_rate"),
        ] {
            for tiny in ["1e-30", "0.0001"] {
                let e = refused(&[flag, tiny]);
                assert!(
                    e.contains(key) && e.contains("smallest rate"),
                    "{flag} {tiny}: {e}"
                );
            }
        }
        let s = load_with(&["cognito-resend", "--rate", "0.001", "check"], None).unwrap();
        assert_eq!(s.run.rate, Some(0.001));
        let s = load_with(&["cognito-resend", "--rate", "0", "check"], None).unwrap();
        assert_eq!(s.run.rate, None, "0 still means no limit");
    }

    #[test]
    fn a_zero_cooldown_or_shutdown_grace_is_warned_about_loudly() {
        let s = load_with(&["cognito-resend", "check"], None).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let s = load_with(
            &[
                "cognito-resend",
                "--cooldown",
                "0",
                "--shutdown-grace",
                "0s",
                "check",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("--cooldown") && s.warnings[1].contains("--shutdown-grace"));
        let shown = s.render_redacted();
        assert!(
            shown.starts_with("# WARNING: ledger.cooldown (--cooldown) is 0"),
            "{shown}"
        );
    }

    #[test]
    fn pushgateway_credentials_never_show() {
        let s = load_with(
            &[
                "cognito-resend",
                "--pushgateway",
                "http://metrics:hunter2@127.0.0.1:9091/",
                "check",
            ],
            None,
        )
        .unwrap();
        let shown = s.render_redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("metrics:"),
            "{shown}"
        );
        assert!(
            shown.contains("http://<redacted>@127.0.0.1:9091/"),
            "{shown}"
        );
        // Errors about the URL are redacted too, parsed or not.
        for bad in [
            "https://metrics:hunter2@127.0.0.1:9091/",
            "ftp://metrics:hunter2@127.0.0.1/",
            "http://metrics:hunter2@[::1/",
        ] {
            let e = refused(&["--pushgateway", bad]);
            assert!(
                !e.contains("hunter2") && e.contains("metrics.pushgateway"),
                "{e}"
            );
        }
        assert_eq!(
            redact_url("http://127.0.0.1:9091/a@b"),
            "http://127.0.0.1:9091/a@b"
        );
        assert_eq!(redact_url("http://u@h/"), "http://<redacted>@h/");
    }

    #[test]
    fn check_output_is_a_config_file_that_loads_to_the_same_settings() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "topsecretvalue\n").unwrap();
        let s = load_with(
            &[
                "cognito-resend",
                "--client-id",
                "abc",
                "--client-secret-file",
                secret.to_str().unwrap(),
                "--region",
                "eu-west-1",
                "--state",
                "dynamodb://table-1",
                "--shutdown-grace",
                "5s",
                "--older-than",
                "1h",
                "--created-after",
                "2026-11-01",
                "--rate",
                "0",
                "--metrics-addr",
                "none",
                "--max-sms-per-day",
                "7",
                "--report",
                "r.jsonl",
                "check",
            ],
            None,
        )
        .unwrap();
        let shown = s.render_redacted();
        assert!(!shown.contains("topsecretvalue"), "{shown}");
        let file = dir.path().join("effective.toml");
        std::fs::write(&file, &shown).unwrap();
        let again = load_with(
            &[
                "cognito-resend",
                "--config",
                file.to_str().unwrap(),
                "check",
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("check's output does not load: {e}\n{shown}"));
        assert_eq!(
            again.render_redacted().lines().skip(1).collect::<Vec<_>>(),
            shown.lines().skip(1).collect::<Vec<_>>()
        );
        assert_eq!(again.cognito.region.as_deref(), Some("eu-west-1"));
        assert_eq!(again.sqs.shutdown_grace, Duration::from_secs(5));
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = load_with(&["cognito-resend", "check"], None).unwrap();
        assert_eq!(s.run.concurrency.get(), 16);
        assert_eq!(s.run.rate, Some(10.0));
        assert_eq!(s.retry.max_attempts.get(), 10);
        assert_eq!(s.retry.max_elapsed, Duration::from_secs(600));
        assert_eq!(s.retry.initial_backoff, Duration::from_millis(250));
        assert_eq!(s.retry.max_backoff, Duration::from_secs(30));
        assert_eq!(s.retry.multiplier, 2.0);
        assert_eq!(s.retry.jitter, 0.5);
        assert_eq!(s.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.sqs.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            s.ledger.path,
            crate::ledger::StateSpec::Sqlite("cognito-resend.db".into())
        );
        assert_eq!(s.ledger.cooldown, Duration::from_secs(86_400));
        assert_eq!(s.ledger.claim_lease, Duration::from_secs(30));
        assert_eq!(s.sqs.max_messages, None, "no limit");
    }

    #[test]
    fn max_messages_is_a_count_and_zero_means_no_limit() {
        let s = load_with(&["cognito-resend", "--max-messages", "25", "check"], None).unwrap();
        assert_eq!(s.sqs.max_messages, Some(25));
        assert!(s.render_redacted().contains("max_messages = 25"));
        let s = load_with(&["cognito-resend", "--max-messages", "0", "check"], None).unwrap();
        assert_eq!(s.sqs.max_messages, None);
        let err = load_with(&["cognito-resend", "--max-messages", "many", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sqs.max_messages (--max-messages)"), "{err}");
    }

    #[test]
    fn fleet_rate_needs_a_shared_ledger_and_shows_in_check() {
        let s = load_with(&["cognito-resend", "check"], None).unwrap();
        assert_eq!(s.run.fleet_rate, None, "no fleet budget by default");
        let s = load_with(&["cognito-resend", "--fleet-rate", "50", "check"], None).unwrap();
        assert_eq!(s.run.fleet_rate, Some(50.0));
        let shown = s.render_redacted();
        assert!(shown.contains("fleet_rate = 50.0\n"), "{shown}");
        let s = load_with(&["cognito-resend", "--fleet-rate", "0", "check"], None).unwrap();
        assert_eq!(s.run.fleet_rate, None, "0 means none");
        let err = load_with(
            &[
                "cognito-resend",
                "--fleet-rate",
                "50",
                "--state",
                "none",
                "check",
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("run.fleet_rate (--fleet-rate)") && err.contains("--state none"),
            "{err}"
        );
        let err = load_with(&["cognito-resend", "--fleet-rate=-3", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("run.fleet_rate (--fleet-rate)"), "{err}");
    }

    #[test]
    fn the_example_file_is_valid_and_spells_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.toml");
        let from_file = load_with(&["cognito-resend", "--config", example, "check"], None).unwrap();
        let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
        assert_eq!(from_file.ledger.path, defaults.ledger.path);
        assert_eq!(from_file.ledger.cooldown, defaults.ledger.cooldown);
        assert_eq!(from_file.run.concurrency, defaults.run.concurrency);
        assert_eq!(
            from_file.sqs.visibility_timeout,
            defaults.sqs.visibility_timeout
        );
    }

    #[test]
    fn allowed_client_ids_default_to_none_and_flags_repeat() {
        let s = load_with(&["cognito-resend", "check"], None).unwrap();
        assert!(s.cognito.allowed_client_ids.is_empty());
        let s = load_with(
            &[
                "cognito-resend",
                "--allow-client-id",
                "second",
                "--allow-client-id",
                "third",
                "--allow-client-id",
                "second",
                "check",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.cognito.allowed_client_ids, ["second", "third"]);
        assert!(
            s.render_redacted()
                .contains("allowed_client_ids = [\"second\", \"third\"]")
        );
        let e = load_with(
            &["cognito-resend", "--client-id", "has-dash", "check"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cognito.client_id (--client-id)") && e.contains("'-'"),
            "{e}"
        );
        let e = load_with(
            &["cognito-resend", "--allow-client-id", "a#b", "check"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("(--allow-client-id): client_id contains"), "{e}");
        let e = load_with(&["cognito-resend", "--allow-client-id", " ", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cognito.allowed_client_ids (--allow-client-id)"),
            "{e}"
        );
    }

    #[test]
    fn state_takes_a_file_a_dynamodb_table_or_none() {
        let s = load_with(&["cognito-resend", "--state", "none", "check"], None).unwrap();
        assert_eq!(s.ledger.path, crate::ledger::StateSpec::None);
        let s = load_with(
            &["cognito-resend", "--state", "dynamodb://t-1", "check"],
            None,
        )
        .unwrap();
        assert_eq!(
            s.ledger.path,
            crate::ledger::StateSpec::Dynamo {
                table: "t-1".into()
            }
        );
        let e = load_with(&["cognito-resend", "--state", "redis://x", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ledger.path (--state)"), "{e}");
        let e = load_with(&["cognito-resend", "--cooldown", "soon", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ledger.cooldown (--cooldown)"), "{e}");
    }

    #[test]
    fn spend_caps_come_from_the_file_and_flags_and_per_day_ones_need_a_ledger() {
        let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
        assert_eq!(defaults.limits.max_sends, None);
        assert!(defaults.limits.day().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[limits]\nmax_sends = 50\nmax_sends_per_day = 1000\nmax_sms_per_day = 10\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = load_with(
            &[
                "cognito-resend",
                "--config",
                f,
                "check",
                "--max-email-per-day",
                "20",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.limits.max_sends, Some(50));
        assert_eq!(
            s.limits.day(),
            crate::ledger::DayCaps {
                sends: Some(1000),
                sms: Some(10),
                email: Some(20)
            }
        );
        let shown = s.render_redacted();
        assert!(shown.contains("[limits]") && shown.contains("max_sms_per_day = 10"));
        let e = refused(&["--state", "none", "--max-sms-per-day", "5"]);
        assert!(
            e.contains("limits.max_sends_per_day") && e.contains("need one"),
            "{e}"
        );
        let s = load_with(
            &[
                "cognito-resend",
                "check",
                "--state",
                "none",
                "--max-sends",
                "5",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.limits.max_sends, Some(5));
        let e = refused(&["--max-sends", "lots"]);
        assert!(e.contains("limits.max_sends"), "{e}");
    }

    #[test]
    fn file_is_overridden_by_flags_and_bad_values_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[run]\nconcurrency = 4\nrate = 0\ndry_run = true\n[cognito]\nclient_id = \"fromfile\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let s = load_with(&["cognito-resend", "--config", f, "check"], None).unwrap();
        assert_eq!(s.run.concurrency.get(), 4);
        assert_eq!(s.run.rate, None, "rate 0 means no limit");
        assert!(s.run.dry_run);
        assert_eq!(s.cognito.client_id.as_deref(), Some("fromfile"));

        let s = load_with(
            &[
                "cognito-resend",
                "--config",
                f,
                "check",
                "--client-id",
                "flag",
                "--concurrency",
                "8",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.cognito.client_id.as_deref(), Some("flag"));
        assert_eq!(s.run.concurrency.get(), 8);
        assert!(
            s.run.dry_run,
            "an absent boolean flag keeps the file's true"
        );

        let err = load_with(&["cognito-resend", "--concurrency", "lots", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("run.concurrency") && err.contains("--concurrency"),
            "{err}"
        );
        let err = load_with(&["cognito-resend", "--max-backoff", "soon", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("retry.max_backoff"), "{err}");

        std::fs::write(&file, "[run]\nconcurency = 4\n").unwrap();
        let err = load_with(&["cognito-resend", "--config", f, "check"], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("concurency"),
            "a typo in the file is named: {err}"
        );
    }

    #[test]
    fn secret_never_prints_and_comes_from_one_place_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "topsecretvalue\n").unwrap();
        let f = file.to_str().unwrap();
        let s = load_with(
            &["cognito-resend", "--client-secret-file", f, "check"],
            None,
        )
        .unwrap();
        let (secret, _) = s.cognito.secret.as_ref().unwrap();
        assert_eq!(
            secret.expose(),
            "topsecretvalue",
            "trailing newline trimmed"
        );
        assert!(!format!("{s:?}").contains("topsecretvalue"));
        assert!(!s.render_redacted().contains("topsecretvalue"));

        let err = load_with(
            &["cognito-resend", "--client-secret-file", f, "check"],
            Some("other"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("one way only"));

        let err = load_with(
            &[
                "cognito-resend",
                "--client-secret-file",
                "/nonexistent/secret",
                "check",
            ],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--client-secret-file") && err.contains("/nonexistent/secret"));
    }

    #[test]
    fn run_metadata_wave_and_cap_layer_are_checked_and_show_in_check() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("waves.toml");
        std::fs::write(
            &file,
            "[cognito]\nanalytics_endpoint_id = \"file-endpoint\"\n\n\
             [cognito.client_metadata]\nwave = \"file-wave\"\nsource = \"pool\"\n",
        )
        .unwrap();
        let s = load_with(
            &[
                "cognito-resend",
                "--config",
                file.to_str().unwrap(),
                "--client-metadata",
                "wave=day-3",
                "--client-metadata",
                "note=a=b",
                "--wave",
                "day-3",
                "--max-sends-per-user",
                "3",
                "check",
            ],
            None,
        )
        .unwrap();
        let expected: std::collections::BTreeMap<String, String> =
            [("note", "a=b"), ("source", "pool"), ("wave", "day-3")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        assert_eq!(s.cognito.client_metadata, expected, "flags win key by key");
        assert_eq!(
            s.cognito.analytics_endpoint_id.as_deref(),
            Some("file-endpoint")
        );
        assert_eq!(s.run.wave.as_deref(), Some("day-3"));
        assert_eq!(s.ledger.max_sends_per_user, Some(3));
        // `check` prints them as a file that loads back to the same.
        let shown = s.render_redacted();
        let effective = dir.path().join("effective.toml");
        std::fs::write(&effective, &shown).unwrap();
        let again = load_with(
            &[
                "cognito-resend",
                "--config",
                effective.to_str().unwrap(),
                "check",
            ],
            None,
        )
        .unwrap_or_else(|e| panic!("check's output does not load: {e}\n{shown}"));
        assert_eq!(again.cognito.client_metadata, expected, "{shown}");
        assert_eq!(again.run.wave.as_deref(), Some("day-3"), "{shown}");
        assert_eq!(again.ledger.max_sends_per_user, Some(3), "{shown}");
        let defaults = load_with(&["cognito-resend", "check"], None).unwrap();
        assert!(defaults.cognito.client_metadata.is_empty());
        assert_eq!(
            (defaults.run.wave, defaults.ledger.max_sends_per_user),
            (None, None)
        );

        let e = refused(&["--client-metadata", "=orphan"]);
        assert!(
            e.contains("cognito.client_metadata (--client-metadata)") && e.contains("empty key"),
            "{e}"
        );
        let e = refused(&["--wave", "day 3"]);
        assert!(e.contains("run.wave (--wave)"), "{e}");
        let e = refused(&["--max-sends-per-user", "2", "--state", "none"]);
        assert!(e.contains("ledger.max_sends_per_user"), "{e}");
        let e = refused(&["--max-sends-per-user", "two"]);
        assert!(e.contains("ledger.max_sends_per_user"), "{e}");
    }

    #[test]
    fn lambda_settings_default_validate_and_take_the_secret_one_way_only() {
        let s = load_with(&["cognito-resend", "check"], None).unwrap();
        assert_eq!(s.lambda.margin, Duration::from_secs(5));
        assert_eq!(s.lambda.timeout, None);
        assert_eq!(s.lambda.client_secret_id, None);

        let s = load_with(
            &[
                "cognito-resend",
                "--lambda-margin",
                "2s",
                "--lambda-timeout",
                "1m",
                "--lambda-client-secret-id",
                "cognito-resend/secret",
                "check",
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.lambda.margin, Duration::from_secs(2));
        assert_eq!(s.lambda.timeout, Some(Duration::from_secs(60)));
        assert_eq!(
            s.lambda.client_secret_id.as_deref(),
            Some("cognito-resend/secret")
        );
        let shown = s.render_redacted();
        assert!(
            shown.contains("[lambda]") && shown.contains("timeout = \"1m\""),
            "{shown}"
        );

        let err = load_with(&["cognito-resend", "--lambda-margin", "0s", "check"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lambda.margin"), "{err}");
        let err = load_with(
            &["cognito-resend", "--lambda-client-secret-id", "x", "check"],
            Some("from-env"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("lambda.client_secret_id") && err.contains("one way only"),
            "{err}"
        );
    }
}
