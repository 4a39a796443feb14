//! The fault matrix: Cognito misbehaving in the ways it does in production, and the worker still
//! giving every job one outcome and every unconfirmed user one code. Ground truth: the bundled
//! emulator's record of every send. (5 % 500s with 1 % dropped connections, malformed input and
//! configuration faults are in backfill.rs and consume.rs.)

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use cognito_emulator::Faults;
use support::*;

/// What every fault test checks first: one report line per row, everyone unconfirmed `sent`, the
/// missing `not_found`, nothing `failed`. Returns the report.
fn every_row_has_its_outcome(
    pool: &Pool,
    report_path: &Path,
    stderr: &str,
) -> Vec<serde_json::Value> {
    let report = report(report_path);
    assert_eq!(
        report.len(),
        pool.csv_usernames.len(),
        "one outcome per row"
    );
    assert_eq!(
        users_with(&report, "sent"),
        pool.unconfirmed,
        "everyone sent"
    );
    assert_eq!(users_with(&report, "not_found"), pool.missing);
    assert!(users_with(&report, "failed").is_empty(), "{stderr}");
    report
}

/// Runs a backfill of the pool with `extra` flags and checks what every fault test promises:
/// exit 0, [`every_row_has_its_outcome`], and each unconfirmed user sent exactly once.
async fn survives(pool: &Pool, extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(extra).arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let report = every_row_has_its_outcome(pool, &report_path, &ran.stderr);
    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len());
    assert!(counts.values().all(|&n| n == 1), "nobody twice: {counts:?}");
    report
}

