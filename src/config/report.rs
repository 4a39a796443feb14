//! `[report]`: the JSON Lines report a run writes, one line per job outcome, and what to do
//! when the file already holds an earlier run's lines.

// The doc comments here are `--help` text, written for the terminal: `<KEY>` is a placeholder
// there, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::value::{given, some, text, unset};
use super::{ConfigError, Group, SettingsArgs};
use crate::outcome::report_writer::IfExists;

/// The `[report]` section as flags.
#[derive(Debug, Clone, Args, Default, Serialize, Deserialize)]
#[command(next_help_heading = "Report")]
#[serde(deny_unknown_fields, default)]
pub struct ReportArgs {
    /// Write one JSON line per job outcome to this file.
    #[arg(long, env = "COGNITO_RESEND_REPORT_PATH", value_name = "FILE")]
    #[serde(skip_serializing_if = "unset", rename = "path")]
    pub report: Option<PathBuf>,

    /// When the report file already holds lines (an earlier run's record of who was sent a
    /// code): `refuse` to start, `append` this run's lines, or `overwrite` it [default: refuse].
    #[arg(
        long = "report-if-exists",
        env = "COGNITO_RESEND_REPORT_IF_EXISTS",
        value_name = "refuse|append|overwrite"
    )]
    #[serde(skip_serializing_if = "unset", deserialize_with = "text")]
    pub if_exists: Option<String>,

    /// Add this run's lines to an existing report (`--report-if-exists append`).
    #[arg(long)]
    #[serde(skip)]
    pub append: bool,

    /// Replace an existing report (`--report-if-exists overwrite`).
    #[arg(long)]
    #[serde(skip)]
    pub overwrite: bool,
}

impl ReportArgs {
    /// The built-in defaults: no report; refuse to write over one.
    pub(super) fn defaults() -> Self {
        Self {
            report: None,
            if_exists: some("refuse"),
            append: false,
            overwrite: false,
        }
    }

    /// `--append` and `--overwrite` are `--report-if-exists append|overwrite` spelled short:
    /// turned into that before the flags are layered.
    pub(super) fn spell_out(&mut self) -> Result<(), ConfigError> {
        let said = match (self.append, self.overwrite) {
            (true, true) => {
                return Err(ConfigError::at(
                    key!(ReportArgs, if_exists),
                    "--append and --overwrite say opposite things: give one",
                ));
            }
            (true, false) => "append",
            (false, true) => "overwrite",
            (false, false) => return Ok(()),
        };
        self.if_exists = some(said);
        Ok(())
    }
}

impl Group for ReportArgs {
    const SECTION: &'static str = "report";
    fn put(self, into: &mut SettingsArgs) {
        into.report = self;
    }
}

/// The JSON Lines report.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ReportSettings {
    /// One line per job outcome goes here.
    pub path: Option<PathBuf>,
    /// What to do when that file already holds an earlier run's lines.
    pub if_exists: IfExists,
}

impl TryFrom<ReportArgs> for ReportSettings {
    type Error = ConfigError;

    fn try_from(raw: ReportArgs) -> Result<Self, ConfigError> {
        let text = given(&raw.if_exists);
        let if_exists = IfExists::parse(text).ok_or_else(|| {
            ConfigError::at(
                key!(ReportArgs, if_exists),
                format!("{text:?} is not one of refuse, append, overwrite"),
            )
        })?;
        Ok(Self {
            path: raw.report.filter(|p| !p.as_os_str().is_empty()),
            if_exists,
        })
    }
}
