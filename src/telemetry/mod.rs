//! What the process tells people and machines while it works: logs ([`init_logging`]), metrics
//! ([`metrics`], served by [`server`], pushed by [`push`]) and the progress bar's place
//! ([`BarSlot`]; the bar itself is [`crate::outcome::progress`]'s).
//!
//! Usernames are personal data: logs show them through [`UserRef`], a short stable hash unless
//! `--log-usernames` is given. Secrets never reach this module.

pub(crate) mod metrics;
pub(crate) mod push;
pub(crate) mod server;

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// A username as logs show it.
pub struct UserRef<'a> {
    name: &'a str,
    reveal: bool,
}

impl<'a> UserRef<'a> {
    /// `reveal` = `--log-usernames`.
    pub fn new(name: &'a str, reveal: bool) -> Self {
        Self { name, reveal }
    }
}

impl fmt::Display for UserRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reveal {
            return f.write_str(self.name);
        }
        // Stable across runs and replicas, so one user's lines can be followed without the name.
        let digest = Sha256::digest(self.name.as_bytes());
        write!(f, "u-")?;
        for b in &digest[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Where the progress bar lives, so log lines can be printed around it instead of through it.
#[derive(Clone, Default)]
pub struct BarSlot(Arc<Mutex<Option<ProgressBar>>>);

impl BarSlot {
    /// Puts a bar in (or takes it out).
    pub fn set(&self, bar: Option<ProgressBar>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = bar;
    }

    fn with_suspended(&self, f: impl FnOnce()) {
        let bar = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

/// A log line buffered, then written to stderr in one piece with the progress bar suspended.
pub struct LineOut {
    slot: BarSlot,
    buf: Vec<u8>,
}

impl Write for LineOut {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineOut {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.slot.with_suspended(|| {
            let _ = std::io::stderr().lock().write_all(&buf);
        });
    }
}

impl<'a> MakeWriter<'a> for BarSlot {
    type Writer = LineOut;
    fn make_writer(&'a self) -> LineOut {
        LineOut {
            slot: self.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// How log lines are written (`log.format`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Starts logging to stderr. Returns the slot a progress bar goes into.
pub fn init_logging(format: LogFormat, verbosity: i8) -> BarSlot {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Our crate at the chosen level; the AWS SDK and HTTP stack one step quieter, since their
    // debug output is about internals, not jobs.
    // The SDK warns once per client when the instance metadata service has no region for it;
    // the run already says so in one line (`Settings::resolve_region`), so those stay quiet
    // unless -vv asks for the SDK's own story.
    let filter = EnvFilter::new(format!(
        "warn,cognito_resend={level}{}",
        if verbosity >= 2 {
            ",aws=debug"
        } else {
            ",aws_config::imds::region=off"
        }
    ));
    let slot = BarSlot::default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(slot.clone())
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
    slot
}
