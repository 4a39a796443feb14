//! Settings in two stages (ripgrep's low and high arguments): a raw serde form layered from the
//! built-in defaults, the TOML file, the environment and the command line, then validated into
//! typed [`Settings`] that build the working objects.
//!
//! One file per section of the TOML file (`[run]` is [`run`], ...), each holding all there is to
//! know about its settings: the clap flag groups (each field at once a flag, its
//! `COGNITO_RESEND_<SECTION>_<KEY>` environment variable read by clap, its `--help` and, by
//! serde, its TOML key), the built-in defaults (`defaults()`, every key listed), the typed form
//! and its validation. A section is one flag group, or a few when commands read different parts
//! of it (`[sqs]`: the queue, `consume`'s receiving, the shutdown grace): each command takes
//! only the groups it reads ([`crate::cli`]). Adding a setting touches its section's file and
//! the code that reads it.
//!
//! Every validation error names the setting by its key and flag ([`ConfigError`]), both derived
//! from the declaration (the `key!` macro), never written by hand. [`show`] prints the typed settings
//! back as a TOML file (`check`); [`value`] holds what the sections' parsers share.
//!
//! This is the only module that reads the environment: clap reads the variables of the flags a
//! command takes; [`Settings::load`] the boolean ones (clap rejects an empty value for a flag)
//! and the client secret, `COGNITO_RESEND_CLIENT_SECRET`, which is never a flag.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::Args;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The [`Key`] of a field of a flag group, `key!(RunArgs, concurrency)` is `run.concurrency
/// (--concurrency)`: the group's section, the field's serde key and its clap flag. The field is
/// checked to exist at compile time.
macro_rules! key {
    ($group:ty, $field:ident) => {{
        let _exists = |g: &$group| {
            let _ = &g.$field;
        };
        $crate::config::Key::of::<$group>(stringify!($field))
    }};
}

/// `.map_err(at!(RunArgs, concurrency))`: what is wrong with a value, as the [`ConfigError`] of
/// that setting. The key is derived only when there is an error.
macro_rules! at {
    ($group:ty, $field:ident) => {
        |reason| $crate::config::ConfigError::at(key!($group, $field), reason)
    };
}

mod aws;
mod cognito;
mod discover;
mod lambda;
mod ledger;
mod limits;
mod log;
mod metrics;
mod report;
mod retry;
mod run;
mod show;
mod sqs;
#[cfg(test)]
mod tests;
mod value;

pub(crate) use aws::AwsArgs;
pub(crate) use cognito::SecretSource;
pub(crate) use cognito::{
    CLIENT_SECRET_ENV, ClientArgs, CognitoArgs, CognitoSection, CognitoSettings, RequestArgs,
};
pub(crate) use discover::{DiscoverArgs, DiscoverSettings};
pub(crate) use lambda::{LambdaArgs, LambdaSettings};
pub(crate) use ledger::{LedgerArgs, LedgerOrigin, LedgerSettings};
pub(crate) use limits::{DayCapsArgs, LimitSettings, LimitsArgs, LimitsSection};
pub(crate) use log::{LogArgs, LogSettings};
pub(crate) use metrics::{MetricsArgs, MetricsSettings};
pub(crate) use report::{ReportArgs, ReportSettings};
pub(crate) use retry::RetryArgs;
pub use retry::RetrySettings;
pub(crate) use run::{FleetArgs, RunArgs, RunSection, RunSettings};
pub(crate) use sqs::{ConsumeArgs, GraceArgs, QueueArgs, QueueSettings, SqsSection};
pub(crate) use value::{parse_duration, redact_url};

/// A configuration problem: the run does not start and the process exits 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The setting, `section.key` as the TOML file spells it; `None` when the problem is with
    /// the settings as a whole (the file, a key no section has).
    pub key: Option<String>,
    /// How the setting is given on the command line (`--flag`), or the environment variable of
    /// one that has no flag of its own.
    pub flag: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.key, &self.flag) {
            (Some(key), Some(flag)) => write!(f, "{key} ({flag}): {}", self.reason),
            (Some(name), None) | (None, Some(name)) => write!(f, "{name}: {}", self.reason),
            (None, None) => f.write_str(&self.reason),
        }
    }
}

impl ConfigError {
    /// What is wrong with the setting `key`.
    pub(crate) fn at(key: Key, reason: impl std::fmt::Display) -> Self {
        Self {
            key: Some(key.key),
            flag: Some(key.flag),
            reason: reason.to_string(),
        }
    }

    /// What is wrong with the settings as a whole.
    fn whole(reason: impl Into<String>) -> Self {
        Self {
            key: None,
            flag: None,
            reason: reason.into(),
        }
    }
}

