//! What a summary holds: the [`Summary`] of one or more reports and its parts, as every
//! rendering (text, JSON, HTML) reads them. The reading and adding up is in the parent module.

use serde::Serialize;

use crate::outcome::run_record::RunRecord;

/// Counts by name, in a chosen order; JSON shows them as an object in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ordered<T>(pub Vec<(String, T)>);

impl<T> Ordered<T> {
    /// The value under `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&T> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

impl<T: Serialize> Serialize for Ordered<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Counts by name.
pub(crate) type Counts = Ordered<u64>;

/// What the reports say, added up.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// Each file read.
    pub files: Vec<FileSummary>,
    /// The runs that wrote them, each from its `run` record (reports of versions before it have
    /// none), in the order read.
    pub runs: Vec<RunSummary>,
    /// Report lines read (one per job).
    pub jobs: u64,
    /// Lines that were not report lines, over all files.
    pub unreadable_lines: u64,
    /// Jobs per outcome: the contract's outcomes in its order, then any other, by name.
    pub outcomes: Counts,
    /// Jobs per outcome and reason (lines with a reason only). The line or message an `invalid`
    /// reason names is left out, so alike problems count together.
    pub reasons: Vec<ReasonCount>,
    /// `failed` jobs per reason, most first.
    pub failed: Counts,
    /// Codes sent (`sent` jobs) per delivery medium (`unknown` when Cognito named none).
    pub delivery: Counts,
    /// Jobs per action (`confirm`, `invite`; `(none)` for rows that never became a job): each
    /// action's outcomes and messages by medium.
    pub actions: Vec<ActionSummary>,
    /// Jobs per wave (`wave` of the lines; `(none)` without), in the order the waves began.
    pub waves: Vec<WaveSummary>,
    /// Jobs whose user may hold a code the ledger cannot confirm.
    pub in_doubt: DoubtSummary,
    /// Calls to Cognito.
    pub attempts: AttemptSummary,
    /// When the runs ran, and how fast.
    pub time: TimeSummary,
    /// How long calls took, in milliseconds.
    pub latency_ms: LatencySummary,
    /// Outcomes and calls over time, in bins of equal length.
    pub timeline: Timeline,
}

/// One file read.
#[derive(Debug, Serialize)]
pub(crate) struct FileSummary {
    /// As given on the command line.
    pub path: String,
    /// Report lines read.
    pub jobs: u64,
    /// Lines that were not report lines.
    pub unreadable: u64,
    /// The first few of those, by line number.
    pub unreadable_lines: Vec<u64>,
    /// The first call's start or outcome in the file (RFC 3339).
    pub first: Option<String>,
    /// The last outcome in the file (RFC 3339).
    pub last: Option<String>,
    /// From first to last.
    pub wall_seconds: f64,
    #[serde(skip)]
    pub(super) span_ms: Option<(i64, i64)>,
}

/// One run, as its `run` and `run_end` records say.
#[derive(Debug, Serialize)]
pub(crate) struct RunSummary {
    /// The report file its records are in.
    pub file: String,
    /// Its `run` record.
    #[serde(flatten)]
    pub run: RunRecord,
    /// When it ended, from its `run_end` record; `None`: the run was killed, or is still
    /// running.
    pub ended_at: Option<String>,
    /// Jobs it read but never attempted (stopped first), from its `run_end` record.
    pub untouched: Option<u64>,
    /// What stopped it, from its `run_end` record (`end_of_input`, `spend_cap`, ...).
    pub stopped_by: Option<String>,
    /// Which misconfiguration or spend cap, from its `run_end` record.
    pub stop_detail: Option<String>,
    /// Job lines after its `run` record in its file, up to the next run's.
    pub jobs: u64,
}

/// Jobs of one outcome with one reason.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ReasonCount {
    /// The outcome.
    pub outcome: String,
    /// The reason.
    pub reason: String,
    /// Jobs.
    pub jobs: u64,
}

/// Jobs of one action.
#[derive(Debug, Serialize)]
pub(crate) struct ActionSummary {
    /// `confirm`, `invite`, or `(none)`.
    pub action: String,
    /// Its jobs.
    pub jobs: u64,
    /// Its jobs per outcome.
    pub outcomes: Counts,
    /// Its messages sent (`sent` jobs) per medium.
    pub delivery: Counts,
}

