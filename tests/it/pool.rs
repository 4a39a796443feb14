//! The pool as a source: `discover`, `backfill --from-pool`, `--precheck` and dry-run plans,
//! against the emulator's ListUsers and AdminGetUser (signed requests through the AWS SDK's
//! credential chain). Ground truth: the seeded pool and the emulator's record of every call.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use cognito_emulator::{DEFAULT_USER_POOL_ID, Emulator, UserSpec, UserStatus};
use support::moto::{self, Moto};
use support::*;

/// 1,000 users: 60 % UNCONFIRMED, the rest in other statuses; user `i` was created `i * 10`
/// minutes ago, so the pool spans about a week.
struct Seeded {
    emu: Emulator,
    users: Vec<(String, UserStatus, SystemTime)>,
}

impl Seeded {
    async fn start(
        tune: impl FnOnce(cognito_emulator::EmulatorBuilder) -> cognito_emulator::EmulatorBuilder,
    ) -> Self {
        let now = SystemTime::now();
        let statuses = [
            UserStatus::Unconfirmed,
            UserStatus::Confirmed,
            UserStatus::Unconfirmed,
            UserStatus::ForceChangePassword,
            UserStatus::Unconfirmed,
            UserStatus::Confirmed,
            UserStatus::Unconfirmed,
            UserStatus::ExternalProvider,
            UserStatus::Unconfirmed,
            UserStatus::Unconfirmed,
        ];
        let users: Vec<(String, UserStatus, SystemTime)> = (0..1_000)
            .map(|i| {
                (
                    format!("pool-user-{i:04}"),
                    statuses[i % statuses.len()],
                    now - Duration::from_secs(600 * i as u64),
                )
            })
            .collect();
        let specs = users
            .iter()
            .map(|(u, s, c)| UserSpec::new(u.clone(), *s).with_created(*c))
            .collect();
        let emu = emulator_with(specs, tune).await;
        Self { emu, users }
    }

    /// UNCONFIRMED users created in [after, before) and at least `older` ago.
    fn expected(
        &self,
        after: Option<SystemTime>,
        before: Option<SystemTime>,
        older: Option<Duration>,
    ) -> HashSet<String> {
        let now = SystemTime::now();
        self.users
            .iter()
            .filter(|(_, s, c)| {
                *s == UserStatus::Unconfirmed
                    && after.is_none_or(|a| *c >= a)
                    && before.is_none_or(|b| *c < b)
                    && older.is_none_or(|o| now.duration_since(*c).unwrap() >= o)
            })
            .map(|(u, _, _)| u.clone())
            .collect()
    }

    fn unconfirmed(&self) -> HashSet<String> {
        self.expected(None, None, None)
    }

