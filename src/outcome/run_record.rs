//! The report's records about the run itself, beside its one line per job: a `run` record first
//! (which build, which command and flags, which target, which settings — so "which environment
//! was this?" has an answer in the file), and a `run_end` record last (when it ended, and how
//! many jobs it recorded).
//!
//! A record about the run says so in its `kind` (`"run"`, `"run_end"`); a job's line has no
//! `kind` (reports were job lines only before), so readers of either age tell them apart. The
//! report is append-only — lines are on disk as soon as they are written, and `--append` adds
//! a later run's lines after an earlier run's — so the end of a run cannot be filled into its
//! first record: it is a closing record of its own, paired with its `run` record by `run_id`.
//! A `run` record without its `run_end` is a run that was killed, or is still running.
//!
//! No secret and no username is in either record: the client secret shows only as where it came
//! from, the value of a flag that names a secret is `<redacted>`, and URLs lose their
//! credentials ([`redacted_args`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What stands for a value the record leaves out.
pub(crate) const REDACTED: &str = "<redacted>";

/// Where the run sends and keeps its state: the plain values every report names, whatever
/// builds them (the settings today; a description of the run's target as the commands log it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunTarget {
    /// The AWS region the clients use, as resolved before the run (`--region`, or the AWS
    /// config chain).
    pub region: Option<String>,
    /// The Cognito endpoint, credentials redacted; `None`: AWS's own for the region.
    pub endpoint: Option<String>,
    /// The ledger: a SQLite file's full path, `dynamodb://TABLE`, or `none`.
    pub ledger: String,
}

impl RunTarget {
    /// The target from plain values.
    pub(crate) fn new(region: Option<String>, endpoint: Option<String>, ledger: String) -> Self {
        Self {
            region,
            endpoint,
            ledger,
        }
    }
}

/// The spend caps a run applies; 0 is no cap, as the settings file writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunCaps {
    /// `--max-sends`: codes this run may send.
    pub max_sends: u64,
    /// `--max-sends-per-user`: codes a user may get over the ledger's life.
    pub max_sends_per_user: u64,
    /// `--max-sends-per-day`: codes a UTC day across the ledger.
    pub max_sends_per_day: u64,
    /// `--max-sms-per-day`.
    pub max_sms_per_day: u64,
    /// `--max-email-per-day` (the pool's default email account's 50 when it applies).
    pub max_email_per_day: u64,
}

