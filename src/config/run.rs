//! `[run]`: how the engine runs jobs: calls in flight, the rate ceiling, dry run, precheck, the
//! wave name, and the fleet's shared budget. `--fleet-rate` is a group of its own since `ledger
//! stats` reads it (each live run's share) without running anything.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::num::NonZeroUsize;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::ledger::LedgerSettings;
use super::value::{given, non_empty, number, rate, some, text, unset};
use super::{ConfigError, Env, Group, SettingsArgs, show};
use crate::ledger::StateSpec;

/// The most calls in flight `--concurrency` allows. Cognito's quota for ResendConfirmationCode is
/// tens of calls per second per account, shared with live sign-ups; beyond this many, calls only
/// wait behind the rate limit holding sockets, memory and (with a ledger) claims that another run
/// cannot take.
pub(crate) const MAX_CONCURRENCY: usize = 1024;

/// The `[run]` table: the run's flags and the fleet budget, one table in the file.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunSection {
    /// How this process runs jobs.
    #[command(flatten)]
    #[serde(flatten)]
    pub run: RunArgs,
    /// The budget shared by every run of the ledger.
    #[command(flatten)]
    #[serde(flatten)]
    pub fleet: FleetArgs,
}

/// `[run]`: how this process runs jobs.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Run")]
#[serde(default)]
pub struct RunArgs {
    /// Max Cognito calls in flight (the semaphore) [default: 16].
    #[arg(
        long,
        env = "COGNITO_RESEND_RUN_CONCURRENCY",
        value_name = "N",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub concurrency: Option<String>,

    /// Max Cognito calls per second across the process (a ceiling for the rate controller, which
    /// settles under the quota it measures); 0 = no ceiling (slow start from 10/s). Cognito's
    /// quota is per account and region and shared with live sign-ups: stay below it [default: 10].
    #[arg(
        long,
        env = "COGNITO_RESEND_RUN_RATE",
        value_name = "PER_SECOND",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub rate: Option<String>,

    /// Max invitations (AdminCreateUser RESEND, action invite) per second: a ceiling of their
    /// own rate controller. AdminCreateUser draws on Cognito's UserCreation quota, shared with
    /// live SignUp and ConfirmSignUp, not on the resend's: throttling of one never slows the
    /// other. 0 = no ceiling [default: 10].
    #[arg(
        long,
        env = "COGNITO_RESEND_RUN_INVITE_RATE",
        value_name = "PER_SECOND",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub invite_rate: Option<String>,

    /// Do everything but the send: every job gets outcome `dry_run`, or `cooldown` when the
    /// ledger says so (with --precheck also `already_confirmed` / `not_found`): the plan.
    /// [env: COGNITO_RESEND_RUN_DRY_RUN=true]
    #[arg(long)]
    #[serde(skip_serializing_if = "unset")]
    pub dry_run: bool,

    /// AdminGetUser before each send (needs --user-pool-id and IAM credentials): only
    /// UNCONFIRMED users are sent; others end `already_confirmed` / `not_found` without spending
    /// a resend. [env: COGNITO_RESEND_RUN_PRECHECK=true]
    #[arg(long)]
    #[serde(skip_serializing_if = "unset")]
    pub precheck: bool,

    /// Max AdminGetUser calls per second for --precheck; 0 = no limit [default: 20].
    #[arg(
        long,
        env = "COGNITO_RESEND_RUN_PRECHECK_RATE",
        value_name = "PER_SECOND",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub precheck_rate: Option<String>,

    /// A name for this run's sends (e.g. day-3): recorded with each send in the ledger and on
    /// every report line; `ledger stats` counts sends per wave. 1 to 64 of letters, digits,
    /// `-`, `_`, `.`, `:`.
    #[arg(long, env = "COGNITO_RESEND_RUN_WAVE", value_name = "NAME")]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub wave: Option<String>,
}

/// `[run]`: the budget every run sharing the ledger splits.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Fleet")]
#[serde(default)]
pub struct FleetArgs {
    /// A calls-per-second budget for every run sharing the ledger (needs --state FILE or
    /// dynamodb://TABLE): each live run takes budget / live runs as its ceiling, recomputed with
    /// every heartbeat as runs come and go, and replacing --rate. 0 = none [default: 0].
    #[arg(
        long,
        env = "COGNITO_RESEND_RUN_FLEET_RATE",
        value_name = "PER_SECOND",
        allow_negative_numbers = true
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub fleet_rate: Option<String>,
}

