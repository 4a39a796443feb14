use super::*;

fn summary(files: &[(&str, &str)], list: bool) -> Summary {
    let mut agg = Aggregator::new();
    for (name, text) in files {
        agg.read(name, text.as_bytes()).unwrap();
    }
    agg.finish(list)
}

const RUN: &str = r#"{"username":"ann","client_id":"c1","outcome":"sent","reason":null,"attempts":2,"delivery":{"medium":"EMAIL","destination":"a***@e***"},"source":"csv:2","at":"2026-01-01T00:00:01.500Z","started_at":"2026-01-01T00:00:00.900Z","calls":[[0,2.5,"throttled"],[400,20.1,"ok"]]}
{"username":"bob","client_id":"c1","outcome":"sent","reason":null,"attempts":3,"delivery":{"medium":"SMS"},"in_doubt":true,"in_doubt_cause":"ambiguous_attempt","source":"csv:3","at":"2026-01-01T00:00:03.000Z","started_at":"2026-01-01T00:00:01.000Z","calls":[[0,10,"transient"],[900,12,"ok"],[1900,8,"ok"]]}
{"username":null,"client_id":null,"outcome":"invalid","reason":"line 4: username is empty","attempts":0,"delivery":null,"source":"csv:4","at":"2026-01-01T00:00:01.000Z"}
{"username":null,"client_id":null,"outcome":"invalid","reason":"line 9: username is empty","attempts":0,"delivery":null,"source":"csv:9","at":"2026-01-01T00:00:01.000Z"}
{"username":"cy","client_id":"c1","outcome":"failed","reason":"attempt_limit","attempts":1,"delivery":null,"source":"csv:5","at":"2026-01-01T00:00:02.000Z","started_at":"2026-01-01T00:00:02.000Z","calls":[[0,30,"permanent"]]}
"#;

#[test]
fn outcomes_reasons_media_doubt_calls_and_latency_add_up() {
    let s = summary(&[("r.jsonl", RUN)], false);
    assert_eq!(s.jobs, 5);
    assert_eq!(
        s.outcomes.0,
        vec![
            ("sent".to_owned(), 2),
            ("invalid".to_owned(), 2),
            ("failed".to_owned(), 1)
        ]
    );
    assert_eq!(
        s.reasons,
        vec![
            ReasonCount {
                outcome: "invalid".into(),
                reason: "username is empty".into(),
                jobs: 2
            },
            ReasonCount {
                outcome: "failed".into(),
                reason: "attempt_limit".into(),
                jobs: 1
            },
        ]
    );
    assert_eq!(s.failed.0, vec![("attempt_limit".to_owned(), 1)]);
    assert_eq!(
        s.delivery.0,
        vec![("EMAIL".to_owned(), 1), ("SMS".to_owned(), 1)]
    );
    assert_eq!((s.in_doubt.jobs, s.in_doubt.users), (1, 1));
    assert!(s.in_doubt.list.is_none(), "no usernames unless asked");
    assert_eq!(s.attempts.total, 6);
    assert_eq!(s.attempts.timed, 6);
    assert_eq!(s.attempts.results.get("ok"), Some(&3));
    assert_eq!(s.attempts.throttled_share, Some(1.0 / 6.0));
    // Calls started at :00.9, :01.3, :01.0, :01.9, :02.9, :02.0: seconds 0, 1 (3), 2 (2).
    assert_eq!(s.time.peak_attempts_per_second, Some(3));
    assert_eq!(s.timeline.bin_seconds, 1);
    assert_eq!(s.timeline.bins, 4);
    let calls_per_bin: Vec<u64> = (0..4)
        .map(|i| s.timeline.attempts.0.iter().map(|(_, v)| v[i]).sum())
        .collect();
    assert_eq!(calls_per_bin, vec![1, 3, 2, 0]);
    assert_eq!(s.time.wall_seconds, 2.1, "from :00.9 to :03.0");
    assert_eq!(s.latency_ms.calls, 6);
    assert_eq!(s.latency_ms.p50, Some(10.0));
    assert_eq!(s.latency_ms.max, Some(30.0));
    let in_histogram: u64 = s
        .latency_ms
        .histogram
        .iter()
        .flat_map(|b| b.calls.0.iter().map(|(_, n)| n))
        .sum();
    assert_eq!(in_histogram, 6);
    // Buckets of 1 ms from the fastest call (2.5 ms) to the 99th percentile (30 ms).
    let h = &s.latency_ms.histogram;
    assert_eq!(h.len(), 28);
    assert_eq!((h[0].above_ms, h[0].le_ms), (2.0, Some(3.0)));
    assert_eq!(h[27].le_ms, Some(30.0));
    let listed = summary(&[("r.jsonl", RUN)], true);
    let list = listed.in_doubt.list.expect("asked for");
    assert_eq!(list[0].username, "bob");
    assert_eq!(list[0].in_doubt_cause, "ambiguous_attempt");
}

