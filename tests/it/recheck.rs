//! Reruns spend no quota on what the ledger already knows (`--recheck-after`): a user Cognito
//! answered `already_confirmed` or `not_found` is skipped without a call as `known_confirmed` or
//! `known_missing`, on both ledgers, until the window passes or `--recheck-after 0` asks again;
//! a run that reads the status from the pool calls as the pool says. Ground truth: the
//! emulator's request count.

use crate::support;

use std::path::Path;

use support::moto::Moto;
use support::*;

/// Runs a backfill of `csv` with `ledger` (the `--state` and its options) and `extra`; returns
/// the report and stderr, after asserting exit 0.
async fn rerun(
    emu_endpoint: &str,
    csv: &Path,
    ledger: &[&str],
    extra: &[&str],
    report_path: &Path,
) -> (Vec<serde_json::Value>, String) {
    let mut cmd = backfill(emu_endpoint, csv);
    cmd.args(["--rate", "0"])
        .args(ledger)
        .args(extra)
        .arg("--report")
        .arg(report_path)
        .arg("--overwrite");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "stderr:\n{}", ran.stderr);
    (report(report_path), ran.stderr)
}

/// The rerun story on one ledger (`ledger`: `--state` and its options).
async fn a_rerun_calls_only_for_what_is_not_known(ledger: &[&str]) {
    let pool = pool(120, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let report_path = dir.path().join("report.jsonl");
    let requests = || pool.emu.stats().requests_total as usize;
    let endpoint = pool.emu.endpoint();
    let (unconfirmed, confirmed, missing) = (
        pool.unconfirmed.len(),
        pool.confirmed.len(),
        pool.missing.len(),
    );
    assert!(unconfirmed > 0 && confirmed > 0 && missing > 0);

    // The first run asks Cognito about everyone.
    let (first, _) = rerun(&endpoint, &csv, ledger, &[], &report_path).await;
    assert_eq!(requests(), pool.csv_usernames.len());
    assert_eq!(users_with(&first, "already_confirmed"), pool.confirmed);
    assert_eq!(users_with(&first, "not_found"), pool.missing);

    // The rerun, with the cooldown over for those sent: calls only for them. The ones known
    // confirmed or missing get no call, and their own outcome.
    let (second, stderr) = rerun(&endpoint, &csv, ledger, &["--cooldown", "0"], &report_path).await;
    assert_eq!(
        requests() - pool.csv_usernames.len(),
        unconfirmed,
        "the rerun called for users the ledger knows confirmed or missing"
    );
    assert_eq!(users_with(&second, "known_confirmed"), pool.confirmed);
    assert_eq!(users_with(&second, "known_missing"), pool.missing);
    assert_eq!(users_with(&second, "sent"), pool.unconfirmed);
    for line in second
        .iter()
        .filter(|l| l["outcome"].as_str().unwrap().starts_with("known_"))
    {
        assert_eq!(line["attempts"], 0, "{line}");
    }
    assert!(
        stderr.contains(&format!("known_confirmed={confirmed}"))
            && stderr.contains(&format!("known_missing={missing}")),
        "the summary counts them:\n{stderr}"
    );

    // A dry run plans the same.
    let before = requests();
    let (planned, stderr) = rerun(&endpoint, &csv, ledger, &["--dry-run"], &report_path).await;
    assert_eq!(requests(), before, "a dry run calls nobody");
    assert_eq!(users_with(&planned, "known_confirmed"), pool.confirmed);
    assert_eq!(users_with(&planned, "known_missing"), pool.missing);
    assert!(
        stderr.contains(&format!(
            "{confirmed} known confirmed, {missing} known missing"
        )),
        "the plan line says them:\n{stderr}"
    );

    // `plan` forecasts the same, and calls nobody either.
    let before = requests();
    let mut cmd = command(&endpoint);
    cmd.args(["plan", "--json", "--client-id", CLIENT])
        .arg(&csv)
        .args(ledger);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(requests(), before, "a plan calls nobody");
    let forecast: serde_json::Value = serde_json::from_str(&ran.stdout).expect("JSON");
    assert_eq!(
        forecast["jobs"]["known_confirmed"], confirmed,
        "{forecast:#}"
    );
    assert_eq!(forecast["jobs"]["known_missing"], missing, "{forecast:#}");
    assert_eq!(forecast["jobs"]["cooldown"], unconfirmed, "{forecast:#}");
    assert_eq!(forecast["jobs"]["would_send"], 0, "{forecast:#}");

    // `--recheck-after 0` asks again (the sent ones are in cooldown now).
    let before = requests();
    let (third, _) = rerun(
        &endpoint,
        &csv,
        ledger,
        &["--recheck-after", "0"],
        &report_path,
    )
    .await;
    assert_eq!(requests() - before, confirmed + missing);
    assert_eq!(users_with(&third, "already_confirmed"), pool.confirmed);
    assert_eq!(users_with(&third, "not_found"), pool.missing);
    assert_eq!(users_with(&third, "cooldown"), pool.unconfirmed);

    // Nobody got a second code by any of this.
    for (user, n) in pool.emu.send_counts() {
        assert_eq!(
            n, 2,
            "{user}: one code per run with the cooldown over, no more"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_makes_no_call_for_users_known_confirmed_or_missing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    a_rerun_calls_only_for_what_is_not_known(&["--state", state.to_str().unwrap()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_on_a_dynamodb_ledger_makes_no_call_for_users_known_confirmed_or_missing() {
    let moto = Moto::start().await;
    let table = "dynamodb://recheck";
    let mut init = command("http://127.0.0.1:9");
    init.args(["ledger", "init", "--state", table])
        .args(["--dynamodb-endpoint", &moto.endpoint]);
    let ran = run(init).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    a_rerun_calls_only_for_what_is_not_known(&[
        "--state",
        table,
        "--dynamodb-endpoint",
        &moto.endpoint,
        "--claim-lease",
        "12s",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_driven_run_calls_as_the_pool_says_whatever_the_ledger_knows() {
    // The ledger says `not_found` for a user who has signed up since: the pool's listing is
    // newer, and the run sends.
    use cognito_emulator::{UserSpec, UserStatus};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let csv = usernames_csv(dir.path(), &["late".to_owned()]);
    let empty = emulator_with(Vec::new(), |b| b).await;
    let mut cmd = backfill(&empty.endpoint(), &csv);
    cmd.arg("--state").arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let emu = emulator_with(vec![UserSpec::new("late", UserStatus::Unconfirmed)], |b| b).await;
    // A CSV rerun trusts the ledger...
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--state").arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stderr.contains("known_missing=1"), "{}", ran.stderr);
    assert_eq!(emu.stats().requests_total, 0);
    // ...a run over the pool reads the status, and sends.
    let mut cmd = command(&emu.endpoint());
    cmd.args(["backfill", "--from-pool"])
        .args(["--user-pool-id", cognito_emulator::DEFAULT_USER_POOL_ID])
        .args(["--client-id", CLIENT])
        .arg("--state")
        .arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(emu.send_counts().get("late"), Some(&1), "{}", ran.stderr);
}
