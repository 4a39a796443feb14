//! `discover`: the pool's UNCONFIRMED users (and with `--status`, FORCE_CHANGE_PASSWORD ones) as
//! backfill CSV (stdout or `--out`), or as jobs on
//! `--queue-url` (`--to-queue`).
//!
//! The CSV's columns are `username`, `created` (UserCreateDate, RFC 3339), `status`, then one
//! column per `--attributes` name, so `backfill` reads it as it is (it needs only `username` and
//! ignores the rest) and a person can still see who is in it.
//!
//! The file holds personal data: `--out` is created readable by its owner only (0600). A cell a
//! spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return) is written with a `'` in front ([`crate::source::csv::neutralise`]); `backfill` and
//! `enqueue` take that `'` off a username again, so a phone-number username like `+15551234567`
//! survives the round trip.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::backfill::discovery;
use super::{Finished, RunError};
use crate::config::Settings;
use crate::job::Source;
use crate::shutdown::Shutdown;
use crate::source::csv::neutralise;
use crate::source::pool::{PoolSource, discover};

/// Runs `discover`.
pub(super) async fn run(
    out: Option<PathBuf>,
    attributes: Vec<String>,
    to_queue: bool,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let attributes: Vec<String> = attributes
        .into_iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    if to_queue && settings.sqs.queue_url.is_none() {
        return Err(RunError::Usage(
            "discover --to-queue needs a queue: --queue-url (sqs.queue_url)".into(),
        ));
    }
    if settings.cognito.user_pool_id.is_none() {
        return Err(RunError::Usage(
            "discover needs the user pool: --user-pool-id (cognito.user_pool_id)".into(),
        ));
    }
    // The pool profile, read as every command reads it (and logged).
    let admin = super::parts::pool_access(settings)
        .await?
        .map(|p| p.admin)
        .ok_or_else(|| RunError::Usage("discover needs the user pool".into()))?;
    let d = discovery(settings, admin, attributes.clone());
    if to_queue {
        let mut source = PoolSource::start(d, shutdown.token.child_token());
        let finished =
            super::enqueue::send_all(&mut source, None, "discover", settings, shutdown).await?;
        if let Some(failure) = source.take_failure() {
            return Err(RunError::Fatal(anyhow::anyhow!(
                "{failure}; the users before it were enqueued"
            )));
        }
        return Ok(finished);
    }

    let sink: Box<dyn Write + Send> = match &out {
        Some(path) => Box::new(create_private(path).map_err(|e| {
            RunError::Usage(format!("--out: cannot create {}: {e}", path.display()))
        })?),
        None => Box::new(std::io::stdout()),
    };
    let mut csv = csv::Writer::from_writer(std::io::BufWriter::new(sink));
    let write_failed = |e: csv::Error| RunError::Fatal(anyhow::anyhow!("writing the CSV: {e}"));
    let mut header = vec!["username".to_owned(), "created".into(), "status".into()];
    header.extend(attributes.iter().cloned());
    let header: Vec<String> = header.iter().map(|c| neutralise(c).into_owned()).collect();
    csv.write_record(&header).map_err(write_failed)?;

    let mut found = discover(d, shutdown.token.child_token());
    let mut written = 0u64;
    while let Some(user) = found.users.recv().await {
        let mut record = vec![
            user.username,
            user.created
                .map(|t| humantime::format_rfc3339_seconds(t).to_string())
                .unwrap_or_default(),
            user.status,
        ];
        for name in &attributes {
            record.push(
                user.attributes
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
        }
        csv.write_record(record.iter().map(|c| neutralise(c).into_owned()))
            .map_err(write_failed)?;
        written += 1;
    }
    csv.flush()
        .map_err(|e| RunError::Fatal(anyhow::anyhow!("writing the CSV: {e}")))?;
    if settings.log.verbosity >= 0 {
        eprintln!(
            "discover: {written} {} users in {:.1}s{}",
            settings.discover.status.join(" or "),
            started.elapsed().as_secs_f64(),
            match &out {
                Some(p) => format!(", written to {}", p.display()),
                None => String::new(),
            }
        );
    }
    if let Some(failure) = found.take_failure() {
        return Err(RunError::Fatal(anyhow::anyhow!(
            "{failure}; the CSV holds the users found before it"
        )));
    }
    Ok(Finished {
        complete: !shutdown.token.is_cancelled(),
        failed_or_invalid: 0,
    })
}

/// Creates (or truncates) `path` readable by its owner only: it will hold personal data.
fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only to a file created now; an existing one is tightened too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}
