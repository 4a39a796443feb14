//! The `cognito-resend-lambda` binary (feature `lambda`): the AWS Lambda function of
//! docs/lambda.md. Like `cognito-resend`'s `main`, it only parses, loads the settings (from the
//! environment: Lambda passes no arguments), starts logging and hands over to the library
//! ([`cognito_resend::cmd::lambda::serve`]); the exit code says why the container could not
//! start (2: configuration, 1: anything else).

use std::process::ExitCode;

use clap::Parser;
use cognito_resend::cli::LambdaCli;
use cognito_resend::cmd::{self, RunError};
use cognito_resend::config::Settings;
use cognito_resend::telemetry;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = LambdaCli::parse();
    let mut settings = match Settings::load(&cli.settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cognito-resend-lambda: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(settings.log.format, settings.log.verbosity);
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match cmd::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let Err(e) = runtime.block_on(settings.resolve_region()) {
        tracing::error!("{e}");
        return ExitCode::from(2);
    }
    let result: Result<_, RunError> = runtime.block_on(cmd::lambda::serve(settings));
    cmd::exit_code(&result, None)
}
