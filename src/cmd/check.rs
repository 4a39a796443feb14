//! `check`: what a run would hit and whether it can, before it sends anything. It prints the
//! target ([`super::target`]) as a run logs it, one `ok` or `FAIL` line per check, then the
//! settings as they were resolved (secrets redacted) and, with `--user-pool-id`, the pool profile
//! (read as every command reads it, and checked against the settings the same way). Every line
//! but the settings is a TOML comment, so the output still loads back as a settings file.
//!
//! The checks, in order: the ledger's place; the region, found as a run finds it; then, unless
//! `--offline`: AWS credentials when the settings make signed calls (the pool, the queue, a
//! DynamoDB ledger; ResendConfirmationCode itself is unsigned); that each endpoint the run calls
//! answers — a TCP connection, and a TLS handshake for `https` — with no request at all, so
//! nothing can reach a user; and the pool and its app clients. Any failure is exit 2.

use std::time::Duration;

use tokio::net::TcpStream;

use super::parts::pool_access;
use super::target::{Endpoint, LedgerTarget, Target, Uses};
use super::{Finished, RunError, done};
use crate::config::Settings;

/// The checks' results, in order.
#[derive(Default)]
struct Checks {
    /// `(passed, what, detail)`.
    lines: Vec<(bool, String, String)>,
}

impl Checks {
    fn ok(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.lines.push((true, what.into(), detail.into()));
    }

    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.lines.push((false, what.into(), detail.into()));
    }

    fn failed(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(ok, ..)| !ok)
            .map(|(_, what, _)| what.as_str())
            .collect()
    }
}

/// Runs `check`; `offline` skips what needs the network (credentials, endpoints, the pool).
pub(super) async fn run(settings: &Settings, offline: bool) -> Result<Finished, RunError> {
    let mut settings = settings.clone();
    let mut checks = Checks::default();

    match settings.ledger.usable() {
        Ok(()) => {}
        Err(e) => checks.fail("ledger", e.to_string()),
    }
    let region = match settings.resolve_region().await {
        Ok(()) => {
            let region = settings.cognito.region.clone().unwrap_or_default();
            checks.ok("region", region);
            true
        }
        Err(e) => {
            checks.fail("region", e.to_string());
            false
        }
    };
    let target = Target::of(
        &settings,
        Uses {
            queue: settings.sqs.queue_url.is_some(),
            ..Uses::run(&settings)
        },
    )
    .await;
    if let Some(ledger) = &target.ledger {
        ledger_check(ledger, settings.ledger.usable().is_ok(), &mut checks);
    }

    let mut pool = None;
    if offline {
        // What needs no network still holds: --precheck or --action invite without a pool.
        if settings.cognito.user_pool_id.is_none() {
            pool_access(&settings).await?;
        }
    } else if region {
        credentials(&settings, &mut checks).await;
        let timeout = settings.cognito.connect_timeout;
        if let Some(e) = &target.cognito {
            reach("Cognito endpoint", e, timeout, &mut checks).await;
        }
        if let Some(q) = &target.queue {
            reach("SQS endpoint", &q.endpoint, timeout, &mut checks).await;
        }
        if let Some(LedgerTarget::Dynamodb { endpoint, .. }) = &target.ledger {
            reach("DynamoDB endpoint", endpoint, timeout, &mut checks).await;
        }
        match pool_access(&settings).await {
            Ok(Some(p)) => {
                checks.ok(
                    "pool",
                    format!(
                        "{} and its app client(s) read (DescribeUserPool, DescribeUserPoolClient)",
                        p.profile.pool_id
                    ),
                );
                pool = Some(p);
            }
            Ok(None) => {}
            Err(e) => checks.fail("pool", e.to_string()),
        }
    }

    println!("# target: {target}");
    for (ok, what, detail) in &checks.lines {
        let status = if *ok { "ok  " } else { "FAIL" };
        println!("# {status} {what}: {detail}");
    }
    if offline {
        println!("# --offline: credentials, endpoints and the pool were not checked");
    }
    print!("{}", settings.render_redacted());
    if let Some(pool) = pool {
        // As comments, so the output still loads back as a settings file.
        println!();
        println!("# The pool profile (DescribeUserPool, DescribeUserPoolClient):");
        for line in pool.profile.to_string().lines() {
            println!("# {line}");
        }
    }
    if settings.cognito.client_id.is_none() {
        eprintln!(
            "note: --client-id is not set; sending works only if every job carries its own client_id, \
             one of those given with --allow-client-id"
        );
    }
    let failed = checks.failed();
    if !failed.is_empty() {
        return Err(RunError::Usage(format!(
            "check failed: {} (see the FAIL lines above)",
            failed.join(", ")
        )));
    }
    done()
}