/// A setting's names: its TOML key and its flag, as errors and warnings say them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    /// `section.key`, as the TOML file spells it.
    pub key: String,
    /// `--flag`.
    pub flag: String,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.key, self.flag)
    }
}

impl Key {
    /// The key and flag of `field` (its Rust name) of the flag group `G`, read back from the
    /// declaration: clap gives the flag; serde, when only that flag is given, the key. Use
    /// `key!`, which checks the field exists.
    pub(crate) fn of<G: Group>(field: &str) -> Self {
        // Environment variables would set other fields too: only the flag speaks here.
        let cmd = G::augment_args(clap::Command::new("key").no_binary_name(true))
            .mut_args(|a| a.env(None::<&str>));
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == field)
            .unwrap_or_else(|| panic!("{field} is a flag of its group"));
        let flag = format!(
            "--{}",
            arg.get_long().expect("every setting has a long flag")
        );
        let mut argv = vec![flag.clone()];
        if arg.get_action().takes_values() {
            // A value every setting flag reads, `--client-metadata KEY=VALUE` included.
            argv.push("k=v".to_owned());
        }
        let name = cmd
            .try_get_matches_from(argv)
            .ok()
            .and_then(|m| G::from_arg_matches(&m).ok())
            .and_then(|given| serde_json::to_value(given).ok())
            .and_then(|v| v.as_object()?.keys().next().cloned())
            .unwrap_or_else(|| field.to_owned());
        Self {
            key: format!("{}.{name}", G::SECTION),
            flag,
        }
    }

    /// The environment variable clap reads for this setting, `COGNITO_RESEND_<SECTION>_<KEY>`.
    fn env_var(&self) -> String {
        format!(
            "COGNITO_RESEND_{}",
            self.key.replace('.', "_").to_ascii_uppercase()
        )
    }
}

/// A group of flags a command may take: all or part of one section. Groups are what commands
/// flatten ([`crate::cli`]); [`SettingsArgs`] holds every group in its section.
pub(crate) trait Group: clap::Args + clap::FromArgMatches + Serialize + Clone {
    /// The section (`[table]` of the TOML file) the group's keys are in.
    const SECTION: &'static str;
    /// Puts the group's flags in their place of the raw settings.
    fn put(self, into: &mut SettingsArgs);
}

/// The flags every command takes, which are not settings of a section.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// TOML settings file (see config/example.toml for every key).
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less output: warnings and errors only, no progress and no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Every setting, by section: the raw layered form. As flags, every group at once (the Lambda
/// function, whose schedules may set any); a command fills in only the groups it takes. As
/// serde, the TOML file's tables: a field is serialized only when it was given (`None`, an empty
/// value, an empty list or an absent boolean flag leave the key to a lower layer), and numbers
/// and durations stay text until validated, so every bad value, whichever layer it came from,
/// gets the same error naming its key and flag.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingsArgs {
    /// `--config`, `-v`, `-q`.
    #[command(flatten)]
    #[serde(skip)]
    pub global: GlobalArgs,
    /// The `[cognito]` section.
    #[command(flatten)]
    pub cognito: CognitoSection,
    /// The `[aws]` section.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// The `[run]` section.
    #[command(flatten)]
    pub run: RunSection,
    /// The `[retry]` section.
    #[command(flatten)]
    pub retry: RetryArgs,
    /// The `[report]` section.
    #[command(flatten)]
    pub report: ReportArgs,
    /// The `[ledger]` section.
    #[command(flatten)]
    pub ledger: LedgerArgs,
    /// The `[discover]` section.
    #[command(flatten)]
    pub discover: DiscoverArgs,
    /// The `[metrics]` section.
    #[command(flatten)]
    pub metrics: MetricsArgs,
    /// The `[sqs]` section.
    #[command(flatten)]
    pub sqs: SqsSection,
    /// The `[log]` section.
    #[command(flatten)]
    pub log: LogArgs,
    /// The `[limits]` section.
    #[command(flatten)]
    pub limits: LimitsSection,
    /// The `[lambda]` section.
    #[command(flatten)]
    pub lambda: LambdaArgs,
}

impl SettingsArgs {
    /// The built-in defaults, the bottom layer: each section's.
    fn defaults() -> Self {
        Self {
            global: GlobalArgs::default(),
            cognito: CognitoSection::defaults(),
            aws: AwsArgs::defaults(),
            run: RunSection::defaults(),
            retry: RetryArgs::defaults(),
            report: ReportArgs::defaults(),
            ledger: LedgerArgs::defaults(),
            discover: DiscoverArgs::defaults(),
            metrics: MetricsArgs::defaults(),
            sqs: SqsSection::defaults(),
            log: LogArgs::defaults(),
            limits: LimitsSection::defaults(),
            lambda: LambdaArgs::defaults(),
        }
    }
}

