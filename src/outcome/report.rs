//! The JSON Lines report: one line per job outcome, in the form docs/contract.md gives.
//!
//! Lines are written through a `LineWriter`, so each outcome is on disk (in the page cache) as
//! soon as it is recorded, even if the process is killed.
//!
//! It names users and their masked contacts: personal data, so it is readable by its owner only
//! (0600), whether it is created or an older one is truncated.

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::{Delivery, DoubtCause, Outcome, Reason};
use crate::job::CallTime;

/// An open report file.
pub struct ReportWriter {
    out: LineWriter<File>,
    buf: Vec<u8>,
    /// `--wave`, on every line when set.
    wave: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    username: Option<&'a str>,
    client_id: Option<&'a str>,
    /// The person's ledger key (the canonical username, folded for a case-insensitive pool),
    /// once the job got that far: what the ledger, the cooldown and the in-doubt lists go by.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_key: Option<&'a str>,
    outcome: &'static str,
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    attempts: u32,
    delivery: Option<&'a Delivery>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    in_doubt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_doubt_cause: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wave: Option<&'a str>,
    source: &'a str,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    calls: Option<Vec<CallEntry>>,
}

/// One call of a job, as the report writes it: `[offset_ms, took_ms, result]` (an array, not an
/// object: a report of a million jobs stays small).
#[derive(Serialize)]
struct CallEntry(u64, f64, &'static str);

impl From<&CallTime> for CallEntry {
    fn from(c: &CallTime) -> Self {
        let offset = u64::try_from(c.offset.as_millis()).unwrap_or(u64::MAX);
        // A tenth of a millisecond: finer than a network round trip can mean.
        let took = (c.took.as_secs_f64() * 10_000.0).round() / 10.0;
        Self(offset, took, c.result)
    }
}

impl ReportWriter {
    /// Creates (or truncates) the report file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        // `mode` applies only to a file created now; one left by an older run is tightened too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(Self {
            out: LineWriter::new(file),
            buf: Vec::with_capacity(512),
            wave: None,
        })
    }

    /// Names the wave every line is written with (`--wave`).
    pub fn set_wave(&mut self, wave: Option<String>) {
        self.wave = wave;
    }

    /// Writes one line.
    pub fn write(
        &mut self,
        username: Option<&str>,
        client_id: Option<&str>,
        user_key: Option<&str>,
        source: &str,
        outcome: &Outcome,
    ) -> std::io::Result<()> {
        let line = Line {
            username,
            client_id,
            user_key,
            outcome: outcome.kind.as_str(),
            reason: outcome.reason.as_ref().map(Reason::as_str),
            error: outcome.error.as_deref(),
            attempts: outcome.attempts,
            delivery: outcome.delivery.as_ref(),
            in_doubt: outcome.in_doubt.is_some(),
            in_doubt_cause: outcome.in_doubt.map(DoubtCause::as_str),
            wave: self.wave.as_deref(),
            source,
            at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            started_at: outcome
                .timing
                .as_ref()
                .map(|t| humantime::format_rfc3339_millis(t.started_at).to_string()),
            calls: outcome
                .timing
                .as_ref()
                .map(|t| t.calls.iter().map(CallEntry::from).collect()),
        };
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &line)?;
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
