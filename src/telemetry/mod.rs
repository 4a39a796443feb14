//! What the process tells people and machines while it works: logs ([`init_logging`]), metrics
//! ([`metrics`], served by [`server`], pushed by [`push`]) and the progress bar's place
//! ([`BarSlot`]; the bar itself is [`crate::outcome::progress`]'s).
//!
//! Usernames are personal data: logs show them through [`UserRef`], a short keyed hash unless
//! `--log-usernames` is given. Secrets never reach this module but one: the key of that hash
//! ([`USERNAME_KEY_ENV`]), read here and never shown.

pub(crate) mod metrics;
pub(crate) mod push;
pub(crate) mod server;

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::sync::Locked;
use hmac::{Hmac, Mac};
use indicatif::ProgressBar;
use sha2::Sha256;
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

/// The environment variable holding the key of the usernames' hash in logs: any text, kept
/// like the client secret. Set the same on every replica and run to follow one user's lines
/// across them; without it each process draws a random key, so a hash means something only
/// within its run.
pub(crate) const USERNAME_KEY_ENV: &str = "COGNITO_RESEND_LOG_USERNAME_KEY";

/// The key of [`UserRef`]'s hash, drawn or read once per process.
static USERNAME_KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

/// [`USERNAME_KEY_ENV`], else 32 random bytes.
fn username_key() -> &'static [u8] {
    USERNAME_KEY.get_or_init(|| match std::env::var(USERNAME_KEY_ENV) {
        Ok(key) if !key.is_empty() => key.into_bytes(),
        _ => {
            let mut key = vec![0; 32];
            // The OS's generator; if it cannot answer, the time and pid are still unknown to
            // whoever reads the logs afterwards, which is the point.
            if getrandom::fill(&mut key).is_err() {
                let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
                key = seed.into_bytes();
            }
            key
        }
    })
}

impl fmt::Display for UserRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reveal {
            return f.write_str(self.name);
        }
        // HMAC-SHA-256, cut to 48 bits: one user's lines can be followed without the name, and
        // without the key the name cannot be found again by hashing candidates (a phone number
        // is a search of 10^10, an unkeyed hash of it is undone in a second).
        let mut mac = Hmac::<Sha256>::new_from_slice(username_key()).expect("any key length");
        mac.update(self.name.as_bytes());
        let digest = mac.finalize().into_bytes();
        write!(f, "u-")?;
        for b in &digest[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Where the progress bar lives, so log lines can be printed around it instead of through it.
#[derive(Clone, Default)]
pub(crate) struct BarSlot(Arc<Mutex<Option<ProgressBar>>>);

impl BarSlot {
    /// Puts a bar in (or takes it out).
    pub(crate) fn set(&self, bar: Option<ProgressBar>) {
        *self.0.locked() = bar;
    }

    fn with_suspended(&self, f: impl FnOnce()) {
        let bar = self.0.locked().clone();
        match bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }
}

/// A log line buffered, then written to stderr in one piece with the progress bar suspended.
pub(crate) struct LineOut {
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
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Starts logging to stderr. Returns the slot a progress bar goes into.
pub(crate) fn init_logging(format: LogFormat, verbosity: i8) -> BarSlot {
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
    // The SDK's credential chain warns for each provider that finds nothing (the instance
    // metadata service's with a screen of debug output) before the run's own one-line "no AWS
    // credentials were found": below -vv its crates say errors only.
    let filter = EnvFilter::new(format!(
        "warn,cognito_resend={level}{}",
        if verbosity >= 2 {
            ",aws=debug"
        } else {
            ",aws_config=error,aws_smithy=error,aws_config::imds::region=off"
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