/// What [`Settings::load`] reads from the environment itself: the boolean settings and the
/// client secret. Tests give their own.
pub(crate) struct Env<'a> {
    var: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// A boolean setting's environment variable: unset or empty is `false`.
    fn flag(&self, key: Key) -> Result<bool, ConfigError> {
        let name = key.env_var();
        match (self.var)(&name) {
            None => Ok(false),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "false" | "0" | "no" | "off" => Ok(false),
                "true" | "1" | "yes" | "on" => Ok(true),
                other => Err(ConfigError {
                    key: Some(key.key),
                    flag: Some(name),
                    reason: format!("{other:?} is not a boolean (true or false)"),
                }),
            },
        }
    }

    /// `COGNITO_RESEND_CLIENT_SECRET`, if set and not empty.
    fn secret(&self) -> Option<String> {
        (self.var)(CLIENT_SECRET_ENV).filter(|v| !v.is_empty())
    }
}

/// The validated settings every command starts from. Sections and keys serialize as the TOML
/// file spells them: that is what `check` prints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    /// The TOML file, if any.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Settings that are allowed but weaken a guarantee (`--cooldown 0`, `--shutdown-grace
    /// 0`): said loudly when logging starts and by `check`.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The settings as they were written (every layer merged, nothing validated yet), by section
    /// and key: `check` prints a duration as the user wrote it (`24h`, not `1day`).
    #[serde(skip)]
    pub written: serde_json::Value,
    /// Cognito connection.
    pub cognito: CognitoSettings,
    /// Engine.
    pub run: RunSettings,
    /// Retries.
    pub retry: RetrySettings,
    /// JSON Lines report file.
    pub report: ReportSettings,
    /// The send ledger.
    pub ledger: LedgerSettings,
    /// Discovery.
    pub discover: DiscoverSettings,
    /// Metrics endpoint.
    pub metrics: MetricsSettings,
    /// SQS.
    pub sqs: QueueSettings,
    /// Logging.
    pub log: LogSettings,
    /// Spend caps.
    pub limits: LimitSettings,
    /// The Lambda function.
    pub lambda: LambdaSettings,
}

