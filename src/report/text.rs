//! The summary for a terminal, and the list of jobs in doubt as CSV.
//!
//! The text names nobody: usernames are personal data, and a summary gets pasted into tickets
//! and chats. Only the list (`--list in-doubt`), asked for explicitly, holds them.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::summary::{Counts, RunSummary, Summary, millis, rfc3339};

/// `n` of `total` as a percentage with one decimal.
fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:.1}", n as f64 * 100.0 / total as f64)
}

/// `a 3, b 1`, or `none`.
fn inline(counts: &Counts) -> String {
    if counts.0.is_empty() {
        return "none".into();
    }
    counts
        .0
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A duration in seconds, as people read it.
pub(crate) fn seconds(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7_200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3_600.0)
    }
}

/// Milliseconds, as people read them.
pub(crate) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1} ms")
    } else if v < 10_000.0 {
        format!("{v:.0} ms")
    } else {
        format!("{:.1} s", v / 1000.0)
    }
}

/// `2026-11-29 01:30:03 to 01:30:45 UTC`, with the second date only when it differs.
pub(crate) fn span(first_ms: i64, last_ms: i64) -> String {
    let (a, b) = (rfc3339(first_ms), rfc3339(last_ms));
    let b = if a[..10] == b[..10] {
        b[11..19].to_owned()
    } else {
        format!("{} {}", &b[..10], &b[11..19])
    };
    format!("{} {} to {b} UTC", &a[..10], &a[11..19])
}

/// `text` safe to print on a terminal: control characters (escape sequences that retitle the
/// window, clear the screen or fake a line; a report is a file anyone with write access to it
/// could have crafted) and the bidirectional overrides that reorder what is shown are written
/// as Rust escapes (`\u{1b}`), everything else as it is.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The summary as text. Every line passes [`printable`]: names in it (reasons, waves, files,
/// media) come from the report files.
pub(crate) fn render(s: &Summary) -> String {
    let mut out = String::new();
    // `write!` to a String cannot fail.
    let mut line = |text: String| {
        out.push_str(&printable(&text));
        out.push('\n');
    };
    let files = match s.files.len() {
        1 => "1 report".to_owned(),
        n => format!("{n} reports"),
    };
    let when = s
        .time
        .span_ms()
        .map_or_else(String::new, |(a, b)| format!(", {}", span(a, b)));
    line(format!("{files}, {} jobs{when}", s.jobs));
    let mut rate = format!("  wall time {}", seconds(s.time.wall_seconds));
    if let Some(j) = s.time.jobs_per_second {
        let _ = write!(rate, ", {j:.1} jobs/s");
    }
    if let Some(a) = s.time.attempts_per_second {
        let _ = write!(rate, ", {a:.1} calls/s");
    }
    if let Some(p) = s.time.peak_attempts_per_second {
        let _ = write!(rate, " (peak {p} in one second)");
    }
    line(rate);
    if s.files.len() > 1 {
        for f in &s.files {
            line(format!(
                "  {}: {} jobs, {}",
                f.path,
                f.jobs,
                seconds(f.wall_seconds)
            ));
        }
    }
    if s.unreadable_lines > 0 {
        for f in s.files.iter().filter(|f| f.unreadable > 0) {
            let named: Vec<String> = f.unreadable_lines.iter().map(u64::to_string).collect();
            let more = if f.unreadable as usize > named.len() {
                ", ..."
            } else {
                ""
            };
            line(format!(
                "  {}: {} lines are not report lines and were skipped (line {}{more})",
                f.path,
                f.unreadable,
                named.join(", ")
            ));
        }
    }
    for text in runs(s) {
        line(text);
    }

    line(String::new());
    let width = s
        .outcomes
        .0
        .iter()
        .map(|(o, _)| o.len())
        .chain(s.reasons.iter().map(|r| r.reason.chars().count() + 2))
        .max()
        .unwrap_or(0)
        .clamp(16, 60);
    line(format!("{:<width$}  {:>8}  {:>6}", "outcome", "jobs", "%"));
    for (outcome, n) in &s.outcomes.0 {
        line(format!(
            "{outcome:<width$}  {n:>8}  {:>6}",
            percent(*n, s.jobs)
        ));
        for r in s.reasons.iter().filter(|r| &r.outcome == outcome) {
            let reason: String = r.reason.chars().take(width - 2).collect();
            line(format!("  {reason:<w$}  {:>8}", r.jobs, w = width - 2));
        }
    }
    line(format!("{:<width$}  {:>8}", "total", s.jobs));

    line(String::new());
    line(format!("codes sent by medium: {}", inline(&s.delivery)));
    // Both kinds of message: each action's outcomes apart.
    if s.actions.iter().any(|a| a.action != "confirm") {
        for a in &s.actions {
            line(format!(
                "action {}: {} jobs: {}; sent by medium: {}",
                a.action,
                a.jobs,
                inline(&a.outcomes),
                inline(&a.delivery)
            ));
        }
    }
    let waves: Vec<String> = s
        .waves
        .iter()
        .map(|w| {
            let sent = w.outcomes.get("sent").copied().unwrap_or(0);
            format!("{} {} jobs, {sent} sent", w.wave, w.jobs)
        })
        .collect();
    line(format!("waves: {}", waves.join("; ")));
    let doubt = &s.in_doubt;
    if doubt.jobs == 0 {
        line("in doubt: 0 jobs".into());
    } else {
        line(format!(
            "in doubt: {} jobs, {} users ({}); `--list in-doubt` prints them (usernames: personal data)",
            doubt.jobs,
            doubt.users,
            inline(&doubt.causes)
        ));
    }
    line(format!("failed by reason: {}", inline(&s.failed)));

    line(String::new());
    let a = &s.attempts;
    let mut calls = format!("calls: {}", a.total);
    if a.timed > 0 {
        let parts: Vec<String> = a
            .results
            .0
            .iter()
            .map(|(r, n)| format!("{r} {n} ({}%)", percent(*n, a.timed)))
            .collect();
        let _ = write!(calls, ": {}", parts.join(", "));
    }
    if a.timed < a.total {
        let _ = write!(
            calls,
            "; {} without timing (lines from an older version)",
            a.total - a.timed
        );
    }
    line(calls);
    let l = &s.latency_ms;
    if let (Some(p50), Some(p90), Some(p99), Some(max)) = (l.p50, l.p90, l.p99, l.max) {
        line(format!(
            "latency: p50 {}, p90 {}, p99 {}, max {} ({} calls)",
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            l.calls
        ));
    }
    out
}

