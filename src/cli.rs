//! The command line, parsed raw (ripgrep's `LowArgs`): nothing here is validated beyond its type.
//!
//! Every setting is a flag that clap can also read from `COGNITO_RESEND_<SECTION>_<KEY>`, so
//! `--help` documents both spellings. [`crate::config`] layers these over the TOML file and the
//! built-in defaults and validates the result.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

/// Re-send Amazon Cognito sign-up confirmation codes to users who never confirmed, at scale and
/// safely.
///
/// Settings come from built-in defaults, then the TOML file named by --config, then environment
/// variables COGNITO_RESEND_<SECTION>_<KEY>, then flags (highest). Durations are written like
/// 250ms, 30s, 10m, 24h. Exit codes: 0 all jobs done and none failed or invalid; 3 finished with
/// some failed or invalid jobs (see --report); 2 usage or configuration error, nothing sent;
/// 1 fatal error or stopped early because the configuration is wrong; 4 stopped at a spend cap
/// (--max-sends, --max-*-per-day), jobs not attempted left for a later run; 130/143 stopped by
/// SIGINT/SIGTERM after draining in-flight calls.
#[derive(Debug, Parser)]
#[command(name = "cognito-resend", version, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// Every setting, shared by all commands.
    #[command(flatten)]
    pub settings: SettingsArgs,
}

/// The commands of SPEC.md, and `ledger`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot: every row of the CSV (or stdin with `-`) gets an outcome, then the process exits.
    ///
    /// The CSV needs a header row with a `username` column (aliases `Username`,
    /// `cognito:username`); optional columns: client_id, client_metadata.<key>,
    /// analytics_endpoint_id, encoded_data, ip_address. Other columns are ignored.
    ///
    /// With --from-pool instead of a file, the jobs are the pool's UNCONFIRMED users
    /// (ListUsers, within --created-after/--created-before/--older-than), streamed straight into
    /// the run: the one command a scheduled job needs.
    Backfill {
        /// The CSV file to read, or `-` for standard input.
        #[arg(required_unless_present = "from_pool", conflicts_with = "from_pool")]
        input: Option<PathBuf>,
        /// Take the jobs from the user pool (--user-pool-id) instead of a CSV.
        #[arg(long)]
        from_pool: bool,
    },
    /// List the pool's UNCONFIRMED users (ListUsers, paginated) as backfill CSV — username,
    /// created, status, and --attributes — to stdout or --out, or send them to --queue-url.
    ///
    /// Needs --user-pool-id and IAM credentials (cognito-idp:ListUsers). Filter by creation
    /// with --created-after, --created-before and --older-than.
    Discover {
        /// Write the CSV here instead of stdout.
        #[arg(long, value_name = "FILE", conflicts_with = "to_queue")]
        out: Option<PathBuf>,
        /// Extra attribute columns, comma-separated (e.g. email,phone_number).
        #[arg(long, value_name = "NAMES", value_delimiter = ',')]
        attributes: Vec<String>,
        /// Send the users to --queue-url as jobs instead of writing CSV.
        #[arg(long)]
        to_queue: bool,
    },
    /// Long-running: jobs from --queue-url until SIGTERM/SIGINT, then drain and exit 0.
    ///
    /// Each message body is a JSON object with the CSV's fields: {"username": "...",
    /// "client_id": "...", "client_metadata": {"k": "v"}, ...}; only username is required.
    Consume,
    /// Send CSV rows (or stdin with `-`) to --queue-url as jobs, 10 per SendMessageBatch.
    ///
    /// For a FIFO queue (URL ending in .fifo) every message gets a MessageGroupId
    /// (--fifo-group-id, or one group per username) and a MessageDeduplicationId derived from
    /// its body.
    Enqueue {
        /// The CSV file to read, or `-` for standard input.
        input: PathBuf,
        /// MessageGroupId for every message (FIFO queues); default: one group per username, so
        /// different users run in parallel and one user's jobs in order.
        #[arg(long, value_name = "ID")]
        fifo_group_id: Option<String>,
    },
    /// Validate the configuration, print the effective settings with secrets redacted, exit 0 or 2.
    Check,
    /// Inspect the send ledger (--state): what was sent to whom, and when.
    Ledger {
        /// What to show.
        #[command(subcommand)]
        action: LedgerAction,
    },
}

