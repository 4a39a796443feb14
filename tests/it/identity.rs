//! One person, one code: however the rows spell a user — in another case, by email, by `sub` —
//! the person gets one code, counted by the emulator per real user (its ground truth resolves
//! every spelling as Cognito does). And the pool profile, read at the start of a run with
//! `--user-pool-id`, is acted on: a contradicting flag or a missing secret is refused before any
//! call, the default email account's 50 a day stops the run at a spend cap, and a client that
//! hides missing users is named in the summary.

use crate::support;

use cognito_emulator::{
    ClientSpec, EmailSendingAccount, Emulator, UserSpec, UserStatus, UsernameAttribute, sub_for,
};
use support::*;

fn unconfirmed(name: &str, email: &str) -> UserSpec {
    UserSpec::new(name, UserStatus::Unconfirmed).with_email(Some(email.to_owned()))
}

/// Runs `cmd` with a report, returning the run and the report's lines.
async fn with_report(
    mut cmd: tokio::process::Command,
    dir: &std::path::Path,
) -> (Ran, Vec<serde_json::Value>) {
    // A file per run: a run refuses to replace an earlier run's report.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("report-{n}.jsonl"));
    cmd.args(["--report"]).arg(&path);
    let ran = run(cmd).await;
    let lines = if path.exists() {
        report(&path)
    } else {
        Vec::new()
    };
    (ran, lines)
}

