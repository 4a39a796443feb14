//! The JSON Lines report: one line per job outcome, in the form docs/contract.md gives, between
//! a `run` record and a `run_end` record about the run ([`super::run_record`]).
//!
//! Lines are written through a `LineWriter`, so each outcome is on disk (in the page cache) as
//! soon as it is recorded, even if the process is killed.
//!
//! It names users and their masked contacts: personal data, so it is readable by its owner only
//! (0600), whether it is created, appended to or an older one is replaced.
//!
//! A report is the record of who was sent a code: a rerun naming the same file must not erase
//! the previous run's. An existing non-empty file is refused unless the run says what to do
//! with it ([`IfExists`]).

use std::fs::{File, OpenOptions};
use std::io::{LineWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use super::{Delivery, DoubtCause, Outcome, Reason};
use crate::job::CallTime;

/// What to do when the report file already holds lines (`report.if_exists`, `--append`,
/// `--overwrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IfExists {
    /// Refuse to start (exit 2): the file is an earlier run's record.
    #[default]
    Refuse,
    /// Add this run's lines after the earlier ones (`report` reads them all).
    Append,
    /// Replace the file.
    Overwrite,
}

impl IfExists {
    /// The settings file's spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "refuse" => Some(Self::Refuse),
            "append" => Some(Self::Append),
            "overwrite" => Some(Self::Overwrite),
            _ => None,
        }
    }
}

/// Why the report cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The file holds an earlier run's lines and the run did not say what to do with them.
    #[error(
        "{path} already holds {bytes} bytes of an earlier run's outcomes: pass --append to add \
         this run's lines after them, --overwrite to replace them, or name another file"
    )]
    Exists {
        /// The report path.
        path: String,
        /// Its size.
        bytes: u64,
    },
    /// The file cannot be opened or written.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The report path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

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
    /// What the job sent: `confirm` (a confirmation code) or `invite` (the invitation again);
    /// `null` for a row that never became a job.
    action: Option<&'static str>,
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
    /// Opens the report file: creates it, or deals with an existing one as `if_exists` says.
    pub fn create(path: &Path, if_exists: IfExists) -> Result<Self, CreateError> {
        let io = |source| CreateError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut options = OpenOptions::new();
        options.create(true).mode(0o600);
        match if_exists {
            IfExists::Append => options.append(true),
            IfExists::Overwrite => options.write(true).truncate(true),
            // Opened without truncating; refused below when it already holds anything. An empty
            // file (one `touch`ed, or left by a run that recorded nothing) is no record to keep.
            IfExists::Refuse => options.write(true),
        };
        let file = options.open(path).map_err(io)?;
        if if_exists == IfExists::Refuse {
            let bytes = file.metadata().map_err(io)?.len();
            if bytes > 0 {
                return Err(CreateError::Exists {
                    path: path.display().to_string(),
                    bytes,
                });
            }
        }
        // `mode` applies only to a file created now; one left by an older run is tightened too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
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
            action: outcome.action.map(crate::job::Action::as_str),
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

    /// Writes one record about the run ([`super::run_record`]): a line of its own, `kind`
    /// first.
    pub fn write_record(&mut self, record: &impl Serialize) -> std::io::Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record)?;
        self.buf.push(b'\n');
        self.out.write_all(&self.buf)
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
