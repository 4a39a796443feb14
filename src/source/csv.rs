//! The CSV source: a backfill file or stdin, read on a blocking thread and streamed to the engine
//! through a small bounded channel, so memory stays flat whatever the file size.
//!
//! The header is read before the run starts: a file without a username column is a usage error
//! (exit 2), not a million `invalid` outcomes. After that, a record that cannot be read is an
//! [`Unreadable`] naming its line, and the rest of the file goes on.
//!
//! No record is ever held whole: [`bounded::Bounded`] sits in front of the `csv` crate and cuts
//! a record over [`MAX_RECORD_BYTES`] (a 1 GB line, an unbalanced quote that swallows the rest of
//! the file) while streaming past it, so memory stays flat whatever the input. Such a record is
//! `invalid`, naming the lines it covered. Client ids and usernames pass the same checks as
//! every other source's ([`crate::job::check_client_id`], [`crate::job::check_username`]).

mod bounded;

pub(crate) use bounded::MAX_RECORD_BYTES;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv::{ByteRecord, ErrorKind, ReaderBuilder};
use tokio::sync::mpsc;

use crate::job::{Input, Job, NothingToSettle, Origin, ResendRequest, Settle, Source, Unreadable};

/// How many parsed rows may wait for the engine. Small on purpose: the file is never read far
/// ahead of the work.
const CHANNEL_CAPACITY: usize = 64;

/// Why a CSV cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file (or `-`).
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// The header row is missing or has no username column.
    #[error("{path}: {problem}")]
    Header {
        /// The file (or `-`).
        path: String,
        /// What is wrong with it.
        problem: HeaderProblem,
    },
    /// Reading failed part-way (an I/O error, not a bad row): the rows after it were not read.
    #[error("reading {path} failed: {source}")]
    Read {
        /// The file (or `-`).
        path: String,
        /// The cause.
        source: csv::Error,
    },
}

/// What is wrong with a CSV file's header row.
#[derive(Debug, thiserror::Error)]
pub enum HeaderProblem {
    /// No header row at all.
    #[error("empty file: a header row is required")]
    Empty,
    /// A first "row" too long to be a header.
    #[error("the header row is over {kib} KiB: is this a CSV file?")]
    TooLong {
        /// The limit, in KiB.
        kib: usize,
    },
    /// A column name that is not UTF-8.
    #[error("header column {column} is not valid UTF-8")]
    NotUtf8 {
        /// Its position, from 1.
        column: usize,
    },
    /// No column names the user.
    #[error(
        "the header row has no username column (expected `username`, `Username` or \
         `cognito:username`); found {found}{hint}",
        found = shown_header(.found),
        hint = header_hint(.found)
    )]
    NoUsername {
        /// The header row's names, as read.
        found: Vec<String>,
    },
    /// The reader failed on it.
    #[error("cannot read the header row: {0}")]
    Unreadable(csv::Error),
}

/// Whether a header cell reads as a column name (not a value: a file without a header row has a
/// username or an address there, which is personal data and not shown).
fn looks_like_a_name(cell: &str) -> bool {
    let cell = cell.trim();
    !cell.is_empty()
        && cell.len() <= 40
        && !cell.contains('@')
        && cell.starts_with(|c: char| c.is_ascii_alphabetic())
        && cell
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.:-;\t".contains(c))
}

/// The header row as found, for the error: names quoted, anything else hidden.
fn shown_header(found: &[String]) -> String {
    let shown: Vec<String> = found
        .iter()
        .take(12)
        .map(|c| {
            if looks_like_a_name(c) {
                format!("`{}`", c.trim().escape_debug())
            } else {
                "(a value, not shown)".to_owned()
            }
        })
        .collect();
    let more = found.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("{} column(s): {}{more}", found.len(), shown.join(", "))
}

