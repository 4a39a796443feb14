//! The commands: one file each, over the working parts they share ([`parts`]). A command builds
//! what it needs from validated settings, runs, and says how it went as a [`Finished`] or a
//! [`RunError`]; [`exit_code`] is the one mapping from that to the process's exit status.
//!
//! This is the top layer: nothing below it imports from it (or from [`crate::cli`]); the
//! dispatcher here is the only place that reads the parsed command line.

mod backfill;
mod check;
mod consume;
mod discover;
mod enqueue;
#[cfg(feature = "lambda")]
pub mod lambda;
mod ledger;
mod parts;
mod plan;
mod report;
mod run_record;
pub(crate) mod target;

use std::process::ExitCode;
use std::time::Instant;

use crate::cli::{self, Command};
use crate::config::Settings;
use crate::engine::{MisconfigStop, StopCause};
use crate::outcome::{OutcomeKind, Tally, progress};
use crate::shutdown::{Shutdown, Signal};
use crate::telemetry::LogFormat;
use crate::telemetry::{BarSlot, metrics};
use target::{Target, Uses};

pub use ledger::LedgerAction;

/// How a command ended without a run-level error.
#[derive(Debug)]
pub struct Finished {
    /// Every job read had an outcome (false when a signal stopped the run).
    pub complete: bool,
    /// Jobs that ended `failed` or `invalid`.
    pub failed_or_invalid: u64,
}

/// Why a command could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Usage or configuration: nothing was sent (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong in a way only Cognito could tell (exit 1).
    #[error("{0}")]
    StoppedEarly(MisconfigStop),
    /// Anything else that ended the run (exit 1).
    #[error(transparent)]
    Fatal(#[from] anyhow::Error),
    /// A spend cap was reached: the run stopped taking work, and jobs not attempted were left
    /// for a later run (exit 4).
    #[error("{}", spend_capped(*.0))]
    SpendCapped(crate::ledger::SpendCap),
}

/// What the summary and the last line say when a spend cap stopped the run.
pub fn spend_capped(cap: crate::ledger::SpendCap) -> String {
    let when = match cap {
        crate::ledger::SpendCap::Run => "rerun to go on",
        _ => "rerun after midnight UTC (or raise the cap) to go on",
    };
    format!(
        "stopped at a spend cap: {} reached; jobs not yet attempted have no outcome: {when}",
        cap.setting()
    )
}

/// The `cognito-resend` binary's whole life once its command line is parsed: the settings
/// (exit 2 when they are wrong), logging, the runtime, the region for commands that call AWS,
/// signals, the command, and its exit code.
pub fn main(cli: cli::Cli) -> ExitCode {
    let mut settings = match Settings::load(&cli.settings()) {
        Ok(s) => s,
        Err(e) => {
            // No logging yet (its format is a setting): plain text, as the parser says.
            say_error(LogFormat::Text, &e);
            return ExitCode::from(2);
        }
    };
    let bar = crate::telemetry::init_logging(settings.log.format, settings.log.verbosity);
    // `check` prints them with the settings; every other command says them first, loudly.
    if !matches!(cli.command, Command::Check { .. }) {
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
    }
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    // Commands that call AWS need a region: found once, or one clear line and exit 2.
    let calls_aws = matches!(
        cli.command,
        Command::Backfill { .. }
            | Command::Consume { .. }
            | Command::Discover { .. }
            | Command::Enqueue { .. }
    );
    if calls_aws && let Err(e) = runtime.block_on(settings.resolve_region()) {
        say_error(settings.log.format, &e);
        return ExitCode::from(2);
    }
    let format = settings.log.format;
    // Commands that keep the ledger need a place for it (`check` says so as one of its checks).
    let keeps_ledger = matches!(
        cli.command,
        Command::Backfill { .. }
            | Command::Consume { .. }
            | Command::Plan { .. }
            | Command::Ledger { .. }
    );
    if keeps_ledger && let Err(e) = settings.ledger.usable() {
        say_error(format, &e);
        return ExitCode::from(2);
    }
    let (result, signal) = runtime.block_on(async {
        let shutdown = match Shutdown::listen() {
            Ok(s) => s,
            Err(e) => {
                return (
                    Err(RunError::Fatal(anyhow::anyhow!(
                        "cannot listen for signals: {e}"
                    ))),
                    None,
                );
            }
        };
        let result = run(cli.command, settings, shutdown.clone(), bar).await;
        (result, shutdown.signal())
    });
    exit_code(&result, signal, format)
}

