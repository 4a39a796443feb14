//! `[sqs]`: the queue `consume` reads and `enqueue` (or `discover --to-queue`) writes, how
//! `consume` receives and holds messages, and the shutdown grace of every command that runs
//! jobs (the key lives here for compatibility). Three flag groups, since `enqueue` needs only
//! the queue and `backfill` only the grace.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{count, duration, given, http_url, non_empty, number, positive_duration, some};
use super::value::{text, unset};
use super::{ConfigError, Group, SettingsArgs, show};

/// The `[sqs]` table: its three flag groups, one table in the file.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SqsSection {
    /// The queue.
    #[command(flatten)]
    #[serde(flatten)]
    pub queue: QueueArgs,
    /// How `consume` receives.
    #[command(flatten)]
    #[serde(flatten)]
    pub consume: ConsumeArgs,
    /// The shutdown grace.
    #[command(flatten)]
    #[serde(flatten)]
    pub grace: GraceArgs,
}

/// `[sqs]`: the queue and its endpoint.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Queue")]
#[serde(default)]
pub struct QueueArgs {
    /// The SQS queue URL (consume, enqueue).
    #[arg(long, env = "COGNITO_RESEND_SQS_QUEUE_URL", value_name = "URL")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub queue_url: Option<String>,

    /// SQS endpoint URL, for emulators and VPC endpoints (default: AWS's; the SDK also reads
    /// AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL and the profile's endpoint_url, which this beats).
    #[arg(long, env = "COGNITO_RESEND_SQS_ENDPOINT", value_name = "URL")]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "endpoint"
    )]
    pub sqs_endpoint: Option<String>,
}

/// `[sqs]`: how `consume` receives messages and holds them while their jobs run.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Consume")]
#[serde(default)]
pub struct ConsumeArgs {
    /// Messages per ReceiveMessage, 1 to 10 [default: 10].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_BATCH_SIZE",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub batch_size: Option<String>,

    /// Long-poll wait of ReceiveMessage, 0s to 20s [default: 20s].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_WAIT_TIME",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub wait_time: Option<String>,

    /// Visibility timeout of received messages; renewed while their job runs [default: 60s].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_VISIBILITY_TIMEOUT",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub visibility_timeout: Option<String>,

    /// Stop renewing a message's visibility after it has been held this long [default: 1h].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_MAX_EXTENSION",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_extension: Option<String>,

    /// consume: stop receiving after N messages and exit once they are settled; with
    /// --dry-run, the pass also ends at the first empty long poll. 0 = no limit [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_MAX_MESSAGES",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_messages: Option<String>,
}

/// `[sqs]`: how long a stopping command gives its calls in flight.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Shutdown")]
#[serde(default)]
pub struct GraceArgs {
    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish [default: 30s].
    #[arg(
        long,
        env = "COGNITO_RESEND_SQS_SHUTDOWN_GRACE",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub shutdown_grace: Option<String>,
}

impl SqsSection {
    /// The built-in defaults: every key, `None` where there is none.
    pub(super) fn defaults() -> Self {
        Self {
            queue: QueueArgs {
                queue_url: None,
                sqs_endpoint: None,
            },
            consume: ConsumeArgs {
                batch_size: some("10"),
                wait_time: some("20s"),
                visibility_timeout: some("60s"),
                max_extension: some("1h"),
                max_messages: some("0"),
            },
            grace: GraceArgs {
                shutdown_grace: some("30s"),
            },
        }
    }
}

impl Group for QueueArgs {
    const SECTION: &'static str = "sqs";
    fn put(self, into: &mut SettingsArgs) {
        into.sqs.queue = self;
    }
}

impl Group for ConsumeArgs {
    const SECTION: &'static str = "sqs";
    fn put(self, into: &mut SettingsArgs) {
        into.sqs.consume = self;
    }
}

impl Group for GraceArgs {
    const SECTION: &'static str = "sqs";
    fn put(self, into: &mut SettingsArgs) {
        into.sqs.grace = self;
    }
}

/// The SQS side of `consume` and `enqueue`, and the shutdown grace of every command.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueSettings {
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

impl QueueSettings {
    /// Validates the `[sqs]` table; a zero shutdown grace is allowed, and said in `warnings`.
    pub(super) fn validate(
        raw: SqsSection,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let SqsSection {
            queue,
            consume,
            grace,
        } = raw;
        let shutdown_grace =
            duration(given(&grace.shutdown_grace)).map_err(at!(GraceArgs, shutdown_grace))?;
        if shutdown_grace.is_zero() {
            warnings.push(format!(
                "{} is 0: on SIGTERM, calls in flight are abandoned at once, so their users are \
                 left in doubt (they may have got a code)",
                key!(GraceArgs, shutdown_grace)
            ));
        }
        let batch_size: u32 =
            number(given(&consume.batch_size)).map_err(at!(ConsumeArgs, batch_size))?;
        if !(1..=10).contains(&batch_size) {
            return Err(ConfigError::at(
                key!(ConsumeArgs, batch_size),
                format!("{batch_size} must be between 1 and 10"),
            ));
        }
        let wait_time = duration(given(&consume.wait_time)).map_err(at!(ConsumeArgs, wait_time))?;
        if wait_time > Duration::from_secs(20) {
            return Err(ConfigError::at(
                key!(ConsumeArgs, wait_time),
                "SQS long polls for at most 20s",
            ));
        }
        let visibility_timeout = positive_duration(given(&consume.visibility_timeout))
            .map_err(at!(ConsumeArgs, visibility_timeout))?;
        if visibility_timeout < Duration::from_secs(1)
            || visibility_timeout > Duration::from_secs(12 * 3600)
        {
            return Err(ConfigError::at(
                key!(ConsumeArgs, visibility_timeout),
                "must be between 1s and 12h",
            ));
        }
        let max_extension =
            duration(given(&consume.max_extension)).map_err(at!(ConsumeArgs, max_extension))?;
        if max_extension < visibility_timeout {
            let visibility = key!(ConsumeArgs, visibility_timeout);
            return Err(ConfigError::at(
                key!(ConsumeArgs, max_extension),
                format!(
                    "{} is shorter than {} ({}, {}): a message could come back to another \
                     consumer while its first call is still running",
                    given(&consume.max_extension),
                    visibility.key,
                    visibility.flag,
                    given(&consume.visibility_timeout)
                ),
            ));
        }
        Ok(Self {
            queue_url: non_empty(queue.queue_url),
            endpoint: http_url(queue.sqs_endpoint).map_err(at!(QueueArgs, sqs_endpoint))?,
            batch_size,
            wait_time,
            visibility_timeout,
            max_extension,
            max_messages: count(given(&consume.max_messages))
                .map_err(at!(ConsumeArgs, max_messages))?,
            shutdown_grace,
        })
    }
}
