//! The `cognito-resend` binary: parse the command line and hand over to the library
//! ([`cognito_resend::cmd::main`]), which loads the settings, runs the command and says the exit
//! code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use cognito_resend::cli::Cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before the heap grows: see the `rustix` entry of Cargo.toml. What `MIMALLOC_ALLOW_THP=0`
    // does, which only works from the environment the process starts with. Best effort: a kernel
    // without THP has nothing to turn off.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    cognito_resend::cmd::main(Cli::parse())
}
