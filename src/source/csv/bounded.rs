//! A reader in front of the `csv` crate that bounds how much of one record is ever held.
//!
//! The `csv` crate buffers a whole record before it yields it, so a 1 GB line, or an unbalanced
//! quote that swallows the rest of the file into one quoted field, would be held whole in memory.
//! [`Bounded`] scans the bytes with the same quoting rules the crate uses (RFC 4180: a quote opens
//! a quoted field only at the start of a field, `""` inside one is a quote, line breaks inside one
//! belong to the field) and hands the crate one record at a time. A record longer than the limit
//! is never passed on: its bytes are counted and dropped up to its true end (quote-aware, so the
//! parse resumes exactly where the `csv` crate would have), and the crate sees a placeholder
//! record instead, with as many line breaks as were dropped. Every record it hands on is noted,
//! in order, in [`Records`] with the line it starts on and whether it was cut: the CSV source
//! takes one note per record the crate yields, so it knows a placeholder when it sees one and
//! names every record by the line it really starts on (the crate's own position is where the
//! previous record ended, which is off by one after a CRLF or a blank line).
//!
//! Why resume at the record's quote-aware end, not at the next line break: a line break inside an
//! open quote is, to RFC 4180, part of the field. Cutting there would turn the middle of a field
//! (or the lines an unbalanced quote swallowed) into rows of their own, each a job with a username
//! nobody wrote as one. The swallowed lines get no outcome of their own; the report says which
//! lines they were, so the file can be fixed and the run repeated (it resumes).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// A record over this many bytes is `invalid`. Generous for a job (a username of at most 128
/// characters, a client id, a few metadata values), small enough that holding one is nothing.
/// The same bound as an SQS body ([`crate::source::sqs::body::MAX_BODY_BYTES`]).
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024;

/// One record handed to the `csv` crate (blank lines, which the crate skips, are not records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// The line it starts on, 1-based.
    pub line: u64,
    /// `Some` when it was over the limit and the crate got a placeholder instead.
    pub cut: Option<Cut>,
}

/// A record that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cut {
    /// The line it ends on.
    pub end_line: u64,
    /// Its length in bytes, terminator excluded.
    pub bytes: u64,
    /// Whether it ran to the end of the file inside an open quote.
    pub open_quote_at_eof: bool,
    /// Line breaks inside quoted fields: the sign of an unbalanced quote.
    pub quoted_breaks: u64,
}

/// The records handed on and not yet taken by the CSV source, in file order. At most a buffer's
/// worth: the reader runs only as far ahead of the crate as the crate's buffer.
pub(super) type Records = Rc<RefCell<VecDeque<Record>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field (a quote here opens a quoted field).
    FieldStart,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just read a quote inside a quoted field: either `""` or the field's end.
    QuoteInQuoted,
}

/// The placeholder a cut record becomes: one empty quoted field. The CSV source knows it by its
/// note in [`Records`], never by its content.
const PLACEHOLDER: &[u8] = b"\"\"";

/// See the module doc.
pub(super) struct Bounded<R> {
    inner: R,
    limit: usize,
    records: Records,
    /// The current record's bytes so far (at most `limit`), or nothing while skipping.
    record: Vec<u8>,
    /// Bytes ready for the `csv` crate.
    out: Vec<u8>,
    out_pos: usize,
    state: State,
    /// The line the scan is on (1-based).
    line: u64,
    /// Where the current record started.
    record_line: u64,
    /// The current record's length so far.
    record_bytes: u64,
    /// Line breaks seen inside quotes in the current record.
    quoted_breaks: u64,
    /// Line breaks seen in the current record.
    breaks: u64,
    /// Over the limit: dropping bytes until the record ends.
    skipping: bool,
    /// The last byte was a `\r` that ended a record: a `\n` right after it is the same
    /// terminator.
    after_cr: bool,
    eof: bool,
    /// Line breaks owed to the `csv` crate after a placeholder.
    owed_breaks: u64,
    /// The cut record's terminator, handed out after the owed line breaks.
    tail: Vec<u8>,
    /// A record was just cut: stop scanning so its placeholder, line breaks and terminator go
    /// out before the bytes after it.
    cut_pending: bool,
}

