//! `--pushgateway`: a one-shot run's final metrics, pushed when it ends, because a scheduled
//! backfill is usually gone before Prometheus would scrape it.
//!
//! The push is an HTTP PUT of the whole exposition to
//! `<pushgateway>/metrics/job/cognito-resend/command/<command>`: each run replaces the previous
//! run's metrics of the same command, and the Pushgateway's own `push_time_seconds` tells when
//! the last run ended (an alert on its age catches a job that stopped running).

use std::time::Duration;

use super::metrics;

/// Attempts per push: a Pushgateway restarting should not cost a night's metrics.
const ATTEMPTS: u32 = 3;

/// Pushes the current metrics of `command`. Returns the URL pushed to.
///
/// A user and password in `base` (a Pushgateway behind basic auth) are taken out of the URL and
/// sent as an `Authorization` header instead, so the URL this returns, logs and puts in its
/// errors (reqwest's errors name the URL) never carries them.
pub(crate) async fn push(base: &url::Url, command: &str) -> Result<String, PushError> {
    let body = metrics::render().ok_or(PushError::NoRecorder)?;
    let (base, credentials) = split_credentials(base);
    let url = format!(
        "{}/metrics/job/cognito-resend/command/{command}",
        base.as_str().trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(PushError::Client)?;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        let mut request = client
            .put(&url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(body.clone());
        if let Some((user, password)) = &credentials {
            request = request.basic_auth(user, password.as_deref());
        }
        let sent = request.send().await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(url),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                last = Some(PushError::Refused {
                    url: url.clone(),
                    status,
                    body: text.trim().to_owned(),
                });
                // The Pushgateway rejected the content: a retry would be rejected too.
                if status.is_client_error() {
                    break;
                }
            }
            Err(source) => {
                last = Some(PushError::Unreachable {
                    url: url.clone(),
                    source,
                })
            }
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(last.unwrap_or(PushError::TimeUp))
}

/// Why the metrics were not pushed. None of these carries the URL's credentials.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    /// The process has no metrics recorder.
    #[error("no metrics recorder is installed")]
    NoRecorder,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The Pushgateway answered with an error.
    #[error("{url} answered {status}: {body}")]
    Refused {
        /// Where it was pushed.
        url: String,
        /// Its status.
        status: reqwest::StatusCode,
        /// What it said.
        body: String,
    },
    /// No answer (reqwest's error names the URL, without credentials).
    #[error("{url}: {source}")]
    Unreachable {
        /// Where it was pushed.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The run's time was up first.
    #[error("no answer before the invocation's deadline: given up")]
    TimeUp,
}

/// `base` without its user and password, and those (percent-decoded) if it had any.
fn split_credentials(base: &url::Url) -> (url::Url, Option<(String, Option<String>)>) {
    if base.username().is_empty() && base.password().is_none() {
        return (base.clone(), None);
    }
    // The URL keeps them percent-encoded; the header wants them as typed.
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let user = decode(base.username());
    let password = base.password().map(decode);
    let mut bare = base.clone();
    // Cannot fail: the settings accept only http URLs with a host.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    (bare, Some((user, password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_for_a_header() {
        let base = url::Url::parse("http://met+rics:hunter%402@127.0.0.1:9091/").unwrap();
        let (bare, creds) = split_credentials(&base);
        assert_eq!(bare.as_str(), "http://127.0.0.1:9091/");
        assert_eq!(creds, Some(("met+rics".into(), Some("hunter@2".into()))));
        let plain = url::Url::parse("http://127.0.0.1:9091").unwrap();
        assert_eq!(split_credentials(&plain), (plain, None));
    }

    #[tokio::test]
    async fn a_failed_push_never_names_the_password() {
        // Nothing listens on port 9 of loopback (discard); the error names the URL.
        let base = url::Url::parse("http://metrics:hunter2@127.0.0.1:9/").unwrap();
        let _ = crate::telemetry::metrics::install(&[]);
        let err = push(&base, "backfill").await.unwrap_err().to_string();
        assert!(
            !err.contains("hunter2") && !err.contains("metrics:"),
            "{err}"
        );
        assert!(err.contains("127.0.0.1:9"), "{err}");
    }
}
