//! `[retry]`: the retry budget and backoff schedule of one job's calls (and of every other
//! repeated call: pool reads, queue sends), validated so the schedule can be built.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{duration, given, number, positive_duration, some, text, unset};
use super::{ConfigError, Group, SettingsArgs, show};

/// The `[retry]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Retry")]
#[serde(deny_unknown_fields, default)]
pub struct RetryArgs {
    /// Max attempts per job [default: 10].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_MAX_ATTEMPTS",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_attempts: Option<String>,

    /// Max time from a job's first attempt to its last [default: 10m].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_MAX_ELAPSED",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_elapsed: Option<String>,

    /// First retry delay [default: 250ms].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_INITIAL_BACKOFF",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub initial_backoff: Option<String>,

    /// Longest retry delay [default: 30s].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_MAX_BACKOFF",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_backoff: Option<String>,

    /// Growth factor of the retry delay [default: 2.0].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_MULTIPLIER",
        value_name = "X",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub multiplier: Option<String>,

    /// Randomization factor of the retry delay, 0 to 1 [default: 0.5].
    #[arg(
        long,
        env = "COGNITO_RESEND_RETRY_JITTER",
        value_name = "X",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub jitter: Option<String>,
}

impl RetryArgs {
    /// The built-in defaults.
    pub(super) fn defaults() -> Self {
        Self {
            max_attempts: some("10"),
            max_elapsed: some("10m"),
            initial_backoff: some("250ms"),
            max_backoff: some("30s"),
            multiplier: some("2.0"),
            jitter: some("0.5"),
        }
    }
}

impl Group for RetryArgs {
    const SECTION: &'static str = "retry";
    fn put(self, into: &mut SettingsArgs) {
        into.retry = self;
    }
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

impl TryFrom<RetryArgs> for RetrySettings {
    type Error = ConfigError;

    fn try_from(raw: RetryArgs) -> Result<Self, ConfigError> {
        let max_attempts: u32 =
            number(given(&raw.max_attempts)).map_err(at!(RetryArgs, max_attempts))?;
        let max_attempts = NonZeroU32::new(max_attempts)
            .ok_or_else(|| ConfigError::at(key!(RetryArgs, max_attempts), "must be at least 1"))?;
        let multiplier: f64 = number(given(&raw.multiplier)).map_err(at!(RetryArgs, multiplier))?;
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(ConfigError::at(
                key!(RetryArgs, multiplier),
                format!("{multiplier} must be at least 1.0"),
            ));
        }
        let jitter: f64 = number(given(&raw.jitter)).map_err(at!(RetryArgs, jitter))?;
        if !(0.0..=1.0).contains(&jitter) {
            return Err(ConfigError::at(
                key!(RetryArgs, jitter),
                format!("{jitter} must be between 0 and 1"),
            ));
        }
        let initial_backoff = positive_duration(given(&raw.initial_backoff))
            .map_err(at!(RetryArgs, initial_backoff))?;
        let max_backoff =
            positive_duration(given(&raw.max_backoff)).map_err(at!(RetryArgs, max_backoff))?;
        if max_backoff < initial_backoff {
            return Err(ConfigError::at(
                key!(RetryArgs, max_backoff),
                format!(
                    "{} is shorter than {} ({})",
                    given(&raw.max_backoff),
                    key!(RetryArgs, initial_backoff).key,
                    given(&raw.initial_backoff)
                ),
            ));
        }
        Ok(Self {
            max_attempts,
            max_elapsed: duration(given(&raw.max_elapsed)).map_err(at!(RetryArgs, max_elapsed))?,
            initial_backoff,
            max_backoff,
            multiplier,
            jitter,
        })
    }
}
