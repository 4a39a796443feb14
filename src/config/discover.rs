//! `[discover]`: which of the pool's users discovery lists (`discover`, `backfill --from-pool`,
//! `plan --from-pool`) and how fast it may call ListUsers.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::time::{Duration, SystemTime};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{duration, given, non_empty, rate, some, text, timestamp, unset};
use super::{ConfigError, Group, SettingsArgs, show};

/// The `[discover]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Discovery")]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverArgs {
    /// Discovery: only users created at or after this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        env = "COGNITO_RESEND_DISCOVER_CREATED_AFTER",
        value_name = "TIME"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub created_after: Option<String>,

    /// Discovery: only users created before this time (RFC 3339 UTC, or a date).
    #[arg(
        long,
        env = "COGNITO_RESEND_DISCOVER_CREATED_BEFORE",
        value_name = "TIME"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub created_before: Option<String>,

    /// Discovery: only users created at least this long ago, e.g. 1h (skips users who signed up
    /// minutes ago).
    #[arg(
        long,
        env = "COGNITO_RESEND_DISCOVER_OLDER_THAN",
        value_name = "DURATION",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub older_than: Option<String>,

    /// Discovery: max ListUsers calls per second (its quota is low and shared); 0 = no limit
    /// [default: 5].
    #[arg(
        long,
        env = "COGNITO_RESEND_DISCOVER_LIST_RATE",
        value_name = "PER_SECOND",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub list_rate: Option<String>,

    /// Discovery: the user statuses to list, comma-separated: UNCONFIRMED (self-service
    /// sign-ups, who get a new confirmation code) and FORCE_CHANGE_PASSWORD (users an
    /// administrator created who never signed in, who get the invitation again). Each user's
    /// status picks its action. Without it: UNCONFIRMED only.
    #[arg(
        long,
        env = "COGNITO_RESEND_DISCOVER_STATUS",
        value_delimiter = ',',
        value_name = "STATUSES"
    )]
    #[serde(skip_serializing_if = "unset")]
    pub status: Vec<String>,
}

impl DiscoverArgs {
    /// The built-in defaults: no window (every UNCONFIRMED user), 5 ListUsers a second.
    pub(super) fn defaults() -> Self {
        Self {
            created_after: None,
            created_before: None,
            older_than: None,
            list_rate: some("5"),
            status: vec!["UNCONFIRMED".into()],
        }
    }
}

impl Group for DiscoverArgs {
    const SECTION: &'static str = "discover";
    fn put(self, into: &mut SettingsArgs) {
        into.discover = self;
    }
}

/// Discovery (`discover`, `backfill --from-pool`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiscoverSettings {
    /// Only users created at or after this time.
    #[serde(serialize_with = "show::time")]
    pub created_after: Option<SystemTime>,
    /// Only users created before this time.
    #[serde(serialize_with = "show::time")]
    pub created_before: Option<SystemTime>,
    /// Only users created at least this long ago.
    #[serde(serialize_with = "show::opt_duration")]
    pub older_than: Option<Duration>,
    /// ListUsers calls per second (`None` = no limit).
    #[serde(serialize_with = "show::zero_if_none")]
    pub list_rate: Option<f64>,
    /// The statuses listed (`UNCONFIRMED`, `FORCE_CHANGE_PASSWORD`), each once, in order.
    pub status: Vec<&'static str>,
}

impl TryFrom<DiscoverArgs> for DiscoverSettings {
    type Error = ConfigError;

    fn try_from(raw: DiscoverArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            created_after: timestamp(raw.created_after.as_deref())
                .map_err(at!(DiscoverArgs, created_after))?,
            created_before: timestamp(raw.created_before.as_deref())
                .map_err(at!(DiscoverArgs, created_before))?,
            older_than: non_empty(raw.older_than)
                .map(|d| duration(&d))
                .transpose()
                .map_err(at!(DiscoverArgs, older_than))?,
            list_rate: rate(given(&raw.list_rate)).map_err(at!(DiscoverArgs, list_rate))?,
            status: statuses(&raw.status)?,
        })
    }
}

/// `--status`: the statuses discovery lists, known ones only, each once.
fn statuses(raw: &[String]) -> Result<Vec<&'static str>, ConfigError> {
    const KNOWN: [&str; 2] = ["UNCONFIRMED", "FORCE_CHANGE_PASSWORD"];
    let mut out = Vec::new();
    for s in raw.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some(known) = KNOWN.iter().find(|k| k.eq_ignore_ascii_case(s)) else {
            return Err(ConfigError::at(
                key!(DiscoverArgs, status),
                format!(
                    "{s:?}: expected UNCONFIRMED (a new confirmation code) or \
                     FORCE_CHANGE_PASSWORD (the invitation again)"
                ),
            ));
        };
        if !out.contains(known) {
            out.push(*known);
        }
    }
    if out.is_empty() {
        out.push(KNOWN[0]);
    }
    Ok(out)
}

impl DiscoverSettings {
    /// The creation window these settings draw.
    pub(crate) fn window(&self) -> crate::job::Window {
        crate::job::Window {
            created_after: self.created_after,
            created_before: self.created_before,
            older_than: self.older_than,
        }
    }
}