/// `ledger` subcommands.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum LedgerAction {
    /// Totals: users, codes sent, users in cooldown, claims held and in doubt, recent runs.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every user row as JSON Lines on stdout (client_id, username, sends, last_sent_at,
    /// last_outcome, last_outcome_at, claimed_by). Contains usernames: personal data.
    Export,
    /// Create the ledger: the SQLite file, or the DynamoDB table (on-demand billing, partition
    /// key `pk`) for --state dynamodb://TABLE.
    Init,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Every setting as a flag. `None` means "not given here": a lower layer decides. An empty value
/// (typically an empty environment variable) counts as not given.
///
/// The two boolean flags read their environment variables in [`crate::config`] instead of
/// through clap, which rejects an empty value for a flag.
///
/// Numbers and durations stay strings until [`crate::config`] validates them, so every bad value,
/// whichever layer it came from, gets the same error naming its key.
#[derive(Debug, Args, Default)]
pub struct SettingsArgs {
    /// TOML settings file (see config/example.toml for every key).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// App client id. A job (CSV column or message field `client_id`) may carry its own.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CLIENT_ID",
        value_name = "ID"
    )]
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
    pub client_secret_file: Option<PathBuf>,

    /// AWS region (default: the AWS config chain: AWS_REGION, profile, ...).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_AWS_REGION",
        value_name = "REGION"
    )]
    pub region: Option<String>,

    /// Cognito endpoint URL, for emulators and VPC endpoints (default: AWS's).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_ENDPOINT",
        value_name = "URL"
    )]
    pub cognito_endpoint: Option<String>,

    /// User pool id (for discover, backfill --from-pool and --precheck).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_USER_POOL_ID",
        value_name = "ID"
    )]
    pub user_pool_id: Option<String>,

    /// Per-attempt timeout of a Cognito call [default: 10s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_ATTEMPT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub attempt_timeout: Option<String>,

    /// Connect timeout of a Cognito call [default: 3s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_COGNITO_CONNECT_TIMEOUT",
        value_name = "DURATION"
    )]
    pub connect_timeout: Option<String>,

    /// Max Cognito calls in flight (the semaphore) [default: 16].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_CONCURRENCY",
        value_name = "N"
    )]
    pub concurrency: Option<String>,

    /// Max Cognito calls per second across the process (token bucket); 0 = no limit. Cognito's
    /// quota is per account and region and shared with live sign-ups: stay below it [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_RATE",
        value_name = "PER_SECOND"
    )]
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
    pub fleet_rate: Option<String>,

    /// Do everything but the send: every job gets outcome `dry_run`, or `cooldown` when the
    /// ledger says so (with --precheck also `already_confirmed` / `not_found`): the plan.
    /// [env: COGNITO_RESEND_RUN_DRY_RUN=true]
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// AdminGetUser before each send (needs --user-pool-id and IAM credentials): only
    /// UNCONFIRMED users are sent; others end `already_confirmed` / `not_found` without spending
    /// a resend. [env: COGNITO_RESEND_RUN_PRECHECK=true]
    #[arg(long, global = true)]
    pub precheck: bool,

    /// Max AdminGetUser calls per second for --precheck; 0 = no limit [default: 20].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RUN_PRECHECK_RATE",
        value_name = "PER_SECOND"
    )]
    pub precheck_rate: Option<String>,

    /// Discovery: only users created at or after this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_CREATED_AFTER",
        value_name = "TIME"
    )]
    pub created_after: Option<String>,

    /// Discovery: only users created before this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_CREATED_BEFORE",
        value_name = "TIME"
    )]
    pub created_before: Option<String>,

    /// Discovery: only users created at least this long ago, e.g. 1h (skips users who signed up
    /// minutes ago).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_OLDER_THAN",
        value_name = "DURATION"
    )]
    pub older_than: Option<String>,

    /// Discovery: max ListUsers calls per second (its quota is low and shared); 0 = no limit
    /// [default: 5].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_DISCOVER_LIST_RATE",
        value_name = "PER_SECOND"
    )]
    pub list_rate: Option<String>,

    /// Max attempts per job [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_ATTEMPTS",
        value_name = "N"
    )]
    pub max_attempts: Option<String>,

    /// Max time from a job's first attempt to its last [default: 10m].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_ELAPSED",
        value_name = "DURATION"
    )]
    pub max_elapsed: Option<String>,

    /// First retry delay [default: 250ms].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_INITIAL_BACKOFF",
        value_name = "DURATION"
    )]
    pub initial_backoff: Option<String>,

    /// Longest retry delay [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MAX_BACKOFF",
        value_name = "DURATION"
    )]
    pub max_backoff: Option<String>,

    /// Growth factor of the retry delay [default: 2.0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_MULTIPLIER",
        value_name = "X"
    )]
    pub multiplier: Option<String>,

    /// Randomization factor of the retry delay, 0 to 1 [default: 0.5].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_RETRY_JITTER",
        value_name = "X"
    )]
    pub jitter: Option<String>,

    /// Write one JSON line per job outcome to this file.
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_REPORT_PATH",
        value_name = "FILE"
    )]
    pub report: Option<PathBuf>,

    /// The send ledger: a SQLite file, `dynamodb://TABLE` (shared by replicas on many hosts), or
    /// `none` (no claim, no cooldown: a rerun or a redelivered message sends again)
    /// [default: cognito-resend.db].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_PATH",
        value_name = "FILE|dynamodb://TABLE|none"
    )]
    pub state: Option<String>,

    /// Never send the same client id + username twice within this window [default: 24h].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_COOLDOWN",
        value_name = "DURATION"
    )]
    pub cooldown: Option<String>,

    /// A run whose ledger heartbeat is older than this is taken for dead: users it had claimed
    /// are "in doubt" and sent again [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_CLAIM_LEASE",
        value_name = "DURATION"
    )]
    pub claim_lease: Option<String>,

    /// DynamoDB endpoint URL for --state dynamodb://TABLE (local DynamoDB, VPC endpoints).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT",
        value_name = "URL"
    )]
    pub dynamodb_endpoint: Option<String>,

    /// Serve /metrics, /healthz and /readyz here; port 0 picks a free port and logs it; `none`
    /// serves nothing [default: 127.0.0.1:9464].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_METRICS_LISTEN",
        value_name = "ADDR"
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
    pub pushgateway: Option<String>,

    /// The SQS queue URL (consume, enqueue).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_QUEUE_URL",
        value_name = "URL"
    )]
    pub queue_url: Option<String>,

    /// SQS endpoint URL, for emulators and VPC endpoints (default: AWS's).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_ENDPOINT",
        value_name = "URL"
    )]
    pub sqs_endpoint: Option<String>,

    /// Messages per ReceiveMessage, 1 to 10 [default: 10].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_BATCH_SIZE",
        value_name = "N"
    )]
    pub batch_size: Option<String>,

    /// Long-poll wait of ReceiveMessage, 0s to 20s [default: 20s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_WAIT_TIME",
        value_name = "DURATION"
    )]
    pub wait_time: Option<String>,

    /// Visibility timeout of received messages; renewed while their job runs [default: 60s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_VISIBILITY_TIMEOUT",
        value_name = "DURATION"
    )]
    pub visibility_timeout: Option<String>,

    /// Stop renewing a message's visibility after it has been held this long [default: 1h].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_MAX_EXTENSION",
        value_name = "DURATION"
    )]
    pub max_extension: Option<String>,

    /// consume: stop receiving after N messages and exit once they are settled; with
    /// --dry-run, the pass also ends at the first empty long poll. 0 = no limit [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_MAX_MESSAGES",
        value_name = "N"
    )]
    pub max_messages: Option<String>,

    /// Spend cap: codes this run may send; a job reserves one before its call and gives it back
    /// if nothing was sent. Reached: the run stops taking work, exit 4. 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS",
        value_name = "N"
    )]
    pub max_sends: Option<String>,

    /// Spend cap: codes a UTC day across every run sharing the ledger (reserved in the ledger
    /// before each call); needs a ledger. 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS_PER_DAY",
        value_name = "N"
    )]
    pub max_sends_per_day: Option<String>,

    /// Spend cap: SMS codes a UTC day across the ledger; may overshoot by the calls in flight
    /// when it is reached (the medium is known only from the answer). 0 = no cap [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_SMS_PER_DAY",
        value_name = "N"
    )]
    pub max_sms_per_day: Option<String>,

    /// Spend cap: email codes a UTC day across the ledger, like --max-sms-per-day. 0 = no cap
    /// [default: 0].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LIMITS_MAX_EMAIL_PER_DAY",
        value_name = "N"
    )]
    pub max_email_per_day: Option<String>,

    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish [default: 30s].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_SQS_SHUTDOWN_GRACE",
        value_name = "DURATION"
    )]
    pub shutdown_grace: Option<String>,

    /// Log format: text or json [default: text].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<String>,

    /// Show usernames in logs (they are personal data; by default logs show a short stable hash).
    /// [env: COGNITO_RESEND_LOG_USERNAMES=true]
    #[arg(long, global = true)]
    pub log_usernames: bool,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: warnings and errors only, no progress and no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
