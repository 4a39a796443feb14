//! The app client secret from AWS Secrets Manager (`lambda.client_secret_id`): what a Lambda
//! function is expected to use for a secret, rather than a file baked into its package or an
//! environment variable anyone with `lambda:GetFunctionConfiguration` can read. It is read once,
//! when the container starts; a container started after a rotation reads the new value.
//!
//! The secret string is either the client secret itself or a JSON object whose
//! `client_secret` key holds it (what the console's key/value editor writes).

use std::time::Duration;

use crate::aws::{SdkOptions, sdk_config};
use crate::cognito::ClientSecret;

/// Why the secret could not be read: the function does not start.
#[derive(Debug, thiserror::Error)]
#[error("lambda.client_secret_id: cannot read the client secret from Secrets Manager: {0}")]
pub(crate) struct SecretError(String);

/// Reads secret `id` (a name or an ARN) with the standard credential chain (the function's
/// role). The SDK's standard retries apply: this one call has no other retry layer.
pub(crate) async fn fetch(region: Option<&str>, id: &str) -> Result<ClientSecret, SecretError> {
    let config = sdk_config(SdkOptions {
        region,
        profile: None,
        endpoint: None,
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: Duration::from_secs(10),
        sdk_retries: true,
        signed: true,
    })
    .await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            SecretError(format!(
                "{id}: {}",
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| SecretError(format!("{id} has no SecretString (a binary secret?)")))?;
    value(text).ok_or_else(|| {
        SecretError(format!(
            "{id} is empty, or a JSON object without a \"client_secret\" string"
        ))
    })
}

/// The client secret in a secret string: the text itself, or a JSON object's `client_secret`.
fn value(text: &str) -> Option<ClientSecret> {
    let text = text.trim();
    let secret = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(fields)) => {
            fields.get("client_secret")?.as_str()?.trim().to_owned()
        }
        _ => text.to_owned(),
    };
    (!secret.is_empty()).then(|| ClientSecret::new(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_or_a_json_objects_client_secret() {
        assert_eq!(value("s3cr3t\n").unwrap().expose(), "s3cr3t");
        assert_eq!(
            value(r#"{"client_secret": "s3cr3t", "other": 1}"#)
                .unwrap()
                .expose(),
            "s3cr3t"
        );
        assert!(value(r#"{"password": "x"}"#).is_none());
        assert!(value("  ").is_none());
    }
}
