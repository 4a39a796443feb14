//! `[ledger]`: where the send ledger is and the rules it keeps: the cooldown, the claim lease
//! (when a run is taken for dead), retention and the per-user lifetime cap. Every command that
//! sends reads them, and so does every `ledger` subcommand.
//!
//! Without `--state`, the ledger is `ledger.db` in the user's data directory, the XDG data home
//! ([`default_path`]): one place whatever directory a run starts in, so a rerun from elsewhere
//! still sees who was sent a code (a file in the working directory silently protected nothing
//! then). The XDG rule takes a few lines here rather than a crate: the `dirs` family answers
//! `~/Library/Application Support` on macOS, and the environment it reads is the one
//! [`super::Env`] gives, so tests give their own.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{
    count, duration, given, http_url, non_empty, positive_duration, some, text, unset,
};
use super::{ConfigError, Env, Group, SettingsArgs, show};
use crate::ledger::StateSpec;

/// How often a run heartbeats its claims at the most (the ledger heartbeats every lease / 6, but
/// not more often than this).
pub(crate) const MIN_HEARTBEAT: Duration = Duration::from_millis(50);

/// The shortest `--claim-lease`: six heartbeats, so a live run's counter moves several times
/// before another run may judge it dead, and a run fences itself (half a lease without a
/// heartbeat) after three missed beats, well before that.
pub(crate) const MIN_CLAIM_LEASE: Duration = Duration::from_millis(300);

/// The `[ledger]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Ledger")]
#[serde(deny_unknown_fields, default)]
pub struct LedgerArgs {
    /// The send ledger: a SQLite file, `dynamodb://TABLE` (shared by replicas on many hosts), or
    /// `none` (no claim, no cooldown: a rerun or a redelivered message sends again)
    /// (default: ledger.db in the user's data directory, $XDG_DATA_HOME/cognito-resend/ledger.db,
    /// else ~/.local/share/cognito-resend/ledger.db; every run logs where it is).
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_PATH",
        value_name = "FILE|dynamodb://TABLE|none"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "path"
    )]
    pub state: Option<String>,

    /// Never send the same client id + username twice within this window [default: 24h].
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_COOLDOWN",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub cooldown: Option<String>,

    /// A run whose ledger heartbeat is older than this is taken for dead: users it had claimed
    /// are "in doubt" and sent again [default: 30s].
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_CLAIM_LEASE",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub claim_lease: Option<String>,

    /// DynamoDB endpoint URL for --state dynamodb://TABLE (local DynamoDB, VPC endpoints;
    /// default: AWS's; the SDK also reads AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL and the
    /// profile's endpoint_url, which this beats).
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT",
        value_name = "URL"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub dynamodb_endpoint: Option<String>,

    /// Retention: user rows with nothing written for this long are deleted — by DynamoDB's TTL
    /// (attribute `expires_at`), or for SQLite when a run opens the ledger; at least the
    /// cooldown. Also what `ledger prune` keeps by default. 0s = keep forever [default: 0s].
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_RETENTION",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub retention: Option<String>,

    /// Lifetime cap: a user who already got N codes from this tool (every run and wave the
    /// ledger has seen) is `capped`, never called; needs a ledger. 0 = no cap [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_MAX_SENDS_PER_USER",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends_per_user: Option<String>,

    /// A user whose last recorded outcome says they are confirmed (`already_confirmed`,
    /// `already_signed_in`) or missing (`not_found`) is skipped without a call for this long
    /// after it (`known_confirmed`, `known_missing`): the quota is shared with live sign-ups.
    /// 0 = call again every time. Not for a user whose status the run reads from the pool
    /// (`--from-pool`, `--precheck`, an alias lookup) [default: 7d].
    #[arg(
        long,
        env = "COGNITO_RESEND_LEDGER_RECHECK_AFTER",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub recheck_after: Option<String>,
}

impl LedgerArgs {
    /// The built-in defaults.
    pub(super) fn defaults() -> Self {
        Self {
            // The data directory's `ledger.db`: found from the environment when validated.
            state: None,
            cooldown: some("24h"),
            claim_lease: some("30s"),
            dynamodb_endpoint: None,
            retention: some("0s"),
            max_sends_per_user: some("0"),
            recheck_after: some("7d"),
        }
    }
}

impl Group for LedgerArgs {
    const SECTION: &'static str = "ledger";
    fn put(self, into: &mut SettingsArgs) {
        into.ledger = self;
    }
}

/// The send ledger.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LedgerSettings {
    /// `--state`: a file, `dynamodb://TABLE` or `none`; without it, [`default_path`].
    #[serde(serialize_with = "show::display")]
    pub path: StateSpec,
    /// Whether `path` was given or is the default, and whether there is a default at all.
    #[serde(skip)]
    pub origin: LedgerOrigin,
    /// Never send the same client+username twice within this.
    #[serde(serialize_with = "show::duration")]
    pub cooldown: Duration,
    /// A run whose heartbeat is older than this is dead; its claims are in doubt.
    #[serde(serialize_with = "show::duration")]
    pub claim_lease: Duration,
    /// DynamoDB endpoint override (local DynamoDB, moto, VPC endpoints).
    #[serde(serialize_with = "show::url")]
    pub dynamodb_endpoint: Option<url::Url>,
    /// `--max-sends-per-user`: codes a user may get from this tool over the ledger's life.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends_per_user: Option<u64>,
    /// `--retention`: user rows idle this long are deleted (DynamoDB's TTL; SQLite when a run
    /// opens it). `None` keeps them.
    #[serde(serialize_with = "show::duration_or_zero")]
    pub retention: Option<Duration>,
    /// `--recheck-after`: a recorded `already_confirmed` or `not_found` spares the user a call
    /// for this long (zero: never).
    #[serde(serialize_with = "show::duration")]
    pub recheck_after: Duration,
}