#[test]
fn unknown_outcomes_and_waves_are_counted_by_name() {
    let text = r#"{"username":"a","outcome":"capped","attempts":0,"wave":"day-3","at":"2026-01-03T00:00:00Z"}
{"username":"b","outcome":"sent","attempts":1,"wave":"day-1","at":"2026-01-01T00:00:00Z"}
{"username":"c","outcome":"sent","attempts":1,"at":"2026-01-02T00:00:00Z"}
{"username":"d","outcome":"a_future_outcome","attempts":0,"wave":"day-3","at":"2026-01-03T00:00:01Z"}
"#;
    let s = summary(&[("w.jsonl", text)], false);
    let names: Vec<&str> = s.outcomes.0.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["sent", "capped", "a_future_outcome"],
        "known ones in the contract's order, then the rest"
    );
    let waves: Vec<(&str, u64)> = s.waves.iter().map(|w| (w.wave.as_str(), w.jobs)).collect();
    assert_eq!(
        waves,
        [("day-1", 1), (NO_WAVE, 1), ("day-3", 2)],
        "in time order"
    );
    assert_eq!(s.delivery.0, vec![("unknown".to_owned(), 2)]);
    // No timing in these lines: calls are counted, not drawn.
    assert_eq!((s.attempts.total, s.attempts.timed), (2, 0));
    assert_eq!(s.attempts.throttled_share, None);
}

