//! `plan`: the forecast against what `backfill` then does. Each test plans a run, checks that
//! the emulator received no `ResendConfirmationCode` while planning, runs the backfill the plan
//! describes with the same settings and ledger, and compares the plan's counts with the
//! report's outcomes and the emulator's record.

use crate::support;

use std::path::Path;

use cognito_emulator::{
    AliasAttribute, EmailSendingAccount, Emulator, UserSpec, UserStatus, VerifiedAttribute,
};
use support::*;

/// Calls of `operation` the emulator received.
fn calls(emu: &Emulator, operation: &str) -> u64 {
    emu.stats()
        .requests_by_operation
        .get(operation)
        .copied()
        .unwrap_or(0)
}

/// `cognito-resend plan CSV --client-id CLIENT --json` against `emu`.
fn plan(emu: &Emulator, csv: &Path) -> tokio::process::Command {
    let mut cmd = command(&emu.endpoint());
    cmd.arg("plan")
        .arg(csv)
        .args(["--client-id", CLIENT, "--json"]);
    cmd
}

/// Runs a plan and returns its forecast; the emulator must not have been asked to send.
async fn forecast(emu: &Emulator, cmd: tokio::process::Command) -> serde_json::Value {
    let resends = calls(emu, "ResendConfirmationCode");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "plan failed:\n{}", ran.stderr);
    assert_eq!(
        calls(emu, "ResendConfirmationCode"),
        resends,
        "the plan called ResendConfirmationCode"
    );
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("the plan's --json is JSON ({e}):\n{}", ran.stdout))
}

fn n(v: &serde_json::Value) -> usize {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is a count"))
        .try_into()
        .unwrap()
}

/// A report's count of `outcome` (0 when absent).
fn count(by: &std::collections::BTreeMap<String, usize>, outcome: &str) -> usize {
    by.get(outcome).copied().unwrap_or(0)
}

/// The jobs the plan says the run reports `cooldown`: the ledger's, and the merged rows.
fn cooldown(f: &serde_json::Value) -> usize {
    let j = &f["jobs"];
    n(&j["cooldown"])
        + n(&j["aliases_merged"])
        + n(&j["case_variants_merged"])
        + n(&j["duplicates_merged"])
}

/// Puts `username` in cooldown in the ledger `state` with a real send.
async fn send_first(emu: &Emulator, dir: &Path, state: &Path, username: &str, pool: bool) {
    let csv = write_file(dir, "first.csv", format!("username\n{username}\n"));
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--state").arg(state);
    if pool {
        cmd.args(["--user-pool-id", emu.user_pool_id()]);
    }
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(emu.codes_sent_to(username), Some(1));
}

/// Unconfirmed, confirmed and missing users, a case variant, a duplicate, unreadable rows and
/// a foreign client id; `u1` is in cooldown.
const MIXED_CSV: &str = "username,client_id\n\
    u1,\n\
    u2,\n\
    U2,\n\
    u3,\n\
    u3,\n\
    u4,\n\
    c1,\n\
    c2,\n\
    missing-1,\n\
    bad user,\n\
    u5,otherclient\n";

