//! The one place that builds an AWS SDK configuration. Cognito (the resend and the signed pool
//! client), SQS and DynamoDB differ only in the values handed in here: timeouts, whether the SDK
//! retries, whether requests are signed. Region, profile and endpoint overrides are applied the
//! same way for every service, so `--region`, `--profile` and the `--*-endpoint` flags cannot
//! drift apart.
//!
//! What the SDK reads on its own stays its own: `AWS_PROFILE`, `AWS_REGION`, and the endpoint
//! variables `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>` (`_COGNITO_IDENTITY_PROVIDER`,
//! `_SQS`, `_DYNAMODB`) or a profile's `endpoint_url`. A `--*-endpoint` flag beats them.
//! [`configured_endpoint`] tells which endpoint a service's client will call, so the run's target
//! ([`crate::cmd`]) names it.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

/// What one service's clients need from the SDK configuration.
#[derive(Debug, Clone)]
pub(crate) struct SdkOptions<'a> {
    /// `--region`; `None` leaves it to the AWS config chain.
    pub(crate) region: Option<&'a str>,
    /// `--profile`; `None` leaves it to the AWS config chain (`AWS_PROFILE`, else `default`).
    pub(crate) profile: Option<&'a str>,
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
    if let Some(profile) = options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = options.region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = options.endpoint {
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    loader.load().await
}

/// An AWS service whose endpoint the SDK may take from its configuration: the service id and
/// the environment variable suffix the SDK reads (`AWS_ENDPOINT_URL_<suffix>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Amazon Cognito user pools (`cognito-idp`).
    Cognito,
    /// Amazon SQS.
    Sqs,
    /// Amazon DynamoDB.
    DynamoDb,
}

impl Service {
    /// The environment variable that gives this service's endpoint to the SDK.
    pub(crate) fn env_var(self) -> &'static str {
        match self {
            Self::Cognito => "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            Self::Sqs => "AWS_ENDPOINT_URL_SQS",
            Self::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
        }
    }

    /// The SDK's service id, as its client's configuration looks it up.
    fn service_id(self) -> &'static str {
        match self {
            Self::Cognito => "Cognito Identity Provider",
            Self::Sqs => "SQS",
            Self::DynamoDb => "DynamoDB",
        }
    }
}

/// The endpoint URL `sdk` gives `service`'s client, as the client itself reads it: the override
/// handed in ([`SdkOptions::endpoint`]), else `AWS_ENDPOINT_URL_<SERVICE>` or the profile's
/// service `endpoint_url`, else `AWS_ENDPOINT_URL` or the profile's `endpoint_url`. `None`: AWS's
/// own regional endpoint. The `bool` says whether it came from the AWS configuration (the
/// environment or the profile) rather than from our own setting.
pub(crate) fn configured_endpoint(sdk: &SdkConfig, service: Service) -> Option<(String, bool)> {
    if sdk.get_origin("endpoint_url").is_client_config() {
        return sdk.endpoint_url().map(|u| (u.to_owned(), false));
    }
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service.service_id())
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field of the key is set");
    sdk.service_config()
        .and_then(|conf| conf.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
        .map(|u| (u, true))
}

/// AWS's own endpoint for `service` in `region`, as the service's SDK resolves it (so a region of
/// another partition gets that partition's domain). `None` when the SDK knows no endpoint there.
pub(crate) async fn regional_endpoint(service: Service, region: &str) -> Option<String> {
    macro_rules! resolve {
        ($sdk:ident) => {{
            use $sdk::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
            let params = Params::builder().region(region).build().ok()?;
            DefaultResolver::new()
                .resolve_endpoint(&params)
                .await
                .ok()
                .map(|e| e.url().to_owned())
        }};
    }
    match service {
        Service::Cognito => resolve!(aws_sdk_cognitoidentityprovider),
        Service::Sqs => resolve!(aws_sdk_sqs),
        Service::DynamoDb => resolve!(aws_sdk_dynamodb),
    }
}

/// Whether the credential chain (of `profile`, when given) finds credentials, as a signed client
/// would look them up: `Ok` names their kind (never their values), `Err` is the chain's last
/// word.
pub(crate) async fn find_credentials(
    region: Option<&str>,
    profile: Option<&str>,
) -> Result<&'static str, String> {
    use aws_credential_types::provider::ProvideCredentials;
    let sdk = sdk_config(SdkOptions {
        region,
        profile,
        endpoint: None,
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(10),
        sdk_retries: false,
        signed: true,
    })
    .await;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| "no credential provider".to_owned())?;
    match provider.provide_credentials().await {
        Ok(c) if c.session_token().is_some() => Ok("temporary credentials"),
        Ok(_) => Ok("long-term access keys"),
        Err(e) => Err(aws_smithy_types::error::display::DisplayErrorContext(&e).to_string()),
    }
}