impl RunSection {
    /// The built-in defaults: every key, `None` where there is none.
    pub(super) fn defaults() -> Self {
        Self {
            run: RunArgs {
                concurrency: some("16"),
                rate: some("10"),
                invite_rate: some("10"),
                dry_run: false,
                precheck: false,
                precheck_rate: some("20"),
                wave: None,
            },
            fleet: FleetArgs {
                fleet_rate: some("0"),
            },
        }
    }

    /// Its boolean settings as the environment gives them (clap rejects an empty value for a
    /// flag).
    pub(super) fn read_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        self.run.dry_run |= env.flag(key!(RunArgs, dry_run))?;
        self.run.precheck |= env.flag(key!(RunArgs, precheck))?;
        Ok(())
    }
}

impl Group for RunArgs {
    const SECTION: &'static str = "run";
    fn put(self, into: &mut SettingsArgs) {
        into.run.run = self;
    }
}

impl Group for FleetArgs {
    const SECTION: &'static str = "run";
    fn put(self, into: &mut SettingsArgs) {
        into.run.fleet = self;
    }
}

/// How the engine runs jobs.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunSettings {
    /// Max Cognito calls in flight.
    pub concurrency: NonZeroUsize,
    /// Calls per second ceiling; `None` = no limit (`--rate 0`).
    #[serde(serialize_with = "show::zero_if_none")]
    pub rate: Option<f64>,
    /// `--invite-rate`: invitations per second ceiling; `None` = no limit.
    #[serde(serialize_with = "show::zero_if_none")]
    pub invite_rate: Option<f64>,
    /// `--fleet-rate`: calls per second for every run sharing the ledger; each live run takes
    /// its share as its ceiling, instead of `rate`. `None`: no fleet budget.
    #[serde(serialize_with = "show::zero_if_none")]
    pub fleet_rate: Option<f64>,
    /// Everything but the send.
    pub dry_run: bool,
    /// AdminGetUser before each send; only UNCONFIRMED users are sent.
    pub precheck: bool,
    /// AdminGetUser calls per second (`None` = no limit).
    #[serde(serialize_with = "show::zero_if_none")]
    pub precheck_rate: Option<f64>,
    /// `--wave`: the name this run's sends are recorded under (ledger, report); not a metric
    /// label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
}

impl RunSettings {
    /// Validates the `[run]` table; a fleet budget needs a ledger the runs share.
    pub(super) fn validate(raw: RunSection, ledger: &LedgerSettings) -> Result<Self, ConfigError> {
        let RunSection { run, fleet } = raw;
        let concurrency: usize =
            number(given(&run.concurrency)).map_err(at!(RunArgs, concurrency))?;
        let concurrency = NonZeroUsize::new(concurrency)
            .ok_or_else(|| ConfigError::at(key!(RunArgs, concurrency), "must be at least 1"))?;
        if concurrency.get() > MAX_CONCURRENCY {
            return Err(ConfigError::at(
                key!(RunArgs, concurrency),
                format!(
                    "{concurrency} is above the limit of {MAX_CONCURRENCY} calls in flight \
                     (Cognito's quota is tens of calls per second: more in flight only queues \
                     behind the rate limit)"
                ),
            ));
        }
        let fleet_rate = rate(given(&fleet.fleet_rate)).map_err(at!(FleetArgs, fleet_rate))?;
        if fleet_rate.is_some() && ledger.path == StateSpec::None {
            return Err(ConfigError::at(
                key!(FleetArgs, fleet_rate),
                "needs a ledger the runs share (--state FILE or --state dynamodb://TABLE): with \
                 --state none no run can see the others, so a fleet budget cannot be split; use \
                 --rate for this process alone",
            ));
        }
        Ok(Self {
            concurrency,
            rate: rate(given(&run.rate)).map_err(at!(RunArgs, rate))?,
            invite_rate: rate(given(&run.invite_rate)).map_err(at!(RunArgs, invite_rate))?,
            fleet_rate,
            dry_run: run.dry_run,
            precheck: run.precheck,
            precheck_rate: rate(given(&run.precheck_rate)).map_err(at!(RunArgs, precheck_rate))?,
            wave: wave(run.wave)?,
        })
    }
}

/// `run.wave`: a short name that reads the same in a report, the ledger and a DynamoDB
/// attribute name: 1 to 64 of letters, digits, `-`, `_`, `.` and `:`.
fn wave(name: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(name) = non_empty(name) else {
        return Ok(None);
    };
    let ok = name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !ok {
        return Err(ConfigError::at(
            key!(RunArgs, wave),
            format!("{name:?} must be 1 to 64 of letters, digits, `-`, `_`, `.` and `:`"),
        ));
    }
    Ok(Some(name))
}
