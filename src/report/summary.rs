//! Reading reports back and adding them up: the [`Summary`] every rendering (text, JSON, HTML)
//! shows.
//!
//! A report is a run's `run` record, its job lines, and its `run_end` record (and again for
//! each run `--append`ed); the records about a run ([`crate::outcome::run_record`]) say their
//! `kind`, job lines have none. Reports written before the run records are job lines only, and
//! read the same.
//!
//! Lines are read loosely, so a report of any command and of any version reads: fields this
//! version does not know are ignored, an outcome is any string (a newer run's outcome is counted
//! under its own name), `wave` is grouped as `(none)` when absent, and lines without timing
//! (written before `started_at`/`calls` existed) count everywhere but in the call pictures. A
//! line that is not a report line (not JSON, no `outcome`, or cut short by a run that is still
//! writing) is counted as unreadable, named by file and line, and skipped.
//!
//! Files are streamed: memory grows with the run's length in seconds and its number of calls
//! (one number per call, for the latency percentiles), not with the lines' text.

use std::collections::{BTreeMap, HashSet};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::job::OutcomeKind;
use crate::outcome::run_record::{RunEnd, RunRecord};

mod model;
pub(crate) use model::*;

/// How a wave is named in the summary when the report lines carry none.
pub(crate) const NO_WAVE: &str = "(none)";

/// How the rows that never became a job (no action) are grouped by action.
pub(crate) const NO_ACTION: &str = "(none)";

/// How many unreadable lines of a file are named (by number) in the summary.
const NAMED_UNREADABLE: usize = 5;

/// The attempt results, in the order the summary lists them (others follow, by name).
pub(crate) const RESULTS: [&str; 4] = ["ok", "throttled", "transient", "permanent"];

/// About how many buckets the latency histogram has below its 99th percentile.
const LATENCY_BUCKETS: f64 = 40.0;

/// Time bins of the pictures, in seconds: the smallest that cuts the run into at most
/// [`MAX_BINS`].
const BIN_STEPS: [u64; 18] = [
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200,
    86_400,
];
/// The most bars a time picture has (more would be thinner than a pixel or two).
const MAX_BINS: u64 = 120;

/// One report line, as `report` reads it.
#[derive(Debug, Deserialize)]
struct Line {
    username: Option<String>,
    client_id: Option<String>,
    /// The person's ledger key (reports of this version on): what "users" count by.
    #[serde(default)]
    user_key: Option<String>,
    /// `confirm` or `invite` (reports before the invite action have none: all `confirm`).
    #[serde(default)]
    action: Option<String>,
    outcome: String,
    reason: Option<String>,
    #[serde(default)]
    attempts: u64,
    delivery: Option<LineDelivery>,
    #[serde(default)]
    in_doubt: bool,
    in_doubt_cause: Option<String>,
    source: Option<String>,
    at: Option<String>,
    wave: Option<String>,
    started_at: Option<String>,
    /// `[offset_ms, took_ms, result]` per call.
    calls: Option<Vec<(f64, f64, String)>>,
}

#[derive(Debug, Deserialize)]
struct LineDelivery {
    medium: Option<String>,
}

/// A line about the run rather than a job: it says its `kind`. A kind this version does not
/// know (a later version's) is skipped: neither a job nor an unreadable line.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
enum Record {
    #[serde(rename = "run")]
    Run(Box<RunRecord>),
    #[serde(rename = "run_end")]
    End(RunEnd),
    #[serde(other)]
    Other,
}

/// Adds report lines up, file by file.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    files: Vec<FileSummary>,
    runs: Vec<RunSummary>,
    /// The run whose lines the current file is at (an index into `runs`), if it named one.
    current_run: Option<usize>,
    jobs: u64,
    outcomes: BTreeMap<String, u64>,
    reasons: BTreeMap<(String, String), u64>,
    delivery: BTreeMap<String, u64>,
    /// Per wave: when it was first seen, and its jobs per outcome.
    waves: BTreeMap<String, WaveTally>,
    /// Per action: jobs per outcome, and `sent` per medium.
    actions: BTreeMap<String, ActionTally>,
    doubt: Vec<DoubtRow>,
    attempts: u64,
    /// Call durations (ms) per result.
    latencies: BTreeMap<String, Vec<f32>>,
    /// Per second since the epoch: jobs ended per outcome.
    outcome_seconds: BTreeMap<i64, BTreeMap<String, u64>>,
    /// Per second since the epoch: calls started per result.
    call_seconds: BTreeMap<i64, BTreeMap<String, u64>>,
}