/// The ledger's place: the file and whether it exists yet (a run creates it, and the default's
/// folder), or the table.
fn ledger_check(ledger: &LedgerTarget, usable: bool, checks: &mut Checks) {
    if !usable {
        return;
    }
    match ledger {
        LedgerTarget::Sqlite { path, .. } if path.exists() => {
            checks.ok("ledger", format!("{ledger}, exists"));
        }
        LedgerTarget::Sqlite { .. } => {
            checks.ok(
                "ledger",
                format!("{ledger}, not there yet: the first run creates it"),
            );
        }
        LedgerTarget::Dynamodb { .. } | LedgerTarget::None => {
            checks.ok("ledger", ledger.to_string())
        }
    }
}

/// Whether the settings make signed calls, and if so whether the credential chain finds
/// credentials (`--profile`'s, or the chain's).
async fn credentials(settings: &Settings, checks: &mut Checks) {
    let mut needs = Vec::new();
    if settings.cognito.user_pool_id.is_some() {
        needs.push("the pool (--user-pool-id)");
    }
    if settings.sqs.queue_url.is_some() {
        needs.push("the queue (--queue-url)");
    }
    if matches!(
        settings.ledger.path,
        crate::ledger::StateSpec::Dynamo { .. }
    ) {
        needs.push("the DynamoDB ledger");
    }
    if needs.is_empty() {
        checks.ok(
            "credentials",
            "none needed (ResendConfirmationCode is unsigned; nothing here is signed)",
        );
        return;
    }
    match crate::aws::find_credentials(
        settings.cognito.region.as_deref(),
        settings.cognito.profile.as_deref(),
    )
    .await
    {
        Ok(from) => checks.ok(
            "credentials",
            format!("found ({from}), for {}", needs.join(", ")),
        ),
        Err(e) => checks.fail(
            "credentials",
            format!(
                "{} need IAM credentials, and none were found (environment, profile, web \
                 identity, container or instance role): {e}",
                needs.join(", ")
            ),
        ),
    }
}

/// Whether `endpoint` answers: a TCP connection and, for `https`, a TLS handshake against the
/// system's trust store. Nothing is sent after the handshake.
async fn reach(what: &str, endpoint: &Endpoint, timeout: Duration, checks: &mut Checks) {
    let Some(url) = endpoint.url.as_deref() else {
        checks.fail(what, "AWS knows no endpoint for this region");
        return;
    };
    let what = format!("{what} {url}");
    match connect(url, timeout).await {
        Ok(how) => checks.ok(what, how),
        Err(e) => checks.fail(what, e),
    }
}

/// A TCP connection to `url`'s host and port, then the TLS handshake for `https`.
async fn connect(url: &str, timeout: Duration) -> Result<&'static str, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or("the URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or("the URL has no port")?;
    let tcp = tokio::time::timeout(timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| {
            format!(
                "no TCP connection within {}",
                humantime::format_duration(timeout)
            )
        })?
        .map_err(|e| format!("cannot connect: {e}"))?;
    if parsed.scheme() != "https" {
        return Ok("TCP connection (plain http: no TLS)");
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host)
        .map_err(|e| format!("not a TLS server name: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    tokio::time::timeout(timeout, tls.connect(name, tcp))
        .await
        .map_err(|_| {
            format!(
                "no TLS handshake within {}",
                humantime::format_duration(timeout)
            )
        })?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    Ok("TCP connection and TLS handshake")
}
