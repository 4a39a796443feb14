//! `cognito-resend report`: the summary of real runs' reports checked against what the bundled
//! emulator saw (its record of every send, its request and throttle counters), and the HTML page
//! rendered by headless Chromium to a PNG, which must load without a console message and show
//! its charts.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use cognito_emulator::{Faults, UserSpec, UserStatus};
use serde_json::Value;
use support::*;

/// `cognito-resend report ARGS...`, isolated like every other command of the tests.
async fn report_cmd(args: &[&std::ffi::OsStr]) -> Ran {
    let mut cmd = command("http://127.0.0.1:9");
    cmd.arg("report").args(args);
    run(cmd).await
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

/// The CSV of a backfill: `rows` as usernames, plus one row whose username has a space (invalid).
fn csv_with_an_invalid_row(dir: &Path, name: &str, rows: &[String]) -> std::path::PathBuf {
    let mut text = String::from("username\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    text.push_str("\"not a username\"\n");
    write_file(dir, name, text)
}

fn count(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_of_a_throttled_faulty_backfill_and_its_rerun_matches_the_emulator() {
    // The demo pool's mix (sent, already confirmed, not found), plus users whose code goes by
    // SMS and users with no contact at all (Cognito refuses them: `failed`).
    let sms: Vec<String> = (1..=15).map(|i| format!("sms-{i:03}")).collect();
    let no_contact: Vec<String> = (1..=3).map(|i| format!("mute-{i:03}")).collect();
    let extra = sms
        .iter()
        .map(|u| {
            UserSpec::new(u.clone(), UserStatus::Unconfirmed)
                .with_email(None)
                .with_phone(Some("+15555550123".into()))
        })
        .chain(no_contact.iter().map(|u| {
            UserSpec::new(u.clone(), UserStatus::Unconfirmed)
                .with_email(None)
                .with_phone(None)
        }))
        .collect::<Vec<_>>();
    let pool = pool(300, None, |b| {
        b.users(extra).quota_rps(Some(40)).faults(Faults {
            latency: Duration::from_millis(2),
            // Answers lost after the code went out: the retry sends a second code, and the
            // report must name exactly those users in doubt.
            error_after_rate: 0.03,
            drop_after_rate: 0.01,
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let rows: Vec<String> = pool
        .csv_usernames
        .iter()
        .chain(&sms)
        .chain(&no_contact)
        .cloned()
        .collect();
    let csv1 = csv_with_an_invalid_row(dir.path(), "first.csv", &rows);
    let (r1, r2) = (dir.path().join("r1.jsonl"), dir.path().join("r2.jsonl"));
    let began = Instant::now();
    let mut first = backfill(&pool.emu.endpoint(), &csv1);
    first
        .args(["--rate", "0", "--concurrency", "16", "--max-attempts", "30"])
        .arg("--state")
        .arg(&ledger)
        .arg("--report")
        .arg(&r1);
    let ran = run(first).await;
    assert_eq!(
        ran.code, 3,
        "the users with no contact fail: {}",
        ran.stderr
    );
    // The rerun of the first 40 rows, faults off: sent users are `cooldown`, the rest asked again.
    pool.emu.set_faults(Faults::default());
    let rerun_rows = &pool.csv_usernames[..40];
    let csv2 = csv_with_an_invalid_row(dir.path(), "rerun.csv", rerun_rows);
    let sends_after_first = pool.emu.send_counts();
    let mut second = backfill(&pool.emu.endpoint(), &csv2);
    second
        .args(["--rate", "0"])
        .arg("--state")
        .arg(&ledger)
        .arg("--report")
        .arg(&r2);
    let ran = run(second).await;
    assert_eq!(ran.code, 3, "its invalid row: {}", ran.stderr);
    let measured_wall = began.elapsed().as_secs_f64();
    let sends = pool.emu.send_counts();
    assert_eq!(sends, sends_after_first, "the rerun sent nobody anything");
    let stats = pool.emu.stats();
    assert!(stats.throttled > 0, "the quota throttled: {stats:?}");

    // Every report line that made calls says when, one entry per call; the others say nothing.
    for line in report(&r1).iter().chain(&report(&r2)) {
        let attempts = count(line, "attempts");
        match line.get("calls").and_then(Value::as_array) {
            Some(calls) => {
                assert_eq!(calls.len() as u64, attempts, "{line}");
                assert!(line["started_at"].is_string(), "{line}");
            }
            None => assert_eq!(attempts, 0, "{line}"),
        }
    }

    let ran = report_cmd(&[os("--json"), os(&r1), os(&r2)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).expect("--json prints JSON");

    // Jobs per outcome, from the emulator's record and the pool's ground truth.
    let in_rerun = |set: &HashSet<String>| rerun_rows.iter().filter(|u| set.contains(*u)).count();
    let sent_users: HashSet<String> = sends.keys().cloned().collect();
    let expected: BTreeMap<&str, u64> = [
        ("sent", sends.len() as u64),
        ("already_confirmed", pool.confirmed.len() as u64),
        ("not_found", pool.missing.len() as u64),
        // The rerun asks Cognito nothing it answered in the first run (--recheck-after).
        ("known_confirmed", in_rerun(&pool.confirmed) as u64),
        ("known_missing", in_rerun(&pool.missing) as u64),
        ("cooldown", in_rerun(&sent_users) as u64),
        ("failed", no_contact.len() as u64),
        ("invalid", 2),
    ]
    .into();
    let outcomes = &summary["outcomes"];
    for (outcome, n) in &expected {
        assert_eq!(count(outcomes, outcome), *n, "{outcome}: {outcomes}");
    }
    let jobs = expected.values().sum::<u64>();
    assert_eq!(count(&summary, "jobs"), jobs);
    assert_eq!(
        summary["failed"],
        serde_json::json!({"invalid_parameter": no_contact.len()}),
        "failed by reason"
    );
    // Codes per medium: the SMS users the emulator sent to, and everyone else by email.
    let by_sms = sms.iter().filter(|u| sends.contains_key(*u)).count() as u64;
    assert_eq!(by_sms, sms.len() as u64);
    assert_eq!(
        summary["delivery"],
        serde_json::json!({"EMAIL": sends.len() as u64 - by_sms, "SMS": by_sms})
    );
    assert_eq!(
        summary["waves"][0]["wave"], "(none)",
        "a report without waves is one wave: {}",
        summary["waves"]
    );
    assert_eq!(count(&summary["waves"][0], "jobs"), jobs);

    // Calls: every request the emulator received, and every throttle it answered.
    let attempts = &summary["attempts"];
    assert_eq!(
        count(attempts, "total"),
        stats.requests_by_operation["ResendConfirmationCode"]
    );
    assert_eq!(count(&attempts["results"], "throttled"), stats.throttled);
    let timeline_calls: u64 = summary["timeline"]["attempts"]
        .as_object()
        .expect("attempts per result over time")
        .values()
        .flat_map(|bins| bins.as_array().expect("bins").iter())
        .map(|n| n.as_u64().expect("a count"))
        .sum();
    assert_eq!(timeline_calls, count(attempts, "total"));
    assert_eq!(
        count(&summary["latency_ms"], "calls"),
        count(attempts, "total")
    );

    // Wall time: the two runs' spans, within what the test measured around them.
    let wall = summary["time"]["wall_seconds"].as_f64().expect("wall");
    assert!(
        wall > 0.0 && wall <= measured_wall,
        "{wall} of {measured_wall}"
    );
    let rate = summary["time"]["jobs_per_second"].as_f64().expect("rate");
    assert!((rate - jobs as f64 / wall).abs() < 1e-6 * rate.max(1.0));

    // In doubt: exactly the users the emulator sent two codes, and failed users whose answer
    // was lost (no code went out, but nothing on our side can tell).
    let twice: HashSet<String> = sends
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u.clone())
        .collect();
    assert!(!twice.is_empty(), "the faults made second codes");
    let ran = report_cmd(&[os("--list"), os("in-doubt"), os(&r1), os(&r2)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let mut listed = csv::Reader::from_reader(ran.stdout.as_bytes());
    let header = listed.headers().expect("a header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (user_col, outcome_col) = (col("username"), col("outcome"));
    let rows: Vec<csv::StringRecord> = listed.records().map(|r| r.expect("a row")).collect();
    let sent_in_doubt: HashSet<String> = rows
        .iter()
        .filter(|r| &r[outcome_col] == "sent")
        .map(|r| r[user_col].to_owned())
        .collect();
    assert_eq!(sent_in_doubt, twice);
    for r in rows.iter().filter(|r| &r[outcome_col] != "sent") {
        assert!(no_contact.contains(&r[user_col].to_owned()), "{r:?}");
    }
    assert_eq!(count(&summary["in_doubt"], "jobs"), rows.len() as u64);

    // The plain summary says all that without naming anyone.
    let ran = report_cmd(&[os(&r1), os(&r2)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let text = ran.stdout;
    for needle in [
        format!("{jobs} jobs"),
        format!("in doubt: {} jobs", rows.len()),
        "--list in-doubt".to_owned(),
        "invalid_parameter".to_owned(),
        format!("SMS {by_sms}"),
    ] {
        assert!(text.contains(&needle), "{needle:?} in:\n{text}");
    }
    for user in &rows {
        assert!(!text.contains(&user[user_col]), "no username in:\n{text}");
    }
}

/// The Chromium the tests render with: `COGNITO_RESEND_TEST_CHROMIUM`, else `chromium`.
fn chromium() -> String {
    std::env::var("COGNITO_RESEND_TEST_CHROMIUM")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "chromium".into())
}

/// Pixels of exactly this colour in a decoded RGBA or RGB image.
fn pixels_of(info: &png::OutputInfo, data: &[u8], rgb: [u8; 3]) -> usize {
    let step = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    data.chunks_exact(step).filter(|p| p[..3] == rgb).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_page_is_self_contained_names_nobody_and_renders_in_chromium() {
    let pool = pool(200, None, |b| {
        b.quota_rps(Some(30)).faults(Faults {
            latency: Duration::from_millis(3),
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let r = dir.path().join("r.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "16"])
        .arg("--report")
        .arg(&r);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(pool.emu.stats().throttled > 0, "throttles to show");

    let page = dir.path().join("page.html");
    let ran = report_cmd(&[os("--html"), os(&page), os(&r)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let html = std::fs::read_to_string(&page).expect("the page was written");
    // The run's record names the endpoint it ran against, as text: which environment this was.
    assert!(html.contains(&pool.emu.endpoint()), "the run's target");
    let without_target = html.replace(&pool.emu.endpoint(), "");
    // Self-contained: nothing to fetch, nothing to run.
    for banned in [
        "<script", "http:", "https:", "url(", "@import", "src=", "href=", "<link",
    ] {
        assert!(!without_target.contains(banned), "{banned} in the page");
    }
    for name in &pool.csv_usernames {
        assert!(!html.contains(name.as_str()), "{name} named in the page");
    }
    assert_eq!(html.matches("<svg").count(), 3, "three pictures");

    let png_path = dir.path().join("page.png");
    let profile = dir.path().join("chromium-profile");
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--window-size=1200,1800",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", png_path.display()))
            .arg(format!("file://{}", page.display()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium rendered within 180 s")
    .unwrap_or_else(|e| {
        panic!(
            "headless Chromium ({}) could not be started: {e}. Run the tests with \
             scripts/test.sh, which installs it (Debian package chromium).",
            chromium()
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    // Chromium logs every console message (a blocked load, a CSP violation, a parse error the
    // page reports) as `...:CONSOLE...`; a page with no script should cause none.
    let console: Vec<&str> = stderr.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).expect("the screenshot was written"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut data = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut data).expect("a frame");
    assert_eq!((info.width, info.height), (1200, 1800));
    let data = &data[..info.buffer_size()];
    // The charts are drawn: bars in the colour of `sent` (outcomes) and of throttled calls.
    let sent = pixels_of(&info, data, [0x2a, 0x9d, 0x8f]);
    let throttled = pixels_of(&info, data, [0xe7, 0x6f, 0x51]);
    assert!(sent > 2_000, "sent bars: {sent} pixels");
    assert!(throttled > 50, "throttled bars: {throttled} pixels");
}

/// A report is a file anyone who could write it may have crafted: escape sequences in its
/// fields (a `reason` that retitles the terminal and clears the screen, a newline that fakes a
/// line) reach the terminal escaped, and every cell of `--list in-doubt` — `at` too — is
/// neutralised against spreadsheet formulas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_report_fields_reach_neither_the_terminal_nor_a_spreadsheet_raw() {
    let dir = tempfile::tempdir().unwrap();
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J\nsent 999999 100.0%\u{202e}";
    let line = serde_json::json!({
        "username": "=cmd|' /C calc'!A0",
        "client_id": "c1",
        "outcome": "failed",
        "reason": evil,
        "attempts": 1,
        "in_doubt": true,
        "in_doubt_cause": evil,
        "wave": evil,
        "source": "csv",
        "at": "=HYPERLINK(\"http://127.0.0.1/\",\"x\")",
    });
    let path = write_file(dir.path(), "crafted.jsonl", format!("{line}\n"));

    let ran = report_cmd(&[os(&path)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for bad in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !ran.stdout.contains(bad),
            "{bad:?} printed raw: {:?}",
            ran.stdout
        );
    }
    assert!(
        ran.stdout.contains("\\u{1b}]0;owned"),
        "shown escaped: {}",
        ran.stdout
    );
    assert!(
        !ran.stdout.lines().any(|l| l.starts_with("sent 999999")),
        "a newline in a field fakes no line: {}",
        ran.stdout
    );

    let ran = report_cmd(&[os("--list"), os("in-doubt"), os(&path)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(!ran.stdout.contains('\u{1b}'), "{:?}", ran.stdout);
    let mut rows = csv::Reader::from_reader(ran.stdout.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let row = rows.records().next().expect("one row").unwrap();
    for (name, cell) in headers.iter().zip(row.iter()) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@']),
            "{name} cell {cell:?} would run as a formula"
        );
    }
    let at = headers.iter().position(|h| h == "at").unwrap();
    assert!(row[at].starts_with("'="), "{:?}", &row[at]);
}

/// Each command takes only the flags it reads: a run's flag given to `report` is a usage error
/// (exit 2, before anything is read), and each command's `--help` lists its own flags only.
#[tokio::test]
async fn a_flag_the_command_does_not_read_is_a_usage_error_and_help_lists_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "r.jsonl", "");
    let ran = report_cmd(&[os("--concurrency"), os("5"), os(&file)]).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--concurrency"), "{}", ran.stderr);

    let help = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .arg("--help")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?} --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let backfill = help(&["backfill"]);
    for flag in ["--concurrency", "--state", "--report", "--client-id"] {
        assert!(backfill.contains(flag), "backfill --help lacks {flag}");
    }
    for flag in [
        "--inactive-for",
        "--html",
        "--queue-url",
        "--batch-size",
        "--lambda-margin",
    ] {
        assert!(!backfill.contains(flag), "backfill --help lists {flag}");
    }
    let report = help(&["report"]);
    for flag in ["--concurrency", "--state", "--client-id", "--rate"] {
        assert!(!report.contains(flag), "report --help lists {flag}");
    }
    assert!(report.contains("--config") && report.contains("--log-format"));
    let prune = help(&["ledger", "prune"]);
    assert!(prune.contains("--older-than") && prune.contains("--inactive-for"));
    assert!(
        !prune.contains("--concurrency"),
        "ledger prune --help lists --concurrency"
    );
}

/// The report's `run` record, written by a real backfill against the emulator, read back by
/// `report`: `--json` gives every field as the run had it, the text shows it, a second run
/// `--append`ed to the file is a second run, and the client secret appears nowhere in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_record_round_trips_through_report() {
    const SECRET: &str = "run-record-secret-0123456789abcdef";
    let pool = pool(30, Some(SECRET), |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let secret_file = write_file(dir.path(), "s3cr3t-file", format!("{SECRET}\n"));
    let ledger = dir.path().join("ledger.db");
    let path = dir.path().join("run.jsonl");
    let backfill_with = |extra: &[&str]| {
        let mut cmd = backfill(&pool.emu.endpoint(), &csv);
        cmd.args(["--rate", "25", "--max-sends", "100", "--wave", "w1"])
            .args(["--allow-client-id", "otherclient", "--cooldown", "24h"])
            .arg("--client-secret-file")
            .arg(&secret_file)
            .arg("--state")
            .arg(&ledger)
            .arg("--report")
            .arg(&path)
            .args(extra);
        cmd
    };
    let ran = run(backfill_with(&[])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ran = run(backfill_with(&["--append", "--dry-run"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let file = std::fs::read_to_string(&path).unwrap();
    assert!(
        !file.contains(SECRET),
        "the secret is in the report:\n{file}"
    );
    assert!(
        !file.contains("s3cr3t-file"),
        "the secret file's name is withheld too:\n{file}"
    );
    let lines = report_lines(&path);
    assert_eq!(lines[0]["kind"], "run", "the first line is the run record");
    let jobs = pool.csv_usernames.len() as u64;

    let ran = report_cmd(&[os("--json"), os(&path)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).expect("--json prints JSON");
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let run1 = &runs[0];
    assert_eq!(run1["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(run1["command"], "backfill");
    assert_eq!(run1["client_id"], CLIENT);
    assert_eq!(
        run1["allowed_client_ids"],
        serde_json::json!(["otherclient"])
    );
    assert_eq!(run1["client_secret"], "file");
    assert_eq!(run1["pool_id"], Value::Null);
    assert_eq!(run1["region"], "us-east-1");
    assert!(
        run1["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with(&pool.emu.endpoint())),
        "{run1}"
    );
    assert_eq!(run1["ledger"], ledger.display().to_string());
    assert_eq!(run1["rate"], 25.0);
    assert_eq!(run1["caps"]["max_sends"], 100);
    assert_eq!(run1["wave"], "w1");
    assert_eq!(run1["cooldown"], "24h", "as it was written, not 1day");
    assert_eq!(run1["dry_run"], false);
    assert_eq!(count(run1, "jobs"), jobs);
    let args: Vec<&str> = run1["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "backfill");
    let at = args
        .iter()
        .position(|a| *a == "--client-secret-file")
        .unwrap();
    assert_eq!(args[at + 1], "<redacted>");
    let (started, ended) = (
        run1["started_at"].as_str().expect("started_at"),
        run1["ended_at"].as_str().expect("ended_at"),
    );
    assert!(
        started <= ended && ended.ends_with('Z'),
        "{started} {ended}"
    );
    assert_eq!(run1["stopped_by"], "end_of_input", "{run1}");
    let run2 = &runs[1];
    assert_eq!(run2["dry_run"], true);
    assert_eq!(count(run2, "jobs"), jobs);
    assert_ne!(run1["run_id"], run2["run_id"]);
    assert!(run2["ended_at"].is_string());
    assert_eq!(count(&summary, "jobs"), 2 * jobs, "run records are no jobs");
    assert_eq!(count(&summary, "unreadable_lines"), 0);

    let ran = report_cmd(&[os(&path)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let text = &ran.stdout;
    for needle in [
        &format!(
            "run 1 of 2: backfill (cognito-resend {})",
            env!("CARGO_PKG_VERSION")
        ),
        &format!("client {CLIENT} (also allowed: otherclient)"),
        "region us-east-1",
        &format!("ledger {}", ledger.display()),
        "rate 25/s",
        "caps: max-sends 100",
        "wave w1",
        "run 2 of 2: backfill",
        "dry run",
        "--client-secret-file <redacted>",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    assert!(!text.contains(SECRET));
}