    fn calls(&self, operation: &str) -> u64 {
        self.emu
            .stats()
            .requests_by_operation
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// A command with the pool id and the SDK's test credentials (from `command`).
    fn cmd(&self) -> tokio::process::Command {
        let mut c = command(&self.emu.endpoint());
        c.env("COGNITO_RESEND_COGNITO_USER_POOL_ID", DEFAULT_USER_POOL_ID);
        c
    }
}

fn csv_usernames(text: &str) -> Vec<String> {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(&headers[0], "username");
    r.records().map(|rec| rec.unwrap()[0].to_owned()).collect()
}

/// Each report line's username and outcome.
fn fates(report: &[serde_json::Value]) -> BTreeMap<String, String> {
    report
        .iter()
        .map(|l| {
            (
                l["username"].as_str().unwrap().to_owned(),
                l["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_lists_exactly_the_unconfirmed_users_in_the_window() {
    let pool = Seeded::start(|b| b).await;
    let now = SystemTime::now();

    // Everyone UNCONFIRMED, with the attributes asked for.
    let mut cmd = pool.cmd();
    cmd.args(["discover", "--attributes", "email"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let listed = csv_usernames(&ran.stdout);
    assert_eq!(
        listed.len(),
        pool.unconfirmed().len(),
        "no duplicates across pages"
    );
    assert_eq!(
        listed.iter().cloned().collect::<HashSet<_>>(),
        pool.unconfirmed()
    );
    let first_row = ran.stdout.lines().nth(1).unwrap();
    assert!(
        first_row.contains("@example.com") && first_row.contains("UNCONFIRMED"),
        "{first_row}"
    );
    assert_eq!(
        ran.stdout.lines().next().unwrap(),
        "username,created,status,email"
    );
    // 600 UNCONFIRMED users among 1,000, filtered by Cognito: 10 pages of 60 (and perhaps an
    // empty 11th, if the 10th carried a token).
    let pages = pool.calls("ListUsers");
    assert!((10..=11).contains(&pages), "{pages} ListUsers calls");

    // A window: created between 3 days and 1 day ago, written to a file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("window.csv");
    let (after, before) = (
        now - Duration::from_secs(3 * 86_400),
        now - Duration::from_secs(86_400),
    );
    let mut cmd = pool.cmd();
    cmd.args(["discover", "--created-after", &rfc3339(after)])
        .args(["--created-before", &rfc3339(before)])
        .arg("--out")
        .arg(&out);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let listed: HashSet<String> = csv_usernames(&std::fs::read_to_string(&out).unwrap())
        .into_iter()
        .collect();
    // RFC 3339 to the second: compare against the same rounding.
    let after = humantime::parse_rfc3339(&rfc3339(after)).unwrap();
    let before = humantime::parse_rfc3339(&rfc3339(before)).unwrap();
    assert_eq!(listed, pool.expected(Some(after), Some(before), None));
    assert!(!listed.is_empty());

    // --older-than: users who signed up in the last 6 hours are left alone.
    let mut cmd = pool.cmd();
    cmd.args(["discover", "--older-than", "6h"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let listed: HashSet<String> = csv_usernames(&ran.stdout).into_iter().collect();
    let expected = pool.expected(None, None, Some(Duration::from_secs(6 * 3600)));
    assert_eq!(listed, expected);
    assert!(expected.len() < pool.unconfirmed().len() && !expected.is_empty());
    assert_eq!(
        pool.calls("ResendConfirmationCode"),
        0,
        "discover sends nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_pool_sends_each_unconfirmed_user_once_and_resumes() {
    let pool = Seeded::start(|b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let report_path = dir.path().join("report.jsonl");
    let backfill = |report: &Path| {
        let mut c = pool.cmd();
        c.args([
            "backfill",
            "--from-pool",
            "--client-id",
            CLIENT,
            "--rate",
            "0",
        ])
        .args(["--older-than", "1h"])
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(report);
        c
    };
    let ran = run(backfill(&report_path)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let expected = pool.expected(None, None, Some(Duration::from_secs(3600)));
    let counts = pool.emu.send_counts();
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(counts.values().all(|&n| n == 1));
    let first = report(&report_path);
    assert_eq!(users_with(&first, "sent"), expected);
    assert!(first[0]["source"].as_str().unwrap().starts_with("pool:"));

    // The scheduled job runs again tomorrow... or right away: nobody gets a second code.
    let again = dir.path().join("again.jsonl");
    let ran = run(backfill(&again)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(users_with(&report(&again), "cooldown"), expected);
    assert!(pool.emu.send_counts().values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precheck_skips_users_who_are_not_unconfirmed_without_a_resend() {
    let pool = Seeded::start(|b| b).await;
    let dir = tempfile::tempdir().unwrap();
    // Every user, plus some who do not exist.
    let mut names: Vec<String> = pool.users.iter().map(|(u, _, _)| u.clone()).collect();
    names.extend((0..50).map(|i| format!("ghost-{i}")));
    let csv = usernames_csv(dir.path(), &names);
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = pool.cmd();
    cmd.args([
        "backfill",
        "--client-id",
        CLIENT,
        "--rate",
        "0",
        "--precheck",
        "--precheck-rate",
        "0",
    ])
    .arg(&csv)
    .arg("--report")
    .arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.calls("ResendConfirmationCode"),
        pool.unconfirmed().len() as u64,
        "a resend only for UNCONFIRMED users"
    );
    assert_eq!(pool.calls("AdminGetUser"), names.len() as u64);
    let report = report(&report_path);
    assert_eq!(users_with(&report, "sent"), pool.unconfirmed());
    let ghosts: HashSet<String> = (0..50).map(|i| format!("ghost-{i}")).collect();
    assert_eq!(users_with(&report, "not_found"), ghosts);
    let skipped = users_with(&report, "already_confirmed");
    assert_eq!(skipped.len(), 400);
    let reasons: HashSet<&str> = report
        .iter()
        .filter(|l| l["outcome"] == "already_confirmed")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        HashSet::from([
            "precheck: CONFIRMED",
            "precheck: FORCE_CHANGE_PASSWORD",
            "precheck: EXTERNAL_PROVIDER"
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plan_matches_what_the_real_run_then_does() {
    let pool = Seeded::start(|b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let mut names: Vec<String> = pool.users.iter().map(|(u, _, _)| u.clone()).collect();
    names.extend((0..20).map(|i| format!("ghost-{i}")));
    // A first run sends to the first 100 rows, so the plan has users in cooldown too.
    let first = usernames_csv(dir.path(), &names[..100]);
    let mut cmd = pool.cmd();
    cmd.args(["backfill", "--client-id", CLIENT, "--rate", "0"])
        .arg(&first)
        .arg("--state")
        .arg(&state);
    assert_eq!(run(cmd).await.code, 0);
    let sends_before = pool.emu.sends().len();

    let csv = usernames_csv(dir.path(), &names);
    let go = |extra: &[&str], report: &Path| {
        let mut c = pool.cmd();
        c.args([
            "backfill",
            "--client-id",
            CLIENT,
            "--rate",
            "0",
            "--precheck",
            "--precheck-rate",
            "0",
        ])
        .args(extra)
        .arg(&csv)
        .arg("--state")
        .arg(&state)
        .arg("--report")
        .arg(report);
        c
    };
    let plan_path = dir.path().join("plan.jsonl");
    let ran = run(go(&["--dry-run"], &plan_path)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.emu.sends().len(),
        sends_before,
        "the plan sent nothing"
    );
    let plan = report(&plan_path);
    let planned = fates(&plan);
    let o = outcomes(&plan);
    assert!(
        o["cooldown"] > 0 && o["dry_run"] > 0 && o["already_confirmed"] > 0 && o["not_found"] == 20,
        "{o:?}"
    );
    let plan_line = format!(
        "would send {}; would skip {} already confirmed, {} not found, {} in cooldown",
        o["dry_run"], o["already_confirmed"], o["not_found"], o["cooldown"]
    );
    assert!(
        ran.stderr.contains(&plan_line),
        "the summary shows the plan ({plan_line}): {}",
        ran.stderr
    );

    let real_path = dir.path().join("real.jsonl");
    let ran = run(go(&[], &real_path)).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let real = fates(&report(&real_path));
    // Same users, same fates: `dry_run` in the plan is `sent` for real.
    let translated: BTreeMap<String, String> = planned
        .into_iter()
        .map(|(u, o)| (u, if o == "dry_run" { "sent".to_owned() } else { o }))
        .collect();
    assert_eq!(translated, real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_survives_listusers_throttling() {
    let pool = Seeded::start(|b| b.quota_rps(Some(3))).await;
    let mut cmd = pool.cmd();
    cmd.args(["discover", "--list-rate", "0", "--initial-backoff", "100ms"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        pool.emu.stats().throttled > 0,
        "the emulator throttled ListUsers"
    );
    let listed: HashSet<String> = csv_usernames(&ran.stdout).into_iter().collect();
    assert_eq!(listed, pool.unconfirmed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_to_a_queue_enqueues_each_user_once() {
    let pool = Seeded::start(|b| b).await;
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "discovered", &[]).await;
    let mut cmd = pool.cmd();
    cmd.args(["discover", "--to-queue", "--queue-url", &url])
        .args(["--sqs-endpoint", &moto.endpoint]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let bodies = moto::drain_bodies(&sqs, &url).await;
    let users: Vec<String> = bodies
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            v["username"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(users.len(), pool.unconfirmed().len());
    assert_eq!(
        users.into_iter().collect::<HashSet<_>>(),
        pool.unconfirmed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_commands_without_credentials_or_pool_id_exit_2_and_say_why() {
    let pool = Seeded::start(|b| b).await;
    let mut cmd = pool.cmd();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .arg("discover");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no AWS credentials were found"),
        "{}",
        ran.stderr
    );

    let mut cmd = command(&pool.emu.endpoint());
    cmd.args(["backfill", "--from-pool", "--client-id", CLIENT]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--user-pool-id"), "{}", ran.stderr);

    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["pool-user-0000".to_owned()]);
    let mut cmd = command(&pool.emu.endpoint());
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["backfill", "--client-id", CLIENT, "--precheck"])
        .args(["--user-pool-id", DEFAULT_USER_POOL_ID])
        .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--precheck"), "{}", ran.stderr);
    assert_eq!(pool.emu.stats().requests_total, 0, "nothing was called");
}

/// The mode bits a user would see in `ls -l`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `discover --out` holds personal data: it is created 0600. A username a spreadsheet would run
/// as a formula (`=...`, `+1555...`, `-...`, `@...`) is written with a `'` in front, and
/// `backfill` reading that file takes the `'` off again: every user gets their code, under the
/// name Cognito knows. A username with an invisible format character is `invalid` from the pool
/// like from any other source, and never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_out_is_private_formula_safe_and_reads_back() {
    let names = [
        "+15551234567",
        "=HYPERLINK(\"x\")",
        "-dash",
        "@at",
        "'=quoted",
        "plain",
    ];
    let mut users: Vec<UserSpec> = names
        .iter()
        .map(|u| UserSpec::new(*u, UserStatus::Unconfirmed))
        .collect();
    users.push(UserSpec::new("zero\u{200B}width", UserStatus::Unconfirmed));
    let emu = emulator_with(users, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("unconfirmed.csv");
    // An older, world-readable file of the same name is tightened, not kept as it was.
    std::fs::write(&out, "old").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = command(&emu.endpoint());
    cmd.args(["discover", "--user-pool-id", DEFAULT_USER_POOL_ID, "--out"])
        .arg(&out);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(mode(&out), 0o600, "discover --out is owner-only");
    let text = std::fs::read_to_string(&out).unwrap();
    let cells: HashSet<String> = csv_usernames(&text).into_iter().collect();
    for formula in [
        "'+15551234567",
        "'=HYPERLINK(\"x\")",
        "'-dash",
        "'@at",
        "''=quoted",
    ] {
        assert!(cells.contains(formula), "{formula} in {text}");
    }
    assert!(cells.contains("plain"));

    let report_path = dir.path().join("report.jsonl");
    let mut cmd = backfill(&emu.endpoint(), &out);
    cmd.arg("--report").arg(&report_path);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "one invalid username: {}", ran.stderr);
    let sent = emu.send_counts();
    for name in names {
        assert_eq!(sent.get(name), Some(&1), "{name} gets its code: {sent:?}");
    }
    assert_eq!(
        sent.len(),
        names.len(),
        "the zero-width username is never called"
    );
    assert_eq!(mode(&report_path), 0o600, "the report is owner-only");

    // From the pool directly, too.
    let mut cmd = command(&emu.endpoint());
    cmd.args([
        "--user-pool-id",
        DEFAULT_USER_POOL_ID,
        "backfill",
        "--from-pool",
    ])
    .args(["--client-id", CLIENT, "--dry-run"])
    .arg("--report")
    .arg(&report_path);
    let ran = run(cmd).await;
    let report = report(&report_path);
    let invalid: Vec<_> = report
        .iter()
        .filter(|l| l["outcome"] == "invalid")
        .collect();
    assert_eq!(invalid.len(), 1, "{}", ran.stderr);
    assert!(
        invalid[0]["reason"].as_str().unwrap().contains("U+200B"),
        "{}",
        invalid[0]
    );
}