impl<R: BufRead> Bounded<R> {
    /// Wraps `inner`; every record is noted in `records`, and one longer than `limit` bytes is
    /// cut.
    pub(super) fn new(inner: R, limit: usize, records: Records) -> Self {
        Self {
            inner,
            limit,
            records,
            record: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            state: State::FieldStart,
            line: 1,
            record_line: 1,
            record_bytes: 0,
            quoted_breaks: 0,
            breaks: 0,
            skipping: false,
            after_cr: false,
            eof: false,
            owed_breaks: 0,
            tail: Vec::new(),
            cut_pending: false,
        }
    }

    /// Ends the current record (its terminator, if any, is `terminator`).
    fn end_record(&mut self, terminator: &[u8]) {
        if self.record_bytes > 0 {
            let cut = self.skipping.then(|| Cut {
                end_line: self.line,
                bytes: self.record_bytes,
                open_quote_at_eof: terminator.is_empty() && self.state == State::Quoted,
                quoted_breaks: self.quoted_breaks,
            });
            self.records.borrow_mut().push_back(Record {
                line: self.record_line,
                cut,
            });
        }
        if self.skipping {
            self.out.extend_from_slice(PLACEHOLDER);
            // Keep the line count of what follows: every line break the record held is given
            // back, after the placeholder and before its terminator. They are handed out by
            // `read` a buffer at a time, never held: an unbalanced quote may have swallowed
            // millions of lines.
            self.owed_breaks = self.breaks;
            self.tail = terminator.to_vec();
            self.cut_pending = true;
        } else {
            self.out.append(&mut self.record);
            self.out.extend_from_slice(terminator);
        }
        self.record.clear();
        self.skipping = false;
        self.state = State::FieldStart;
        self.record_bytes = 0;
        self.quoted_breaks = 0;
        self.breaks = 0;
        if terminator == b"\n" {
            self.line += 1;
        }
        self.record_line = self.line;
    }

    /// Adds one byte to the current record.
    fn push(&mut self, b: u8) {
        self.record_bytes += 1;
        if b == b'\n' {
            self.breaks += 1;
            self.line += 1;
            if self.state == State::Quoted {
                self.quoted_breaks += 1;
            }
        }
        if self.skipping {
            return;
        }
        if self.record.len() >= self.limit {
            self.skipping = true;
            self.record = Vec::new();
            return;
        }
        self.record.push(b);
    }

    /// Scans input until some output is ready or the input ends.
    fn fill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out_pos = 0;
        while self.out.is_empty() && !self.cut_pending && !self.eof {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                self.eof = true;
                if self.record_bytes > 0 || self.skipping {
                    self.end_record(b"");
                }
                break;
            }
            let chunk = chunk.to_vec();
            let mut used = 0;
            for b in chunk {
                used += 1;
                self.step(b);
                if self.cut_pending {
                    break;
                }
            }
            self.inner.consume(used);
        }
        self.cut_pending = false;
        Ok(())
    }

    fn step(&mut self, b: u8) {
        if std::mem::take(&mut self.after_cr) && b == b'\n' {
            // `\r\n`: the `\r` ended the record; the `\n` is the rest of its terminator.
            self.out.push(b'\n');
            self.line += 1;
            self.record_line = self.line;
            return;
        }
        match (self.state, b) {
            (State::Quoted, b'"') => {
                self.state = State::QuoteInQuoted;
                self.push(b);
            }
            (State::Quoted, _) => self.push(b),
            (State::QuoteInQuoted, b'"') => {
                self.state = State::Quoted;
                self.push(b);
            }
            (_, b'\n') => self.end_record(b"\n"),
            (_, b'\r') => {
                self.end_record(b"\r");
                self.after_cr = true;
            }
            (_, b',') => {
                self.state = State::FieldStart;
                self.push(b);
            }
            (State::FieldStart, b'"') => {
                self.state = State::Quoted;
                self.push(b);
            }
            _ => {
                self.state = State::Unquoted;
                self.push(b);
            }
        }
    }
}

