//! The one place that builds an AWS SDK configuration. Cognito (the resend and the signed pool
//! client), SQS and DynamoDB differ only in the values handed in here: timeouts, whether the SDK
//! retries, whether requests are signed. Region and endpoint overrides are applied the same way
//! for every service, so `--region` and the `--*-endpoint` flags cannot drift apart.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// What one service's clients need from the SDK configuration.
#[derive(Debug, Clone)]
pub(crate) struct SdkOptions<'a> {
    /// `--region`; `None` leaves it to the AWS config chain.
    pub(crate) region: Option<&'a str>,
    /// `--cognito-endpoint`, `--sqs-endpoint`, `--dynamodb-endpoint`.
    pub(crate) endpoint: Option<&'a url::Url>,
    /// How long establishing a connection may take.
    pub(crate) connect_timeout: Duration,
    /// How long one attempt may take (a long poll needs its wait plus a margin).
    pub(crate) attempt_timeout: Duration,
    /// Whether the SDK retries on its own. Off for Cognito and SQS: every call of theirs that is
    /// repeated goes through [`crate::retry`], so no call is retried by two layers (and, for
    /// Cognito, the SDK would treat LimitExceededException as throttling and burn the user's few
    /// resend attempts). On for DynamoDB, the one exception: its ledger writes are conditional
    /// and carry the claim's token (or an idempotency token), so a repeat the SDK makes cannot
    /// apply twice, and a ledger call has no caller that could retry it better: a ledger error
    /// stops the run.
    pub(crate) sdk_retries: bool,
    /// Whether requests are signed with the standard credential chain. ResendConfirmationCode
    /// needs no credentials, so its client looks none up.
    pub(crate) signed: bool,
}

/// Loads the SDK configuration for `options`.
pub(crate) async fn sdk_config(options: SdkOptions<'_>) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(options.connect_timeout)
        .operation_attempt_timeout(options.attempt_timeout)
        .build();
    let retries = if options.sdk_retries {
        RetryConfig::standard()
    } else {
        RetryConfig::disabled()
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retries)
        .timeout_config(timeouts);
    if !options.signed {
        loader = loader.no_credentials();
    }
    if let Some(region) = options.region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = options.endpoint {
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    loader.load().await
}
