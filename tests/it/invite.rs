//! The other half of "never finished signing up": users an administrator created
//! (`FORCE_CHANGE_PASSWORD`) get the invitation again (`AdminCreateUser`, `MessageAction =
//! RESEND`) through the same engine, ledger and report as the confirmation codes. Ground truth:
//! the emulator's record of every code and every invitation, per person.

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};

use cognito_emulator::{DEFAULT_USER_POOL_ID, Emulator, QuotaCategory, UserSpec, UserStatus};
use support::*;

/// A pool of `unconfirmed` self-service sign-ups, `invited` users who never signed in and
/// `confirmed` ones, every one with an email address.
async fn mixed_pool(
    unconfirmed: usize,
    invited: usize,
    confirmed: usize,
    tune: impl FnOnce(cognito_emulator::EmulatorBuilder) -> cognito_emulator::EmulatorBuilder,
) -> (Emulator, HashSet<String>, HashSet<String>) {
    let mut specs = Vec::new();
    let (mut u, mut i) = (HashSet::new(), HashSet::new());
    for n in 0..unconfirmed {
        let name = format!("signup-{n:03}");
        u.insert(name.clone());
        specs.push(UserSpec::new(name, UserStatus::Unconfirmed));
    }
    for n in 0..invited {
        let name = format!("invited-{n:03}");
        i.insert(name.clone());
        specs.push(UserSpec::new(name, UserStatus::ForceChangePassword));
    }
    for n in 0..confirmed {
        specs.push(UserSpec::new(
            format!("member-{n:03}"),
            UserStatus::Confirmed,
        ));
    }
    (emulator_with(specs, tune).await, u, i)
}

/// A command against `emu` with its pool id.
fn cmd(emu: &Emulator) -> tokio::process::Command {
    let mut c = command(&emu.endpoint());
    c.env("COGNITO_RESEND_COGNITO_USER_POOL_ID", DEFAULT_USER_POOL_ID);
    c
}

/// Report lines per (action, outcome).
fn by_action(report: &[serde_json::Value]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for l in report {
        let action = l["action"].as_str().unwrap_or("null").to_owned();
        let outcome = l["outcome"].as_str().unwrap().to_owned();
        *m.entry((action, outcome)).or_default() += 1;
    }
    m
}

