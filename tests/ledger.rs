//! The send ledger end to end with `backfill`: the real binary, the bundled emulator's record
//! of every code it sent as ground truth. Duplicates, reruns, SIGTERM and `kill -9`, cooldown
//! expiry, `--state none`, `ledger stats|export`, and a ledger that cannot be written.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use cognito_resend::emulator::{Emulator, Faults, UserSpec, UserStatus};
use support::*;

fn unconfirmed(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

async fn emulator_of(users: &[String], latency: Duration) -> Emulator {
    emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| {
            b.faults(Faults {
                latency,
                ..Faults::default()
            })
        },
    )
    .await
}

/// `backfill` with its own `--state` and `--report`.
fn backfill_with(
    emu: &Emulator,
    csv: &Path,
    state: &Path,
    report: &Path,
) -> tokio::process::Command {
    let mut cmd = backfill(&emu.endpoint(), csv);
    cmd.arg("--state").arg(state).arg("--report").arg(report);
    cmd.args(["--rate", "0"]);
    cmd
}

/// Users the emulator sent more than one code.
fn sent_twice(emu: &Emulator) -> HashSet<String> {
    emu.send_counts()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(u, _)| u)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_username_repeated_in_one_csv_is_sent_once_and_cooldown_after() {
    let users = unconfirmed("dup", 100);
    // Slow enough that a row and its adjacent duplicate are in flight together.
    let emu = emulator_of(&users, Duration::from_millis(50)).await;
    let dir = tempfile::tempdir().unwrap();
    // Each user twice: half of them right after each other, half far apart.
    let mut rows = Vec::new();
    for u in &users[..50] {
        rows.push(u.clone());
        rows.push(u.clone());
    }
    rows.extend(users[50..].iter().cloned());
    rows.extend(users[50..].iter().cloned());
    let csv = usernames_csv(dir.path(), &rows);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill_with(&emu, &csv, &dir.path().join("ledger.db"), &report_path);
    cmd.args(["--concurrency", "16"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let counts = emu.send_counts();
    assert_eq!(counts.len(), users.len(), "everyone sent");
    assert!(counts.values().all(|&n| n == 1), "nobody twice: {counts:?}");
    let report = report(&report_path);
    assert_eq!(report.len(), rows.len(), "one outcome per row");
    let o = outcomes(&report);
    assert_eq!(o.get("sent"), Some(&100), "{o:?}");
    assert_eq!(o.get("cooldown"), Some(&100), "{o:?}");
    // Each user: one `sent` line and one `cooldown` line. (Their order in the report may differ
    // from the CSV's: the duplicate's line can be written while the sent job's is still on its
    // way, once the ledger has the send.)
    assert_eq!(users_with(&report, "sent"), users.iter().cloned().collect());
    assert_eq!(
        users_with(&report, "cooldown"),
        users.iter().cloned().collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_sends_nobody_twice_until_the_cooldown_has_passed() {
    let pool = pool(300, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let state = dir.path().join("ledger.db");
    let first = dir.path().join("first.jsonl");
    let ran = run(backfill_with(&pool.emu, &csv, &state, &first)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let cmd = |report: &Path| {
        let mut c = backfill_with(&pool.emu, &csv, &state, report);
        c.args(["--cooldown", "3s"]);
        c
    };
    let second = dir.path().join("second.jsonl");
    let ran = run(cmd(&second)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len());
    assert!(counts.values().all(|&n| n == 1), "the rerun sent nobody");
    let report2 = report(&second);
    assert_eq!(users_with(&report2, "cooldown"), pool.unconfirmed);
    assert_eq!(users_with(&report2, "already_confirmed"), pool.confirmed);
    assert!(users_with(&report2, "sent").is_empty());

    // Once the cooldown has passed, the same command sends again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let third = dir.path().join("third.jsonl");
    let ran = run(cmd(&third)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(users_with(&report(&third), "sent"), pool.unconfirmed);
    assert!(pool.emu.send_counts().values().all(|&n| n == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_none_gives_up_the_guarantee_and_says_so() {
    let users = unconfirmed("none", 40);
    let emu = emulator_of(&users, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows = users.clone();
    rows.extend(users.iter().cloned());
    let csv = usernames_csv(dir.path(), &rows);
    for _ in 0..2 {
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.args(["--state", "none", "--rate", "0"]);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        assert!(ran.stderr.contains("--state none"), "{}", ran.stderr);
    }
    // Twice in the CSV, two runs: four codes each.
    assert!(emu.send_counts().values().all(|&n| n == 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_backfill_then_rerun_sends_everyone_exactly_once() {
    let pool = slow_pool(1_500, Duration::from_millis(40)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let state = dir.path().join("ledger.db");
    let first = dir.path().join("first.jsonl");
    let mut cmd = backfill_with(&pool.emu, &csv, &state, &first);
    cmd.args(["--concurrency", "16"]);
    let running = Running::spawn(cmd);
    wait_for_sends(&pool.emu, 100).await;
    running.signal("TERM");
    let (code, stderr) = running.wait(Duration::from_secs(60)).await;
    assert_eq!(code, 143, "{stderr}");
    let sent_first = users_with(&report(&first), "sent");
    assert!(sent_first.len() < pool.unconfirmed.len(), "stopped mid-run");

    let second = dir.path().join("second.jsonl");
    let ran = run(backfill_with(&pool.emu, &csv, &state, &second)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len(), "everyone sent");
    assert!(sent_twice(&pool.emu).is_empty(), "nobody twice");
    let report2 = report(&second);
    assert_eq!(report2.len(), pool.csv_usernames.len());
    assert_eq!(users_with(&report2, "cooldown"), sent_first);
    assert!(report2.iter().all(|l| l.get("in_doubt").is_none()));
    assert!(!ran.stderr.contains("in doubt"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backfill_then_rerun_resends_only_the_in_doubt_calls() {
    let pool = slow_pool(1_500, Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let state = dir.path().join("ledger.db");
    let first = dir.path().join("first.jsonl");
    let concurrency = 16;
    let mut cmd = backfill_with(&pool.emu, &csv, &state, &first);
    cmd.args([
        "--concurrency",
        &concurrency.to_string(),
        "--claim-lease",
        "2s",
    ]);
    let running = Running::spawn(cmd);
    wait_for_sends(&pool.emu, 100).await;
    running.signal("KILL");
    let (code, _) = running.wait(Duration::from_secs(30)).await;
    assert_eq!(code, -1, "killed by a signal");

    // The rerun waits out the dead run's lease, then takes its claims over as in doubt.
    let second = dir.path().join("second.jsonl");
    let mut cmd = backfill_with(&pool.emu, &csv, &state, &second);
    cmd.args(["--claim-lease", "2s"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let counts = pool.emu.send_counts();
    assert_eq!(counts.len(), pool.unconfirmed.len(), "everyone sent");
    let report2 = report(&second);
    assert_eq!(
        report2.len(),
        pool.csv_usernames.len(),
        "one outcome per row"
    );
    let in_doubt: HashSet<String> = report2
        .iter()
        .filter(|l| l["in_doubt"] == true)
        .map(|l| l["username"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        !in_doubt.is_empty() && in_doubt.len() <= concurrency,
        "in doubt: at least one call was in flight, at most --concurrency: {}",
        in_doubt.len()
    );
    let twice = sent_twice(&pool.emu);
    assert!(
        twice.is_subset(&in_doubt),
        "every duplicate is a reported in-doubt call: {twice:?} vs {in_doubt:?}"
    );
    assert!(counts.values().all(|&n| n <= 2));
    assert!(
        ran.stderr
            .contains(&format!("in doubt: {}", in_doubt.len())),
        "the summary counts them: {}",
        ran.stderr
    );
    eprintln!(
        "kill -9: {} in doubt, {} actually sent twice",
        in_doubt.len(),
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_plans_from_the_ledger_and_writes_nothing() {
    let pool = pool(200, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    // Send to the first half, then plan the whole list.
    let half = pool.csv_usernames.len() / 2;
    let first_csv = usernames_csv(dir.path(), &pool.csv_usernames[..half]);
    let ran = run(backfill_with(
        &pool.emu,
        &first_csv,
        &state,
        &dir.path().join("first.jsonl"),
    ))
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let sent_first = pool.emu.send_counts();

    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let plan = dir.path().join("plan.jsonl");
    let mut cmd = backfill_with(&pool.emu, &csv, &state, &plan);
    cmd.arg("--dry-run");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.emu.send_counts(),
        sent_first,
        "a dry run sends nothing"
    );
    let planned = report(&plan);
    let cooldown = users_with(&planned, "cooldown");
    assert_eq!(cooldown, sent_first.keys().cloned().collect::<HashSet<_>>());
    assert_eq!(
        users_with(&planned, "dry_run").len() + cooldown.len(),
        pool.csv_usernames.len()
    );

    // The real run then does what the plan said: it sends to exactly the planned users that
    // are unconfirmed.
    let real = dir.path().join("real.jsonl");
    let ran = run(backfill_with(&pool.emu, &csv, &state, &real)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(users_with(&report(&real), "cooldown"), cooldown);
    assert!(sent_twice(&pool.emu).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_stats_and_export_show_what_was_sent_and_the_default_file_is_in_the_cwd() {
    let pool = pool(200, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    // No --state: the default file, in the working directory.
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.env_remove("COGNITO_RESEND_LEDGER_PATH")
        .current_dir(dir.path())
        .args(["--rate", "0"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(dir.path().join("cognito-resend.db").is_file());

    let ledger_cmd = |args: &[&str]| {
        let mut c = command(&pool.emu.endpoint());
        c.env_remove("COGNITO_RESEND_LEDGER_PATH")
            .current_dir(dir.path())
            .arg("ledger")
            .args(args);
        c
    };
    let ran = run(ledger_cmd(&["stats", "--json"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats: serde_json::Value = serde_json::from_str(&ran.stdout).expect("stats are JSON");
    let n = pool.unconfirmed.len() as u64;
    assert_eq!(stats["users_sent"], n, "{stats}");
    assert_eq!(stats["sends"], n, "{stats}");
    assert_eq!(stats["users_sent_more_than_once"], 0, "{stats}");
    assert_eq!(stats["in_cooldown"], n, "{stats}");
    assert_eq!(stats["claims_in_doubt"], 0, "{stats}");
    assert_eq!(stats["recent_runs"][0]["command"], "backfill", "{stats}");
    assert!(
        stats["recent_runs"][0]["finished_at"].is_string(),
        "{stats}"
    );

    let ran = run(ledger_cmd(&["stats"])).await;
    assert!(
        ran.stdout.contains(&format!("codes sent: {n}")),
        "{}",
        ran.stdout
    );

    let ran = run(ledger_cmd(&["export"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let rows: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let sent: HashMap<String, &serde_json::Value> = rows
        .iter()
        .filter(|r| r["sends"] == 1)
        .map(|r| (r["username"].as_str().unwrap().to_owned(), r))
        .collect();
    assert_eq!(
        sent.keys().cloned().collect::<HashSet<_>>(),
        pool.unconfirmed
    );
    for row in sent.values() {
        assert_eq!(row["client_id"], CLIENT);
        assert_eq!(row["last_outcome"], "sent");
        assert!(row["last_sent_at"].as_str().unwrap().ends_with('Z'));
        assert!(row["claimed_by"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_path_exits_2_naming_it_and_sends_nothing() {
    let pool = pool(20, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    // A directory that does not exist, and a "directory" that is a file (unwritable even for
    // root, unlike a read-only directory).
    let a_file = write_file(dir.path(), "not-a-dir", "x");
    for bad in [
        dir.path().join("missing-dir/ledger.db"),
        a_file.join("ledger.db"),
    ] {
        let mut cmd = backfill(&pool.emu.endpoint(), &csv);
        cmd.arg("--state").arg(&bad);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 2, "{}", ran.stderr);
        assert!(ran.stderr.contains("--state"), "{}", ran.stderr);
        assert!(
            ran.stderr.contains(&bad.display().to_string()),
            "{}",
            ran.stderr
        );
    }
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--state", "s3://bucket/x"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("ledger.path (--state)"),
        "{}",
        ran.stderr
    );
    assert_eq!(pool.emu.stats().requests_total, 0, "nothing was sent");
}