/// Resend calls the emulator received.
fn resend_calls(emu: &Emulator) -> u64 {
    emu.stats()
        .requests_by_operation
        .get("ResendConfirmationCode")
        .copied()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variants_of_a_user_get_one_code_without_pool_access() {
    let emu = emulator_with(
        vec![
            unconfirmed("alice", "alice@example.com"),
            unconfirmed("Bob.Smith", "bob@example.com"),
        ],
        |b| b.case_sensitive(Some(false)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(
        dir.path(),
        &[
            "alice",
            "Alice",
            "ALICE",
            "bob.smith",
            "BOB.SMITH",
            "Bob.Smith",
        ]
        .map(String::from),
    );
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--rate", "0"]);
    let (ran, lines) = with_report(cmd, dir.path()).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(emu.codes_sent_to("alice"), Some(1), "{}", ran.stderr);
    assert_eq!(emu.codes_sent_to("Bob.Smith"), Some(1), "{}", ran.stderr);
    assert_eq!(emu.stats().users_sent_more_than_once, 0);
    let by = outcomes(&lines);
    assert_eq!(by.get("sent"), Some(&2), "{by:?}");
    assert_eq!(by.get("cooldown"), Some(&4), "{by:?}");
    // The report keeps each row's spelling, and names the person by the folded key.
    for line in &lines {
        let spelled = line["username"].as_str().unwrap();
        assert_eq!(line["user_key"], spelled.to_lowercase(), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_sensitive_pool_keeps_users_apart_by_case_when_told() {
    // Two people whose usernames differ only by case: a case-sensitive pool has both.
    let emu = emulator_with(
        vec![
            unconfirmed("alice", "alice@example.com"),
            unconfirmed("Alice", "other-alice@example.com"),
        ],
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["alice", "Alice"].map(String::from));

    // Without being told, the tool takes the safe side: one key, one code.
    let (ran, lines) = with_report(backfill(&emu.endpoint(), &csv), dir.path()).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(outcomes(&lines).get("sent"), Some(&1), "{lines:?}");

    // Told, each gets their own code (a fresh ledger: the one above held `alice`).
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.arg("--case-sensitive-usernames");
    let (ran, lines) = with_report(cmd, dir.path()).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(outcomes(&lines).get("sent"), Some(&2), "{lines:?}");
    // Which of the two rows got the first run's one code is whichever claimed first: so one of
    // them holds two codes now and the other one, three in all.
    let (lower, upper) = (
        emu.codes_sent_to("alice").unwrap_or(0),
        emu.codes_sent_to("Alice").unwrap_or(0),
    );
    assert_eq!(lower + upper, 3, "alice {lower}, Alice {upper}");
    assert!(lower >= 1 && upper >= 1, "alice {lower}, Alice {upper}");
}

/// A pool whose users sign up with their email: the username is an id, and rows name people by
/// username, by email in any case, or by `sub`.
async fn email_username_pool() -> (Emulator, Vec<String>) {
    let ids: Vec<String> = (0..3).map(|i| sub_for(&format!("person-{i}"))).collect();
    let users = ids
        .iter()
        .enumerate()
        .map(|(i, id)| unconfirmed(id, &format!("person{i}@example.com")).with_sub(id.clone()))
        .collect();
    let emu = emulator_with(users, |b| {
        b.case_sensitive(Some(false))
            .username_attributes([UsernameAttribute::Email])
    })
    .await;
    (emu, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_naming_a_user_by_email_or_sub_are_resolved_and_sent_once() {
    let (emu, ids) = email_username_pool().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = vec![
        ids[0].clone(),
        "person0@example.com".into(),
        "PERSON0@Example.com".into(),
        "person1@example.com".into(),
        ids[1].to_uppercase(),
        ids[2].clone(),
        "nobody@example.com".into(),
    ];
    let csv = usernames_csv(dir.path(), &rows);
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id(), "--rate", "0"]);
    let (ran, lines) = with_report(cmd, dir.path()).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for id in &ids {
        assert_eq!(emu.codes_sent_to(id), Some(1), "{id}: {}", ran.stderr);
    }
    assert_eq!(emu.stats().users_sent_more_than_once, 0);
    let by = outcomes(&lines);
    assert_eq!(by.get("sent"), Some(&3), "{by:?}");
    assert_eq!(by.get("cooldown"), Some(&3), "{by:?}");
    // The pool has no such user: known without a resend (which a client hiding missing users
    // would have answered with a simulated success).
    assert_eq!(by.get("not_found"), Some(&1), "{by:?}");
    let missing = lines.iter().find(|l| l["outcome"] == "not_found").unwrap();
    assert_eq!(missing["reason"], "pool_lookup", "{missing}");
    assert_eq!(resend_calls(&emu), 3);
    // Every line of one person carries the same key: the canonical username.
    for line in lines.iter().filter(|l| l["outcome"] != "not_found") {
        let key = line["user_key"].as_str().unwrap();
        assert!(ids.contains(&key.to_owned()), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pool_access_alias_shaped_rows_are_counted_in_the_summary() {
    let (emu, _ids) = email_username_pool().await;
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = vec!["person0@example.com".into(), "person1@example.com".into()];
    let csv = usernames_csv(dir.path(), &rows);
    let ran = run(backfill(&emu.endpoint(), &csv)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("2 row(s) look like an email address")
            && ran.stderr.contains("--user-pool-id resolves them"),
        "{}",
        ran.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_profile_refuses_a_contradicting_flag_and_a_missing_secret_before_any_call() {
    let emu = Emulator::builder()
        .client(ClientSpec::new(CLIENT).with_secret("s3cret"))
        .user(unconfirmed("alice", "alice@example.com"))
        .case_sensitive(Some(false))
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["alice".to_owned()]);

    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id()])
        .arg("--case-sensitive-usernames");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("--case-sensitive-usernames") && ran.stderr.contains("insensitive"),
        "{}",
        ran.stderr
    );

    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id()]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains(&format!("app client {CLIENT} has a secret"))
            && ran.stderr.contains("--client-secret-file"),
        "{}",
        ran.stderr
    );
    assert_eq!(resend_calls(&emu), 0, "nothing was sent");

    // `check` prints the profile it read.
    let mut cmd = command(&emu.endpoint());
    cmd.env("COGNITO_RESEND_CLIENT_SECRET", "s3cret")
        .args(["check", "--client-id", CLIENT])
        .args(["--user-pool-id", emu.user_pool_id()]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("case-insensitive") && ran.stdout.contains("has a secret"),
        "{}",
        ran.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_email_accounts_daily_limit_is_a_spend_cap_stop() {
    let users: Vec<UserSpec> = (0..70)
        .map(|i| unconfirmed(&format!("user{i:03}"), &format!("user{i}@example.com")))
        .collect();
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let emu = emulator_with(users, |b| {
        b.email_sending_account(EmailSendingAccount::CognitoDefault)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &names);
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id(), "--rate", "0"]);
    let (ran, lines) = with_report(cmd, dir.path()).await;
    assert_eq!(ran.code, 4, "{}", ran.stderr);
    assert!(ran.stderr.contains("--max-email-per-day"), "{}", ran.stderr);
    assert_eq!(emu.stats().sends_total, 50, "{}", ran.stderr);
    // Every job read has one outcome or was left for the next day's run.
    let by = outcomes(&lines);
    assert_eq!(by.get("sent"), Some(&50), "{by:?}");
    assert!(lines.len() <= 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hiding_missing_users_is_named_in_the_summary() {
    let emu = Emulator::builder()
        .client(ClientSpec::new(CLIENT).with_prevent_user_existence_errors(true))
        .user(unconfirmed("alice", "alice@example.com"))
        .case_sensitive(Some(false))
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["alice", "nobody"].map(String::from));
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--user-pool-id", emu.user_pool_id()]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("PreventUserExistenceErrors") && ran.stderr.contains("--precheck"),
        "{}",
        ran.stderr
    );
}

/// 150 users, one in two reached by SMS (a phone only), the others by email, answered slowly
/// so that 64 calls are in flight at once.
async fn media_pool() -> Emulator {
    let users: Vec<UserSpec> = (0..150)
        .map(|i| {
            let name = format!("user{i:03}");
            let user = UserSpec::new(name.as_str(), UserStatus::Unconfirmed);
            if i % 2 == 0 {
                user.with_email(Some(format!("{name}@example.com")))
            } else {
                user.with_phone(Some(format!("+1555{i:07}")))
            }
        })
        .collect();
    emulator_with(users, |b| {
        b.faults(cognito_emulator::Faults {
            latency: std::time::Duration::from_millis(300),
            ..Default::default()
        })
    })
    .await
}

/// Codes the emulator sent by `medium`.
fn sent_by(emu: &Emulator, medium: &str) -> usize {
    emu.sends()
        .iter()
        .filter(|s| s.delivery_medium == medium)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_medium_day_caps_hold_exactly_with_64_calls_in_flight() {
    // The medium known from the pool's listing (--from-pool) and from AdminGetUser (--precheck
    // on a CSV): each reservation counts toward its medium before the call.
    for from_pool in [true, false] {
        let emu = media_pool().await;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = command(&emu.endpoint());
        cmd.args(["backfill", "--client-id", CLIENT]);
        if from_pool {
            cmd.arg("--from-pool");
        } else {
            let names: Vec<String> = (0..150).map(|i| format!("user{i:03}")).collect();
            cmd.arg(usernames_csv(dir.path(), &names))
                .args(["--precheck", "--precheck-rate", "0"]);
        }
        cmd.args(["--user-pool-id", emu.user_pool_id()])
            .args(["--concurrency", "64", "--rate", "0"])
            .args(["--max-sms-per-day", "10", "--max-email-per-day", "7"]);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 4, "from_pool {from_pool}: {}", ran.stderr);
        let (sms, email) = (sent_by(&emu, "SMS"), sent_by(&emu, "EMAIL"));
        assert!(
            sms <= 10 && email <= 7,
            "from_pool {from_pool}: {sms} SMS (cap 10), {email} emails (cap 7): {}",
            ran.stderr
        );
        // The cap that stopped the run was reached, not stopped short of.
        assert!(
            sms == 10 || email == 7,
            "from_pool {from_pool}: {sms} SMS, {email} emails"
        );
    }
}