impl Settings {
    /// A duration setting (`section.key`, whose typed value is `value`) as the user wrote it,
    /// `24h` rather than `1day`: the written text when it means the same, else `value` in
    /// humantime's spelling (a default, or a value set in code).
    pub(crate) fn duration_as_written(
        &self,
        section: &str,
        key: &str,
        value: std::time::Duration,
    ) -> String {
        self.written
            .get(section)
            .and_then(|s| s.get(key))
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|given| parse_duration(given).ok() == Some(value))
            .map_or_else(
                || humantime::format_duration(value).to_string(),
                str::to_owned,
            )
    }

    /// Layers defaults, the TOML file, the environment and the command line, then validates.
    pub(crate) fn load(args: &SettingsArgs) -> Result<Self, ConfigError> {
        Self::layered(
            args,
            &Env {
                var: &|name| std::env::var(name).ok(),
            },
        )
    }

    /// [`Settings::load`] with the environment it reads itself given.
    fn layered(args: &SettingsArgs, env: &Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(SettingsArgs::defaults()));
        if let Some(path) = &args.global.config {
            if !path.is_file() {
                return Err(ConfigError {
                    key: None,
                    flag: Some("--config".to_owned()),
                    reason: format!(
                        "settings file {} does not exist or is not a file",
                        path.display()
                    ),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // The flags merge as they are: each group serializes only what was given.
        let mut given = args.clone();
        given.run.read_env(env)?;
        given.log.read_env(env)?;
        given.cognito.read_env(env)?;
        given.report.spell_out()?;
        figment = figment.merge(Serialized::defaults(given));
        unknown_keys(&figment)?;
        let mut raw: SettingsArgs = figment
            .extract()
            .map_err(|e| ConfigError::whole(format!("invalid settings: {e}")))?;
        // Not settings of the file: the command line's own.
        raw.global = args.global.clone();
        Self::validate(raw, env)
    }

    /// Each section validated, those that depend on another after it.
    fn validate(raw: SettingsArgs, env: &Env) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let written = serde_json::to_value(&raw).unwrap_or_default();
        let cognito = CognitoSettings::validate(raw.cognito, &raw.aws, env)?;
        let ledger = LedgerSettings::validate(raw.ledger, env, &mut warnings)?;
        let run = RunSettings::validate(raw.run, &ledger)?;
        let retry = RetrySettings::try_from(raw.retry)?;
        let discover = DiscoverSettings::try_from(raw.discover)?;
        let metrics = MetricsSettings::try_from(raw.metrics)?;
        let sqs = QueueSettings::validate(raw.sqs, &mut warnings)?;
        let limits = LimitSettings::validate(raw.limits, &ledger)?;
        let lambda = LambdaSettings::validate(raw.lambda, &cognito)?;
        let report = ReportSettings::try_from(raw.report)?;
        let log = LogSettings::validate(raw.log, &raw.global)?;
        Ok(Self {
            config_file: raw.global.config,
            warnings,
            written,
            cognito,
            run,
            retry,
            report,
            ledger,
            discover,
            metrics,
            sqs,
            log,
            limits,
            lambda,
        })
    }

    /// Finds the AWS region once, before any client is built, when no `--region` is set: from
    /// the AWS config chain (`AWS_REGION`, the profile — `--profile`'s, else `AWS_PROFILE`'s —
    /// the instance metadata service). Without
    /// one, the error is a single line naming the settings to set; every later client then
    /// reuses the region found instead of probing the chain again (each probe of an absent
    /// metadata service costs a timeout and a screen of SDK warnings).
    pub(crate) async fn resolve_region(&mut self) -> Result<(), ConfigError> {
        if self.cognito.region.is_some() {
            return Ok(());
        }
        // The chain the SDK's own loader runs (environment, profile, instance metadata), with
        // the profile `--profile` names.
        let mut chain = aws_config::default_provider::region::DefaultRegionChain::builder();
        if let Some(profile) = &self.cognito.profile {
            chain = chain.profile_name(profile);
        }
        let found = chain.build().region().await;
        match found {
            Some(region) => {
                self.cognito.region = Some(region.to_string());
                Ok(())
            }
            None => Err(ConfigError::whole(
                "no AWS region: set --region (aws.region) or AWS_REGION",
            )),
        }
    }
}

/// A key no section has (a typo in the file), named with where it came from. The sections of
/// several flag groups cannot have serde refuse unknown keys itself (`flatten` does not allow
/// it), so every key is checked here against [`config_keys`].
fn unknown_keys(figment: &Figment) -> Result<(), ConfigError> {
    use figment::value::Value;
    let known = config_keys();
    let tables: std::collections::BTreeMap<String, Value> = figment
        .extract()
        .map_err(|e| ConfigError::whole(format!("invalid settings: {e}")))?;
    for (section, table) in &tables {
        let keys: Vec<String> = match table {
            Value::Dict(_, dict) => dict.keys().map(|k| format!("{section}.{k}")).collect(),
            _ => vec![section.clone()],
        };
        for key in keys {
            if known.contains(&key) {
                continue;
            }
            let from = figment
                .find_metadata(&key)
                .map(|m| match &m.source {
                    Some(source) => format!(" (in {source})"),
                    None => format!(" (in {})", m.name),
                })
                .unwrap_or_default();
            let in_section: Vec<&str> = known
                .iter()
                .filter_map(|k| k.strip_prefix(&format!("{section}.")))
                .collect();
            let reason = if in_section.is_empty() {
                format!("unknown section `{section}`{from}")
            } else {
                format!(
                    "unknown key{from}; [{section}] has: {}",
                    in_section.join(", ")
                )
            };
            return Err(ConfigError {
                key: Some(key),
                flag: None,
                reason: format!("invalid settings: {reason}"),
            });
        }
    }
    Ok(())
}

/// Every key the configuration reads, `section.key`: what [`SettingsArgs`] serializes when every
/// setting flag is given (each flag is its key).
pub(crate) fn config_keys() -> Vec<String> {
    use clap::CommandFactory;

    /// The settings flags alone, without their environment variables.
    #[derive(clap::Parser)]
    struct Flags {
        #[command(flatten)]
        settings: SettingsArgs,
    }
    let cmd = Flags::command().mut_args(|a| a.env(None::<&str>));
    let mut argv = vec!["keys".to_owned()];
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "config", "verbose", "quiet"].contains(&long) {
            continue;
        }
        argv.push(format!("--{long}"));
        if arg.get_action().takes_values() {
            // A value every setting flag reads, `--client-metadata KEY=VALUE` included.
            argv.push("k=v".to_owned());
        }
    }
    let matches = cmd
        .try_get_matches_from(&argv)
        .expect("every setting flag parses");
    let flags = <Flags as clap::FromArgMatches>::from_arg_matches(&matches)
        .expect("every setting flag parses");
    let given = serde_json::to_value(&flags.settings).expect("the flags serialize");
    let mut keys = Vec::new();
    for (section, fields) in given.as_object().into_iter().flatten() {
        for key in fields.as_object().into_iter().flatten().map(|(k, _)| k) {
            keys.push(format!("{section}.{key}"));
        }
    }
    keys
}