/// Jobs of one wave.
#[derive(Debug, Serialize)]
pub(crate) struct WaveSummary {
    /// The wave's name, or `(none)`.
    pub wave: String,
    /// Its jobs.
    pub jobs: u64,
    /// Its jobs per outcome.
    pub outcomes: Counts,
}

/// The jobs in doubt.
#[derive(Debug, Serialize)]
pub(crate) struct DoubtSummary {
    /// Jobs reported `"in_doubt": true`.
    pub jobs: u64,
    /// Distinct users (client id and username) among them.
    pub users: u64,
    /// Jobs per `in_doubt_cause`.
    pub causes: Counts,
    /// The jobs themselves, with usernames: only when asked for (`--list in-doubt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<DoubtRow>>,
}

/// One job in doubt. Holds a username: personal data.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DoubtRow {
    /// The user, as the row spelled them.
    pub username: String,
    /// The person's ledger key (the canonical username, folded for a case-insensitive pool),
    /// when the report has it: two spellings of one person are one user in doubt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_key: Option<String>,
    /// The app client.
    pub client_id: String,
    /// Why it is in doubt.
    pub in_doubt_cause: String,
    /// How the job ended.
    pub outcome: String,
    /// Where the job came from (`csv:17`, `sqs:<id>`).
    pub source: String,
    /// When it ended.
    pub at: String,
    /// The report file it is in.
    pub file: String,
}

/// Calls to Cognito.
#[derive(Debug, Serialize)]
pub(crate) struct AttemptSummary {
    /// All calls (the lines' `attempts`).
    pub total: u64,
    /// Calls whose time and result the report carries (`calls`); the rest come from lines
    /// written before it did.
    pub timed: u64,
    /// Timed calls per result (`ok`, `throttled`, `transient`, `permanent`).
    pub results: Counts,
    /// Throttled calls over timed calls.
    pub throttled_share: Option<f64>,
}

/// When the runs ran.
#[derive(Debug, Serialize)]
pub(crate) struct TimeSummary {
    /// The first call's start or outcome (RFC 3339).
    pub first: Option<String>,
    /// The last outcome (RFC 3339).
    pub last: Option<String>,
    /// The time covered by the files, each from its first to its last line: files that
    /// overlap (replicas of one run) count once, the gaps between runs (waves days apart) not
    /// at all.
    pub wall_seconds: f64,
    /// Jobs over the wall time.
    pub jobs_per_second: Option<f64>,
    /// Calls over the wall time.
    pub attempts_per_second: Option<f64>,
    /// The most calls started within one second.
    pub peak_attempts_per_second: Option<u64>,
    #[serde(skip)]
    pub(super) span_ms: Option<(i64, i64)>,
}

/// How long the calls took.
#[derive(Debug, Serialize)]
pub(crate) struct LatencySummary {
    /// Timed calls.
    pub calls: u64,
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Slowest.
    pub max: Option<f64>,
    /// Calls per bucket and result: buckets of equal width from the fastest call to the 99th
    /// percentile, and one for the slower calls.
    pub histogram: Vec<LatencyBucket>,
}

/// One bucket of the latency histogram.
#[derive(Debug, Serialize)]
pub(crate) struct LatencyBucket {
    /// Lower bound in ms, exclusive.
    pub above_ms: f64,
    /// Upper bound in ms, inclusive; `None` for the last bucket, the calls slower than the 99th
    /// percentile's bucket.
    pub le_ms: Option<f64>,
    /// Calls per result.
    pub calls: Counts,
}

/// Outcomes and calls over time.
#[derive(Debug, Serialize)]
pub(crate) struct Timeline {
    /// The first bin's start (RFC 3339), a multiple of the bin length.
    pub start: Option<String>,
    /// Bin length.
    pub bin_seconds: u64,
    /// Number of bins.
    pub bins: usize,
    /// Jobs per outcome in each bin (by when they ended).
    pub outcomes: Ordered<Vec<u64>>,
    /// Calls per result in each bin (by when they started).
    pub attempts: Ordered<Vec<u64>>,
    /// The first bin's start, in ms since the epoch.
    #[serde(skip)]
    pub start_ms: i64,
}