#[test]
fn overlapping_files_count_once_and_gaps_between_runs_not_at_all() {
    let line =
        |at: &str| format!(r#"{{"username":"u","outcome":"cooldown","attempts":0,"at":"{at}"}}"#);
    let a = [line("2026-01-01T00:00:00Z"), line("2026-01-01T00:00:10Z")].join("\n");
    let b = [line("2026-01-01T00:00:05Z"), line("2026-01-01T00:00:20Z")].join("\n");
    let c = [line("2026-01-02T00:00:00Z"), line("2026-01-02T00:00:05Z")].join("\n");
    let s = summary(&[("a", &a), ("b", &b), ("c", &c)], false);
    assert_eq!(s.time.wall_seconds, 25.0);
    assert_eq!(s.time.jobs_per_second, Some(6.0 / 25.0));
    assert_eq!(s.files[1].wall_seconds, 15.0);
    // A day: bins of 15 minutes.
    assert_eq!(s.timeline.bin_seconds, 900);
    let ended: u64 = s.timeline.outcomes.0.iter().flat_map(|(_, v)| v).sum();
    assert_eq!(ended, 6);
}

#[test]
fn lines_that_are_not_report_lines_are_counted_and_named() {
    let text = "{\"outcome\":\"sent\",\"attempts\":1}\nnot json\n\n{\"username\":\"x\"}\n{\"outcome\":\"se";
    let s = summary(&[("cut.jsonl", text)], false);
    assert_eq!(s.jobs, 1);
    assert_eq!(s.unreadable_lines, 3);
    assert_eq!(s.files[0].unreadable_lines, vec![2, 4, 5]);
}

#[test]
fn an_invalid_reason_loses_only_the_place_it_names() {
    for (reason, expected) in [
        ("line 17: username is empty", "username is empty"),
        (
            "lines 4 to 9: record is over 64 KiB",
            "record is over 64 KiB",
        ),
        ("message 1a-2b: not JSON: x", "not JSON: x"),
        (
            "user 12: username contains whitespace",
            "username contains whitespace",
        ),
        ("precheck: CONFIRMED", "precheck: CONFIRMED"),
        (
            "client id not allowed: only ...",
            "client id not allowed: only ...",
        ),
        ("line x: odd", "line x: odd"),
    ] {
        assert_eq!(without_location(reason), expected);
    }
}

#[test]
fn latencies_read_to_a_tenth_of_a_millisecond_not_to_f32_noise() {
    let line = r#"{"username":"a","client_id":"c","outcome":"sent","reason":null,"attempts":1,"delivery":null,"source":"csv:2","at":"2026-01-01T00:00:01.000Z","started_at":"2026-01-01T00:00:00.900Z","calls":[[0,20.8,"ok"]]}"#;
    let s = summary(&[("r.jsonl", line)], false);
    assert_eq!(s.latency_ms.p50, Some(20.8));
    assert_eq!(s.latency_ms.max, Some(20.8));
    let json = serde_json::to_string(&s.latency_ms).unwrap();
    assert!(!json.contains("20.799"), "{json}");
}

/// Two runs appended to one file, each between its `run` and `run_end` records, then a third
/// killed before its end; a record of a later version's kind is neither a job nor unreadable.
const APPENDED: &str = r#"{"kind":"run","run_id":"r1","version":"0.1.0","command":"backfill","args":["backfill","u.csv"],"client_id":"c1","region":"eu-west-1","endpoint":null,"ledger":"/var/l.db","rate":10.0,"caps":{"max_sends":50},"started_at":"2026-01-01T00:00:00.000Z"}
{"username":"ann","client_id":"c1","outcome":"sent","reason":null,"attempts":1,"delivery":{"medium":"email"},"source":"csv:2","at":"2026-01-01T00:00:01.000Z"}
{"kind":"run_end","run_id":"r1","ended_at":"2026-01-01T00:00:02.000Z","jobs":1,"outcomes":{"sent":1},"untouched":0}
{"kind":"run","run_id":"r2","version":"0.1.0","command":"backfill","started_at":"2026-01-02T00:00:00.000Z","wave":"day-3"}
{"kind":"progress","done":1}
{"username":"bob","client_id":"c1","outcome":"cooldown","reason":null,"attempts":0,"delivery":null,"source":"csv:2","at":"2026-01-02T00:00:01.000Z"}
{"username":"cy","client_id":"c1","outcome":"sent","reason":null,"attempts":1,"delivery":{"medium":"SMS"},"source":"csv:3","at":"2026-01-02T00:00:01.000Z"}
{"kind":"run_end","run_id":"r2","ended_at":"2026-01-02T00:00:05.000Z","jobs":2,"outcomes":{"cooldown":1,"sent":1},"untouched":3,"stopped_by":"spend_cap","stop_detail":"--max-sends (limits.max_sends)"}
{"kind":"run","run_id":"r3","version":"0.2.0","command":"consume","started_at":"2026-01-03T00:00:00.000Z"}
{"username":"dee","client_id":"c1","outcome":"sent","reason":null,"attempts":1,"delivery":null,"source":"sqs:m1","at":"2026-01-03T00:00:01.000Z"}
"#;

#[test]
fn each_run_record_opens_its_run_and_its_run_end_closes_it() {
    let s = summary(&[("r.jsonl", APPENDED)], false);
    assert_eq!(s.jobs, 4, "records about runs are no jobs");
    assert_eq!(
        s.unreadable_lines, 0,
        "nor unreadable, a later kind included"
    );
    let runs: Vec<(&str, u64, Option<&str>, Option<u64>)> = s
        .runs
        .iter()
        .map(|r| {
            (
                r.run.run_id.as_str(),
                r.jobs,
                r.ended_at.as_deref(),
                r.untouched,
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            ("r1", 1, Some("2026-01-01T00:00:02.000Z"), Some(0)),
            ("r2", 2, Some("2026-01-02T00:00:05.000Z"), Some(3)),
            ("r3", 1, None, None),
        ]
    );
    let first = &s.runs[0].run;
    assert_eq!(first.target.region.as_deref(), Some("eu-west-1"));
    assert_eq!(first.target.ledger, "/var/l.db");
    assert_eq!(first.caps.max_sends, 50);
    assert_eq!(s.runs[1].run.wave.as_deref(), Some("day-3"));

    let text = super::super::text::render(&s);
    assert!(text.contains("run 1 of 3: backfill (cognito-resend 0.1.0), 2026-01-01 00:00:00 to 00:00:02 UTC, 1 job"), "{text}");
    assert!(text.contains("target: AWS, region eu-west-1"), "{text}");
    assert!(text.contains("caps: max-sends 50"), "{text}");
    assert!(text.contains("3 jobs read but not attempted"), "{text}");
    // What stopped a run, when it was not the end of its input (r1's end says nothing: an
    // earlier version's).
    assert!(
        text.contains("stopped by: spend_cap (--max-sends (limits.max_sends))"),
        "{text}"
    );
    assert_eq!(text.matches("stopped by:").count(), 1, "{text}");
    assert!(
        text.contains("run 3 of 3: consume (cognito-resend 0.2.0), started 2026-01-03 00:00:00 UTC, no end recorded"),
        "{text}"
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["runs"][1]["run_id"], "r2");
    assert_eq!(json["runs"][1]["jobs"], 2);
    assert_eq!(json["runs"][1]["stopped_by"], "spend_cap");
    assert_eq!(
        json["runs"][0]["region"], "eu-west-1",
        "the target flattened"
    );
    let page = super::super::html::page(&s, "now");
    assert!(page.contains("The runs") && page.contains("region eu-west-1"));
}

#[test]
fn a_report_without_run_records_reads_as_before() {
    let s = summary(&[("r.jsonl", RUN)], false);
    assert!(s.runs.is_empty());
    assert_eq!(s.jobs, 5);
    let text = super::super::text::render(&s);
    assert!(
        !text.contains("run:") && !text.contains("target:"),
        "{text}"
    );
    assert!(!super::super::html::page(&s, "now").contains("card runs"));
}

#[test]
fn media_are_counted_in_cognitos_spelling_whatever_the_lines_case() {
    let s = summary(&[("r.jsonl", APPENDED)], false);
    assert_eq!(
        s.delivery.0,
        vec![
            ("EMAIL".to_owned(), 1),
            ("SMS".to_owned(), 1),
            ("unknown".to_owned(), 1)
        ]
    );
}
