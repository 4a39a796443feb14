//! The summary as one self-contained HTML page: the text summary's tables, and three pictures
//! (outcomes over time, calls per second with the throttled share, call latency) as inline SVG.
//!
//! Nothing is fetched and nothing runs: no script, no font, no stylesheet or image from anywhere,
//! and a Content-Security-Policy that forbids them, so the page opens the same from a mail
//! attachment, a ticket or an air-gapped laptop. It names nobody (no usernames, no
//! destinations): it is made to be passed on. Every value from the reports goes through maud,
//! which escapes it.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::chart::{self, Bars, Series};
use super::summary::{Counts, NO_WAVE, Summary, rfc3339};
use super::text::{ms, run_details, run_when, seconds, span};

/// The colours of the contract's outcomes; other outcomes take [`OTHER_COLORS`] in turn.
const OUTCOME_COLORS: [(&str, &str); 8] = [
    ("sent", "#2a9d8f"),
    ("already_confirmed", "#8ab17d"),
    ("already_signed_in", "#b5c99a"),
    ("not_found", "#e9c46a"),
    ("cooldown", "#a3b1bd"),
    ("dry_run", "#7fb7d9"),
    ("invalid", "#f4a261"),
    ("failed", "#d62828"),
];
const OTHER_COLORS: [&str; 5] = ["#6d597a", "#b56576", "#355070", "#43aa8b", "#577590"];

/// The colours of the attempt results.
const RESULT_COLORS: [(&str, &str); 4] = [
    ("ok", "#2a9d8f"),
    ("throttled", "#e76f51"),
    ("transient", "#f2cc8f"),
    ("permanent", "#9d0208"),
];
/// The throttled share's line.
const SHARE_COLOR: &str = "#3d405b";

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2433;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 32px; }
h1 { font-size: 22px; margin: 0; }
h2 { font-size: 15px; margin: 0 0 8px; }
.sub { color: #5b6475; margin: 2px 0 18px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(100px, 1fr)); gap: 10px;
  margin-bottom: 16px; }
