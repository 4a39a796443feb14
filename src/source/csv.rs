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

pub use bounded::MAX_RECORD_BYTES;

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
         `cognito:username`)"
    )]
    NoUsername,
    /// The reader failed on it.
    #[error("cannot read the header row: {0}")]
    Unreadable(csv::Error),
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
}

/// Which column holds what, from the header row.
#[derive(Debug, Clone, Default)]
struct Columns {
    username: usize,
    client_id: Option<usize>,
    analytics_endpoint_id: Option<usize>,
    encoded_data: Option<usize>,
    ip_address: Option<usize>,
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
                _ if lower.starts_with("client_metadata.") => {
                    let key = &name["client_metadata.".len()..];
                    if !key.is_empty() {
                        cols.metadata.push((i, key.to_owned()));
                    }
                }
                _ => {}
            }
        }
        cols.username = username.ok_or(HeaderProblem::NoUsername)?;
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
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
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
pub fn unneutralise(cell: &str) -> &str {
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
pub fn count_records(path: &Path) -> Option<u64> {
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
mod tests {
    use super::*;

    async fn read(text: &[u8]) -> Result<Vec<Input>, CsvError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, text).unwrap();
        let mut src = CsvSource::open(path).await?;
        let mut out = Vec::new();
        while let Some(i) = src.next().await {
            out.push(i);
        }
        assert!(src.take_failure().is_none());
        Ok(out)
    }

    fn job(i: &Input) -> &Job {
        match i {
            Input::Job(j) => j,
            Input::Unreadable(u) => panic!("expected a job, got {u:?}"),
        }
    }

    fn unreadable(i: &Input) -> &Unreadable {
        match i {
            Input::Unreadable(u) => u,
            Input::Job(j) => panic!("expected unreadable, got {j:?}"),
        }
    }

    #[tokio::test]
    async fn header_aliases_are_case_insensitive_and_bom_tolerated() {
        for header in [
            "username",
            "Username",
            "USERNAME",
            "cognito:username",
            "\u{feff}username",
        ] {
            let text = format!("email,{header},status\na@x,alice,UNCONFIRMED\n");
            let inputs = read(text.as_bytes()).await.unwrap();
            assert_eq!(inputs.len(), 1, "{header}");
            assert_eq!(job(&inputs[0]).request.username, "alice", "{header}");
            assert_eq!(job(&inputs[0]).origin, Origin::Csv { line: 2 });
        }
    }

    #[tokio::test]
    async fn every_request_field_is_read() {
        let text = "Username,Client_ID,client_metadata.Campaign,client_metadata.src,analytics_endpoint_id,encoded_data,ip_address,email\n\
                    bob,c1,spring,csv,ep-1,ENC==,192.0.2.1,b@x\n\
                    carol,,,,,,,\n";
        let inputs = read(text.as_bytes()).await.unwrap();
        let bob = &job(&inputs[0]).request;
        assert_eq!(bob.username, "bob");
        assert_eq!(bob.client_id.as_deref(), Some("c1"));
        assert_eq!(
            bob.client_metadata.get("Campaign").map(String::as_str),
            Some("spring")
        );
        assert_eq!(
            bob.client_metadata.get("src").map(String::as_str),
            Some("csv")
        );
        assert_eq!(bob.analytics_endpoint_id.as_deref(), Some("ep-1"));
        assert_eq!(bob.encoded_data.as_deref(), Some("ENC=="));
        assert_eq!(bob.ip_address.as_deref(), Some("192.0.2.1"));
        let carol = &job(&inputs[1]).request;
        assert_eq!(
            carol.client_id, None,
            "empty cells are absent, not empty strings"
        );
        assert!(carol.client_metadata.is_empty());
    }

    #[tokio::test]
    async fn bad_rows_name_their_line_and_the_rest_goes_on() {
        let long = "x".repeat(129);
        let mut text =
            format!("username,email\n,blank@x\n{long},long@x\nok1,a@x\nextra,a@x,more\n");
        text.push_str("ok2,b@x\n");
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"bad\xff\xfeutf8,c@x\nok3,c@x\n");
        let inputs = read(&bytes).await.unwrap();
        assert_eq!(inputs.len(), 7);
        let u = unreadable(&inputs[0]);
        assert_eq!(u.origin, Origin::Csv { line: 2 });
        assert!(
            u.reason.contains("line 2") && u.reason.contains("empty"),
            "{}",
            u.reason
        );
        let u = unreadable(&inputs[1]);
        assert!(
            u.reason.contains("line 3") && u.reason.contains("129"),
            "{}",
            u.reason
        );
        assert_eq!(job(&inputs[2]).request.username, "ok1");
        let u = unreadable(&inputs[3]);
        assert!(
            u.reason.contains("line 5") && u.reason.contains("field count"),
            "{}",
            u.reason
        );
        assert_eq!(job(&inputs[4]).request.username, "ok2");
        let u = unreadable(&inputs[5]);
        assert!(
            u.reason.contains("line 7") && u.reason.contains("UTF-8"),
            "{}",
            u.reason
        );
        assert_eq!(job(&inputs[6]).request.username, "ok3");
    }

    #[tokio::test]
    async fn a_record_over_the_limit_is_invalid_by_line_and_the_rest_goes_on() {
        let long = "x".repeat(MAX_RECORD_BYTES + 1);
        let mut text = format!("username,email\nok1,a@x\n{long},b@x\nok2,c@x\n");
        // An unbalanced quote that closes four lines later, in a field over the limit.
        text.push_str(&format!(
            "\"{},d@x\nin1,e\nin2,f\nin3,g\n\",h\nok3,i@x\n",
            "y".repeat(MAX_RECORD_BYTES)
        ));
        text.push_str("ok4,j@x\n");
        let inputs = read(text.as_bytes()).await.unwrap();
        assert_eq!(inputs.len(), 6, "{inputs:?}");
        assert_eq!(job(&inputs[0]).request.username, "ok1");
        let u = unreadable(&inputs[1]);
        assert_eq!(u.origin, Origin::Csv { line: 3 });
        assert!(
            u.reason.starts_with("line 3: record is over 64 KiB"),
            "{}",
            u.reason
        );
        assert_eq!(job(&inputs[2]).request.username, "ok2");
        assert_eq!(job(&inputs[2]).origin, Origin::Csv { line: 4 });
        let u = unreadable(&inputs[3]);
        assert_eq!(u.origin, Origin::Csv { line: 5 });
        assert!(
            u.reason.contains("lines 5 to 9") && u.reason.contains("unbalanced quote"),
            "{}",
            u.reason
        );
        assert_eq!(job(&inputs[4]).request.username, "ok3");
        assert_eq!(job(&inputs[4]).origin, Origin::Csv { line: 10 });
        assert_eq!(job(&inputs[5]).origin, Origin::Csv { line: 11 });

        // A quote never closed: one outcome for the rest of the file, which is never held.
        let text = format!(
            "username\nok1\n\"{}\nrest1\nrest2\n",
            "z".repeat(MAX_RECORD_BYTES)
        );
        let inputs = read(text.as_bytes()).await.unwrap();
        assert_eq!(inputs.len(), 2);
        let u = unreadable(&inputs[1]);
        assert!(u.reason.contains("never closed"), "{}", u.reason);
    }

    #[tokio::test]
    async fn client_ids_and_usernames_are_checked_like_cognito_does() {
        let text = "username,client_id\nok,c_1+x\nbad,c-1\nlong,".to_owned()
            + &"c".repeat(129)
            + "\nal\u{200B}ice,c1\n";
        let inputs = read(text.as_bytes()).await.unwrap();
        assert_eq!(job(&inputs[0]).request.client_id.as_deref(), Some("c_1+x"));
        let u = unreadable(&inputs[1]);
        assert!(
            u.reason.contains("line 3") && u.reason.contains("client_id"),
            "{}",
            u.reason
        );
        assert!(unreadable(&inputs[2]).reason.contains("129"));
        assert!(unreadable(&inputs[3]).reason.contains("U+200B"));
    }

    #[tokio::test]
    async fn neutralised_usernames_read_back_as_written_by_discover() {
        let text = "username\n'+15551234567\n'-dash\n''=two\n'plain\n@at\n";
        let inputs = read(text.as_bytes()).await.unwrap();
        let names: Vec<_> = inputs
            .iter()
            .map(|i| job(i).request.username.clone())
            .collect();
        assert_eq!(names, ["+15551234567", "-dash", "'=two", "'plain", "@at"]);
    }

    #[test]
    fn neutralise_guards_formulas_and_unneutralise_inverts_it() {
        assert_eq!(neutralise("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        for (cell, written) in [
            ("+15551234567", "'+15551234567"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("'=x", "''=x"),
            ("alice", "alice"),
            ("'alice", "'alice"),
            ("", ""),
        ] {
            assert_eq!(neutralise(cell), written, "{cell:?}");
            assert_eq!(unneutralise(written), cell, "{written:?}");
        }
    }

    #[tokio::test]
    async fn exactly_128_characters_is_fine() {
        let name = "é".repeat(128);
        let inputs = read(format!("username\n{name}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(job(&inputs[0]).request.username, name);
    }

    #[tokio::test]
    async fn missing_username_column_or_header_is_a_usage_error() {
        let err = read(b"email,status\na@x,UNCONFIRMED\n")
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("no username column"), "{err}");
        let err = read(b"").await.err().unwrap();
        assert!(err.to_string().contains("header row is required"), "{err}");
    }

    #[test]
    fn counting_matches_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "username\na\nb\n\"c\nd\"\n").unwrap();
        assert_eq!(count_records(&path), Some(3));
    }

    mod properties {
        use super::*;
        use crate::job::check_username;
        use proptest::prelude::*;

        fn read_sync(bytes: &[u8]) -> Result<Vec<Input>, CsvError> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a runtime");
            rt.block_on(read(bytes))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(128))]

            /// Whatever the cells hold (quotes, commas, line breaks, any Unicode), a file written
            /// by a CSV writer reads back row for row: one input per record, in order, with the
            /// right line numbers and every readable username intact.
            #[test]
            fn written_rows_read_back(
                rows in proptest::collection::vec(
                    ("\\PC{0,140}|", "\\PC{0,30}|", "\\PC{0,30}|"),
                    0..40,
                )
            ) {
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record(["username", "client_metadata.note", "email"]).unwrap();
                for (u, note, email) in &rows {
                    w.write_record([u, note, email]).unwrap();
                }
                let bytes = w.into_inner().unwrap();
                let inputs = read_sync(&bytes).unwrap();
                // Three cells are never an empty line (the writer puts the commas), so every
                // record is read.
                let expected: Vec<_> = rows.iter().collect();
                prop_assert_eq!(inputs.len(), expected.len());
                let mut last_line = 1;
                for (input, (u, note, _)) in inputs.iter().zip(expected) {
                    match input {
                        Input::Job(j) => {
                            // A `'` before a formula character is `discover`'s neutralising.
                            let u = unneutralise(u);
                            prop_assert_eq!(j.request.username.as_str(), u);
                            prop_assert!(check_username(u).is_ok());
                            prop_assert_eq!(
                                j.request.client_metadata.get("note").map(String::as_str),
                                (!note.is_empty()).then_some(note.as_str())
                            );
                            let Origin::Csv { line } = j.origin else { unreachable!() };
                            prop_assert!(line > last_line);
                            last_line = line;
                        }
                        Input::Unreadable(bad) => {
                            prop_assert!(check_username(unneutralise(u)).is_err());
                            prop_assert!(bad.reason.starts_with("line "));
                        }
                    }
                }
            }

            /// Every cell survives `discover`'s neutralising and `backfill`'s reading back.
            #[test]
            fn neutralising_round_trips(cell in "['=+@\\-\t\rab]{0,6}|\\PC{0,20}") {
                let written = neutralise(&cell);
                prop_assert_eq!(unneutralise(&written), cell.as_str());
                prop_assert!(!written.starts_with(formula_start));
            }

            /// Arbitrary bytes after a valid header never panic and never stop the file early:
            /// each record is a job or a named problem.
            #[test]
            fn any_bytes_yield_named_inputs(body in proptest::collection::vec(any::<u8>(), 0..600)) {
                let mut bytes = b"username,email\n".to_vec();
                bytes.extend_from_slice(&body);
                let inputs = read_sync(&bytes).unwrap();
                for input in inputs {
                    if let Input::Unreadable(bad) = input {
                        prop_assert!(bad.reason.starts_with("line "), "{}", bad.reason);
                    }
                }
            }
        }
    }
}