/// A hint for the usual mistakes: a file separated by `;` or tabs, an `email` column, a
/// file with no header row.
fn header_hint(found: &[String]) -> String {
    let lower: Vec<String> = found
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    if found.len() == 1 && (found[0].contains(';') || found[0].contains('\t')) {
        let sep = if found[0].contains(';') {
            "`;`"
        } else {
            "tabs"
        };
        return format!(
            ". The file looks separated by {sep}: this tool reads comma-separated CSV (save it \
             as \"CSV UTF-8 (comma delimited)\", or convert it, e.g. `tr ';' ','` when no field \
             holds one)"
        );
    }
    if let Some(col) = lower.iter().find(|c| {
        matches!(
            c.as_str(),
            "email" | "e-mail" | "email_address" | "phone_number"
        )
    }) {
        return format!(
            ". The `{col}` column does not name the user: rename it `username` if it holds the \
             usernames; if it holds an alias (the pool lets users sign in by email or phone), \
             rename it `username` and give --user-pool-id, and each row is resolved to its user"
        );
    }
    if found.iter().any(|c| !looks_like_a_name(c)) {
        return ". The first row looks like data: add a header row naming the columns, e.g. \
                `username`"
            .to_owned();
    }
    String::new()
}

/// What is wrong with one row: its job is `invalid` with this reason.
#[derive(Debug, thiserror::Error)]
enum RowProblem {
    /// A field that is not UTF-8.
    #[error("column `{0}` is not valid UTF-8")]
    NotUtf8(String),
    /// A username or client id Cognito would not take.
    #[error(transparent)]
    Bad(#[from] crate::job::BadField),
    /// An action or status that calls for nothing this tool sends.
    #[error(transparent)]
    Action(#[from] crate::job::BadAction),
}

/// Which column holds what, from the header row.
#[derive(Debug, Clone, Default)]
struct Columns {
    username: usize,
    client_id: Option<usize>,
    analytics_endpoint_id: Option<usize>,
    encoded_data: Option<usize>,
    ip_address: Option<usize>,
    /// `action` (`confirm`, `invite`).
    action: Option<usize>,
    /// `status` (`UNCONFIRMED`, `FORCE_CHANGE_PASSWORD`: what `discover` writes).
    status: Option<usize>,
    /// (column, ClientMetadata key as written after `client_metadata.`)
    metadata: Vec<(usize, String)>,
}

impl Columns {
    fn from_header(header: &ByteRecord) -> Result<Self, HeaderProblem> {
        let mut cols = Columns::default();
        let mut username = None;
        for (i, raw) in header.iter().enumerate() {
            let name =
                std::str::from_utf8(raw).map_err(|_| HeaderProblem::NotUtf8 { column: i + 1 })?;
            // An export written by Excel starts with a byte order mark.
            let name = name.trim_start_matches('\u{feff}').trim();
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "username" | "cognito:username" => {
                    username.get_or_insert(i);
                }
                "client_id" => cols.client_id = cols.client_id.or(Some(i)),
                "analytics_endpoint_id" => {
                    cols.analytics_endpoint_id = cols.analytics_endpoint_id.or(Some(i))
                }
                "encoded_data" => cols.encoded_data = cols.encoded_data.or(Some(i)),
                "ip_address" => cols.ip_address = cols.ip_address.or(Some(i)),
                "action" => cols.action = cols.action.or(Some(i)),
                "status" | "userstatus" => cols.status = cols.status.or(Some(i)),
                _ if lower.starts_with("client_metadata.") => {
                    let key = &name["client_metadata.".len()..];
                    if !key.is_empty() {
                        cols.metadata.push((i, key.to_owned()));
                    }
                }
                _ => {}
            }
        }
        cols.username = username.ok_or_else(|| HeaderProblem::NoUsername {
            found: header
                .iter()
                .map(|raw| {
                    String::from_utf8_lossy(raw)
                        .trim_start_matches('\u{feff}')
                        .to_owned()
                })
                .collect(),
        })?;
        Ok(cols)
    }

    /// Turns one record into a job, or says what is wrong with it.
    fn job(&self, rec: &ByteRecord, line: u64) -> Input {
        let origin = Origin::Csv { line };
        let unreadable = |reason: &dyn std::fmt::Display, username: Option<String>| {
            Input::Unreadable(Unreadable {
                origin: origin.clone(),
                reason: format!("line {line}: {reason}{}", quote_hint(rec)),
                username,
            })
        };
        let field = |i: usize, name: &str| -> Result<Option<String>, RowProblem> {
            match rec.get(i) {
                None => Ok(None),
                Some(b) => match std::str::from_utf8(b) {
                    Ok("") => Ok(None),
                    Ok(s) => Ok(Some(s.to_owned())),
                    Err(_) => Err(RowProblem::NotUtf8(name.to_owned())),
                },
            }
        };
        let username = match field(self.username, "username") {
            Ok(Some(u)) => unneutralise(&u).to_owned(),
            Ok(None) => return unreadable(&"username is empty", None),
            Err(e) => return unreadable(&e, None),
        };
        if let Err(e) = crate::job::check_username(&username) {
            return unreadable(&e, Some(username));
        }
        let mut request = ResendRequest {
            username,
            ..ResendRequest::default()
        };
        let optional = |col: Option<usize>, name: &str| match col {
            Some(i) => field(i, name),
            None => Ok(None),
        };
        let read = (|| -> Result<(), RowProblem> {
            request.client_id = optional(self.client_id, "client_id")?;
            if let Some(id) = &request.client_id {
                crate::job::check_client_id(id)?;
            }
            request.analytics_endpoint_id =
                optional(self.analytics_endpoint_id, "analytics_endpoint_id")?;
            request.encoded_data = optional(self.encoded_data, "encoded_data")?;
            request.ip_address = optional(self.ip_address, "ip_address")?;
            (request.action, request.status_action) = crate::job::action_of(
                optional(self.action, "action")?.as_deref(),
                optional(self.status, "status")?.as_deref(),
            )?;
            for (i, key) in &self.metadata {
                if let Some(v) = field(*i, &format!("client_metadata.{key}"))? {
                    request.client_metadata.insert(key.clone(), v);
                }
            }
            Ok(())
        })();
        match read {
            Ok(()) => Input::Job(Job {
                origin,
                request,
                attributes: None,
            }),
            Err(e) => unreadable(&e, Some(request.username)),
        }
    }
}

/// Whether a spreadsheet would run a cell starting with `c` as a formula (or, for tab and
/// carriage return, as the start of one once imported).
fn formula_start(c: char) -> bool {
    matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r')
}

/// A cell as `discover` writes it: one that a spreadsheet would run as a formula gets a `'` in
/// front (the usual CSV-injection defence). A cell that already starts with `'`s followed by
/// such a character gets one more, so [`unneutralise`] is its exact inverse and a username that
/// really starts with `'` survives too.
pub(crate) fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.trim_start_matches('\'').starts_with(formula_start) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// The inverse of [`neutralise`], applied to the username column: a `'` followed by (more `'`s
/// and) a formula character loses its first `'`. So `'+15551234567` from `discover` is the user
/// `+15551234567` again. The one cost: a username that really starts with `'` and then one of
/// `=+-@` must be written with one `'` more (as `discover` does).
pub(crate) fn unneutralise(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.trim_start_matches('\'').starts_with(formula_start) => rest,
        _ => cell,
    }
}

