//! `[limits]`: the spend caps. `--max-sends` bounds this run alone; the per-day caps are counted
//! in the ledger, shared by every run, so they are a group of their own that `ledger stats`
//! reads too (to show the day's spend against them).

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use clap::Args;
use serde::{Deserialize, Serialize};

use super::ledger::LedgerSettings;
use super::value::{count, given, some, text, unset};
use super::{ConfigError, Group, SettingsArgs, show};
use crate::ledger::StateSpec;

/// The `[limits]` table: the run's cap and the day caps, one table in the file.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsSection {
    /// This run's cap.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: LimitsArgs,
    /// The caps of a UTC day.
    #[command(flatten)]
    #[serde(flatten)]
    pub day: DayCapsArgs,
}

/// `[limits]`: what this run may send.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Spend caps")]
#[serde(default)]
pub struct LimitsArgs {
    /// Spend cap: codes this run may send; a job reserves one before its call and gives it back
    /// if nothing was sent. Reached: the run stops taking work, exit 4. 0 = no cap [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends: Option<String>,
}

/// `[limits]`: what every run sharing the ledger may send in a UTC day.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Spend caps")]
#[serde(default)]
pub struct DayCapsArgs {
    /// Spend cap: codes a UTC day across every run sharing the ledger (reserved in the ledger
    /// before each call); needs a ledger. 0 = no cap [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_LIMITS_MAX_SENDS_PER_DAY",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sends_per_day: Option<String>,

    /// Spend cap: SMS codes a UTC day across the ledger; may overshoot by the calls in flight
    /// when it is reached (the medium is known only from the answer). 0 = no cap [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_LIMITS_MAX_SMS_PER_DAY",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_sms_per_day: Option<String>,

    /// Spend cap: email codes a UTC day across the ledger, like --max-sms-per-day. 0 = no cap
    /// [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_LIMITS_MAX_EMAIL_PER_DAY",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub max_email_per_day: Option<String>,
}

impl LimitsSection {
    /// The built-in defaults: no caps.
    pub(super) fn defaults() -> Self {
        Self {
            run: LimitsArgs {
                max_sends: some("0"),
            },
            day: DayCapsArgs {
                max_sends_per_day: some("0"),
                max_sms_per_day: some("0"),
                max_email_per_day: some("0"),
            },
        }
    }
}

impl Group for LimitsArgs {
    const SECTION: &'static str = "limits";
    fn put(self, into: &mut SettingsArgs) {
        into.limits.run = self;
    }
}

impl Group for DayCapsArgs {
    const SECTION: &'static str = "limits";
    fn put(self, into: &mut SettingsArgs) {
        into.limits.day = self;
    }
}

/// Spend caps (`limits.*`): 0 in the file or on the command line means no cap.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct LimitSettings {
    /// `--max-sends`: codes this run may send.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends: Option<u64>,
    /// `--max-sends-per-day`: codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sends_per_day: Option<u64>,
    /// `--max-sms-per-day`: SMS codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_sms_per_day: Option<u64>,
    /// `--max-email-per-day`: email codes a UTC day across the ledger.
    #[serde(serialize_with = "show::zero_if_none")]
    pub max_email_per_day: Option<u64>,
}

impl LimitSettings {
    /// Validates the `[limits]` table; the day caps are kept in the ledger, so they need one.
    pub(super) fn validate(
        raw: LimitsSection,
        ledger: &LedgerSettings,
    ) -> Result<Self, ConfigError> {
        let LimitsSection { run, day } = raw;
        let limits = Self {
            max_sends: count(given(&run.max_sends)).map_err(at!(LimitsArgs, max_sends))?,
            max_sends_per_day: count(given(&day.max_sends_per_day))
                .map_err(at!(DayCapsArgs, max_sends_per_day))?,
            max_sms_per_day: count(given(&day.max_sms_per_day))
                .map_err(at!(DayCapsArgs, max_sms_per_day))?,
            max_email_per_day: count(given(&day.max_email_per_day))
                .map_err(at!(DayCapsArgs, max_email_per_day))?,
        };
        if ledger.path == StateSpec::None {
            let set = [
                (
                    limits.max_sends_per_day,
                    key!(DayCapsArgs, max_sends_per_day),
                ),
                (limits.max_sms_per_day, key!(DayCapsArgs, max_sms_per_day)),
                (
                    limits.max_email_per_day,
                    key!(DayCapsArgs, max_email_per_day),
                ),
            ]
            .into_iter()
            .find_map(|(cap, key)| cap.map(|_| key));
            if let Some(key) = set {
                return Err(ConfigError::at(
                    key,
                    format!(
                        "a day's codes are counted in the ledger, shared by every run: the \
                         per-day caps need one (--state FILE or dynamodb://TABLE, not none). {} \
                         (this run only) works without",
                        key!(LimitsArgs, max_sends).flag
                    ),
                ));
            }
        }
        Ok(limits)
    }

    /// The per-day caps, kept in the ledger (UTC days).
    pub(crate) fn day(&self) -> crate::ledger::DayCaps {
        crate::ledger::DayCaps {
            sends: self.max_sends_per_day,
            sms: self.max_sms_per_day,
            email: self.max_email_per_day,
        }
    }
}