/// Runs `command`.
pub(crate) async fn run(
    command: Command,
    settings: Settings,
    shutdown: Shutdown,
    bar: BarSlot,
) -> Result<Finished, RunError> {
    // Every command but `check` (which prints it) and `report` (which reads files) logs what it
    // will hit before it does anything.
    let uses = match &command {
        Command::Check { .. } | Command::Report { .. } => None,
        Command::Backfill { .. } | Command::Plan { .. } => Some(Uses {
            queue: false,
            ..Uses::run(&settings)
        }),
        Command::Consume { .. } => Some(Uses::run(&settings)),
        Command::Discover { to_queue, .. } => Some(Uses {
            cognito: true,
            queue: *to_queue,
            ledger: false,
        }),
        Command::Enqueue { .. } => Some(Uses {
            queue: true,
            ..Uses::default()
        }),
        Command::Ledger { .. } => Some(Uses {
            ledger: true,
            ..Uses::default()
        }),
    };
    if let Some(uses) = uses {
        Target::of(&settings, uses).await.log();
    }
    match command {
        Command::Check { offline, .. } => check::run(&settings, offline).await,
        Command::Ledger { action } => ledger::run(action.into(), &settings).await,
        Command::Backfill {
            input, from_pool, ..
        } => match (input, from_pool) {
            (Some(path), false) => backfill::csv(path, settings, shutdown, bar).await,
            (None, true) => backfill::pool(settings, shutdown, bar).await,
            _ => Err(RunError::Usage(
                "backfill takes a CSV file (or -) or --from-pool, not both".into(),
            )),
        },
        Command::Plan {
            input,
            from_pool,
            json,
            sms_price,
            ..
        } => {
            let out = plan::Output { json, sms_price };
            match (input, from_pool) {
                (Some(path), false) => plan::csv(path, out, settings, shutdown).await,
                (None, true) => plan::pool(out, settings, shutdown).await,
                _ => Err(RunError::Usage(
                    "plan takes a CSV file (or -) or --from-pool, not both".into(),
                )),
            }
        }
        Command::Discover {
            out,
            attributes,
            to_queue,
            ..
        } => discover::run(out, attributes, to_queue, &settings, &shutdown).await,
        Command::Consume { .. } => consume::run(settings, shutdown).await,
        Command::Report {
            files,
            json,
            html,
            list,
        } => report::run(&files, json, html.as_deref(), list.is_some()),
        Command::Enqueue {
            input,
            fifo_group_id,
            ..
        } => enqueue::run(input, fifo_group_id, settings, shutdown, bar).await,
    }
}

impl From<cli::LedgerAction> for LedgerAction {
    fn from(action: cli::LedgerAction) -> Self {
        match action {
            cli::LedgerAction::Stats { json, .. } => Self::Stats { json },
            cli::LedgerAction::Export { .. } => Self::Export,
            cli::LedgerAction::Init { .. } => Self::Init,
            cli::LedgerAction::Forget {
                usernames, from, ..
            } => Self::Forget { usernames, from },
            cli::LedgerAction::Prune {
                older_than, force, ..
            } => Self::Prune { older_than, force },
        }
    }
}

/// The async runtime both binaries run on; if it cannot start, the error is logged and the
/// exit code is 1.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::error!("cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// The one way a command says the error it ends with, as its last line on stderr: in text
/// format `error: ...`, the style of the command-line parser's own errors (no time stamp, no
/// program name); in JSON format one log event, so that every line stays JSON.
pub(crate) fn say_error(format: LogFormat, message: &dyn std::fmt::Display) {
    match format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => tracing::error!("{message}"),
    }
}