impl<R: BufRead> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.out_pos >= self.out.len() {
            if self.owed_breaks > 0 {
                let n = buf
                    .len()
                    .min(usize::try_from(self.owed_breaks).unwrap_or(usize::MAX));
                buf[..n].fill(b'\n');
                self.owed_breaks -= n as u64;
                return Ok(n);
            }
            if !self.tail.is_empty() {
                self.out = std::mem::take(&mut self.tail);
                self.out_pos = 0;
            } else {
                self.fill()?;
            }
        }
        let ready = &self.out[self.out_pos..];
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes handed on, and the cut records as (line, cut).
    fn run(input: &[u8], limit: usize) -> (Vec<u8>, Vec<(u64, Cut)>) {
        let records = Records::default();
        let mut r = Bounded::new(
            io::BufReader::with_capacity(7, input),
            limit,
            records.clone(),
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        let cuts = records
            .borrow()
            .iter()
            .filter_map(|r| Some((r.line, r.cut.clone()?)))
            .collect();
        (out, cuts)
    }

    #[test]
    fn records_within_the_limit_pass_unchanged() {
        for input in [
            &b"username,email\na,\"x\ny\"\r\nb,\"q\"\"z\"\n\nc,d"[..],
            b"a\rb\r\nc\n",
            b"",
            b"\"open",
        ] {
            let (out, cuts) = run(input, 1000);
            assert_eq!(out, input);
            assert!(cuts.is_empty());
        }
    }

    #[test]
    fn a_long_record_becomes_a_placeholder_that_keeps_the_line_count() {
        let long = "x".repeat(100);
        let input = format!("username\nok1\n{long}\nok2\n");
        let (out, cuts) = run(input.as_bytes(), 20);
        assert_eq!(out, b"username\nok1\n\"\"\nok2\n");
        assert_eq!(cuts.len(), 1);
        assert_eq!(cuts[0].0, 3);
        assert_eq!(cuts[0].1.bytes, 100);
        assert_eq!(cuts[0].1.quoted_breaks, 0);
    }

    #[test]
    fn an_unbalanced_quote_is_skipped_to_its_quote_aware_end() {
        // The quote opened on line 3 closes on line 6: lines 3 to 6 are one record, and the
        // two lines in between are not read as rows of their own.
        let input = "username,email\nok1,a\n\"bad,b\nswallowed1,c\nswallowed2,d\nend\",e\nok2,f\n";
        let (out, cuts) = run(input.as_bytes(), 20);
        assert_eq!(out, b"username,email\nok1,a\n\"\"\n\n\n\nok2,f\n");
        assert_eq!(cuts[0].0, 3);
        assert_eq!(cuts[0].1.end_line, 6);
        assert_eq!(cuts[0].1.quoted_breaks, 3);
        let (out, cuts) = run(b"username\nok\n\"never closed\nmore lines\nand more\n", 12);
        assert_eq!(out, b"username\nok\n\"\"\n\n\n");
        assert!(cuts[0].1.open_quote_at_eof);
    }

    #[test]
    fn every_record_is_noted_with_the_line_it_starts_on() {
        let long = "y".repeat(50);
        let input = format!("username,n\r\na,1\r\n\r\n{long},2\r\n\"q\nq\",3\r\n\nb,4");
        let records = Records::default();
        let r = Bounded::new(input.as_bytes(), 20, records.clone());
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(r);
        let mut seen = Vec::new();
        for rec in rdr.byte_records() {
            let rec = rec.unwrap();
            let note = records.borrow_mut().pop_front().unwrap();
            seen.push((
                note.line,
                note.cut.is_some(),
                rec.get(1).map(<[u8]>::to_vec),
            ));
        }
        assert!(records.borrow().is_empty());
        let lines: Vec<(u64, bool)> = seen.iter().map(|(l, c, _)| (*l, *c)).collect();
        assert_eq!(
            lines,
            [(1, false), (2, false), (4, true), (5, false), (8, false)]
        );
        assert_eq!(seen[4].2.as_deref(), Some(&b"4"[..]));
    }
}
