//! `[lambda]`: read by the Lambda function only (`cognito-resend-lambda`, docs/lambda.md): its
//! margin before the invocation's deadline, its timeout, and the Secrets Manager secret it
//! reads the client secret from. Of the commands, only `check` takes these flags (to validate
//! a function's settings).

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::cognito::{CLIENT_SECRET_ENV, CognitoArgs, CognitoSettings};
use super::value::{given, non_empty, positive_duration, some, text, unset};
use super::{ConfigError, Group, SettingsArgs, show};

/// The `[lambda]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Lambda function")]
#[serde(deny_unknown_fields, default)]
pub struct LambdaArgs {
    /// Lambda function: stop taking work when the invocation has less than this left, give
    /// calls in flight half of it, and return every record not done [default: 5s].
    #[arg(
        long = "lambda-margin",
        env = "COGNITO_RESEND_LAMBDA_MARGIN",
        value_name = "DURATION",
        allow_negative_numbers = true
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
        env = "COGNITO_RESEND_LAMBDA_TIMEOUT",
        value_name = "DURATION",
        allow_negative_numbers = true
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

impl LambdaArgs {
    /// The built-in defaults: a 5 s margin, no timeout but the runtime's, no secret.
    pub(super) fn defaults() -> Self {
        Self {
            margin: some("5s"),
            timeout: None,
            client_secret_id: None,
        }
    }
}

impl Group for LambdaArgs {
    const SECTION: &'static str = "lambda";
    fn put(self, into: &mut SettingsArgs) {
        into.lambda = self;
    }
}

/// The Lambda function's own settings (`[lambda]`, docs/lambda.md).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LambdaSettings {
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

impl LambdaSettings {
    /// Validates the `[lambda]` table; the client secret comes one way only.
    pub(super) fn validate(
        raw: LambdaArgs,
        cognito: &CognitoSettings,
    ) -> Result<Self, ConfigError> {
        let lambda = Self {
            margin: positive_duration(given(&raw.margin)).map_err(at!(LambdaArgs, margin))?,
            timeout: non_empty(raw.timeout)
                .map(|t| positive_duration(&t))
                .transpose()
                .map_err(at!(LambdaArgs, timeout))?,
            client_secret_id: non_empty(raw.client_secret_id),
        };
        if lambda.client_secret_id.is_some() && cognito.secret.is_some() {
            let file = key!(CognitoArgs, client_secret_file);
            return Err(ConfigError::at(
                key!(LambdaArgs, client_secret_id),
                format!(
                    "a client secret from {} ({}) or {CLIENT_SECRET_ENV} is set too: give the \
                     client secret one way only",
                    file.flag, file.key
                ),
            ));
        }
        Ok(lambda)
    }
}
