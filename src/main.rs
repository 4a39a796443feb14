//! The `cognito-resend` binary: parse, load settings, start logging, dispatch to the command
//! ([`cognito_resend::cmd::run`]), map its result to an exit code. Everything else lives in the
//! library.

use std::process::ExitCode;

use clap::Parser;
use cognito_resend::cli::{Cli, Command};
use cognito_resend::cmd::{self, RunError};
use cognito_resend::config::Settings;
use cognito_resend::shutdown::Shutdown;
use cognito_resend::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before the heap grows: see the `rustix` entry of Cargo.toml. What `MIMALLOC_ALLOW_THP=0`
    // does, which only works from the environment the process starts with. Best effort: a kernel
    // without THP has nothing to turn off.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let mut settings = match Settings::load(&cli.settings()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cognito-resend: {e}");
            return ExitCode::from(2);
        }
    };
    let bar = telemetry::init_logging(settings.log.format, settings.log.verbosity);
    // `check` prints them with the settings; every other command says them first, loudly.
    if !matches!(cli.command, Command::Check { .. }) {
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
    }
    let runtime = match cmd::runtime() {
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
        tracing::error!("{e}");
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
        let result = cmd::run(cli.command, settings, shutdown.clone(), bar).await;
        (result, shutdown.signal())
    });
    cmd::exit_code(&result, signal)
}
