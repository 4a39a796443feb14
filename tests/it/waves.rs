//! Reminder waves: run-wide ClientMetadata and AnalyticsMetadata for every job whatever its
//! source (CSV, the pool, a queue), a wave name recorded with each send, and a lifetime cap per
//! user (`--max-sends-per-user`) that holds on both ledgers however many runs race on them.
//! Ground truth: the emulator's record of every code sent, with the request fields it received.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use cognito_emulator::{DEFAULT_USER_POOL_ID, Emulator, UserSpec, UserStatus};
use support::moto::{self, Moto};
use support::*;

/// What one request carried: ClientMetadata and AnalyticsEndpointId.
type Carried = (BTreeMap<String, String>, Option<String>);

/// What the emulator received for each user, one entry per code sent.
fn received(emu: &Emulator) -> HashMap<String, Vec<Carried>> {
    let mut by_user: HashMap<String, Vec<_>> = HashMap::new();
    for s in emu.sends() {
        by_user
            .entry(s.username.clone())
            .or_default()
            .push((s.client_metadata.clone(), s.analytics_endpoint_id.clone()));
    }
    by_user
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn unconfirmed(names: &[&str]) -> Vec<UserSpec> {
    names
        .iter()
        .map(|n| UserSpec::new(*n, UserStatus::Unconfirmed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_metadata_reaches_every_job_under_its_own_from_a_csv_the_pool_and_a_queue() {
    let dir = tempfile::tempdir().unwrap();

    // A CSV: a row's own column and endpoint win over the run's; a row without gets the run's.
    let emu = emulator_with(unconfirmed(&["ana", "bo"]), |b| b).await;
    let csv = write_file(
        dir.path(),
        "in.csv",
        "username,client_metadata.campaign,analytics_endpoint_id\n\
         ana,row-campaign,row-endpoint\n\
         bo,,\n",
    );
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--client-metadata", "wave=day-3"])
        .args(["--client-metadata", "campaign=run-campaign"])
        .args(["--analytics-endpoint-id", "run-endpoint"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let got = received(&emu);
    assert_eq!(
        got["ana"],
        [(
            map(&[("wave", "day-3"), ("campaign", "row-campaign")]),
            Some("row-endpoint".to_owned())
        )]
    );
    assert_eq!(
        got["bo"],
        [(
            map(&[("wave", "day-3"), ("campaign", "run-campaign")]),
            Some("run-endpoint".to_owned())
        )]
    );

    // The pool: the settings file's table, a flag overriding one of its keys.
    let mut users = unconfirmed(&["p1", "p2"]);
    users.push(UserSpec::new("p3", UserStatus::Confirmed));
    let emu = emulator_with(users, |b| b).await;
    let config = write_file(
        dir.path(),
        "waves.toml",
        "[cognito]\nanalytics_endpoint_id = \"file-endpoint\"\n\n\
         [cognito.client_metadata]\nwave = \"file-wave\"\nsource = \"pool\"\n",
    );
    let mut cmd = command(&emu.endpoint());
    cmd.args(["backfill", "--from-pool", "--client-id", CLIENT])
        .args(["--user-pool-id", DEFAULT_USER_POOL_ID])
        .arg("--config")
        .arg(&config)
        .args(["--client-metadata", "wave=day-7"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let got = received(&emu);
    assert_eq!(got.len(), 2, "{got:?}");
    for user in ["p1", "p2"] {
        assert_eq!(
            got[user],
            [(
                map(&[("wave", "day-7"), ("source", "pool")]),
                Some("file-endpoint".to_owned())
            )],
            "{user}"
        );
    }

    // A queue: a message's own key wins; the run's come from the environment.
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "waves", &[]).await;
    let bodies = [
        r#"{"username":"q1","client_metadata":{"wave":"message-wave"}}"#.to_owned(),
        moto::job("q2"),
    ];
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let emu = emulator_with(unconfirmed(&["q1", "q2"]), |b| b).await;
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--max-messages", "2"]).env(
        "COGNITO_RESEND_COGNITO_CLIENT_METADATA",
        "wave=day-3,lang=pt",
    );
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let got = received(&emu);
    assert_eq!(
        got["q1"],
        [(map(&[("wave", "message-wave"), ("lang", "pt")]), None)]
    );
    assert_eq!(
        got["q2"],
        [(map(&[("wave", "day-3"), ("lang", "pt")]), None)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_cognitos_limits_is_refused_naming_the_key_before_anything_is_sent() {
    let emu = emulator_with(unconfirmed(&["ana"]), |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &["ana".to_owned()]);
    // Through the file: one argument or environment variable cannot hold 128 KiB on Linux.
    let too_long = "x".repeat(131_073);
    let cases = [
        (
            format!("[cognito.client_metadata]\nwave = \"day-1\"\nnote = \"{too_long}\"\n"),
            "note",
        ),
        (
            format!("[cognito.client_metadata]\n{too_long} = \"v\"\n"),
            "131073 characters",
        ),
        (
            format!("[cognito]\nanalytics_endpoint_id = \"{too_long}\"\n"),
            "analytics_endpoint_id",
        ),
    ];
    for (text, named) in cases {
        let config = write_file(dir.path(), "bad.toml", text);
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.arg("--config").arg(&config);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 2, "{}", ran.stderr);
        assert!(ran.stderr.contains(named), "{named}: {}", ran.stderr);
        assert!(ran.stderr.contains("131072"), "{}", ran.stderr);
    }
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--client-metadata", "no-equals-sign"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("KEY=VALUE"), "{}", ran.stderr);
    assert!(emu.sends().is_empty(), "nothing was sent");
}

/// Every user of `users` listed `times` times, interleaved, as a CSV.
fn repeated_csv(dir: &Path, name: &str, users: &[String], times: usize) -> std::path::PathBuf {
    let mut text = String::from("username\n");
    for _ in 0..times {
        for u in users {
            text.push_str(u);
            text.push('\n');
        }
    }
    write_file(dir, name, text)
}

/// Three backfills at once on one ledger (`state` arguments), each listing every user four
/// times, with no cooldown and a cap of two: the emulator sends every user exactly two codes.
async fn racing_runs_stop_at_the_cap(emu: &Emulator, users: &[String], state: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let csv = repeated_csv(dir.path(), "race.csv", users, 4);
    let reports: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("race-{i}.jsonl")))
        .collect();
    let mut running = Vec::new();
    for r in &reports {
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.args(state)
            .args(["--cooldown", "0", "--max-sends-per-user", "2"])
            .args(["--concurrency", "8", "--rate", "0", "--wave", "race"])
            .arg("--report")
            .arg(r);
        running.push(tokio::spawn(run(cmd)));
    }
    for r in running {
        let ran = r.await.unwrap();
        assert_eq!(ran.code, 0, "{}", ran.stderr);
    }
    let counts = emu.send_counts();
    assert_eq!(counts.len(), users.len(), "everyone was sent: {counts:?}");
    assert!(
        counts.values().all(|&n| n == 2),
        "every user exactly two codes: {counts:?}"
    );
    let lines: Vec<_> = reports.iter().flat_map(|r| report(r)).collect();
    assert_eq!(lines.len(), 3 * 4 * users.len(), "one line per job");
    let o = outcomes(&lines);
    assert_eq!(o.get("sent"), Some(&(2 * users.len())), "{o:?}");
    assert_eq!(
        o.get("capped").copied().unwrap_or(0) + o.get("cooldown").copied().unwrap_or(0),
        lines.len() - 2 * users.len(),
        "the rest capped (or, sent in the same millisecond, cooldown): {o:?}"
    );
    assert!(lines.iter().all(|l| l["wave"] == "race"), "{:?}", lines[0]);
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_per_user_is_never_passed_by_runs_racing_on_one_sqlite_ledger() {
    let users = names("racer", 30);
    let emu = emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("shared.db");
    let state = state.to_str().unwrap();
    racing_runs_stop_at_the_cap(&emu, &users, &["--state", state]).await;
    let mut cmd = command(&emu.endpoint());
    cmd.args(["ledger", "stats", "--json", "--state", state]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(stats["sends_per_wave"], serde_json::json!({"race": 60}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_per_user_is_never_passed_by_replicas_racing_on_one_dynamodb_ledger() {
    let moto = Moto::start().await;
    let users = names("replica", 20);
    let emu = emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let table = "dynamodb://waves";
    let ledger = |args: &[&str]| {
        let mut c = command(&emu.endpoint());
        c.arg("ledger")
            .args(args)
            .args(["--state", table])
            .args(["--dynamodb-endpoint", &moto.endpoint]);
        c
    };
    let ran = run(ledger(&["init"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    racing_runs_stop_at_the_cap(
        &emu,
        &users,
        &[
            "--state",
            table,
            "--dynamodb-endpoint",
            &moto.endpoint,
            // Heartbeats queue behind everything else in the one-request-at-a-time moto.
            "--claim-lease",
            "12s",
        ],
    )
    .await;
    let ran = run(ledger(&["stats", "--json", "--max-sends-per-user", "2"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(stats["sends_per_wave"], serde_json::json!({"race": 40}));
    assert_eq!(stats["users_capped"], 20);
    let ran = run(ledger(&["export"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let rows: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), users.len());
    for row in rows {
        assert_eq!(row["sends"], 2, "{row}");
        assert_eq!(row["waves"], serde_json::json!({"race": 2}), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_waves_tag_every_send_and_the_third_is_capped_everywhere() {
    let users = names("waver", 6);
    let emu = emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &users);
    let state = dir.path().join("waves.db");
    let wave = |name: &str, report: &Path| {
        let mut cmd = backfill(&emu.endpoint(), &csv);
        cmd.arg("--state")
            .arg(&state)
            .args(["--cooldown", "0", "--max-sends-per-user", "2"])
            .args(["--wave", name, "--client-metadata"])
            .arg(format!("wave={name}"))
            .arg("--report")
            .arg(report);
        cmd
    };
    for name in ["day-1", "day-3"] {
        let path = dir.path().join(format!("{name}.jsonl"));
        let ran = run(wave(name, &path)).await;
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let lines = report(&path);
        assert_eq!(outcomes(&lines), BTreeMap::from([("sent".into(), 6)]));
        assert!(lines.iter().all(|l| l["wave"] == name), "{:?}", lines[0]);
    }
    let got = received(&emu);
    for u in &users {
        let waves: Vec<_> = got[u].iter().map(|(m, _)| m["wave"].clone()).collect();
        assert_eq!(waves, ["day-1", "day-3"], "{u}");
    }

    // The third wave: a dry run plans every user as capped, the run caps them, counted in
    // the metrics and the summary, and nothing is sent.
    let plan = dir.path().join("plan.jsonl");
    let mut cmd = wave("day-7", &plan);
    cmd.arg("--dry-run");
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        outcomes(&report(&plan)),
        BTreeMap::from([("capped".into(), 6)])
    );
    let third = dir.path().join("day-7.jsonl");
    let (exposition, code, stderr) = run_and_scrape(wave("day-7", &third)).await;
    assert_eq!(code, 0, "{stderr}");
    let lines = report(&third);
    assert_eq!(outcomes(&lines), BTreeMap::from([("capped".into(), 6)]));
    assert!(
        lines
            .iter()
            .all(|l| l["wave"] == "day-7" && l["reason"].is_null())
    );
    assert!(stderr.contains("capped=6"), "{stderr}");
    assert_eq!(
        sample(
            &exposition,
            "cognito_resend_jobs_total",
            &[
                ("source", "csv"),
                ("action", "confirm"),
                ("outcome", "capped")
            ]
        ),
        Some(6.0)
    );
    assert_eq!(emu.sends().len(), 12, "no third code");

    // A queue sharing the ledger: capped messages are deleted, not sent nor left.
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "capped", &[]).await;
    let bodies: Vec<String> = users.iter().map(|u| moto::job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let queued = dir.path().join("queue.jsonl");
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.arg("--state")
        .arg(&state)
        .args(["--max-sends-per-user", "2", "--max-messages", "6"])
        .arg("--report")
        .arg(&queued);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        outcomes(&report(&queued)),
        BTreeMap::from([("capped".into(), 6)])
    );
    assert!(
        report(&queued).iter().all(|l| l.get("wave").is_none()),
        "no wave given, no wave field"
    );
    assert_eq!(moto::queue_counts(&sqs, &url).await, (0, 0), "all deleted");
    assert_eq!(emu.sends().len(), 12, "no third code");

    // The ledger: sends per wave, and each user's waves.
    let ledger = |args: &[&str]| {
        let mut c = command(&emu.endpoint());
        c.arg("ledger").args(args).arg("--state").arg(&state);
        c
    };
    let ran = run(ledger(&["stats", "--json", "--max-sends-per-user", "2"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let stats: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        stats["sends_per_wave"],
        serde_json::json!({"day-1": 6, "day-3": 6})
    );
    assert_eq!(stats["users_capped"], 6);
    let ran = run(ledger(&["stats"])).await;
    assert!(ran.stdout.contains("day-3: 6"), "{}", ran.stdout);
    let ran = run(ledger(&["export"])).await;
    let rows: Vec<serde_json::Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert_eq!(
            row["waves"],
            serde_json::json!({"day-1": 1, "day-3": 1}),
            "{row}"
        );
    }
}
