//! The report's `run` record of a run ([`crate::outcome::run_record`]), built from its validated
//! settings in one place: what a report says about the run that wrote it.

use crate::config::{SecretSource, Settings, redact_url};
use crate::ledger::RunId;
use crate::outcome::run_record::{RunCaps, RunRecord, RunTarget, redacted_args};

use super::parts::{PoolAccess, effective_limits};
use super::target::{EndpointFrom, LedgerTarget, Target, Uses};

/// The flags whose value is (or may be, mistyped) a secret: never written as given. The client
/// secret itself is never a flag's value; its file's name is withheld all the same, since a
/// secret pasted where its file's name belongs is a mistake seen in practice.
const SECRET_VALUED_FLAGS: [&str; 1] = ["--client-secret-file"];

/// Where the run sends and keeps its state, for its `run` record: the region, the Cognito
/// endpoint and the ledger as [`Target`] (the one description, logged at the start) says them.
/// The endpoint is `None` when the calls go to AWS's own; the ledger is a SQLite file's full
/// path, `dynamodb://TABLE` or `none`.
pub(super) async fn target(settings: &Settings) -> RunTarget {
    let t = Target::of(settings, Uses::run(settings)).await;
    let endpoint = t
        .cognito
        .filter(|e| e.from != EndpointFrom::Aws)
        .and_then(|e| e.url);
    let ledger = match t.ledger {
        Some(LedgerTarget::Sqlite { path, .. }) => path.display().to_string(),
        Some(LedgerTarget::Dynamodb { table, .. }) => format!("dynamodb://{table}"),
        Some(LedgerTarget::None) | None => "none".to_owned(),
    };
    RunTarget::new(t.region, endpoint, ledger)
}

/// The `run` record of `command`, started now with `settings` against `target`: `run` is the
/// ledger's id for it (none without a ledger: a fresh one), `args` the command line after the
/// program's name (redacted here), and the caps are those the run applies (with the pool's
/// default email account's 50 a day when that cap is in force).
pub(super) fn run_record(
    settings: &Settings,
    command: &str,
    run: Option<&RunId>,
    pool: Option<&PoolAccess>,
    args: impl IntoIterator<Item = String>,
    target: RunTarget,
) -> RunRecord {
    let limits = effective_limits(settings, run.is_some(), pool);
    let zero = |v: Option<u64>| v.unwrap_or(0);
    RunRecord {
        run_id: run.cloned().unwrap_or_default().0,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        command: command.to_owned(),
        args: redacted_args(args, &SECRET_VALUED_FLAGS, redact_url),
        pool_id: settings.cognito.user_pool_id.clone(),
        client_id: settings.cognito.client_id.clone(),
        allowed_client_ids: settings.cognito.allowed_client_ids.clone(),
        client_secret: settings
            .cognito
            .secret
            .as_ref()
            .map(|(_, source)| match source {
                SecretSource::File(_) => "file",
                SecretSource::Env => "env",
                SecretSource::SecretsManager(_) => "secrets_manager",
            })
            .map(str::to_owned),
        target,
        cooldown: Some(settings.duration_as_written(
            "ledger",
            "cooldown",
            settings.ledger.cooldown,
        )),
        concurrency: Some(settings.run.concurrency.get() as u64),
        rate: Some(settings.run.rate.unwrap_or(0.0)),
        invite_rate: Some(settings.run.invite_rate.unwrap_or(0.0)),
        fleet_rate: Some(settings.run.fleet_rate.unwrap_or(0.0)),
        caps: RunCaps {
            max_sends: zero(limits.max_sends),
            max_sends_per_user: zero(settings.ledger.max_sends_per_user),
            max_sends_per_day: zero(limits.max_sends_per_day),
            max_sms_per_day: zero(limits.max_sms_per_day),
            max_email_per_day: zero(limits.max_email_per_day),
        },
        wave: settings.run.wave.clone(),
        dry_run: settings.run.dry_run,
        precheck: settings.run.precheck,
        started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
    }
}