.kpi { background: #fff; border-radius: 8px; padding: 10px 12px; border-top: 4px solid #c9ced8; }
.kpi b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.kpi span { color: #5b6475; font-size: 12px; }
.kpi.good { border-top-color: #2a9d8f; } .kpi.warn { border-top-color: #e9a23b; }
.kpi.bad { border-top-color: #d62828; }
.card { background: #fff; border-radius: 8px; padding: 14px 16px; margin-bottom: 14px; }
.card p.note { color: #5b6475; margin: 4px 0 0; font-size: 12px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font-size: 11px; fill: #5b6475; }
svg.chart .grid line { stroke: #e3e6ec; }
svg.chart .axis line { stroke: #9aa3b2; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 12px; color: #38404f; margin-top: 4px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px;
  vertical-align: -1px; }
.line.sw { height: 3px; vertical-align: 3px; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 14px;
  margin-bottom: 14px; }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; background: #eef0f4; padding: 0 3px;
  border-radius: 3px; }
.tables .card { margin: 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #edf0f4; vertical-align: top; }
th { font-size: 12px; color: #5b6475; font-weight: 600; }
td.n, th.n { text-align: right; white-space: nowrap; }
tr.reason td { color: #5b6475; font-size: 12px; }
tr.reason td:first-child { padding-left: 24px; }
tr.total td { font-weight: 600; border-bottom: 0; }
footer { color: #7a8294; font-size: 12px; margin-top: 16px; }
.runs td { font-size: 12px; } .runs code { word-break: break-all; }
"#;

/// The colour of `outcome`; `others` are the outcomes outside the contract, in order.
fn outcome_color<'a>(outcome: &str, others: &[&str]) -> &'a str {
    OUTCOME_COLORS
        .iter()
        .find(|(o, _)| *o == outcome)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| {
            let i = others.iter().position(|o| *o == outcome).unwrap_or(0);
            OTHER_COLORS[i % OTHER_COLORS.len()]
        })
}

fn result_color(result: &str) -> &'static str {
    RESULT_COLORS
        .iter()
        .find(|(r, _)| *r == result)
        .map_or("#888888", |(_, c)| *c)
}

fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        "-".into()
    } else {
        format!("{:.1} %", n as f64 * 100.0 / total as f64)
    }
}

/// A legend entry.
fn swatch(color: &str, name: &str) -> Markup {
    html! { span { span class="sw" style={ "background:" (color) } {} (name) } }
}

/// A two-column table of counts with a share column.
fn counts_table(head: &str, unit: &str, counts: &Counts) -> Markup {
    let total: u64 = counts.0.iter().map(|(_, n)| n).sum();
    html! {
        table {
            tr { th { (head) } th class="n" { (unit) } th class="n" { "%" } }
            @for (name, v) in &counts.0 {
                tr { td { (name) } td class="n" { (v) } td class="n" { (percent(*v, total)) } }
            }
            @if counts.0.is_empty() {
                tr { td colspan="3" { "none" } }
            }
        }
    }
}

/// The labels under a time axis: about eight, at bin starts, as UTC clock times (with the day
/// when the run spans days).
fn time_labels(
    start_ms: i64,
    bin_seconds: u64,
    bins: usize,
) -> (Vec<String>, Vec<(usize, String)>) {
    let span_days = bins as u64 * bin_seconds > 86_400;
    let label = |i: usize| {
        let t = rfc3339(start_ms + (i as u64 * bin_seconds * 1000) as i64);
        // `2026-11-29T01:20:52.000Z`
        match (span_days, bin_seconds < 60) {
            (true, _) => format!("{} {}", &t[5..10], &t[11..16]),
            (false, true) => t[11..19].to_owned(),
            (false, false) => t[11..16].to_owned(),
        }
    };
    let names = (0..bins).map(label).collect();
    let every = bins.div_ceil(8).max(1);
    let labels = (0..bins).step_by(every).map(|i| (i, label(i))).collect();
    (names, labels)
}

/// The page.
pub(crate) fn page(s: &Summary, generated_at: &str) -> String {
    let outcome_names: Vec<&str> = s.outcomes.0.iter().map(|(o, _)| o.as_str()).collect();
    let known: Vec<&str> = OUTCOME_COLORS.iter().map(|(o, _)| *o).collect();
    let others: Vec<&str> = outcome_names
        .iter()
        .copied()
        .filter(|o| !known.contains(o))
        .collect();
    let count = |o: &str| s.outcomes.get(o).copied().unwrap_or(0);
    let tl = &s.timeline;
    let (bin_names, x_labels) = time_labels(tl.start_ms, tl.bin_seconds, tl.bins);
    let per = if tl.bin_seconds == 1 {
        "second".to_owned()
    } else {
        format!("{} s", tl.bin_seconds)
    };

    let outcomes_chart = chart::bars(&Bars {
        series: tl
            .outcomes
            .0
            .iter()
            .map(|(o, v)| Series {
                name: o,
                color: outcome_color(o, &others),
                values: v,
            })
            .collect(),
        bin_names: bin_names.clone(),
        x_labels: x_labels.clone(),
        scale: 1.0,
        unit: "",
        share: None,
        title: "Jobs per outcome over time",
    });

    let shares: Vec<Option<f64>> = (0..tl.bins)
        .map(|i| {
            let all: u64 = tl.attempts.0.iter().map(|(_, v)| v[i]).sum();
            let throttled = tl.attempts.get("throttled").map_or(0, |v| v[i]);
            (all > 0).then(|| throttled as f64 / all as f64)
        })
        .collect();
    let attempts_chart = (s.attempts.timed > 0).then(|| {
        chart::bars(&Bars {
            series: tl
                .attempts
                .0
                .iter()
                .map(|(r, v)| Series {
                    name: r,
                    color: result_color(r),
                    values: v,
                })
                .collect(),
            bin_names: bin_names.clone(),
            x_labels: x_labels.clone(),
            scale: 1.0 / tl.bin_seconds as f64,
            unit: "/s",
            share: Some(("throttled share", SHARE_COLOR, shares)),
            title: "Calls per second by result, and the share throttled",
        })
    });

    let hist = &s.latency_ms.histogram;
    let latency_chart = (!hist.is_empty()).then(|| {
        let results: Vec<&str> = {
            let mut r: Vec<&str> = Vec::new();
            for b in hist {
                for (name, _) in &b.calls.0 {
                    if !r.contains(&name.as_str()) {
                        r.push(name);
                    }
                }
            }
            r.sort_by_key(|name| {
                super::summary::RESULTS
                    .iter()
                    .position(|x| x == name)
                    .unwrap_or(usize::MAX)
            });
            r
        };
        let columns: Vec<Vec<u64>> = results
            .iter()
            .map(|r| {
                hist.iter()
                    .map(|b| b.calls.get(r).copied().unwrap_or(0))
                    .collect()
            })
            .collect();
        let names: Vec<String> = hist
            .iter()
            .map(|b| match b.le_ms {
                Some(le) => format!("{} to {}", ms(b.above_ms), ms(le)),
                None => format!("over {}", ms(b.above_ms)),
            })
            .collect();
        let every = hist.len().div_ceil(8).max(1);
        let labels = hist
            .iter()
            .enumerate()
            .filter(|(i, b)| i % every == 0 || b.le_ms.is_none())
            .map(|(i, b)| match b.le_ms {
                Some(le) => (i, ms(le)),
                None => (i, format!("> {}", ms(b.above_ms))),
            })
            .collect();
        chart::bars(&Bars {
            series: results
                .iter()
                .zip(&columns)
                .map(|(r, v)| Series {
                    name: r,
                    color: result_color(r),
                    values: v,
                })
                .collect(),
            bin_names: names,
            x_labels: labels,
            scale: 1.0,
            unit: "",
            share: None,
            title: "Calls per latency bucket, by result",
        })
    });

    let files = match s.files.len() {
        1 => s.files[0].path.clone(),
        n => format!("{n} reports"),
    };
    let when = s
        .time
        .span_ms()
        .map_or_else(|| "no timestamps".into(), |(a, b)| span(a, b));
    let sent = count("sent");
    let failed = count("failed");
    let invalid = count("invalid");
    let doubt = s.in_doubt.jobs;
    let throttled = s
        .attempts
        .throttled_share
        .map_or("-".into(), |t| format!("{:.1} %", t * 100.0));
    let l = &s.latency_ms;

    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "cognito-resend report: " (files) }
                style { (PreEscaped(STYLE)) }
            }
            body { main {
                h1 { "cognito-resend report" }
                p class="sub" { (files) " · " (when) " · wall time " (seconds(s.time.wall_seconds)) }
                section class="kpis" {
                    div class="kpi" { b { (s.jobs) } span { "jobs" } }
                    div class="kpi good" { b { (sent) } span { "codes sent" } }
                    div.kpi.warn[doubt > 0] { b { (doubt) } span { "in doubt" } }
                    div.kpi.bad[failed > 0] { b { (failed) } span { "failed" } }
                    div.kpi.warn[invalid > 0] { b { (invalid) } span { "invalid" } }
                    div class="kpi" { b { (seconds(s.time.wall_seconds)) } span { "wall time" } }
                    div class="kpi" {
                        b { (s.time.jobs_per_second.map_or("-".into(), |r| format!("{r:.1}"))) }
                        span { "jobs/s" }
                    }
                    div class="kpi" {
                        b { (s.time.attempts_per_second.map_or("-".into(), |r| format!("{r:.1}"))) }
                        span { "calls/s"
                            @if let Some(p) = s.time.peak_attempts_per_second { ", peak " (p) } }
                    }
                    div class="kpi" { b { (throttled) } span { "of calls throttled" } }
                }
                @if !s.runs.is_empty() {
                    section class="card runs" {
                        h2 { @if s.runs.len() == 1 { "The run" } @else { "The runs" } }
                        table {
                            tr { th { "run" } th { "when" } th class="n" { "jobs" } th { "target and settings" } }
                            @for r in &s.runs {
                                tr {
                                    td {
                                        b { (r.run.command) } br;
                                        "cognito-resend " (r.run.version)
                                        @if r.run.dry_run { br; "dry run" }
                                        @if s.files.len() > 1 { br; (r.file) }
                                    }
                                    td { (run_when(r)) }
                                    td class="n" { (r.jobs) }
                                    td {
                                        @for detail in run_details(r) {
                                            @if let Some(line) = detail.strip_prefix("command line: ") {
                                                div { code { (line) } }
                                            } @else {
                                                div { (detail) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                section class="card" {
                    h2 { "Outcomes over time" }
                    (outcomes_chart)
                    div class="legend" {
                        @for o in &outcome_names { (swatch(outcome_color(o, &others), o)) }
                        span { "jobs per " (per) ", by when they ended (UTC)" }
                    }
                }
                section class="card" {
                    h2 { "Calls per second, and the throttled share" }
                    @if let Some(c) = &attempts_chart {
                        (c)
                        div class="legend" {
                            @for (r, _) in &tl.attempts.0 { (swatch(result_color(r), r)) }
                            span { span class="sw line" style={ "background:" (SHARE_COLOR) } {} "throttled share (right axis)" }
                            span {
                                "calls started per second"
                                @if tl.bin_seconds > 1 { ", averaged over " (per) }
                            }
                        }
                    } @else {
                        p class="note" { "These reports carry no call timing (written by a version before it did)." }
                    }
                }
                section class="card" {
                    h2 { "Call latency" }
                    @if let Some(c) = &latency_chart {
                        (c)
                        div class="legend" {
                            @if let (Some(p50), Some(p90), Some(p99), Some(max)) = (l.p50, l.p90, l.p99, l.max) {
                                span { "p50 " (ms(p50)) " · p90 " (ms(p90)) " · p99 " (ms(p99)) " · max " (ms(max)) " · " (l.calls) " calls" }
                            }
                        }
                    } @else {
                        p class="note" { "These reports carry no call timing." }
                    }
                }
                section class="tables" {
                    div class="card" {
                        h2 { "Jobs per outcome and reason" }
                        table {
                            tr { th { "outcome" } th class="n" { "jobs" } th class="n" { "%" } }
                            @for (o, v) in &s.outcomes.0 {
                                tr {
                                    td { (swatch(outcome_color(o, &others), o)) }
                                    td class="n" { (v) } td class="n" { (percent(*v, s.jobs)) }
                                }
                                @for r in s.reasons.iter().filter(|r| &r.outcome == o) {
                                    tr class="reason" { td { (r.reason) } td class="n" { (r.jobs) } td {} }
                                }
                            }
                            tr class="total" { td { "total" } td class="n" { (s.jobs) } td {} }
                        }
                    }
                    div class="card" {
                        h2 { "Failed, by reason" }
                        (counts_table("reason", "jobs", &s.failed))
                        h2 style="margin-top:14px" { "In doubt, by cause" }
                        (counts_table("cause", "jobs", &s.in_doubt.causes))
                        p class="note" {
                            (s.in_doubt.users) " users. Who they are is not in this page: "
                            code { "cognito-resend report --list in-doubt" } " prints them."
                        }
                    }
                    div class="card" {
                        h2 { "Codes sent, by medium" }
                        (counts_table("medium", "codes", &s.delivery))
                        h2 style="margin-top:14px" { "Calls, by result" }
                        (counts_table("result", "calls", &s.attempts.results))
                        @if s.attempts.timed < s.attempts.total {
                            p class="note" { (s.attempts.total - s.attempts.timed) " calls without timing." }
                        }
                    }
                }
                @if s.actions.iter().any(|a| a.action != "confirm") {
                    section class="card" {
                        h2 { "Actions" }
                        table {
                            tr {
                                th { "action" } th class="n" { "jobs" }
                                @for o in &outcome_names { th class="n" { (o) } }
                            }
                            @for a in &s.actions {
                                tr {
                                    td { (a.action) } td class="n" { (a.jobs) }
                                    @for o in &outcome_names {
                                        td class="n" { (a.outcomes.get(o).copied().unwrap_or(0)) }
                                    }
                                }
                            }
                        }
                        p class="note" { "confirm: a new confirmation code (ResendConfirmationCode); invite: the invitation again (AdminCreateUser RESEND)." }
                    }
                }
                section class="card" {
                    h2 { "Waves" }
                    table {
                        tr {
                            th { "wave" } th class="n" { "jobs" }
                            @for o in &outcome_names { th class="n" { (o) } }
                        }
                        @for w in &s.waves {
                            tr {
                                td { (w.wave) } td class="n" { (w.jobs) }
                                @for o in &outcome_names {
                                    td class="n" { (w.outcomes.get(o).copied().unwrap_or(0)) }
                                }
                            }
                        }
                    }
                    @if s.waves.len() == 1 && s.waves[0].wave == NO_WAVE {
                        p class="note" { "The runs named no wave (--wave)." }
                    }
                }
                section class="card" {
                    h2 { "Reports" }
                    table {
                        tr { th { "file" } th class="n" { "jobs" } th { "from" } th { "to" } th class="n" { "wall time" } th class="n" { "lines skipped" } }
                        @for f in &s.files {
                            tr {
                                td { (f.path) } td class="n" { (f.jobs) }
                                td { (f.first.as_deref().unwrap_or("-")) } td { (f.last.as_deref().unwrap_or("-")) }
                                td class="n" { (seconds(f.wall_seconds)) } td class="n" { (f.unreadable) }
                            }
                        }
                    }
                }
                footer {
                    "Made by cognito-resend report on " (generated_at)
                    ". Times are UTC. This page names nobody and loads nothing: no script, no font, nothing from the network."
                }
            } }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary::Aggregator;

    #[test]
    fn the_page_escapes_what_the_reports_hold_and_references_nothing_outside() {
        let text = r#"{"username":"alice","client_id":"c","outcome":"failed","reason":"<script>alert(1)</script>","attempts":1,"wave":"<b>w</b>","source":"csv:2","at":"2026-01-01T00:00:01.000Z","started_at":"2026-01-01T00:00:00.500Z","calls":[[0,12.5,"throttled"]],"in_doubt":true,"in_doubt_cause":"ambiguous_attempt"}
{"username":"bob","client_id":"c","outcome":"capped","attempts":0,"source":"csv:3","at":"2026-01-01T00:00:02.000Z"}
"#;
        let mut agg = Aggregator::new();
        agg.read("https://x/<r>.jsonl", text.as_bytes()).unwrap();
        let html = page(&agg.finish(true), "now");
        for banned in ["<script", "<b>w", "alice", "bob", "<r>"] {
            assert!(!html.contains(banned), "{banned} in the page");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("capped"),
            "an outcome of a later version shows"
        );
        assert_eq!(html.matches("<svg").count(), 3);
        // Nothing to fetch: no reference out of the page but the (escaped) file name.
        let without_name = html.replace("https://x/&lt;r&gt;.jsonl", "");
        for banned in ["http:", "https:", "src=", "href=", "url(", "@import"] {
            assert!(!without_name.contains(banned), "{banned} in the page");
        }
    }
}
