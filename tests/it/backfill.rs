//! `backfill` end to end: the real binary, through the real AWS SDK, against the bundled Cognito
//! emulator over HTTP. Ground truth is what the emulator recorded.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use cognito_emulator::{Faults, UserSpec, UserStatus};
use support::*;

fn count(report: &[serde_json::Value], outcome: &str) -> usize {
    report.iter().filter(|l| l["outcome"] == outcome).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_pool_sends_each_unconfirmed_user_exactly_once_and_everything_adds_up() {
    let pool = pool(1_500, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "32"])
        .arg("--report")
        .arg(&report_path);
    let (metrics, code, stderr) = run_and_scrape(cmd).await;
    assert_eq!(code, 0, "stderr:\n{stderr}");

    // Ground truth: every UNCONFIRMED user got exactly one code, nobody else got any.
    let sends = pool.emu.send_counts();
    for u in &pool.unconfirmed {
        assert_eq!(sends.get(u), Some(&1), "{u} should get exactly one code");
    }
    assert_eq!(
        sends.len(),
        pool.unconfirmed.len(),
        "only UNCONFIRMED users get codes"
    );

    // The report agrees with it, line for line.
    let report = report(&report_path);
    assert_eq!(report.len(), pool.csv_usernames.len(), "one line per row");
    assert_eq!(users_with(&report, "sent"), pool.unconfirmed);
    assert_eq!(users_with(&report, "already_confirmed"), pool.confirmed);
    assert_eq!(users_with(&report, "not_found"), pool.missing);
    for line in report.iter().filter(|l| l["outcome"] == "sent") {
        assert_eq!(line["delivery"]["medium"], "EMAIL");
        assert!(
            line["delivery"]["destination"]
                .as_str()
                .unwrap()
                .contains("***")
        );
        assert_eq!(line["client_id"], CLIENT);
        assert!(line["source"].as_str().unwrap().starts_with("csv:"));
        assert!(line["at"].as_str().unwrap().ends_with('Z'));
    }

    // And so do the metrics.
    let jobs = |outcome: &str| {
        sample(
            &metrics,
            "cognito_resend_jobs_total",
            &[
                ("source", "csv"),
                ("action", "confirm"),
                ("outcome", outcome),
            ],
        )
        .unwrap_or_else(|| panic!("jobs_total for {outcome} in:\n{metrics}"))
    };
    assert_eq!(jobs("sent") as usize, pool.unconfirmed.len());
    assert_eq!(jobs("already_confirmed") as usize, pool.confirmed.len());
    assert_eq!(jobs("not_found") as usize, pool.missing.len());
    assert_eq!(jobs("failed"), 0.0);
    assert_eq!(jobs("invalid"), 0.0);
    let ok = sample(
        &metrics,
        "cognito_resend_attempts_total",
        &[("action", "confirm"), ("result", "ok")],
    )
    .unwrap();
    assert_eq!(ok as usize, pool.csv_usernames.len());
    assert_eq!(
        pool.emu.stats().requests_total as usize,
        pool.csv_usernames.len()
    );
    let observed = sample(
        &metrics,
        "cognito_resend_request_duration_seconds_count",
        &[("action", "confirm")],
    )
    .unwrap();
    assert_eq!(observed as usize, pool.csv_usernames.len());
    assert_eq!(sample(&metrics, "cognito_resend_in_flight", &[]), Some(0.0));
    // `--rate 0` sets no ceiling, but the controller always has a rate (it slow-starts from
    // 10/s and follows the quota), and the gauge shows it.
    let limit = sample(
        &metrics,
        "cognito_resend_rate_limit_per_second",
        &[("action", "confirm")],
    )
    .unwrap();
    assert!(
        limit >= 10.0 && limit.is_finite(),
        "rate limit gauge {limit}"
    );
    promtool_check(&metrics);

    // No username in any label (they are personal data).
    for u in pool.unconfirmed.iter().take(50) {
        assert!(!metrics.contains(u.as_str()), "metrics mention {u}");
    }
    assert!(
        stderr.contains("backfill:") && stderr.contains("jobs/s"),
        "summary:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_hash_is_accepted_and_a_wrong_secret_stops_early() {
    const SECRET: &str = "correct-horse-battery-staple-0123456789";
    let pool = pool(300, Some(SECRET), |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let secret_file = write_file(dir.path(), "secret", format!("{SECRET}\n"));
    let report_path = dir.path().join("report.jsonl");

    // The right secret, from a file: everyone sent, each call with a SecretHash. Logged at
    // the most verbose level, so the grep below covers every log line we can write.
    let ledger = dir.path().join("right.db");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "-vv"]);
    cmd.arg("--state").arg(&ledger);
    cmd.arg("--client-secret-file").arg(&secret_file);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let right_stderr = ran.stderr.clone();
    let sends = pool.emu.sends();
    assert_eq!(sends.len(), pool.unconfirmed.len());
    assert!(sends.iter().all(|s| s.secret_hash_given));

    // A wrong secret, from the environment: stopped early, exit 1, nothing sent, most rows untouched.
    let wrong = "wrong-secret-value-must-not-leak";
    let before = pool.emu.stats().requests_total;
    let wrong_report = dir.path().join("wrong.jsonl");
    let mut cmd = command(&pool.emu.endpoint());
    cmd.env("COGNITO_RESEND_CLIENT_SECRET", wrong);
    cmd.arg("backfill").arg(&csv).args([
        "--client-id",
        CLIENT,
        "--rate",
        "0",
        "--concurrency",
        "4",
    ]);
    cmd.arg("--report").arg(&wrong_report).arg("-v");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("NotAuthorizedException"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(CLIENT),
        "the message names the client id: {}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("secret"),
        "the message names the likely fix: {}",
        ran.stderr
    );
    assert_eq!(
        pool.emu.sends().len(),
        pool.unconfirmed.len(),
        "nothing more sent"
    );
    let calls = pool.emu.stats().requests_total - before;
    assert!(
        calls <= 3 + 4,
        "stops after 3 in a row (plus calls already in flight), made {calls}"
    );
    let lines = report(&wrong_report);
    assert_eq!(
        lines.len() as u64,
        calls,
        "only attempted rows have outcomes"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["outcome"] == "failed" && l["reason"] == "not_authorized")
    );

    // The secret is nowhere: logs, report, check output.
    let mut check = command(&pool.emu.endpoint());
    check
        .env("COGNITO_RESEND_CLIENT_SECRET", wrong)
        .arg("check");
    let checked = run(check).await;
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(checked.stdout.contains("<redacted>"));
    let mut check = command(&pool.emu.endpoint());
    check
        .arg("check")
        .arg("--client-secret-file")
        .arg(&secret_file);
    let checked_file = run(check).await;
    // The ledger file and its write-ahead log, as bytes.
    let mut ledger_bytes = Vec::new();
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", ledger.display());
        ledger_bytes.extend(std::fs::read(&path).unwrap_or_default());
    }
    assert!(!ledger_bytes.is_empty());
    let ledger_text = String::from_utf8_lossy(&ledger_bytes).into_owned();
    for text in [
        &ledger_text,
        &right_stderr,
        &ran.stderr,
        &ran.stdout,
        &std::fs::read_to_string(&wrong_report).unwrap(),
        &std::fs::read_to_string(&report_path).unwrap(),
        &checked.stdout,
        &checked.stderr,
        &checked_file.stdout,
        &checked_file.stderr,
    ] {
        assert!(
            !text.contains(wrong) && !text.contains(SECRET),
            "a secret leaked into:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fields_arrive_as_given_in_the_csv() {
    let emu = emulator_with(
        vec![
            UserSpec::new("ana", UserStatus::Unconfirmed),
            UserSpec::new("bo", UserStatus::Unconfirmed),
        ],
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(
        dir.path(),
        "in.csv",
        "Username,client_metadata.campaign,client_metadata.Locale,analytics_endpoint_id,encoded_data,ip_address,status\n\
         ana,spring-2026,pt-BR,endpoint-1,ZW5jb2RlZA==,198.51.100.7,UNCONFIRMED\n\
         bo,,,,,,UNCONFIRMED\n",
    );
    let cmd = backfill(&emu.endpoint(), &csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let sends = emu.sends();
    let ana = sends
        .iter()
        .find(|s| s.username == "ana")
        .expect("ana was sent a code");
    assert_eq!(
        ana.client_metadata,
        BTreeMap::from([
            ("campaign".to_owned(), "spring-2026".to_owned()),
            ("Locale".to_owned(), "pt-BR".to_owned())
        ])
    );
    assert_eq!(ana.analytics_endpoint_id.as_deref(), Some("endpoint-1"));
    assert_eq!(ana.encoded_data.as_deref(), Some("ZW5jb2RlZA=="));
    assert_eq!(ana.ip_address.as_deref(), Some("198.51.100.7"));
    assert_eq!(ana.client_id, CLIENT);
    let bo = sends
        .iter()
        .find(|s| s.username == "bo")
        .expect("bo was sent a code");
    assert!(bo.client_metadata.is_empty());
    assert_eq!(bo.analytics_endpoint_id, None);
    assert_eq!(
        (bo.encoded_data.as_deref(), bo.ip_address.as_deref()),
        (None, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_never_exceeds_the_semaphore_and_reaches_it() {
    let pool = pool(200, None, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(60),
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "7"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.emu.stats().max_in_flight,
        7,
        "at most 7 in flight, and 7 reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_without_a_client_limit_still_sends_everyone_exactly_once() {
    let pool = pool(2_000, None, |b| b.quota_rps(Some(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "16"]);
    cmd.arg("--report").arg(&report_path);
    let (metrics, code, stderr) = run_and_scrape(cmd).await;
    assert_eq!(code, 0, "{stderr}");
    let sends = pool.emu.send_counts();
    assert_eq!(sends.len(), pool.unconfirmed.len());
    assert!(sends.values().all(|&n| n == 1), "nobody got two codes");
    let throttled = sample(
        &metrics,
        "cognito_resend_attempts_total",
        &[("action", "confirm"), ("result", "throttled")],
    )
    .unwrap();
    assert!(throttled > 0.0, "the emulator throttled and we counted it");
    assert_eq!(
        throttled as u64,
        pool.emu.stats().throttled,
        "every throttle counted once"
    );
    let rate = sample(
        &metrics,
        "cognito_resend_rate_limit_per_second",
        &[("action", "confirm")],
    )
    .unwrap();
    assert!(rate > 0.0, "the limiter engaged after throttling: {rate}");
    let report = report(&report_path);
    assert_eq!(report.len(), pool.csv_usernames.len());
    assert_eq!(count(&report, "failed"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_below_the_quota_is_never_throttled_and_progress_is_logged() {
    // 480 calls at 40/s: 12 s, long enough for one progress line (every 10 s off a terminal).
    let pool = pool(480, None, |b| b.quota_rps(Some(50))).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "40", "--concurrency", "16"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(pool.emu.stats().throttled, 0);
    assert_eq!(pool.emu.send_counts().len(), pool.unconfirmed.len());
    let progress = ran
        .stderr
        .lines()
        .find(|l| l.contains("progress:"))
        .unwrap_or_else(|| panic!("a progress line: {}", ran.stderr));
    assert!(
        progress.contains("/480 jobs") && progress.contains("sent="),
        "{progress}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_and_dropped_connections_are_retried_to_exactly_once() {
    let pool = pool(1_000, None, |b| {
        b.faults(Faults {
            error_rate: 0.05,
            drop_rate: 0.01,
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "16"]);
    cmd.args(["--initial-backoff", "10ms", "--max-backoff", "100ms"]);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats = pool.emu.stats();
    assert!(
        stats.errors_injected > 0 && stats.connections_dropped > 0,
        "{stats:?}"
    );
    let sends = pool.emu.send_counts();
    assert_eq!(sends.len(), pool.unconfirmed.len());
    assert!(sends.values().all(|&n| n == 1));
    let report = report(&report_path);
    assert_eq!(users_with(&report, "sent"), pool.unconfirmed);
    let retried = report
        .iter()
        .filter(|l| l["attempts"].as_u64().unwrap() > 1)
        .count();
    assert!(retried > 0, "some jobs needed a retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_email_quota_stops_the_run_with_advice() {
    let users: Vec<_> = (0..400)
        .map(|i| UserSpec::new(format!("quota-{i:04}"), UserStatus::Unconfirmed))
        .collect();
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let emu = emulator_with(users, |b| b.email_quota(Some(100))).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &names);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "4"]);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("SES"),
        "says to configure SES: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains(CLIENT), "{}", ran.stderr);
    let stats = emu.stats();
    assert_eq!(stats.sends_total, 100);
    // The first quota error stops new calls; only calls already in flight can follow it.
    let after = stats.requests_total - 100;
    assert!(
        (1..=4).contains(&after),
        "{after} calls after the quota ran out"
    );
    let report = report(&report_path);
    assert_eq!(
        report.len() as u64,
        stats.requests_total,
        "untouched rows have no outcome"
    );
    assert_eq!(count(&report, "sent"), 100);
    assert!(
        report
            .iter()
            .filter(|l| l["outcome"] == "failed")
            .all(|l| l["reason"] == "email_quota")
    );
    assert!(ran.stderr.contains("not attempted"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_rows_are_invalid_with_their_line_and_the_rest_is_processed() {
    let emu = emulator_with(
        ["r1", "r2", "r3"]
            .map(|u| UserSpec::new(u, UserStatus::Unconfirmed))
            .to_vec(),
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = b"username,email\nr1,a@x\n,blank@x\n".to_vec();
    text.extend_from_slice(format!("{},long@x\n", "y".repeat(129)).as_bytes());
    text.extend_from_slice(b"r2,b@x\nbad\xffname,c@x\nonly-one-field\nr3,c@x,extra\nr3,c@x\n");
    // An unbalanced quote: the rest of the file becomes one record, and the message says why.
    text.extend_from_slice(b"\"r4,d@x\nr5,e@x\n");
    let csv = write_file(dir.path(), "in.csv", text);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "finished with invalid rows: {}", ran.stderr);
    let report = report(&report_path);
    let invalid: BTreeMap<String, String> = report
        .iter()
        .filter(|l| l["outcome"] == "invalid")
        .map(|l| {
            (
                l["source"].as_str().unwrap().to_owned(),
                l["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        invalid.keys().cloned().collect::<Vec<_>>(),
        ["csv:10", "csv:3", "csv:4", "csv:6", "csv:7", "csv:8"]
    );
    assert!(
        invalid["csv:10"].contains("unbalanced quote"),
        "{}",
        invalid["csv:10"]
    );
    assert!(invalid["csv:3"].contains("empty"));
    assert!(invalid["csv:4"].contains("129"));
    assert!(invalid["csv:6"].contains("UTF-8"));
    assert!(invalid["csv:7"].contains("field count"));
    assert!(invalid["csv:8"].contains("field count"));
    assert_eq!(users_with(&report, "sent").len(), 3, "r1, r2, r3 all sent");
    for (source, reason) in &invalid {
        assert!(
            ran.stderr.contains(reason.as_str()),
            "{source} logged: {}",
            ran.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_drain_in_flight_calls_and_exit_130_or_143() {
    let pool = pool(400, None, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(300),
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    for (signal, expected) in [("INT", 130), ("TERM", 143)] {
        let before = pool.emu.stats().requests_total;
        let report_path = dir.path().join(format!("{signal}.jsonl"));
        let mut cmd = backfill(&pool.emu.endpoint(), &csv);
        cmd.args(["--rate", "0", "--concurrency", "8"]);
        cmd.arg("--report").arg(&report_path);
        let running = Running::spawn(cmd);
        // Wait until some calls have been made, then signal.
        eventually(
            "20 calls",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || pool.emu.stats().requests_total >= before + 20,
        )
        .await;
        running.signal(signal);
        let (code, stderr) = running.wait(Duration::from_secs(40)).await;
        assert_eq!(code, expected, "SIG{signal}: {stderr}");
        let calls = pool.emu.stats().requests_total - before;
        assert!(
            calls < pool.csv_usernames.len() as u64,
            "stopped before the end"
        );
        let report = report(&report_path);
        // Every call that was made has its outcome: in-flight calls were let finish.
        assert_eq!(report.len() as u64, calls, "{stderr}");
        assert_eq!(count(&report, "failed"), 0);
        assert!(stderr.contains("not attempted"), "{stderr}");
    }
}

/// A usage error is one line, `error: ...`, as the command-line parser's own: no time stamp,
/// no program name, said once.
fn one_error_line(stderr: &str) {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error") || l.contains("ERROR") || l.contains("cognito-resend:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].starts_with("error: "), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_exit_2_naming_the_setting_and_send_nothing() {
    let emu = emulator_with(vec![UserSpec::new("z", UserStatus::Unconfirmed)], |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["z".to_owned()]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--concurrency", "0"], "run.concurrency"),
        (vec!["--rate", "fast"], "run.rate"),
        (vec!["--max-elapsed", "forever"], "retry.max_elapsed"),
        (vec!["--jitter", "2"], "retry.jitter"),
        (
            vec!["--client-secret-file", "/nonexistent/secret"],
            "--client-secret-file",
        ),
        (vec!["--metrics-addr", "not-an-address"], "metrics.listen"),
    ];
    for (args, named) in cases {
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.args(&args);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 2, "{args:?}: {}", ran.stderr);
        assert!(
            ran.stderr.contains(named),
            "{args:?} names {named}: {}",
            ran.stderr
        );
        one_error_line(&ran.stderr);
    }
    // No client id anywhere.
    let mut cmd = command(&emu.endpoint());
    cmd.arg("backfill").arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--client-id"), "{}", ran.stderr);
    one_error_line(&ran.stderr);
    // The parser's own errors are in the same style.
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--no-such-flag");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.starts_with("error: "), "{}", ran.stderr);
    // A CSV that does not exist.
    let mut cmd = command(&emu.endpoint());
    cmd.args(["backfill", "/nonexistent/users.csv", "--client-id", CLIENT]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("/nonexistent/users.csv"),
        "{}",
        ran.stderr
    );
    assert_eq!(emu.stats().requests_total, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_reports_every_job() {
    let pool = pool(100, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    // A ledger that does not exist yet: a dry run writes nothing, so it creates none either.
    let state = dir.path().join("new-ledger.db");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--dry-run"]).arg("--state").arg(&state);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(pool.emu.stats().requests_total, 0);
    let report = report(&report_path);
    assert_eq!(count(&report, "dry_run"), pool.csv_usernames.len());
    assert!(!state.exists(), "the dry run created {}", state.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_are_hashed_in_logs_unless_asked() {
    let emu = emulator_with(vec![], |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let name = "private.person@example.com";
    let csv = usernames_csv(dir.path(), &[name.to_owned()]);
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["-v"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "not_found is not a failure: {}", ran.stderr);
    assert!(!ran.stderr.contains(name), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("u-"),
        "hashed user shown: {}",
        ran.stderr
    );
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["-v", "--log-usernames"]);
    let ran = run(cmd).await;
    assert!(ran.stderr.contains(name), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_settings_apply_and_empty_ones_count_as_unset() {
    let emu = emulator_with(
        vec![UserSpec::new("env-user", UserStatus::Unconfirmed)],
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["env-user".to_owned()]);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = command(&emu.endpoint());
    cmd.env("COGNITO_RESEND_COGNITO_CLIENT_ID", CLIENT)
        .env("COGNITO_RESEND_RUN_CONCURRENCY", "")
        .env("COGNITO_RESEND_RUN_RATE", "")
        .env("COGNITO_RESEND_RUN_DRY_RUN", "")
        .env("COGNITO_RESEND_LOG_FORMAT", "")
        .env("COGNITO_RESEND_LOG_USERNAMES", "")
        .env("COGNITO_RESEND_CLIENT_SECRET", "")
        .env("COGNITO_RESEND_REPORT_PATH", &report_path)
        .arg("backfill")
        .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        emu.sends().len(),
        1,
        "sent: dry run stayed off, no secret hash"
    );
    assert!(!emu.sends()[0].secret_hash_given);
    assert_eq!(
        report(&report_path).len(),
        1,
        "the report path came from the environment"
    );

    let mut cmd = command(&emu.endpoint());
    cmd.env("COGNITO_RESEND_RUN_DRY_RUN", "true")
        .env("COGNITO_RESEND_LOG_FORMAT", "json")
        .args(["backfill", "--client-id", CLIENT])
        .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        emu.sends().len(),
        1,
        "dry run from the environment sent nothing"
    );
    let summary = ran.stderr.lines().last().expect("a summary line");
    let json: serde_json::Value = serde_json::from_str(summary).expect("json logs");
    assert_eq!(json["dry_run"], 1, "{summary}");

    let mut cmd = command(&emu.endpoint());
    cmd.args(["backfill", "--client-id", CLIENT, "--log-format", "xml"])
        .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("log.format"), "{}", ran.stderr);
}

/// The peak resident memory of a running process, from `/proc/<pid>/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the child runs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// A 200 MB record (an unbalanced quote that swallows two million lines) is `invalid`, named by
/// its lines, without ever being held: the process's peak memory stays far below the record's
/// size. The CSV comes on stdin, which stays open after the rows, so the peak is read while the
/// process is still alive, once the row after the huge record has been sent (so the reader has
/// been all the way through it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_mb_record_is_invalid_by_line_and_memory_stays_flat() {
    use tokio::io::AsyncWriteExt;
    let emu = emulator_with(
        ["ok1", "ok2"]
            .map(|u| UserSpec::new(u, UserStatus::Unconfirmed))
            .to_vec(),
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), std::path::Path::new("-"));
    cmd.arg("--report")
        .arg(&report_path)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut stdin = child.stdin.take().unwrap();

    stdin
        .write_all(b"username,email\nok1,a@x\n\"")
        .await
        .unwrap();
    // 105 chunks of 20,000 lines of 100 bytes, all inside one quoted field: 210 MB in all.
    let line = format!("{},swallowed@x\n", "s".repeat(87));
    assert_eq!(line.len(), 100);
    let chunk = line.repeat(20_000);
    for _ in 0..105 {
        stdin.write_all(chunk.as_bytes()).await.unwrap();
    }
    stdin.write_all(b"end\",x\nok2,b@x\n").await.unwrap();
    stdin.flush().await.unwrap();
    let huge_lines = 105 * 20_000 + 1;

    wait_for_sends(&emu, 2).await;
    let peak_mib = peak_rss_kib(pid) / 1024;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("backfill ends once stdin closes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "one invalid row: {stderr}");
    assert!(
        peak_mib < 100,
        "peak RSS {peak_mib} MiB while reading a 200 MiB record: it was buffered"
    );

    let report = report(&report_path);
    assert_eq!(report.len(), 3, "{report:?}");
    assert_eq!(users_with(&report, "sent").len(), 2);
    let invalid = report.iter().find(|l| l["outcome"] == "invalid").unwrap();
    assert_eq!(invalid["source"], "csv:3");
    let reason = invalid["reason"].as_str().unwrap();
    assert!(
        reason.contains("over 64 KiB")
            && reason.contains(&format!("lines 3 to {}", 3 + huge_lines - 1))
            && reason.contains("unbalanced quote"),
        "{reason}"
    );
    let ok2 = report.iter().find(|l| l["username"] == "ok2").unwrap();
    assert_eq!(ok2["source"], format!("csv:{}", 3 + huge_lines));
}

/// The SQLite ledger and its `-wal`/`-shm`, and the report, name users: they are created
/// readable by their owner only, whatever the umask lets through (the test runs with 022).
#[tokio::test]
async fn the_ledger_and_the_report_are_created_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let store = cognito_resend::testing::SqliteStore::open(&db).unwrap();
    // Opening wrote the schema, so SQLite has its write-ahead log and shared memory open now.
    for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    drop(store);
    let report = dir.path().join("report.jsonl");
    drop(
        cognito_resend::testing::ReportWriter::create(
            &report,
            cognito_resend::testing::IfExists::Refuse,
        )
        .unwrap(),
    );
    assert_eq!(mode(&report), 0o600);
}

/// With no region anywhere (no flag, no AWS_REGION, no profile, and an instance metadata service
/// that does not answer, here a closed port on loopback), the user sees one line naming
/// `--region` and `AWS_REGION`, and exit 2: not a screen of SDK warnings per client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_region_anywhere_is_one_clear_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["z".to_owned()]);
    // A port that was free a moment ago: connecting to it is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{closed}/"),
        )
        .args(["backfill", "--state", "none"])
        .args([
            "--cognito-endpoint",
            "http://127.0.0.1:9",
            "--metrics-addr",
            "none",
        ])
        .arg(&csv)
        .args(["--client-id", CLIENT])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, not:\n{}", ran.stderr);
    assert!(
        lines[0].contains("--region") && lines[0].contains("AWS_REGION"),
        "{}",
        lines[0]
    );
}

/// Rows naming a client id nobody allowed are `invalid` and never reach Cognito; three of them
/// in a row no longer stop the run (an unknown client used to count toward the early stop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_naming_a_foreign_client_are_invalid_and_do_not_stop_the_run() {
    let pool = pool(20, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("username,client_id\n");
    for u in ["evil-1", "evil-2", "evil-3", "evil-4"] {
        text.push_str(&format!("{u},foreignclient\n"));
    }
    for u in &pool.csv_usernames {
        text.push_str(&format!("{u},{CLIENT}\n"));
    }
    let csv = write_file(dir.path(), "jobs.csv", text);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "1"])
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "finished, with invalid rows: {}", ran.stderr);
    let report = report(&report_path);
    let invalid: Vec<&serde_json::Value> = report
        .iter()
        .filter(|l| l["outcome"] == "invalid")
        .collect();
    assert_eq!(invalid.len(), 4, "{report:?}");
    assert!(invalid.iter().all(|l| {
        l["reason"]
            .as_str()
            .unwrap()
            .contains("client id not allowed")
    }));
    assert_eq!(users_with(&report, "sent"), pool.unconfirmed);
    assert_eq!(
        pool.emu.stats().requests_total as usize,
        pool.csv_usernames.len(),
        "no call for a foreign client"
    );
}

/// A rerun naming the same `--report` must not erase the previous run's record of who was sent
/// a code: it is refused (exit 2, before any call) and names `--append` and `--overwrite`, which
/// add to the file or replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_the_same_report_path_keeps_the_earlier_record() {
    let pool = pool(20, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let path = dir.path().join("report.jsonl");
    let state = dir.path().join("ledger.db");
    let rerun = |extra: &[&str]| {
        let mut cmd = backfill(&pool.emu.endpoint(), &csv);
        cmd.arg("--report").arg(&path).arg("--state").arg(&state);
        cmd.args(extra);
        cmd
    };
    let ran = run(rerun(&[])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let first = std::fs::read_to_string(&path).unwrap();
    let jobs = pool.csv_usernames.len();
    // The run's `run` record, a line per job, its `run_end` record.
    assert_eq!(first.lines().count(), jobs + 2);
    let calls = pool.emu.stats().requests_total;

    let ran = run(rerun(&[])).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("--append") && ran.stderr.contains("--overwrite"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("report.jsonl"), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "untouched");
    assert_eq!(
        pool.emu.stats().requests_total,
        calls,
        "refused before any call"
    );

    let ran = run(rerun(&["--append"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let both = std::fs::read_to_string(&path).unwrap();
    assert!(both.starts_with(&first), "the first run's lines stay first");
    assert_eq!(both.lines().count(), 2 * (jobs + 2));
    // Two runs, each between its own records.
    let kinds: Vec<String> = report_lines(&path)
        .iter()
        .filter_map(|l| l["kind"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(kinds, ["run", "run_end", "run", "run_end"]);
    // The rerun's lines are the ledger's answer: the users sent a code are in cooldown now.
    let second: Vec<serde_json::Value> = both
        .lines()
        .skip(jobs + 2)
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l.get("kind").is_none())
        .collect();
    assert_eq!(second.len(), jobs);
    assert_eq!(count(&second, "cooldown"), pool.unconfirmed.len());

    let ran = run(rerun(&["--overwrite"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(report(&path).len(), jobs, "replaced");

    // An empty file (touched beforehand) is no record: it is used without a flag.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.arg("--report").arg(&empty).args(["--dry-run"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(report(&empty).len(), jobs);

    // The settings file says it too; the two flags together are a usage error.
    let mut cmd = rerun(&["--append", "--overwrite"]);
    cmd.arg("--dry-run");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
}

/// The hash that stands for a username in logs is keyed: unkeyed, a phone-number username was
/// found again from its 48 bits by hashing every candidate. Without a key each run draws its
/// own (the same user hashes differently in two runs); with `COGNITO_RESEND_LOG_USERNAME_KEY`
/// it is HMAC-SHA-256 under that key, stable across runs and replicas, and the key is never
/// printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_hashes_in_logs_are_keyed() {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let emu = emulator_with(vec![], |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let name = "+15551234567";
    let csv = usernames_csv(dir.path(), &[name.to_owned()]);
    let token_of = |stderr: &str| -> String {
        let at = stderr
            .find("u-")
            .unwrap_or_else(|| panic!("a hashed user: {stderr}"));
        stderr[at..at + 14].to_owned()
    };
    let hex = |bytes: &[u8]| {
        bytes[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let unkeyed = format!("u-{}", hex(&Sha256::digest(name.as_bytes())));
    let run_with = |key: Option<&str>| {
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.args(["-v", "--state", "none"]);
        if let Some(k) = key {
            cmd.env("COGNITO_RESEND_LOG_USERNAME_KEY", k);
        }
        run(cmd)
    };

    let (a, b) = (run_with(None).await, run_with(None).await);
    assert_eq!(a.code, 0, "{}", a.stderr);
    let (ta, tb) = (token_of(&a.stderr), token_of(&b.stderr));
    assert_ne!(ta, unkeyed, "not the unkeyed SHA-256 of the name");
    assert_ne!(ta, tb, "a key of its own per run");

    let key = "deployment-key-4711";
    let (a, b) = (run_with(Some(key)).await, run_with(Some(key)).await);
    let (ta, tb) = (token_of(&a.stderr), token_of(&b.stderr));
    assert_eq!(ta, tb, "stable across runs under one key");
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(name.as_bytes());
    assert_eq!(ta, format!("u-{}", hex(&mac.finalize().into_bytes())));
    for out in [&a.stderr, &a.stdout] {
        assert!(!out.contains(key) && !out.contains(name), "{out}");
    }
}

/// Two one-shot backfills on one host, neither given `--metrics-addr`: a one-shot serves no
/// metrics unless asked, so neither needs a port and both finish (before, the second failed with
/// "cannot listen on 127.0.0.1:9464: Address already in use").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backfills_side_by_side_on_one_host_need_no_port() {
    let pool = slow_pool(100, Duration::from_millis(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let go = |n: usize| {
        let mut c = backfill(&pool.emu.endpoint(), &csv);
        c.env_remove("COGNITO_RESEND_METRICS_LISTEN")
            .args(["--rate", "0", "--concurrency", "4", "--state", "none"])
            .arg("--report")
            .arg(dir.path().join(format!("{n}.jsonl")));
        run(c)
    };
    let (a, b) = tokio::join!(go(1), go(2));
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(b.code, 0, "{}", b.stderr);
    assert!(!a.stderr.contains("metrics on http://"), "{}", a.stderr);
}