/// An action's jobs per outcome, and its `sent` jobs per medium.
type ActionTally = (BTreeMap<String, u64>, BTreeMap<String, u64>);

/// A wave's first outcome (ms since the epoch; `i64::MAX` while none had a time) and its jobs
/// per outcome.
type WaveTally = (i64, BTreeMap<String, u64>);

/// Why a report could not be read at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl Aggregator {
    /// An empty aggregate.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Reads one report file.
    pub(crate) fn read_file(&mut self, path: &Path) -> Result<(), ReadError> {
        let shown = path.display().to_string();
        let io = |source| ReadError::Io {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        self.read(&shown, std::io::BufReader::new(file)).map_err(io)
    }

    /// Reads one report from `input`, named `name`.
    pub(crate) fn read(&mut self, name: &str, mut input: impl BufRead) -> std::io::Result<()> {
        self.files.push(FileSummary {
            path: name.to_owned(),
            jobs: 0,
            unreadable: 0,
            unreadable_lines: Vec::new(),
            first: None,
            last: None,
            wall_seconds: 0.0,
            span_ms: None,
        });
        self.current_run = None;
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf)? == 0 {
                return Ok(());
            }
            number += 1;
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            // A job's line first: nearly every line is one.
            let record = match serde_json::from_str::<Line>(text) {
                Ok(line) => {
                    self.add(line);
                    continue;
                }
                Err(_) => serde_json::from_str::<Record>(text),
            };
            match record {
                Ok(record) => self.add_record(name, record),
                Err(_) => {
                    let file = self.files.last_mut().expect("pushed above");
                    file.unreadable += 1;
                    if file.unreadable_lines.len() < NAMED_UNREADABLE {
                        file.unreadable_lines.push(number);
                    }
                }
            }
        }
    }

    /// A record about the run: a `run` opens a run (the job lines after it are its own), a
    /// `run_end` closes the run it names.
    fn add_record(&mut self, file: &str, record: Record) {
        match record {
            Record::Run(run) => {
                self.runs.push(RunSummary {
                    file: file.to_owned(),
                    run: *run,
                    ended_at: None,
                    untouched: None,
                    stopped_by: None,
                    stop_detail: None,
                    jobs: 0,
                });
                self.current_run = Some(self.runs.len() - 1);
            }
            Record::End(end) => {
                if let Some(run) = self
                    .runs
                    .iter_mut()
                    .rev()
                    .find(|r| r.file == file && r.run.run_id == end.run_id)
                {
                    run.ended_at = Some(end.ended_at);
                    run.untouched = Some(end.untouched);
                    run.stopped_by = end.stopped_by;
                    run.stop_detail = end.stop_detail;
                }
            }
            Record::Other => {}
        }
    }

    fn add(&mut self, line: Line) {
        if let Some(run) = self.current_run {
            self.runs[run].jobs += 1;
        }
        let file = self.files.last_mut().expect("a file is being read");
        file.jobs += 1;
        self.jobs += 1;
        let at = line.at.as_deref().and_then(millis);
        let started = line.started_at.as_deref().and_then(millis);
        if let Some(at) = at {
            let first = started.map_or(at, |s| s.min(at));
            file.span_ms = Some(match file.span_ms {
                Some((a, b)) => (a.min(first), b.max(at)),
                None => (first, at),
            });
            *self
                .outcome_seconds
                .entry(at.div_euclid(1000))
                .or_default()
                .entry(line.outcome.clone())
                .or_default() += 1;
        }
        *self.outcomes.entry(line.outcome.clone()).or_default() += 1;
        {
            let action = match (&line.action, line.outcome.as_str()) {
                (Some(a), _) => a.clone(),
                // A row that never became a job names no action.
                (None, "invalid") => NO_ACTION.to_owned(),
                // Reports from before the invite action: every job was a confirmation code.
                (None, _) => "confirm".to_owned(),
            };
            let (outcomes, delivery) = self.actions.entry(action).or_default();
            *outcomes.entry(line.outcome.clone()).or_default() += 1;
            if line.outcome == OutcomeKind::Sent.as_str() {
                *delivery.entry(medium_of(&line)).or_default() += 1;
            }
        }
        if let Some(reason) = &line.reason {
            let reason = if line.outcome == OutcomeKind::Invalid.as_str() {
                without_location(reason)
            } else {
                reason
            };
            *self
                .reasons
                .entry((line.outcome.clone(), reason.to_owned()))
                .or_default() += 1;
        }
        if line.outcome == OutcomeKind::Sent.as_str() {
            *self.delivery.entry(medium_of(&line)).or_default() += 1;
        }
        let wave = self
            .waves
            .entry(line.wave.clone().unwrap_or_else(|| NO_WAVE.into()))
            .or_insert((i64::MAX, BTreeMap::new()));
        wave.0 = wave.0.min(at.unwrap_or(i64::MAX));
        *wave.1.entry(line.outcome.clone()).or_default() += 1;
        self.attempts += line.attempts;
        if let (Some(started), Some(calls)) = (started, &line.calls) {
            for (offset, took, result) in calls {
                // Offsets and durations are whole and tenth milliseconds: no precision is lost.
                let start = started + *offset as i64;
                *self
                    .call_seconds
                    .entry(start.div_euclid(1000))
                    .or_default()
                    .entry(result.clone())
                    .or_default() += 1;
                self.latencies
                    .entry(result.clone())
                    .or_default()
                    .push(*took as f32);
            }
        }
        if line.in_doubt {
            self.doubt.push(DoubtRow {
                username: line.username.unwrap_or_default(),
                user_key: line.user_key,
                client_id: line.client_id.unwrap_or_default(),
                in_doubt_cause: line.in_doubt_cause.unwrap_or_else(|| "unknown".into()),
                outcome: line.outcome,
                source: line.source.unwrap_or_default(),
                at: line.at.unwrap_or_default(),
                file: file.path.clone(),
            });
        }
    }

    /// The summary; the jobs in doubt are listed (with usernames) only when `list_in_doubt`.
    pub(crate) fn finish(mut self, list_in_doubt: bool) -> Summary {
        for f in &mut self.files {
            if let Some((a, b)) = f.span_ms {
                f.first = Some(rfc3339(a));
                f.last = Some(rfc3339(b));
                f.wall_seconds = (b - a) as f64 / 1000.0;
            }
        }
        let time = self.time();
        let timeline = self.timeline(time.span_ms);
        let outcomes = in_outcome_order(self.outcomes.clone());
        let order: Vec<&String> = outcomes.0.iter().map(|(o, _)| o).collect();
        let mut reasons: Vec<ReasonCount> = self
            .reasons
            .iter()
            .map(|((outcome, reason), &jobs)| ReasonCount {
                outcome: outcome.clone(),
                reason: reason.clone(),
                jobs,
            })
            .collect();
        reasons.sort_by_key(|r| {
            (
                order.iter().position(|o| **o == r.outcome),
                std::cmp::Reverse(r.jobs),
            )
        });
        let failed = Ordered(
            reasons
                .iter()
                .filter(|r| r.outcome == OutcomeKind::Failed.as_str())
                .map(|r| (r.reason.clone(), r.jobs))
                .collect(),
        );
        let mut waves: Vec<(String, WaveTally)> =
            std::mem::take(&mut self.waves).into_iter().collect();
        waves.sort_by_key(|(name, (first, _))| (*first, name.clone()));
        let waves = waves
            .into_iter()
            .map(|(wave, (_, outcomes))| WaveSummary {
                wave,
                jobs: outcomes.values().sum(),
                outcomes: in_outcome_order(outcomes),
            })
            .collect();
        let mut actions: Vec<ActionSummary> = std::mem::take(&mut self.actions)
            .into_iter()
            .map(|(action, (outcomes, delivery))| ActionSummary {
                jobs: outcomes.values().sum(),
                outcomes: in_outcome_order(outcomes),
                delivery: Ordered(delivery.into_iter().collect()),
                action,
            })
            .collect();
        // confirm, invite, then anything else, (none) last.
        actions.sort_by_key(|a| match a.action.as_str() {
            "confirm" => (0, String::new()),
            "invite" => (1, String::new()),
            NO_ACTION => (3, String::new()),
            other => (2, other.to_owned()),
        });
        let users: HashSet<(&str, &str)> = self
            .doubt
            .iter()
            .map(|d| {
                let person = d.user_key.as_deref().unwrap_or(&d.username);
                (d.client_id.as_str(), person)
            })
            .collect();
        let mut causes = BTreeMap::new();
        for d in &self.doubt {
            *causes.entry(d.in_doubt_cause.clone()).or_default() += 1;
        }
        let in_doubt = DoubtSummary {
            jobs: self.doubt.len() as u64,
            users: users.len() as u64,
            causes: Ordered(causes.into_iter().collect()),
            list: list_in_doubt.then(|| self.doubt.clone()),
        };
        let timed: u64 = self.latencies.values().map(|v| v.len() as u64).sum();
        let results = in_order(
            self.latencies
                .iter()
                .map(|(r, v)| (r.clone(), v.len() as u64))
                .collect(),
            &RESULTS,
        );
        let throttled = results.get("throttled").copied().unwrap_or(0);
        let attempts = AttemptSummary {
            total: self.attempts,
            timed,
            results,
            throttled_share: (timed > 0).then(|| throttled as f64 / timed as f64),
        };
        let latency_ms = self.latency();
        Summary {
            unreadable_lines: self.files.iter().map(|f| f.unreadable).sum(),
            files: self.files,
            runs: self.runs,
            jobs: self.jobs,
            outcomes,
            reasons,
            failed,
            delivery: Ordered(self.delivery.into_iter().collect()),
            actions,
            waves,
            in_doubt,
            attempts,
            time,
            latency_ms,
            timeline,
        }
    }

    fn time(&self) -> TimeSummary {
        let mut spans: Vec<(i64, i64)> = self.files.iter().filter_map(|f| f.span_ms).collect();
        spans.sort_unstable();
        // The union of the files' spans.
        let mut covered = 0;
        let mut current: Option<(i64, i64)> = None;
        for (a, b) in spans.iter().copied() {
            current = match current {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    covered += cb - ca;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((ca, cb)) = current {
            covered += cb - ca;
        }
        let span = spans
            .iter()
            .copied()
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        let wall = covered as f64 / 1000.0;
        let per_second = |n: u64| (wall > 0.0).then(|| n as f64 / wall);
        TimeSummary {
            first: span.map(|(a, _)| rfc3339(a)),
            last: span.map(|(_, b)| rfc3339(b)),
            wall_seconds: wall,
            jobs_per_second: per_second(self.jobs),
            attempts_per_second: per_second(self.attempts),
            peak_attempts_per_second: self
                .call_seconds
                .values()
                .map(|by_result| by_result.values().sum())
                .max(),
            span_ms: span,
        }
    }

    fn timeline(&self, span: Option<(i64, i64)>) -> Timeline {
        let (first, last) = span.unwrap_or((0, 0));
        // Calls start no earlier than the first line's span and outcomes end within it; a
        // line without `at` is in no bin.
        let seconds = ((last - first) / 1000 + 1).max(1) as u64;
        let step = BIN_STEPS
            .iter()
            .copied()
            .find(|s| seconds.div_ceil(*s) < MAX_BINS)
            .unwrap_or_else(|| seconds.div_ceil(MAX_BINS).max(1));
        let step_ms = step as i64 * 1000;
        let start = first.div_euclid(step_ms) * step_ms;
        let bins = if span.is_some() {
            ((last - start) / step_ms + 1) as usize
        } else {
            0
        };
        let bin_of = |second: i64| {
            let i = (second * 1000 - start).div_euclid(step_ms);
            usize::try_from(i).ok().filter(|i| *i < bins)
        };
        let series = |per_second: &BTreeMap<i64, BTreeMap<String, u64>>| {
            let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for (second, counts) in per_second {
                let Some(i) = bin_of(*second) else { continue };
                for (name, n) in counts {
                    out.entry(name.clone()).or_insert_with(|| vec![0; bins])[i] += n;
                }
            }
            out
        };
        let outcomes = series(&self.outcome_seconds);
        let attempts = series(&self.call_seconds);
        Timeline {
            start: span.map(|_| rfc3339(start)),
            bin_seconds: step,
            bins,
            outcomes: in_outcome_order(outcomes),
            attempts: in_order(attempts, &RESULTS),
            start_ms: start,
        }
    }

    fn latency(&self) -> LatencySummary {
        let mut all: Vec<f32> = self.latencies.values().flatten().copied().collect();
        all.sort_unstable_by(f32::total_cmp);
        // Kept as f32 (a number per call); shown to the report's precision, a tenth of a
        // millisecond, not as the f64 nearest to the f32 (20.799999237060547).
        let ms = |v: f32| (f64::from(v) * 10.0).round() / 10.0;
        let pick = |q: f64| -> Option<f64> {
            // Nearest rank.
            let n = all.len();
            (n > 0).then(|| {
                let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
                ms(all[rank - 1])
            })
        };
        let histogram = match (all.first(), pick(0.99)) {
            (Some(&fastest), Some(p99)) => self.histogram(f64::from(fastest), p99),
            _ => Vec::new(),
        };
        LatencySummary {
            calls: all.len() as u64,
            p50: pick(0.5),
            p90: pick(0.9),
            p99: pick(0.99),
            max: all.last().map(|v| ms(*v)),
            histogram,
        }
    }
}

impl Aggregator {
    /// Buckets of one round width (1, 2, 2.5 or 5 times a power of ten, a tenth of a
    /// millisecond at least: the report's precision) from `fastest` to `p99`, then one for the
    /// rest: the shape of the bulk, without the tail squeezing it into one bar.
    fn histogram(&self, fastest: f64, p99: f64) -> Vec<LatencyBucket> {
        let width = nice_step(p99 / LATENCY_BUCKETS).max(0.1);
        let low = (fastest / width).floor() * width;
        let n = (((p99 - low) / width).ceil() as usize).max(1);
        let edge = |i: usize| ((low + i as f64 * width) * 1000.0).round() / 1000.0;
        let mut buckets: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); n + 1];
        for (result, values) in &self.latencies {
            for v in values {
                let i = (((f64::from(*v) - low) / width).ceil() as usize)
                    .saturating_sub(1)
                    .min(n);
                *buckets[i].entry(result.clone()).or_default() += 1;
            }
        }
        if buckets[n].is_empty() {
            buckets.pop();
        }
        buckets
            .into_iter()
            .enumerate()
            .map(|(i, calls)| LatencyBucket {
                above_ms: edge(i),
                le_ms: (i < n).then(|| edge(i + 1)),
                calls: in_order(calls, &RESULTS),
            })
            .collect()
    }
}

