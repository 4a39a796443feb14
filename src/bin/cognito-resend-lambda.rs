//! The `cognito-resend-lambda` binary (feature `lambda`): the AWS Lambda function of
//! docs/lambda.md. Like `cognito-resend`'s `main`, it only parses the command line (Lambda
//! passes no arguments: the settings come from the environment) and hands over to the library
//! ([`cognito_resend::cmd::lambda::main`]); the exit code says why the container could not
//! start (2: configuration, 1: anything else).

use std::process::ExitCode;

use clap::Parser;
use cognito_resend::cli::LambdaCli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cognito_resend::cmd::lambda::main(LambdaCli::parse())
}