/// A CSV file or stdin as a [`Source`].
pub struct CsvSource {
    rx: mpsc::Receiver<Result<Input, CsvError>>,
    /// Set when reading failed part-way (an I/O error, not a bad row): the run must say so.
    failure: Option<CsvError>,
    /// Whether the header has a `client_id` column (so `--client-id` may be omitted).
    has_client_id_column: bool,
}

impl CsvSource {
    /// Opens `path` (`-` for stdin), reads its header and starts the reader thread.
    pub async fn open(path: PathBuf) -> Result<Self, CsvError> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        // The reader is blocking I/O: it gets a thread of its own, and the bounded channel's
        // `blocking_send` is what keeps it from reading ahead of the engine.
        std::thread::Builder::new()
            .name("csv-reader".into())
            .spawn(move || read_all(&path, &tx, ready_tx))
            .map_err(|e| CsvError::Io {
                path: "-".into(),
                source: e,
            })?;
        let has_client_id_column = ready_rx.await.map_err(|_| CsvError::Io {
            path: "-".into(),
            source: io::Error::other("the CSV reader thread ended unexpectedly"),
        })??;
        Ok(Self {
            rx,
            failure: None,
            has_client_id_column,
        })
    }

    /// Whether rows may carry their own client id.
    pub fn has_client_id_column(&self) -> bool {
        self.has_client_id_column
    }
}