/// The users of [`MIXED_CSV`], in a case-insensitive pool (so that whichever of `u2` and `U2`
/// a concurrent run claims first, the person gets one code and the other row is `cooldown`).
async fn mixed_pool() -> Emulator {
    let mut users: Vec<UserSpec> = (1..=5)
        .map(|i| UserSpec::new(format!("u{i}"), UserStatus::Unconfirmed))
        .collect();
    users.push(UserSpec::new("c1", UserStatus::Confirmed));
    users.push(UserSpec::new("c2", UserStatus::Confirmed));
    emulator_with(users, |b| b.case_sensitive(Some(false))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_pool_the_plan_matches_the_backfill_that_follows_and_sends_nothing() {
    let emu = mixed_pool().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    send_first(&emu, dir.path(), &state, "u1", false).await;
    let csv = write_file(dir.path(), "users.csv", MIXED_CSV);

    let mut cmd = plan(&emu, &csv);
    cmd.arg("--state").arg(&state).args(["--sms-price", "0.05"]);
    let f = forecast(&emu, cmd).await;
    assert_eq!(n(&f["rows"]), 11, "{f:#}");
    assert_eq!(n(&f["jobs"]["cooldown"]), 1, "u1: {f:#}");
    assert_eq!(n(&f["jobs"]["case_variants_merged"]), 1, "U2: {f:#}");
    assert_eq!(n(&f["jobs"]["duplicates_merged"]), 1, "u3 again: {f:#}");
    assert_eq!(n(&f["jobs"]["invalid"]), 2, "{f:#}");
    // Without the pool, confirmed and missing users are among `would send`.
    assert_eq!(n(&f["jobs"]["would_send"]), 6, "{f:#}");
    assert_eq!(n(&f["codes"]["unknown"]), 6, "{f:#}");
    assert_eq!(n(&f["calls"]), 6, "{f:#}");
    assert_eq!(f["pool"], serde_json::Value::Null);
    assert_eq!(f["sms_cost"]["total_usd"], 0.0, "{f:#}");
    // The default --rate 10: six calls take 0.6 s.
    assert_eq!(f["rate"]["from"], "--rate");
    assert!(
        (f["wall_seconds"].as_f64().unwrap() - 0.6).abs() < 1e-9,
        "{f:#}"
    );
    assert!(f["stop"].is_null(), "{f:#}");

    // The run it describes.
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "invalid rows: {}", ran.stderr);
    let by = outcomes(&report(&report_path));
    assert_eq!(
        count(&by, "sent") + count(&by, "already_confirmed") + count(&by, "not_found"),
        n(&f["jobs"]["would_send"]),
        "{by:?} vs {f:#}"
    );
    assert_eq!(count(&by, "cooldown"), cooldown(&f), "{by:?} vs {f:#}");
    assert_eq!(count(&by, "invalid"), n(&f["jobs"]["invalid"]), "{by:?}");
    assert_eq!(emu.stats().users_sent_more_than_once, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cap_stops_the_plan_where_it_stops_the_run_and_the_text_names_nobody() {
    let emu = mixed_pool().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(dir.path(), "users.csv", MIXED_CSV);
    let state = dir.path().join("ledger.db");

    let mut cmd = plan(&emu, &csv);
    cmd.arg("--state")
        .arg(&state)
        .args(["--max-sends", "2", "--rate", "4"]);
    let f = forecast(&emu, cmd).await;
    assert!(
        !state.exists(),
        "a plan creates no ledger: it writes nothing"
    );
    let stop = &f["stop"];
    assert!(
        stop["setting"].as_str().unwrap().contains("--max-sends"),
        "{f:#}"
    );
    assert_eq!(n(&stop["after_codes"]), 2, "{f:#}");
    // u1 and u2 sent, U2 merged, then u3 is refused: two calls at 4/s.
    assert_eq!(n(&stop["after_calls"]), 2, "{f:#}");
    assert_eq!(stop["after_seconds"], 0.5, "{f:#}");

    // The text says the same, without a username.
    let mut cmd = command(&emu.endpoint());
    cmd.arg("plan")
        .arg(&csv)
        .args(["--client-id", CLIENT, "--max-sends", "2", "--rate", "4"])
        .arg("--state")
        .arg(&state);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("stops at --max-sends") && ran.stdout.contains("after 2 codes"),
        "{}",
        ran.stdout
    );
    // (The first line names the input file, whose temporary path could hold anything.)
    let body: Vec<&str> = ran.stdout.lines().skip(1).collect();
    let body = body.join("\n");
    for name in ["u1", "u2", "U2", "u3", "c1", "missing-1", "bad user"] {
        assert!(
            !body.contains(name),
            "the plan names {name}:\n{}{}",
            ran.stdout,
            ran.stderr
        );
    }

    // The run stops there too.
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--max-sends", "2", "--concurrency", "1"])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert_eq!(emu.stats().sends_total, 2);
    assert_eq!(count(&outcomes(&report(&report_path)), "sent"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plan_setting_is_a_usage_error() {
    let emu = mixed_pool().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(dir.path(), "users.csv", MIXED_CSV);
    let mut cmd = plan(&emu, &csv);
    cmd.arg("--sms-price=-1");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--sms-price"), "{}", ran.stderr);
    let mut cmd = command(&emu.endpoint());
    cmd.args(["plan", "--client-id", CLIENT, "--from-pool"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--user-pool-id"), "{}", ran.stderr);
    assert_eq!(calls(&emu, "ResendConfirmationCode"), 0);
}

/// The pool the plan reads (emulator branch `emu`: DescribeUserPool, case-insensitive
/// usernames, aliases). A command given --user-pool-id against an emulator without them exits 2
/// at "cannot read the pool profile": the assertion then says so.
fn pool_plan(emu: &Emulator, csv: &Path) -> tokio::process::Command {
    let mut cmd = plan(emu, csv);
    cmd.args(["--user-pool-id", emu.user_pool_id()]);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_pool_every_count_and_medium_matches_the_backfill_that_follows() {
    let users = vec![
        UserSpec::new("alice", UserStatus::Unconfirmed).with_preferred_username("ally"),
        UserSpec::new("bob", UserStatus::Unconfirmed)
            .with_email(None)
            .with_phone(Some("+15555550101".into())),
        UserSpec::new("carol", UserStatus::Unconfirmed).with_phone(Some("+15555550102".into())),
        UserSpec::new("dave", UserStatus::Unconfirmed),
        UserSpec::new("erin", UserStatus::Confirmed),
    ];
    let emu = emulator_with(users, |b| {
        b.case_sensitive(Some(false))
            .alias_attributes([AliasAttribute::PreferredUsername])
            .auto_verified_attributes([VerifiedAttribute::Email, VerifiedAttribute::PhoneNumber])
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    send_first(&emu, dir.path(), &state, "dave", true).await;
    let csv = write_file(
        dir.path(),
        "users.csv",
        "username,client_id\n\
         alice,\n\
         ally,\n\
         ALICE,\n\
         bob,\n\
         carol,\n\
         carol,\n\
         dave,\n\
         erin,\n\
         nobody,\n\
         bad user,\n\
         zed,otherclient\n",
    );

    let reads = calls(&emu, "AdminGetUser");
    let mut cmd = pool_plan(&emu, &csv);
    cmd.arg("--state").arg(&state).args(["--sms-price", "0.25"]);
    let f = forecast(&emu, cmd).await;
    assert!(
        calls(&emu, "AdminGetUser") > reads,
        "the plan read the pool"
    );
    let j = &f["jobs"];
    assert_eq!(n(&j["would_send"]), 3, "alice, bob, carol: {f:#}");
    assert_eq!(n(&j["aliases_merged"]), 1, "ally: {f:#}");
    assert_eq!(n(&j["case_variants_merged"]), 1, "ALICE: {f:#}");
    assert_eq!(n(&j["duplicates_merged"]), 1, "carol again: {f:#}");
    assert_eq!(n(&j["cooldown"]), 1, "dave: {f:#}");
    assert_eq!(n(&j["already_confirmed"]), 1, "erin: {f:#}");
    assert_eq!(n(&j["not_found"]), 1, "nobody: {f:#}");
    assert_eq!(n(&j["invalid"]), 2, "{f:#}");
    assert_eq!(n(&f["codes"]["sms"]), 2, "bob, carol: {f:#}");
    assert_eq!(n(&f["codes"]["email"]), 1, "alice: {f:#}");
    assert_eq!(f["sms_cost"]["total_usd"], 0.5, "{f:#}");

    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id()])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "invalid rows: {}", ran.stderr);
    let lines = report(&report_path);
    let by = outcomes(&lines);
    assert_eq!(count(&by, "sent"), n(&j["would_send"]), "{by:?} vs {f:#}");
    assert_eq!(count(&by, "cooldown"), cooldown(&f), "{by:?} vs {f:#}");
    for outcome in ["already_confirmed", "not_found", "invalid", "capped"] {
        assert_eq!(
            count(&by, outcome),
            n(&j[outcome]),
            "{outcome}: {by:?} vs {f:#}"
        );
    }
    let medium = |m: &str| {
        lines
            .iter()
            .filter(|l| l["outcome"] == "sent" && l["delivery"]["medium"] == m)
            .count()
    };
    assert_eq!(medium("SMS"), n(&f["codes"]["sms"]), "{lines:?}");
    assert_eq!(medium("EMAIL"), n(&f["codes"]["email"]), "{lines:?}");
    assert_eq!(emu.stats().users_sent_more_than_once, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_email_accounts_50_a_day_binds_in_the_plan_where_it_stops_the_run() {
    let users: Vec<UserSpec> = (0..70)
        .map(|i| UserSpec::new(format!("user{i:03}"), UserStatus::Unconfirmed))
        .collect();
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let emu = emulator_with(users, |b| {
        b.email_sending_account(EmailSendingAccount::CognitoDefault)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &names);
    let state = dir.path().join("ledger.db");

    // From the CSV, at --rate 0: the forecast is at the quota of the API's category.
    let mut cmd = pool_plan(&emu, &csv);
    cmd.arg("--state").arg(&state).args(["--rate", "0"]);
    let f = forecast(&emu, cmd).await;
    assert_eq!(n(&f["codes"]["email"]), 70, "{f:#}");
    let stop = &f["stop"];
    assert!(
        stop["setting"]
            .as_str()
            .unwrap()
            .contains("default email account"),
        "{f:#}"
    );
    assert_eq!(n(&stop["after_codes"]), 50, "{f:#}");
    assert_eq!(f["rate"]["from"], "quota", "{f:#}");
    assert_eq!(f["rate"]["per_second"], 25.0, "{f:#}");
    assert_eq!(stop["after_seconds"], 2.0, "50 calls at 25/s: {f:#}");

    // From the pool (ListUsers): the same forecast.
    let listed = calls(&emu, "ListUsers");
    let mut cmd = command(&emu.endpoint());
    cmd.args(["plan", "--from-pool", "--client-id", CLIENT, "--json"])
        .args(["--user-pool-id", emu.user_pool_id()])
        .arg("--state")
        .arg(&state);
    let g = forecast(&emu, cmd).await;
    assert!(
        calls(&emu, "ListUsers") > listed,
        "the plan listed the pool"
    );
    assert_eq!(n(&g["jobs"]["would_send"]), 70, "{g:#}");
    assert_eq!(n(&g["stop"]["after_codes"]), 50, "{g:#}");

    // The run stops there.
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id(), "--rate", "0"])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert_eq!(emu.stats().sends_total, 50, "{}", ran.stderr);
    assert_eq!(
        count(&outcomes(&report(&report_path)), "sent"),
        n(&stop["after_codes"])
    );

    // And the next plan sees the day spent: the cap binds at once.
    let mut cmd = pool_plan(&emu, &csv);
    cmd.arg("--state").arg(&state);
    let h = forecast(&emu, cmd).await;
    assert_eq!(n(&h["jobs"]["cooldown"]), 50, "{h:#}");
    assert_eq!(n(&h["stop"]["after_codes"]), 0, "{h:#}");
}