/// The medium a sent job's code went by, spelled as Cognito's `DeliveryMediumType` (`SMS`,
/// `EMAIL`) whatever the line's case, as `cognito_resend_codes_sent_total{medium}` spells it;
/// `unknown` when the line names none, as the metric says too.
fn medium_of(line: &Line) -> String {
    match line.delivery.as_ref().and_then(|d| d.medium.as_deref()) {
        None => "unknown".to_owned(),
        Some(m) if m.eq_ignore_ascii_case("sms") || m.eq_ignore_ascii_case("email") => {
            m.to_ascii_uppercase()
        }
        Some(m) => m.to_owned(),
    }
}

/// The round number (1, 2, 2.5 or 5 times a power of ten) at or above `x`.
pub(crate) fn nice_step(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= x * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// `map` in the order of `first`, then the other names in their own order.
fn in_order<T>(mut map: BTreeMap<String, T>, first: &[&str]) -> Ordered<T> {
    let mut out = Vec::with_capacity(map.len());
    for name in first {
        if let Some(v) = map.remove(*name) {
            out.push(((*name).to_owned(), v));
        }
    }
    out.extend(map);
    Ordered(out)
}

/// `map` in the contract's order of outcomes, then any other outcome by name.
fn in_outcome_order<T>(map: BTreeMap<String, T>) -> Ordered<T> {
    let known = OutcomeKind::ALL.map(OutcomeKind::as_str);
    in_order(map, &known)
}

/// An `invalid` reason without the line, lines or message it names (`line 17: username is
/// empty` is `username is empty`), so alike problems count together.
fn without_location(reason: &str) -> &str {
    let Some((head, rest)) = reason.split_once(": ") else {
        return reason;
    };
    let mut words = head.split(' ');
    let named = match (words.next(), words.next(), words.next(), words.next()) {
        // `line 17`, `user 3` (a pool user), `message <id>`
        (Some("line" | "user"), Some(n), None, None) => n.bytes().all(|b| b.is_ascii_digit()),
        (Some("message"), Some(_), None, None) => true,
        // `lines 17 to 20`
        (Some("lines"), Some(a), Some("to"), Some(b)) => {
            a.bytes().chain(b.bytes()).all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    if named { rest } else { reason }
}

/// Milliseconds since the epoch of an RFC 3339 UTC timestamp.
pub(crate) fn millis(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text).ok()?;
    let ms = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_millis()).ok()?,
    };
    Some(ms)
}

/// The RFC 3339 form of milliseconds since the epoch.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    };
    humantime::format_rfc3339_millis(t).to_string()
}

impl TimeSummary {
    /// First and last, in ms since the epoch.
    pub(crate) fn span_ms(&self) -> Option<(i64, i64)> {
        self.span_ms
    }
}

/// When the summary was made (for the page's footer).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;