/// Where the ledger's place came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LedgerOrigin {
    /// `--state` (`ledger.path`) named it.
    Given,
    /// The default, in the user's data directory: a run that writes creates its folder.
    DataHome,
    /// No `--state`, and no data directory either (neither `XDG_DATA_HOME` nor `HOME` is set):
    /// `path` names nothing usable, and a command that needs the ledger stops with
    /// [`LedgerSettings::usable`]'s error. Commands that need none (`report`, `enqueue`,
    /// `discover`) run as usual.
    NoDataHome,
}

/// The default ledger file: `$XDG_DATA_HOME/cognito-resend/ledger.db`, else
/// `$HOME/.local/share/cognito-resend/ledger.db` (the XDG Base Directory rule: a relative
/// `XDG_DATA_HOME` is ignored). `None` when neither is set.
pub(crate) fn default_path(env: &Env) -> Option<PathBuf> {
    let absolute = |name: &str| {
        (env.var)(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let data_home = absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share")))?;
    Some(data_home.join("cognito-resend").join("ledger.db"))
}

impl LedgerSettings {
    /// The ledger's timing rules, as a run follows them.
    pub(crate) fn timing(&self) -> crate::ledger::LedgerTiming {
        crate::ledger::LedgerTiming {
            cooldown: self.cooldown,
            lease: self.claim_lease,
            recheck_after: self.recheck_after,
        }
    }

    /// Validates the `[ledger]` table; a zero cooldown is allowed, and said in `warnings`.
    /// `env` gives the data directory of the default ledger.
    pub(super) fn validate(
        raw: LedgerArgs,
        env: &Env,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let claim_lease =
            positive_duration(given(&raw.claim_lease)).map_err(at!(LedgerArgs, claim_lease))?;
        if claim_lease < MIN_CLAIM_LEASE {
            return Err(ConfigError::at(
                key!(LedgerArgs, claim_lease),
                format!(
                    "{} is shorter than six heartbeats (a run heartbeats at most every {}, so the \
                     lease must be at least {}); a shorter lease lets another run take over live \
                     claims and send twice",
                    given(&raw.claim_lease),
                    humantime::format_duration(MIN_HEARTBEAT),
                    humantime::format_duration(MIN_CLAIM_LEASE),
                ),
            ));
        }
        let cooldown = duration(given(&raw.cooldown)).map_err(at!(LedgerArgs, cooldown))?;
        if cooldown.is_zero() {
            warnings.push(format!(
                "{} is 0: the ledger will not stop a second code to a user who just got one (a \
                 rerun or a redelivered message sends again)",
                key!(LedgerArgs, cooldown)
            ));
        }
        let (path, origin) = match non_empty(raw.state.clone()) {
            Some(state) => (
                StateSpec::parse(&state).map_err(at!(LedgerArgs, state))?,
                LedgerOrigin::Given,
            ),
            None => match default_path(env) {
                Some(file) => (StateSpec::Sqlite(file), LedgerOrigin::DataHome),
                None => (StateSpec::Sqlite(PathBuf::new()), LedgerOrigin::NoDataHome),
            },
        };
        let max_sends_per_user =
            count(given(&raw.max_sends_per_user)).map_err(at!(LedgerArgs, max_sends_per_user))?;
        if max_sends_per_user.is_some() && path == StateSpec::None {
            return Err(ConfigError::at(
                key!(LedgerArgs, max_sends_per_user),
                "counts each user's codes in the ledger: it needs one (--state FILE or \
                 dynamodb://TABLE, not none)",
            ));
        }
        let retention = duration(given(&raw.retention)).map_err(at!(LedgerArgs, retention))?;
        let retention = (!retention.is_zero()).then_some(retention);
        if let Some(keep) = retention
            && keep < cooldown
        {
            return Err(ConfigError::at(
                key!(LedgerArgs, retention),
                format!(
                    "{} is shorter than {} {}: a user's row would be deleted while they are in \
                     cooldown, and they could get a second code",
                    humantime::format_duration(keep),
                    key!(LedgerArgs, cooldown),
                    humantime::format_duration(cooldown)
                ),
            ));
        }
        Ok(Self {
            path,
            origin,
            cooldown,
            claim_lease,
            retention,
            dynamodb_endpoint: http_url(raw.dynamodb_endpoint)
                .map_err(at!(LedgerArgs, dynamodb_endpoint))?,
            max_sends_per_user,
            recheck_after: duration(given(&raw.recheck_after))
                .map_err(at!(LedgerArgs, recheck_after))?,
        })
    }
}

impl LedgerSettings {
    /// Whether the ledger can be opened at all: without `--state` and without a data directory
    /// (no `XDG_DATA_HOME`, no `HOME`) there is no default place for it.
    pub(crate) fn usable(&self) -> Result<(), ConfigError> {
        if self.origin == LedgerOrigin::NoDataHome {
            return Err(ConfigError::at(
                key!(LedgerArgs, state),
                "not set, and there is no data directory for the default ledger (neither \
                 XDG_DATA_HOME nor HOME is set): give --state FILE, dynamodb://TABLE or none",
            ));
        }
        Ok(())
    }
}