/// The runs behind the reports, from their `run` records: for each, what ran where, with what
/// limits, and when (none for reports written before the records existed).
pub(crate) fn runs(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for (i, r) in s.runs.iter().enumerate() {
        let run = &r.run;
        let number = if s.runs.len() > 1 {
            format!("run {} of {}", i + 1, s.runs.len())
        } else {
            "run".to_owned()
        };
        let file = if s.files.len() > 1 {
            format!(" ({})", r.file)
        } else {
            String::new()
        };
        let dry = if run.dry_run { ", dry run" } else { "" };
        out.push(format!(
            "{number}{file}: {} (cognito-resend {}){dry}, {}, {}",
            run.command,
            run.version,
            run_when(r),
            jobs_word(r.jobs)
        ));
        for detail in run_details(r) {
            out.push(format!("  {detail}"));
        }
    }
    out
}

/// `2026-11-29 01:30:03 to 01:30:45 UTC`, or how far it is known.
pub(crate) fn run_when(r: &RunSummary) -> String {
    let started = millis(&r.run.started_at);
    match (started, r.ended_at.as_deref().and_then(millis)) {
        (Some(a), Some(b)) => span(a, b),
        (Some(a), None) => format!(
            "started {} UTC, no end recorded (killed, or still running)",
            &span(a, a)[..19]
        ),
        (None, _) => "start not recorded".to_owned(),
    }
}