fn once_each(counts: &HashMap<String, usize>) -> HashSet<String> {
    assert!(
        counts.values().all(|&n| n == 1),
        "somebody got two: {counts:?}"
    );
    counts.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pool_run_reaches_both_kinds_once_and_nobody_else() {
    let (emu, unconfirmed, invited) = mixed_pool(60, 40, 20, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut c = cmd(&emu);
    c.args(["backfill", "--from-pool", "--client-id", CLIENT])
        .args(["--rate", "0", "--invite-rate", "0"])
        .args(["--status", "UNCONFIRMED,FORCE_CHANGE_PASSWORD"])
        .arg("--report")
        .arg(&report_path);
    let ran = run(c).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    assert_eq!(once_each(&emu.send_counts()), unconfirmed, "one code each");
    assert_eq!(
        once_each(&emu.invite_counts()),
        invited,
        "one invitation each"
    );
    let lines = report(&report_path);
    let counts = by_action(&lines);
    assert_eq!(counts.get(&("confirm".into(), "sent".into())), Some(&60));
    assert_eq!(counts.get(&("invite".into(), "sent".into())), Some(&40));
    assert_eq!(lines.len(), 100, "only those two kinds were listed");
    // An invitation is asked to go by email, the user's one contact.
    assert!(
        lines
            .iter()
            .filter(|l| l["action"] == "invite")
            .all(|l| l["delivery"]["medium"] == "EMAIL"),
        "{lines:?}"
    );

    // Without --status the run is what it always was: codes only.
    let (emu, unconfirmed, _) = mixed_pool(6, 4, 2, |b| b).await;
    let mut c = cmd(&emu);
    c.args([
        "backfill",
        "--from-pool",
        "--client-id",
        CLIENT,
        "--rate",
        "0",
    ]);
    let ran = run(c).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(once_each(&emu.send_counts()), unconfirmed);
    assert!(emu.invite_counts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_user_who_signed_in_since_ends_already_signed_in_and_gets_nothing() {
    // The file (an export of last week) says FORCE_CHANGE_PASSWORD; the pool says CONFIRMED now.
    let (emu, _, invited) = mixed_pool(0, 3, 0, |b| {
        b.user(UserSpec::new("signed-in-since", UserStatus::Confirmed))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut rows = vec!["username,status".to_owned()];
    rows.extend(invited.iter().map(|u| format!("{u},FORCE_CHANGE_PASSWORD")));
    rows.push("signed-in-since,FORCE_CHANGE_PASSWORD".into());
    let csv = write_file(dir.path(), "invited.csv", rows.join("\n"));
    let report_path = dir.path().join("report.jsonl");
    let mut c = cmd(&emu);
    c.arg("backfill")
        .arg(&csv)
        .args(["--client-id", CLIENT, "--rate", "0", "--invite-rate", "0"])
        // The run invites: a row's FORCE_CHANGE_PASSWORD is then an invitation.
        .args(["--status", "UNCONFIRMED,FORCE_CHANGE_PASSWORD"])
        .arg("--report")
        .arg(&report_path);
    let ran = run(c).await;
    assert_eq!(
        ran.code, 0,
        "a user who signed in is no failure: {}",
        ran.stderr
    );
    assert_eq!(once_each(&emu.invite_counts()), invited);
    assert!(
        emu.send_counts().is_empty(),
        "no confirmation code to anyone"
    );
    let lines = report(&report_path);
    let fate: HashMap<&str, &str> = lines
        .iter()
        .map(|l| {
            (
                l["username"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(fate["signed-in-since"], "already_signed_in", "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooldown_and_the_per_user_cap_count_codes_and_invitations_together() {
    let (emu, _, _) = mixed_pool(0, 1, 0, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let csv_invite = write_file(dir.path(), "a.csv", "username,action\ninvited-000,invite\n");
    let csv_confirm = write_file(
        dir.path(),
        "b.csv",
        "username,action\ninvited-000,confirm\n",
    );
    let go = |csv: &std::path::Path, extra: &[&str], report_path: &std::path::Path| {
        let mut c = cmd(&emu);
        c.arg("backfill")
            .arg(csv)
            .args(["--client-id", CLIENT, "--rate", "0", "--invite-rate", "0"])
            .arg("--state")
            .arg(&state)
            .args(extra)
            .arg("--report")
            .arg(report_path);
        c
    };
    let first = dir.path().join("1.jsonl");
    let ran = run(go(&csv_invite, &[], &first)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(emu.invite_counts().get("invited-000"), Some(&1));

    // The same person, the other action, within the cooldown: no call.
    let second = dir.path().join("2.jsonl");
    let ran = run(go(&csv_confirm, &[], &second)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        report(&second)[0]["outcome"],
        "cooldown",
        "{:?} {}",
        report(&second),
        ran.stderr
    );

    // Past the cooldown, at --max-sends-per-user 1: capped, whichever action sent the first.
    let third = dir.path().join("3.jsonl");
    let ran = run(go(
        &csv_invite,
        &["--cooldown", "1ms", "--max-sends-per-user", "1"],
        &third,
    ))
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(report(&third)[0]["outcome"], "capped");
    assert_eq!(emu.invite_counts().get("invited-000"), Some(&1));
    assert!(emu.send_counts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_of_user_creation_never_slows_the_resends() {
    // AdminCreateUser's quota is tight; ResendConfirmationCode's is not set.
    let (emu, unconfirmed, invited) =
        mixed_pool(40, 30, 0, |b| b.user_creation_quota_rps(Some(3))).await;
    let mut c = cmd(&emu);
    c.args(["backfill", "--from-pool", "--client-id", CLIENT])
        .args(["--rate", "20", "--invite-rate", "20"])
        .args(["--status", "UNCONFIRMED,FORCE_CHANGE_PASSWORD"]);
    let (metrics, code, stderr) = run_and_scrape(c).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(once_each(&emu.send_counts()), unconfirmed);
    assert_eq!(once_each(&emu.invite_counts()), invited);
    let throttled = |c| emu.rates_of(c).iter().map(|s| s.throttled).sum::<u64>();
    assert!(
        throttled(QuotaCategory::UserCreation) > 0,
        "the invitations met their quota"
    );
    assert_eq!(throttled(QuotaCategory::Resend), 0);
    // Each action's controller: the invitations' cut below its ceiling, the resends' never.
    let limit = |action| {
        sample(
            &metrics,
            "cognito_resend_rate_limit_per_second",
            &[("action", action)],
        )
        .expect("the rate limit gauge of each action")
    };
    assert_eq!(limit("confirm"), 20.0, "{metrics}");
    assert!(limit("invite") < 20.0, "{metrics}");
    promtool_check(&metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_without_admin_create_user_stop_the_run_early_naming_the_permission() {
    let (emu, unconfirmed, _) = mixed_pool(5, 20, 0, |b| {
        b.deny(cognito_emulator::IamAction::AdminCreateUser)
    })
    .await;
    let mut c = cmd(&emu);
    c.args(["backfill", "--from-pool", "--client-id", CLIENT])
        .args(["--rate", "0", "--invite-rate", "0", "--concurrency", "1"])
        .args(["--status", "FORCE_CHANGE_PASSWORD,UNCONFIRMED"]);
    let ran = run(c).await;
    assert_eq!(ran.code, 1, "an early stop: {}", ran.stderr);
    assert!(
        ran.stderr.contains("cognito-idp:AdminCreateUser"),
        "the message names the permission: {}",
        ran.stderr
    );
    assert!(emu.invite_counts().is_empty());
    // Invited users are listed first here: the run stopped before the sign-ups' turn.
    assert!(emu.send_counts().len() < unconfirmed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_by_email_counts_toward_the_days_email_cap() {
    let (emu, _, invited) = mixed_pool(0, 10, 0, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut c = cmd(&emu);
    c.args(["backfill", "--from-pool", "--client-id", CLIENT])
        .args(["--rate", "0", "--invite-rate", "0", "--concurrency", "4"])
        .args([
            "--status",
            "FORCE_CHANGE_PASSWORD",
            "--max-email-per-day",
            "3",
        ])
        .arg("--state")
        .arg(dir.path().join("ledger.db"))
        .arg("--report")
        .arg(&report_path);
    let ran = run(c).await;
    assert_eq!(ran.code, 4, "stopped at the spend cap: {}", ran.stderr);
    let sent = emu.invite_counts();
    assert_eq!(sent.len(), 3, "exactly the cap: {sent:?}");
    assert!(sent.keys().all(|u| invited.contains(u)));
    assert_eq!(users_with(&report(&report_path), "sent").len(), 3);
}