impl Source for CsvSource {
    fn label(&self) -> &'static str {
        "csv"
    }

    async fn next(&mut self) -> Option<Input> {
        match self.rx.recv().await? {
            Ok(input) => Some(input),
            Err(e) => {
                self.failure = Some(e);
                None
            }
        }
    }

    fn settler(&self) -> Arc<dyn Settle> {
        Arc::new(NothingToSettle)
    }

    fn take_failure(&mut self) -> Option<String> {
        self.failure.take().map(|e| e.to_string())
    }
}

fn display(path: &Path) -> String {
    if path == Path::new("-") {
        "stdin".into()
    } else {
        path.display().to_string()
    }
}

fn open_reader(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    if path == Path::new("-") {
        Ok(Box::new(io::stdin()))
    } else {
        Ok(Box::new(File::open(path)?))
    }
}

/// For a bad record that spans lines: RFC 4180 lets a quoted field hold line breaks, so one
/// unbalanced quote swallows the lines after it into a single record. Say so, since the rows it
/// swallowed get no outcome of their own.
fn quote_hint(rec: &ByteRecord) -> String {
    let breaks = rec.as_slice().iter().filter(|&&b| b == b'\n').count();
    if breaks == 0 {
        return String::new();
    }
    format!(" (a quoted field runs over {breaks} more line(s): an unbalanced quote?)")
}

