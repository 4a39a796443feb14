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
pub async fn push(base: &url::Url, command: &str) -> Result<String, String> {
    let body = metrics::render().ok_or("no metrics recorder is installed")?;
    let url = format!(
        "{}/metrics/job/cognito-resend/command/{command}",
        base.as_str().trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        let sent = client
            .put(&url)
            .header("content-type", "text/plain; version=0.0.4")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(url),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                last = format!("{url} answered {status}: {}", text.trim());
                // The Pushgateway rejected the content: a retry would be rejected too.
                if status.is_client_error() {
                    break;
                }
            }
            Err(e) => last = format!("{url}: {e}"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(last)
}