/// The lines under a run's heading: target, limits, the command line.
pub(crate) fn run_details(r: &RunSummary) -> Vec<String> {
    let run = &r.run;
    let none = || "(none)".to_owned();
    let mut clients = run.client_id.clone().unwrap_or_else(none);
    if !run.allowed_client_ids.is_empty() {
        let _ = write!(
            clients,
            " (also allowed: {})",
            run.allowed_client_ids.join(", ")
        );
    }
    let target = format!(
        "target: {}, region {}, pool {}, client {clients}{}",
        run.target
            .endpoint
            .as_deref()
            .map_or_else(|| "AWS".to_owned(), |e| format!("endpoint {e}")),
        run.target.region.clone().unwrap_or_else(none),
        run.pool_id.clone().unwrap_or_else(none),
        match run.client_secret.as_deref() {
            Some(from) => format!(", client secret from {from}"),
            None => String::new(),
        }
    );
    let rate = |r: Option<f64>| match r {
        None => "-".to_owned(),
        Some(0.0) => "no ceiling".to_owned(),
        Some(r) => format!("{r}/s"),
    };
    let caps = [
        ("max-sends", run.caps.max_sends),
        ("max-sends-per-user", run.caps.max_sends_per_user),
        ("max-sends-per-day", run.caps.max_sends_per_day),
        ("max-sms-per-day", run.caps.max_sms_per_day),
        ("max-email-per-day", run.caps.max_email_per_day),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(name, n)| format!("{name} {n}"))
    .collect::<Vec<_>>();
    let mut limits = format!(
        "ledger {}, cooldown {}; rate {}, invite rate {}",
        if run.target.ledger.is_empty() {
            "-"
        } else {
            &run.target.ledger
        },
        run.cooldown.as_deref().unwrap_or("-"),
        rate(run.rate),
        rate(run.invite_rate),
    );
    if let Some(f) = run.fleet_rate.filter(|f| *f > 0.0) {
        let _ = write!(limits, ", fleet rate {f}/s");
    }
    if let Some(c) = run.concurrency {
        let _ = write!(limits, ", concurrency {c}");
    }
    let _ = write!(
        limits,
        "; caps: {}; wave {}",
        if caps.is_empty() {
            "none".to_owned()
        } else {
            caps.join(", ")
        },
        run.wave.clone().unwrap_or_else(none)
    );
    if run.precheck {
        limits.push_str("; precheck");
    }
    let mut lines = vec![target, limits];
    if !run.args.is_empty() {
        lines.push(format!(
            "command line: cognito-resend {}",
            run.args.join(" ")
        ));
    }
    if let Some(by) = r.stopped_by.as_deref().filter(|by| *by != "end_of_input") {
        lines.push(match &r.stop_detail {
            Some(detail) => format!("stopped by: {by} ({detail})"),
            None => format!("stopped by: {by}"),
        });
    }
    if let Some(n) = r.untouched.filter(|n| *n > 0) {
        lines.push(format!(
            "{} read but not attempted (the run stopped first)",
            jobs_word(n)
        ));
    }
    lines
}

/// `1 job`, `2 jobs`.
fn jobs_word(n: u64) -> String {
    if n == 1 {
        "1 job".to_owned()
    } else {
        format!("{n} jobs")
    }
}

/// Writes the jobs in doubt as CSV: `username,client_id,in_doubt_cause,outcome,source,at,file,
/// user_key` (`user_key` empty for reports written before it existed).
/// A username column first, so the file reads back as backfill input; every cell a spreadsheet
/// would run as a formula is written as `discover` writes it (a `'` in front), which `backfill`
/// reads back, and control characters are escaped as [`printable`] does (a username Cognito
/// accepts has none).
pub(crate) fn in_doubt_csv(s: &Summary, out: impl std::io::Write) -> csv::Result<()> {
    use crate::source::csv::neutralise;
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "username",
        "client_id",
        "in_doubt_cause",
        "outcome",
        "source",
        "at",
        "file",
        "user_key",
    ])?;
    let cell = |text: &str| neutralise(&printable(text)).into_owned();
    for d in s.in_doubt.list.iter().flatten() {
        w.write_record([
            cell(&d.username),
            cell(&d.client_id),
            cell(&d.in_doubt_cause),
            cell(&d.outcome),
            cell(&d.source),
            cell(&d.at),
            cell(&d.file),
            cell(d.user_key.as_deref().unwrap_or_default()),
        ])?;
    }
    w.flush()?;
    Ok(())
}