/// The reader thread: header, then every record into the channel.
fn read_all(
    path: &Path,
    tx: &mpsc::Sender<Result<Input, CsvError>>,
    ready: tokio::sync::oneshot::Sender<Result<bool, CsvError>>,
) {
    let name = display(path);
    let reader = match open_reader(path) {
        Ok(r) => r,
        Err(source) => {
            let _ = ready.send(Err(CsvError::Io { path: name, source }));
            return;
        }
    };
    let records = bounded::Records::default();
    let mut csv = ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bounded::Bounded::new(
            io::BufReader::with_capacity(64 * 1024, reader),
            MAX_RECORD_BYTES,
            records.clone(),
        ));
    let headers = csv.byte_headers();
    let header_cut = records.borrow_mut().pop_front().and_then(|r| r.cut);
    let columns = match headers {
        _ if header_cut.is_some() => Err(CsvError::Header {
            path: name.clone(),
            problem: HeaderProblem::TooLong {
                kib: MAX_RECORD_BYTES / 1024,
            },
        }),
        Ok(h) if h.is_empty() || (h.len() == 1 && h[0].is_empty()) => Err(CsvError::Header {
            path: name.clone(),
            problem: HeaderProblem::Empty,
        }),
        Ok(h) => Columns::from_header(h).map_err(|problem| CsvError::Header {
            path: name.clone(),
            problem,
        }),
        Err(e) => Err(CsvError::Header {
            path: name.clone(),
            problem: HeaderProblem::Unreadable(e),
        }),
    };
    let columns = match columns {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    if ready.send(Ok(columns.client_id.is_some())).is_err() {
        return;
    }
    let mut rec = ByteRecord::new();
    loop {
        // Each record the crate yields (or refuses for its field count) is the next one the
        // bounded reader noted: that note says where it starts and whether it was cut.
        let result = csv.read_byte_record(&mut rec);
        let note = match &result {
            Ok(true) => records.borrow_mut().pop_front(),
            Err(e) if matches!(e.kind(), ErrorKind::UnequalLengths { .. }) => {
                records.borrow_mut().pop_front()
            }
            _ => None,
        };
        let crate_line = |pos: Option<&csv::Position>| pos.map_or(0, |p| p.line());
        let item = match result {
            Ok(false) => return,
            Ok(true) => match note {
                Some(bounded::Record {
                    line,
                    cut: Some(cut),
                }) => Ok(cut_input(line, &cut)),
                Some(bounded::Record { line, cut: None }) => Ok(columns.job(&rec, line)),
                None => Ok(columns.job(&rec, crate_line(rec.position()))),
            },
            Err(e) => match e.kind() {
                ErrorKind::UnequalLengths { .. }
                    if note.as_ref().is_some_and(|n| n.cut.is_some()) =>
                {
                    let note = note.expect("checked in the guard just above");
                    let cut = note.cut.expect("checked in the guard just above");
                    Ok(cut_input(note.line, &cut))
                }
                ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => {
                    let line = note.map_or_else(|| crate_line(pos.as_ref()), |n| n.line);
                    Ok(Input::Unreadable(Unreadable {
                        origin: Origin::Csv { line },
                        reason: format!(
                            "line {line}: wrong field count: {len} fields, the header has \
                             {expected_len}{}",
                            quote_hint(&rec)
                        ),
                        username: None,
                    }))
                }
                ErrorKind::Io(_) => Err(CsvError::Read {
                    path: name.clone(),
                    source: e,
                }),
                _ => {
                    let line = e.position().map_or(0, |p| p.line());
                    Ok(Input::Unreadable(Unreadable {
                        origin: Origin::Csv { line },
                        reason: format!("line {line}: {e}"),
                        username: None,
                    }))
                }
            },
        };
        let stop = item.is_err();
        // The engine dropped the receiver: the run is over, stop reading.
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

/// A record too long to read: `invalid`, naming the lines it covered so the user knows which
/// rows got no outcome of their own.
fn cut_input(line: u64, cut: &bounded::Cut) -> Input {
    let span = if cut.end_line > line {
        format!("lines {line} to {}", cut.end_line)
    } else {
        format!("line {line}")
    };
    let hint = if cut.open_quote_at_eof {
        ": a quote opened in it is never closed, so it runs to the end of the file; the rows \
         after it were not read"
            .to_owned()
    } else if cut.quoted_breaks > 0 {
        format!(
            ": a quoted field runs over {} line(s), an unbalanced quote? The rows inside it were \
             not read",
            cut.quoted_breaks
        )
    } else {
        String::new()
    };
    Input::Unreadable(Unreadable {
        origin: Origin::Csv { line },
        reason: format!(
            "line {line}: record is over {} KiB ({} bytes, {span}), not read{hint}",
            MAX_RECORD_BYTES / 1024,
            cut.bytes
        ),
        username: None,
    })
}

/// Counts the records of a file (not stdin) for the progress bar's length. Cheap next to the
/// network work; runs on its own thread so the run does not wait for it.
pub(crate) fn count_records(path: &Path) -> Option<u64> {
    if path == Path::new("-") {
        return None;
    }
    // Through the same bounded reader: counting must not hold a huge record either.
    let records = bounded::Records::default();
    let mut csv = ReaderBuilder::new()
        .flexible(true)
        .from_reader(bounded::Bounded::new(
            io::BufReader::with_capacity(256 * 1024, File::open(path).ok()?),
            MAX_RECORD_BYTES,
            records.clone(),
        ));
    let mut rec = ByteRecord::new();
    let mut n = 0;
    loop {
        // The notes are not needed here; drop them so they do not pile up.
        records.borrow_mut().clear();
        match csv.read_byte_record(&mut rec) {
            Ok(true) => n += 1,
            Ok(false) => return Some(n),
            Err(e) if matches!(e.kind(), ErrorKind::Io(_)) => return None,
            Err(_) => n += 1,
        }
    }
}

#[cfg(test)]
mod tests;