/// The exit status of a command that ended so, `signal` being the signal that stopped it, if
/// any. A run-level error is said here, once, last ([`say_error`]): where it was detected, the
/// run only noted that it is stopping.
pub(crate) fn exit_code(
    result: &Result<Finished, RunError>,
    signal: Option<Signal>,
    format: LogFormat,
) -> ExitCode {
    match result {
        Ok(finished) => match signal {
            Some(sig) if !finished.complete => ExitCode::from(sig.exit_code()),
            _ if finished.failed_or_invalid > 0 => ExitCode::from(3),
            _ => ExitCode::SUCCESS,
        },
        Err(RunError::Usage(msg)) => {
            say_error(format, msg);
            ExitCode::from(2)
        }
        Err(RunError::StoppedEarly(stop)) => {
            say_error(format, stop);
            ExitCode::from(1)
        }
        Err(RunError::SpendCapped(cap)) => {
            say_error(format, &spend_capped(*cap));
            ExitCode::from(4)
        }
        Err(RunError::Fatal(e)) => {
            say_error(format, &format_args!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// Why the engine stopped, as the command's result: the causes that are errors become them;
/// the input's end and a signal are a finished run, which the command describes itself.
fn stopped(cause: StopCause) -> Result<(), RunError> {
    match cause {
        StopCause::Misconfigured(m) => Err(RunError::StoppedEarly(m)),
        StopCause::LedgerFailed(e) => Err(RunError::Fatal(e.into())),
        StopCause::SpendCapped(cap) => Err(RunError::SpendCapped(cap)),
        StopCause::Shutdown | StopCause::EndOfInput => Ok(()),
    }
}

/// What a run that sent says at its end: the summary on stderr (one log event in JSON format),
/// unless `-q`.
struct Summary<'a> {
    command: &'a str,
    tally: &'a Tally,
    started: Instant,
    /// Whether to say what was not attempted (a one-shot run that did not reach its input's end).
    stopped_early: bool,
    /// The input's size, when it is known.
    total: Option<u64>,
    /// `consume` keeps its plain summary in JSON log format too.
    format: LogFormat,
    /// The pool, when the run read it: what its profile makes of the counts.
    pool: Option<&'a parts::PoolAccess>,
}

impl Summary<'_> {
    fn print(&self, settings: &Settings) {
        if settings.log.verbosity < 0 {
            return;
        }
        let (tally, started) = (self.tally, self.started);
        let mut summary = progress::summary(
            self.command,
            tally,
            started.elapsed(),
            self.stopped_early,
            self.total,
            settings.run.dry_run,
        );
        for note in identity_notes(tally, self.pool, settings) {
            summary.push_str(&format!("\n  note: {note}"));
        }
        // Where the next run must look to skip who this one reached.
        let ledger = target::ledger_place(settings);
        summary.push_str(&format!("\n  ledger: {ledger}"));
        match self.format {
            LogFormat::Text => eprintln!("{summary}"),
            LogFormat::Json => tracing::info!(
                sent = tally.count(OutcomeKind::Sent),
                already_confirmed = tally.count(OutcomeKind::AlreadyConfirmed),
                not_found = tally.count(OutcomeKind::NotFound),
                cooldown = tally.count(OutcomeKind::Cooldown),
                capped = tally.count(OutcomeKind::Capped),
                known_confirmed = tally.count(OutcomeKind::KnownConfirmed),
                known_missing = tally.count(OutcomeKind::KnownMissing),
                dry_run = tally.count(OutcomeKind::DryRun),
                invalid = tally.count(OutcomeKind::Invalid),
                failed = tally.count(OutcomeKind::Failed),
                not_attempted = tally.untouched(),
                in_doubt = tally.in_doubt(),
                attempts = tally.attempts_total(),
                throttled = tally.attempts(metrics::AttemptResult::Throttled),
                wall_seconds = started.elapsed().as_secs_f64(),
                ledger = %ledger,
                "{summary}"
            ),
        }
    }
}

/// What the summary says about who the jobs were for: rows that may be aliases nobody resolved
/// (no pool access), and `sent` counts a pool with PreventUserExistenceErrors may have faked.
fn identity_notes(
    tally: &Tally,
    pool: Option<&parts::PoolAccess>,
    settings: &Settings,
) -> Vec<String> {
    let mut notes = Vec::new();
    let alias_like = tally.alias_like();
    if alias_like > 0 {
        notes.push(format!(
            "{alias_like} row(s) look like an email address, a phone number or a sub; without \
             the pool they were keyed as written, so one that names a user another row names by \
             username is counted as a second person: --user-pool-id resolves them to the username"
        ));
    }
    let sent = tally.count(OutcomeKind::Sent);
    if let Some(pool) = pool
        && sent > 0
        && !settings.run.precheck
        && !pool.profile.has_aliases()
        && let Some(c) = pool
            .profile
            .clients
            .iter()
            .find(|c| c.prevents_user_existence_errors)
    {
        notes.push(format!(
            "app client {} has PreventUserExistenceErrors enabled: Cognito answers a user it does \
             not have with a simulated success, so some of the {sent} `sent` may be users the pool \
             does not have; --precheck or backfill --from-pool sends only to users it has",
            c.client_id
        ));
    }
    notes
}

/// The result of a command that did its work and had nothing to count as failed.
fn done() -> Result<Finished, RunError> {
    Ok(Finished {
        complete: true,
        failed_or_invalid: 0,
    })
}
