//! The send ledger under `consume`: duplicate deliveries, consumers sharing one ledger (a SQLite
//! file, or a DynamoDB table on moto), and a consumer killed with `kill -9` mid-call; and a
//! ledger that fails mid-run. Ground truth: the emulator's record of every code sent, and what is
//! left in the queue.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use support::moto::{self, Moto, job, wait_until_empty};
use support::*;

/// Every body twice, the copies far apart (so different consumers get them) and some adjacent.
fn twice(bodies: &[String]) -> Vec<String> {
    let mut out: Vec<String> = bodies.to_vec();
    out.extend(bodies.iter().cloned());
    // Swap every 7th pair so some duplicates sit next to each other.
    let n = bodies.len();
    for i in (0..n).step_by(7) {
        out.swap(i + 1, n + i);
    }
    out
}

async fn start_consumer(mut cmd: tokio::process::Command) -> Running {
    cmd.args(["--metrics-addr", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    running
        .wait_for_line("consuming", Duration::from_secs(60))
        .await;
    running
}

async fn stop(running: Running) -> String {
    running.signal("TERM");
    let (code, stderr) = running.wait(Duration::from_secs(60)).await;
    assert_eq!(code, 0, "{stderr}");
    stderr
}

fn in_doubt_users(reports: &[&Path]) -> HashSet<String> {
    reports
        .iter()
        .flat_map(|p| report(p))
        .filter(|l| l["in_doubt"] == true)
        .map(|l| l["username"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_to_two_consumers_sharing_a_ledger_send_once() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "dups", 5).await;
    let pool = slow_pool(200, Duration::from_millis(50)).await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    let doubled = twice(&bodies);
    moto::send_bodies(&sqs, &url, &doubled, None).await;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared.db");
    let reports = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    let mut consumers = Vec::new();
    for r in &reports {
        let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
        cmd.args(["--concurrency", "8"])
            .arg("--state")
            .arg(&state)
            .arg("--report")
            .arg(r);
        consumers.push(start_consumer(cmd).await);
    }
    wait_until_empty(&sqs, &url, Duration::from_secs(180)).await;
    for c in consumers {
        stop(c).await;
    }

    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len(), "everyone sent");
    assert!(counts.values().all(|&n| n == 1), "nobody twice: {counts:?}");
    let lines: Vec<_> = reports.iter().flat_map(|p| report(p)).collect();
    assert_eq!(lines.len(), doubled.len(), "one outcome per message");
    let o = outcomes(&lines);
    assert_eq!(o.get("sent"), Some(&pool.unconfirmed.len()), "{o:?}");
    assert!(
        o.get("cooldown").copied().unwrap_or(0) == pool.unconfirmed.len(),
        "the second copy of every sent user is cooldown: {o:?}"
    );
    assert!(
        reports.iter().all(|r| !report(r).is_empty()),
        "both consumers took work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_a_consumer_then_two_more_on_a_dynamodb_ledger_lose_nothing() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "ddb", 5).await;
    let pool = slow_pool(300, Duration::from_millis(200)).await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    let doubled = twice(&bodies);
    moto::send_bodies(&sqs, &url, &doubled, None).await;

    let table = "dynamodb://resend-ledger";
    let ledger = |args: &[&str]| {
        let mut c = command(&pool.emu.endpoint());
        c.args([
            "ledger",
            "--state",
            table,
            "--dynamodb-endpoint",
            &moto.endpoint,
        ])
        .args(args);
        c
    };
    let ran = run(ledger(&["init"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let concurrency = 8;
    let dir = tempfile::tempdir().unwrap();
    let consumer = |report: &Path| {
        let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
        cmd.args(["--concurrency", &concurrency.to_string()])
            .args(["--state", table, "--dynamodb-endpoint", &moto.endpoint])
            .args(["--claim-lease", "2s", "--visibility-timeout", "5s"])
            .arg("--report")
            .arg(report);
        cmd
    };
    let victim = start_consumer(consumer(&dir.path().join("victim.jsonl"))).await;
    wait_for_sends(&pool.emu, 40).await;
    victim.signal("KILL");
    let (code, _) = victim.wait(Duration::from_secs(30)).await;
    assert_eq!(code, -1, "killed");

    let reports = [dir.path().join("b.jsonl"), dir.path().join("c.jsonl")];
    let mut rest = Vec::new();
    for r in &reports {
        rest.push(start_consumer(consumer(r)).await);
    }
    wait_until_empty(&sqs, &url, Duration::from_secs(240)).await;
    for c in rest {
        stop(c).await;
    }

    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len(), "everyone sent");
    let twice_sent: HashSet<String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(u, _)| u.clone())
        .collect();
    let in_doubt = in_doubt_users(&[&reports[0], &reports[1]]);
    assert!(
        in_doubt.len() <= concurrency,
        "at most --concurrency in doubt: {in_doubt:?}"
    );
    assert!(
        twice_sent.is_subset(&in_doubt),
        "every duplicate was reported in doubt: {twice_sent:?} vs {in_doubt:?}"
    );
    assert!(counts.values().all(|&n| n <= 2));

    // The ledger agrees with the emulator.
    let ran = run(ledger(&["stats", "--json"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    // A code the killed consumer got out but could not record is the one duplicate the ledger
    // does not know about: ledger sends + duplicates = the emulator's sends.
    let total: usize = counts.values().sum();
    assert_eq!(
        stats["sends"].as_u64().unwrap() as usize + twice_sent.len(),
        total,
        "{stats}"
    );
    assert_eq!(
        stats["users_sent"],
        pool.unconfirmed.len() as u64,
        "{stats}"
    );
    assert_eq!(stats["claims_live"], 0, "{stats}");
    eprintln!(
        "kill -9 with DynamoDB: {} in doubt, {} sent twice",
        in_doubt.len(),
        twice_sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_fails_mid_run_stops_the_run_and_nothing_is_acknowledged_past_it() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "ledger-down", 5).await;
    let pool = slow_pool(300, Duration::from_millis(50)).await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let table = "doomed";
    let state = format!("dynamodb://{table}");
    let mut init = command(&pool.emu.endpoint());
    init.args([
        "ledger",
        "init",
        "--state",
        &state,
        "--dynamodb-endpoint",
        &moto.endpoint,
    ]);
    let ran = run(init).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "8", "--state", &state])
        .args(["--dynamodb-endpoint", &moto.endpoint])
        .arg("--report")
        .arg(&report_path);
    let running = start_consumer(cmd).await;
    wait_for_sends(&pool.emu, 30).await;
    moto::dynamodb_client(&moto.endpoint)
        .await
        .delete_table()
        .table_name(table)
        .send()
        .await
        .expect("DeleteTable");
    let (code, stderr) = running.wait(Duration::from_secs(60)).await;
    assert_eq!(code, 1, "a consumer whose ledger fails stops: {stderr}");
    assert!(
        stderr.contains("the ledger (dynamodb://doomed) failed"),
        "{stderr}"
    );

    let report = report(&report_path);
    let ledger_errors: Vec<_> = report
        .iter()
        .filter(|l| l["reason"] == "ledger_error")
        .collect();
    assert!(
        !ledger_errors.is_empty() && ledger_errors.len() <= 8,
        "the jobs in flight failed with ledger_error: {}",
        ledger_errors.len()
    );
    // Nothing past the failure was acknowledged: every message without a terminal outcome is
    // still in the queue (visible or in flight), and none was lost.
    let acknowledged = report
        .iter()
        .filter(|l| {
            ["sent", "already_confirmed", "not_found", "cooldown"]
                .contains(&l["outcome"].as_str().unwrap())
        })
        .count();
    let (visible, in_flight) = moto::queue_counts(&sqs, &url).await;
    assert_eq!(
        (visible + in_flight) as usize,
        bodies.len() - acknowledged,
        "every unacknowledged job is still queued"
    );
}