/// The first record of a run's lines. Every field has a default, so a record of an older or
/// newer version reads: what it lacks is absent, what this version does not know is ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunRecord {
    /// The run's id: the ledger's for this run when it has one (`ledger` commands name runs by
    /// it), else a fresh one; its `run_end` names it too.
    pub run_id: String,
    /// The version of cognito-resend that ran.
    pub version: String,
    /// The command (`backfill`, `consume`).
    pub command: String,
    /// The command line after the program's name, secrets redacted ([`redacted_args`]).
    pub args: Vec<String>,
    /// `--user-pool-id`.
    pub pool_id: Option<String>,
    /// `--client-id`: the default app client.
    pub client_id: Option<String>,
    /// `--allow-client-id`: the others a job may name.
    pub allowed_client_ids: Vec<String>,
    /// Where the client secret came from (`file`, `env`, `secrets_manager`), never its value;
    /// `None`: no secret.
    pub client_secret: Option<String>,
    /// Where the run sends and keeps its state.
    #[serde(flatten)]
    pub target: RunTarget,
    /// `--cooldown`, as the settings file writes it (`24h`).
    pub cooldown: Option<String>,
    /// `--concurrency`.
    pub concurrency: Option<u64>,
    /// `--rate`, calls per second; 0 is no ceiling.
    pub rate: Option<f64>,
    /// `--invite-rate`, invitations per second; 0 is no ceiling.
    pub invite_rate: Option<f64>,
    /// `--fleet-rate`; 0 is none.
    pub fleet_rate: Option<f64>,
    /// The spend caps.
    pub caps: RunCaps,
    /// `--wave`.
    pub wave: Option<String>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--precheck`.
    pub precheck: bool,
    /// When the run started (RFC 3339).
    pub started_at: String,
}

/// The closing record of a run's lines: written when the run ends, so a run cut short (killed,
/// the machine gone) has none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct RunEnd {
    /// The [`RunRecord::run_id`] it closes.
    pub run_id: String,
    /// When the run ended (RFC 3339).
    pub ended_at: String,
    /// Jobs this run recorded (its lines).
    pub jobs: u64,
    /// Of those, per outcome (non-zero only).
    pub outcomes: BTreeMap<String, u64>,
    /// Jobs read but never attempted because the run stopped first (no line).
    pub untouched: u64,
    /// What stopped the run: `end_of_input`, `shutdown` (a signal), `misconfigured`,
    /// `ledger_error` or `spend_cap` (`None`: not said, a report of an earlier version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// Which misconfiguration (its reason) or spend cap (its setting), when `stopped_by` says one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_detail: Option<String>,
}

/// A record as the report writes it: its `kind`, then its fields.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T> {
    kind: &'static str,
    #[serde(flatten)]
    record: &'a T,
}

impl RunRecord {
    /// `kind` of the run's first record.
    pub(crate) const KIND: &'static str = "run";

    /// As written.
    pub(crate) fn tagged(&self) -> Tagged<'_, Self> {
        Tagged {
            kind: Self::KIND,
            record: self,
        }
    }
}

impl RunEnd {
    /// `kind` of the run's closing record.
    pub(crate) const KIND: &'static str = "run_end";

    /// As written.
    pub(crate) fn tagged(&self) -> Tagged<'_, Self> {
        Tagged {
            kind: Self::KIND,
            record: self,
        }
    }
}

/// `args` with nothing secret: the value of each flag in `secret_flags` (`--flag VALUE` or
/// `--flag=VALUE`) is [`REDACTED`], and every argument passes through `redact_url` (a URL's
/// user and password go: `--pushgateway http://user:password@host`).
pub(crate) fn redacted_args(
    args: impl IntoIterator<Item = String>,
    secret_flags: &[&str],
    redact_url: impl Fn(&str) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if std::mem::take(&mut hide_next) {
            out.push(REDACTED.to_owned());
            continue;
        }
        if secret_flags.contains(&arg.as_str()) {
            hide_next = true;
            out.push(arg);
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if secret_flags.contains(&flag) => {
                out.push(format!("{flag}={REDACTED}"));
            }
            _ => out.push(redact_url(&arg)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    fn no_credentials(text: &str) -> String {
        match text.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => {
                format!("{scheme}://<redacted>@{}", rest.split_once('@').unwrap().1)
            }
            _ => text.to_owned(),
        }
    }

    #[test]
    fn a_secret_flags_value_is_redacted_in_both_spellings_and_urls_lose_their_credentials() {
        let shown = redacted_args(
            args(
                "backfill users.csv --client-secret-file hunter2 --rate 5 \
                 --client-secret-file=hunter3 --pushgateway http://u:pw@gw:9091",
            ),
            &["--client-secret-file"],
            no_credentials,
        );
        assert_eq!(
            shown,
            args(
                "backfill users.csv --client-secret-file <redacted> --rate 5 \
                 --client-secret-file=<redacted> --pushgateway http://<redacted>@gw:9091"
            )
        );
        let joined = shown.join(" ");
        assert!(
            !joined.contains("hunter") && !joined.contains("pw"),
            "{joined}"
        );
    }

    #[test]
    fn a_record_reads_back_with_its_kind_and_an_older_one_with_fields_missing() {
        let record = RunRecord {
            run_id: "r1".into(),
            version: "0.1.0".into(),
            command: "backfill".into(),
            target: RunTarget::new(Some("eu-west-1".into()), None, "/tmp/l.db".into()),
            rate: Some(10.0),
            ..RunRecord::default()
        };
        let line = serde_json::to_string(&record.tagged()).unwrap();
        assert!(line.starts_with(r#"{"kind":"run","run_id":"r1""#), "{line}");
        assert!(
            line.contains(r#""region":"eu-west-1""#),
            "flattened: {line}"
        );
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, record);
        let sparse: RunRecord =
            serde_json::from_str(r#"{"kind":"run","version":"0.0.9","someday":1}"#).unwrap();
        assert_eq!(sparse.version, "0.0.9");
        assert_eq!(sparse.rate, None);
    }
}