fn retried(report: &[serde_json::Value]) -> usize {
    report
        .iter()
        .filter(|l| l["attempts"].as_u64().unwrap() > 1)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_storm_at_20_per_second_with_64_in_flight() {
    let pool = pool(200, None, |b| b.quota_rps(Some(20))).await;
    let report = survives(&pool, &["--rate", "0", "--concurrency", "64"]).await;
    assert!(pool.emu.stats().throttled > 0, "the storm happened");
    assert!(retried(&report) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_slower_than_the_attempt_timeout_are_retried() {
    let pool = pool(300, None, |b| {
        b.faults(Faults {
            slow_rate: 0.05,
            slow_latency: Duration::from_secs(3),
            ..Faults::default()
        })
    })
    .await;
    let report = survives(
        &pool,
        &[
            "--rate",
            "0",
            "--concurrency",
            "16",
            "--attempt-timeout",
            "500ms",
            "--initial-backoff",
            "50ms",
        ],
    )
    .await;
    let stats = pool.emu.stats();
    assert!(stats.slow_held > 0, "{stats:?}");
    assert!(
        stats.slow_abandoned > 0,
        "the client gave up on some: {stats:?}"
    );
    assert!(retried(&report) > 0);
    assert!(
        report
            .iter()
            .any(|l| l["attempts"].as_u64().unwrap() > 1 && l["outcome"] == "sent"),
        "a timed-out job was sent on a later attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_down_for_two_seconds_mid_run() {
    let pool = pool(1_000, None, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(10),
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--concurrency", "16"])
        .arg("--report")
        .arg(&report_path);
    let running = Running::spawn(cmd);
    wait_for_sends(&pool.emu, 100).await;
    pool.emu.go_down(Duration::from_secs(2)).await;
    let (code, stderr) = running.wait(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(pool.emu.stats().downs, 1);

    let report = every_row_has_its_outcome(&pool, &report_path, &stderr);
    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len());
    // A call Cognito carried out whose answer was lost when it went down cannot be told from one
    // it never got: its retry may send a second code. Only such calls (retried ones) may.
    let twice: HashSet<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u.clone())
        .collect();
    let retried_users: HashSet<String> = report
        .iter()
        .filter(|l| l["attempts"].as_u64().unwrap() > 1)
        .map(|l| l["username"].as_str().unwrap().to_owned())
        .collect();
    assert!(!retried_users.is_empty(), "the outage was felt");
    assert!(twice.is_subset(&retried_users), "{twice:?}");
    assert!(counts.values().all(|&n| n <= 2));
    eprintln!(
        "down 2 s: {} jobs retried, {} users sent twice (answer lost in the outage)",
        retried_users.len(),
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_client_stops_early_and_a_fixed_rerun_sends_everyone_once() {
    let pool = pool(200, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let state = dir.path().join("ledger.db");
    let mut cmd = command(&pool.emu.endpoint());
    cmd.args(["backfill", "--client-id", "nosuchclient", "--rate", "0"])
        .arg(&csv)
        .arg("--state")
        .arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("ResourceNotFoundException"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("nosuchclient"),
        "names the client: {}",
        ran.stderr
    );
    // Said once, as the last line, in the one style every error has.
    assert_eq!(
        ran.stderr.matches("stopped early:").count(),
        1,
        "{}",
        ran.stderr
    );
    let last = ran.stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.starts_with("error: stopped early:") && last.contains("nosuchclient"),
        "{}",
        ran.stderr
    );
    assert!(!ran.stderr.contains("cognito-resend:"), "{}", ran.stderr);
    assert!(pool.emu.sends().is_empty(), "nothing sent");
    assert!(
        pool.emu.stats().requests_total < 40,
        "stopped after a few calls, not one per row"
    );

    // The failed jobs left no claim and no cooldown: the fixed rerun, on the same ledger,
    // sends everyone.
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0"]).arg("--state").arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len());
    assert!(counts.values().all(|&n| n == 1));
}

/// Cognito sends the code and the answer is lost (a 500 or a dropped connection after acting):
/// the retry may send a second code, and nothing on the client's side can tell. Every user the
/// emulator sent two codes is reported in doubt; a job that failed after such an attempt keeps
/// the cooldown, so a rerun does not send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_lost_after_the_send_are_in_doubt_and_failed_ones_keep_the_cooldown() {
    let pool = pool(200, None, |b| {
        b.faults(Faults {
            error_after_rate: 0.15,
            drop_after_rate: 0.1,
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let state = dir.path().join("ledger.db");
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args([
        "--rate",
        "0",
        "--max-attempts",
        "2",
        "--initial-backoff",
        "10ms",
    ])
    .arg("--state")
    .arg(&state)
    .arg("--report")
    .arg(&report_path);
    let ran = run(cmd).await;
    assert!(ran.code == 0 || ran.code == 3, "{}", ran.stderr);
    let report = report(&report_path);
    assert_eq!(report.len(), pool.csv_usernames.len());
    let user = |l: &serde_json::Value| l["username"].as_str().unwrap().to_owned();
    let in_doubt: HashSet<String> = report
        .iter()
        .filter(|l| l["in_doubt"] == true)
        .map(user)
        .collect();
    let counts = pool.emu.send_counts();
    let twice: HashSet<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u.clone())
        .collect();
    assert!(!twice.is_empty(), "the faults happened");
    assert!(
        twice.is_subset(&in_doubt),
        "{:?}",
        twice.difference(&in_doubt)
    );
    assert!(
        report
            .iter()
            .filter(|l| l["in_doubt"] == true)
            .all(|l| l["in_doubt_cause"] == "ambiguous_attempt"),
        "{report:?}"
    );
    let failed_in_doubt: HashSet<String> = report
        .iter()
        .filter(|l| l["outcome"] == "failed" && l["in_doubt"] == true)
        .map(user)
        .collect();
    assert!(!failed_in_doubt.is_empty(), "some ran out of attempts");

    // A rerun without faults on the same ledger: those who failed after an ambiguous attempt
    // may hold a code, so they are in cooldown and get no call.
    pool.emu.set_faults(Faults::default());
    let rerun_report = dir.path().join("rerun.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0"])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&rerun_report);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let rerun = support::report(&rerun_report);
    let cooled = users_with(&rerun, "cooldown");
    assert!(
        failed_in_doubt.is_subset(&cooled),
        "{:?}",
        failed_in_doubt.difference(&cooled)
    );
    let after = pool.emu.send_counts();
    for u in &failed_in_doubt {
        assert_eq!(after.get(u), counts.get(u), "{u} was not sent again");
    }
}

/// `users` names in a CSV, for runs against an endpoint that never answers (no pool behind it).
fn names_csv(dir: &Path, users: usize) -> std::path::PathBuf {
    let names: Vec<String> = (0..users).map(|i| format!("user{i:04}")).collect();
    usernames_csv(dir, &names)
}

/// Runs a 500-user backfill against `endpoint`, which nothing answers on, and checks the early
/// stop: exit 1 with one message naming the endpoint, the region and `cause`, logged as soon as
/// the first call failed; nothing `sent`, the jobs in flight `failed` (`interrupted`, handed back)
/// and the rest not attempted, no report line for them.
async fn stops_early_unreachable(endpoint: &str, cause: &str) {
    let dir = tempfile::tempdir().unwrap();
    let csv = names_csv(dir.path(), 500);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = command(endpoint);
    cmd.args(["backfill", "--client-id", "anyclient"])
        .arg(&csv)
        .arg("--report")
        .arg(&report_path);
    // Before it stopped early, it retried every user for up to ten minutes: bounded here.
    let (code, stderr) = Running::spawn(cmd).wait(Duration::from_secs(120)).await;
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    for needle in [endpoint, "us-east-1", cause, "stopped early"] {
        assert!(
            last.contains(needle),
            "{needle:?} in the last line: {stderr}"
        );
    }
    // The first failure is said at once, not only at the stop.
    let first = stderr
        .lines()
        .position(|l| l.contains("cannot connect to Cognito") && l.contains(cause))
        .unwrap_or_else(|| panic!("the first failure is logged: {stderr}"));
    let stop = stderr
        .lines()
        .position(|l| l.contains("stopped early"))
        .unwrap();
    assert!(first < stop, "{stderr}");
    let report = report(&report_path);
    assert!(
        report.len() < 500,
        "not every row was tried: {}",
        report.len()
    );
    assert!(
        report
            .iter()
            .all(|l| l["outcome"] == "failed" && l["reason"] == "interrupted"),
        "{report:?}"
    );
    assert!(
        stderr.contains(&format!("not attempted: {}", 500 - report.len())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_stops_early_naming_the_endpoint_and_the_region() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    stops_early_unreachable(&format!("http://127.0.0.1:{port}"), "refused").await;
}

/// An endpoint that is not the TLS server it should be (a wrong port, a proxy that speaks
/// something else): the handshake fails, and it is the same misconfiguration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_the_tls_handshake_stops_early_too() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let garbage = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.write_all(b"SSH-2.0-OpenSSH_9.6 not TLS\r\n").await;
                let _ = socket.shutdown().await;
            });
        }
    });
    stops_early_unreachable(&format!("https://127.0.0.1:{port}"), "TLS").await;
    garbage.abort();
}

/// Once Cognito has answered, a lost endpoint is an outage, not a misconfiguration: the run
/// keeps retrying (past the few seconds that stop a run never answered) and says why while it
/// lasts, and everyone is sent when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_lost_mid_run_is_retried_with_a_warning_naming_the_cause() {
    let pool = pool(400, None, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(10),
            ..Faults::default()
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "50", "--concurrency", "8"])
        .arg("--report")
        .arg(&report_path);
    let running = Running::spawn(cmd);
    wait_for_sends(&pool.emu, 50).await;
    pool.emu.go_down(Duration::from_secs(8)).await;
    let warning = running
        .wait_for_line("cannot connect to Cognito", Duration::from_secs(30))
        .await;
    assert!(warning.contains("WARN"), "{warning}");
    for needle in [pool.emu.endpoint().as_str(), "us-east-1", "refused"] {
        assert!(warning.contains(needle), "{needle:?} in {warning}");
    }
    let (code, stderr) = running.wait(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("stopped early"), "{stderr}");
    every_row_has_its_outcome(&pool, &report_path, &stderr);
}
