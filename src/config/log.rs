//! `[log]`: how logs look and whether they may show usernames. Its flags are global: every
//! command logs.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{given, some, text, unset};
use super::{ConfigError, Env, GlobalArgs, Group, SettingsArgs};
use crate::telemetry::LogFormat;

/// The `[log]` section as flags, taken by every command.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Logging")]
#[serde(deny_unknown_fields, default)]
pub struct LogArgs {
    /// Log format: text or json [default: text].
    #[arg(
        long,
        global = true,
        env = "COGNITO_RESEND_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    #[serde(
        skip_serializing_if = "unset",
        deserialize_with = "text",
        rename = "format"
    )]
    pub log_format: Option<String>,

    /// Show usernames in logs (they are personal data; by default logs show a short stable hash).
    /// [env: COGNITO_RESEND_LOG_USERNAMES=true]
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "unset", rename = "usernames")]
    pub log_usernames: bool,
}

impl LogArgs {
    /// The built-in defaults: text, usernames hashed.
    pub(super) fn defaults() -> Self {
        Self {
            log_format: some("text"),
            log_usernames: false,
        }
    }

    /// Its boolean setting as the environment gives it (clap rejects an empty value for a flag).
    pub(super) fn read_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        self.log_usernames |= env.flag(key!(LogArgs, log_usernames))?;
        Ok(())
    }
}

impl Group for LogArgs {
    const SECTION: &'static str = "log";
    fn put(self, into: &mut SettingsArgs) {
        into.log = self;
    }
}

/// How logs look.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// Show usernames instead of their hash.
    pub usernames: bool,
    /// -v count minus -q: 0 info, 1 debug, 2 trace, -1 warnings only.
    #[serde(skip)]
    pub verbosity: i8,
}

impl LogSettings {
    /// Validates the `[log]` table; the verbosity comes from `-v` / `-q`.
    pub(super) fn validate(raw: LogArgs, global: &GlobalArgs) -> Result<Self, ConfigError> {
        let format = match given(&raw.log_format).trim().to_ascii_lowercase().as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::at(
                    key!(LogArgs, log_format),
                    format!("{other:?} is not text or json"),
                ));
            }
        };
        Ok(Self {
            format,
            usernames: raw.log_usernames,
            verbosity: if global.quiet {
                -1
            } else {
                global.verbose.min(2) as i8
            },
        })
    }
}
