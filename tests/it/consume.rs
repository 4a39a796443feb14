//! `consume` and `enqueue` end to end: the real binary, SQS on moto's server (one request at a
//! time), Cognito on the bundled emulator. Ground truth: what the emulator recorded and what is
//! left in the queues.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use cognito_emulator::{Faults, UserSpec, UserStatus};
use support::moto::{self, Moto, job, wait_until_empty};
use support::*;

/// A running consumer and where its metrics are.
struct Consumer {
    running: Running,
    metrics_url: String,
}

impl Consumer {
    async fn start(mut cmd: tokio::process::Command) -> Self {
        cmd.args(["--metrics-addr", "127.0.0.1:0"]);
        let running = Running::spawn(cmd);
        let line = running
            .wait_for_line("metrics on http://", Duration::from_secs(60))
            .await;
        let metrics_url = url_in(&line);
        running
            .wait_for_line("consuming", Duration::from_secs(60))
            .await;
        Self {
            running,
            metrics_url,
        }
    }

    async fn metrics(&self) -> String {
        reqwest::get(&self.metrics_url)
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    async fn sqs(&self, action: &str) -> f64 {
        sample(
            &self.metrics().await,
            "cognito_resend_sqs_messages_total",
            &[("action", action)],
        )
        .unwrap_or(0.0)
    }

    /// SIGTERM, then the exit code and stderr.
    async fn stop(self) -> (i32, String) {
        self.running.signal("TERM");
        self.running.wait(Duration::from_secs(60)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_messages_send_each_unconfirmed_user_exactly_once_and_empty_the_queue() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "mixed", 3).await;
    let pool = pool(500, None, |b| b).await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;

    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "16"])
        .arg("--report")
        .arg(&report_path);
    let consumer = Consumer::start(cmd).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(120)).await;
    let deleted = consumer.sqs("deleted").await;
    let received = consumer.sqs("received").await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");

    let sends = pool.emu.send_counts();
    assert_eq!(
        sends.len(),
        pool.unconfirmed.len(),
        "only UNCONFIRMED users"
    );
    assert!(sends.values().all(|&n| n == 1), "nobody got two codes");
    assert_eq!(deleted as usize, bodies.len(), "every message deleted once");
    assert_eq!(received as usize, bodies.len(), "no redelivery");
    let report = report(&report_path);
    assert_eq!(report.len(), bodies.len());
    assert_eq!(users_with(&report, "sent"), pool.unconfirmed);
    assert_eq!(users_with(&report, "not_found"), pool.missing);
    assert!(
        report
            .iter()
            .all(|l| l["source"].as_str().unwrap().starts_with("sqs:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_reach_the_dlq_and_nothing_else_does() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, dlq) = moto::create_queue_with_dlq(&sqs, "poison", 2).await;
    let users: Vec<_> = (0..30)
        .map(|i| UserSpec::new(format!("good-{i:02}"), UserStatus::Unconfirmed))
        .collect();
    let good: Vec<String> = users.iter().map(|u| job(&u.username)).collect();
    let emu = emulator_with(users, |b| b).await;
    let poison = vec![
        "this is not json".to_owned(),
        "[\"an\", \"array\"]".to_owned(),
        "{\"email\": \"no-username@example.com\"}".to_owned(),
        "{\"username\": 42}".to_owned(),
        " ".to_owned(),
        format!("{{\"username\": \"{}\"}}", "y".repeat(129)),
        "{\"username\": \"typed\", \"client_metadata\": \"not-a-map\"}".to_owned(),
        format!(
            "{{\"username\": \"big\", \"pad\": \"{}\"}}",
            "x".repeat(200 * 1024)
        ),
    ];
    let mut bodies = good.clone();
    bodies.extend(poison.iter().cloned());
    moto::send_bodies(&sqs, &url, &bodies, None).await;

    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--visibility-timeout", "1s"]);
    let consumer = Consumer::start(cmd).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(90)).await;
    let invalid = consumer.sqs("invalid").await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");

    let mut in_dlq = moto::drain_bodies(&sqs, &dlq).await;
    in_dlq.sort();
    let mut expected = poison.clone();
    expected.sort();
    assert_eq!(
        in_dlq.len(),
        poison.len(),
        "exactly the poison bodies in the DLQ"
    );
    assert_eq!(in_dlq, expected);
    assert_eq!(emu.send_counts().len(), good.len(), "every good job sent");
    assert!(emu.send_counts().values().all(|&n| n == 1));
    assert!(
        invalid >= (poison.len() * 2) as f64,
        "each poison message seen maxReceiveCount times: {invalid}"
    );
    for reason in [
        "not JSON",
        "not an array",
        "is missing",
        "must be a string",
        "bytes",
        "129",
        "client_metadata",
    ] {
        assert!(stderr.contains(reason), "logged {reason:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_cognito_slows_receiving_and_nothing_is_processed_twice() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "throttled", 5).await;
    let pool = pool(300, None, |b| b.quota_rps(Some(20))).await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;

    let concurrency = 32;
    let batch = 10;
    let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", &concurrency.to_string()]);
    let consumer = Consumer::start(cmd).await;
    // While the emulator throttles, messages held (received, not yet settled) never exceed
    // what can start soon: the concurrency plus one batch.
    let mut max_held = 0.0f64;
    eventually(
        "every message deleted",
        Duration::from_secs(120),
        Duration::from_millis(100),
        async || {
            let m = consumer.metrics().await;
            let get = |a: &str| {
                sample(&m, "cognito_resend_sqs_messages_total", &[("action", a)]).unwrap_or(0.0)
            };
            let held = get("received") - get("deleted") - get("returned") - get("invalid");
            max_held = max_held.max(held);
            get("deleted") as usize == bodies.len()
        },
    )
    .await;
    let throttled = sample(
        &consumer.metrics().await,
        "cognito_resend_attempts_total",
        &[("action", "confirm"), ("result", "throttled")],
    )
    .unwrap_or(0.0);
    let received = consumer.sqs("received").await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        pool.emu.stats().throttled > 0 && throttled > 0.0,
        "the emulator throttled"
    );
    assert!(
        max_held <= (concurrency + batch) as f64,
        "held at most concurrency + one batch, saw {max_held}"
    );
    assert_eq!(
        received as usize,
        bodies.len(),
        "nothing waited locally until its visibility ran out"
    );
    let sends = pool.emu.send_counts();
    assert_eq!(sends.len(), pool.unconfirmed.len());
    assert!(sends.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_slow_jobs_invisible() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "slow", 5).await;
    let users: Vec<_> = (0..12)
        .map(|i| UserSpec::new(format!("slow-{i:02}"), UserStatus::Unconfirmed))
        .collect();
    let bodies: Vec<String> = users.iter().map(|u| job(&u.username)).collect();
    // Each call takes 4 s; messages are received with a 2 s visibility timeout.
    let emu = emulator_with(users, |b| {
        b.faults(Faults {
            latency: Duration::from_secs(4),
            ..Faults::default()
        })
    })
    .await;
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--visibility-timeout", "2s", "--concurrency", "12"]);
    let consumer = Consumer::start(cmd).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(60)).await;
    let m = consumer.metrics().await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");
    let extended = sample(&m, "cognito_resend_sqs_visibility_extensions_total", &[]).unwrap();
    assert!(extended > 0.0, "the heartbeat extended visibility");
    let received = sample(
        &m,
        "cognito_resend_sqs_messages_total",
        &[("action", "received")],
    )
    .unwrap();
    assert_eq!(received as usize, bodies.len(), "no message came back");
    let sends = emu.send_counts();
    assert_eq!(sends.len(), bodies.len());
    assert!(sends.values().all(|&n| n == 1), "{sends:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_a_second_consumer_finishes_the_queue() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "handover", 5).await;
    let pool = pool(300, None, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(200),
            ..Faults::default()
        })
    })
    .await;
    let bodies: Vec<String> = pool.csv_usernames.iter().map(|u| job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;

    // Both consumers share one ledger, as replicas on one host would.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "8", "--shutdown-grace", "10s"])
        .arg("--state")
        .arg(&state);
    let first = Consumer::start(cmd).await;
    eventually(
        "40 calls",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || pool.emu.stats().requests_total >= 40,
    )
    .await;
    let signalled = tokio::time::Instant::now();
    let (code, stderr) = first.stop().await;
    assert_eq!(code, 0, "drained and exited 0: {stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "exited within the grace period"
    );
    let done_by_first = pool.emu.stats().requests_total;
    assert!(done_by_first < bodies.len() as u64, "stopped mid-run");

    let mut cmd = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "16"]).arg("--state").arg(&state);
    let second = Consumer::start(cmd).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(120)).await;
    let (code, stderr) = second.stop().await;
    assert_eq!(code, 0, "{stderr}");
    let sends = pool.emu.send_counts();
    assert_eq!(sends.len(), pool.unconfirmed.len(), "everyone sent overall");
    assert!(sends.values().all(|&n| n == 1), "nobody twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_ten_thousand_rows_then_two_consumers_share_them() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "shared", 5).await;
    let pool = pool(10_000, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let mut csv_text = String::from("username,client_metadata.batch\n");
    for u in &pool.csv_usernames {
        csv_text.push_str(&format!("{u},nightly\n"));
    }
    csv_text.push_str(",blank-username\n");
    let csv = write_file(dir.path(), "users.csv", csv_text);

    let mut cmd = command(&pool.emu.endpoint());
    cmd.args([
        "enqueue",
        "--sqs-endpoint",
        &moto.endpoint,
        "--queue-url",
        &url,
    ])
    .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 3, "one invalid row: {}", ran.stderr);
    assert!(
        ran.stderr.contains("enqueued=10000") && ran.stderr.contains("invalid=1"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("line 10002"), "{}", ran.stderr);
    assert_eq!(moto::queue_counts(&sqs, &url).await, (10_000, 0));

    let mut a = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    a.args(["--concurrency", "32"]);
    let mut b = consume(&pool.emu.endpoint(), &moto.endpoint, &url);
    b.args(["--concurrency", "32"]);
    let (a, b) = (Consumer::start(a).await, Consumer::start(b).await);
    wait_until_empty(&sqs, &url, Duration::from_secs(300)).await;
    let (da, db) = (a.sqs("deleted").await, b.sqs("deleted").await);
    let (code_a, err_a) = a.stop().await;
    let (code_b, err_b) = b.stop().await;
    assert_eq!((code_a, code_b), (0, 0), "{err_a}\n{err_b}");
    assert!(da > 0.0 && db > 0.0, "both consumers worked: {da} / {db}");
    assert_eq!((da + db) as usize, pool.csv_usernames.len());
    let sends = pool.emu.sends();
    assert_eq!(
        sends.len(),
        pool.unconfirmed.len(),
        "every UNCONFIRMED user once"
    );
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for s in &sends {
        *per_user.entry(s.username.as_str()).or_default() += 1;
        assert_eq!(
            s.client_metadata.get("batch").map(String::as_str),
            Some("nightly")
        );
    }
    assert!(per_user.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_keep_their_order() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_fifo_queue(&sqs, "ordered.fifo").await;
    let users: Vec<_> = (0..4)
        .map(|i| UserSpec::new(format!("fifo-{i}"), UserStatus::Unconfirmed))
        .collect();
    let emu = emulator_with(users, |b| {
        b.faults(Faults {
            latency: Duration::from_millis(30),
            ..Faults::default()
        })
    })
    .await;
    // Four groups (one per user), six jobs each, numbered; enqueued interleaved.
    let dir = tempfile::tempdir().unwrap();
    let mut csv_text = String::from("username,client_metadata.seq\n");
    for seq in 0..6 {
        for user in 0..4 {
            csv_text.push_str(&format!("fifo-{user},{seq}\n"));
        }
    }
    let csv = write_file(dir.path(), "jobs.csv", csv_text);
    let mut cmd = command(&emu.endpoint());
    cmd.args([
        "enqueue",
        "--sqs-endpoint",
        &moto.endpoint,
        "--queue-url",
        &url,
    ])
    .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    // Order is what is under test, so every job must reach Cognito: without `--state none` the
    // ledger would make a user's later jobs `cooldown`.
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "8", "--state", "none"]);
    let consumer = Consumer::start(cmd).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(60)).await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");
    let sends = emu.sends();
    assert_eq!(sends.len(), 24, "every job once");
    for user in 0..4 {
        let name = format!("fifo-{user}");
        let order: Vec<String> = sends
            .iter()
            .filter(|s| s.username == name)
            .map(|s| s.client_metadata["seq"].clone())
            .collect();
        assert_eq!(order, ["0", "1", "2", "3", "4", "5"], "{name}");
    }
    assert!(
        emu.stats().max_in_flight > 1,
        "different groups ran in parallel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_that_does_not_exist_is_a_usage_error() {
    let moto = Moto::start().await;
    let emu = emulator_with(vec![], |b| b).await;
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &missing);
    cmd.args(["--metrics-addr", "none"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no-such-queue") && ran.stderr.contains("--queue-url"),
        "{}",
        ran.stderr
    );
    let mut cmd = command(&emu.endpoint());
    cmd.args(["consume", "--client-id", CLIENT]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("--queue-url"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_errors_back_off_and_fail_readiness_until_receiving_works_again() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "flaky", &[]).await;
    let users: Vec<_> = (0..5)
        .map(|i| UserSpec::new(format!("back-{i}"), UserStatus::Unconfirmed))
        .collect();
    let bodies: Vec<String> = users.iter().map(|u| job(&u.username)).collect();
    let emu = emulator_with(users, |b| b).await;
    let consumer = Consumer::start(consume(&emu.endpoint(), &moto.endpoint, &url)).await;
    let readyz = consumer.metrics_url.replace("/metrics", "/readyz");
    let status = |url: String| async move {
        reqwest::get(&url)
            .await
            .expect("readyz answers")
            .status()
            .as_u16()
    };
    assert_eq!(status(readyz.clone()).await, 200);

    // The queue disappears: every receive fails.
    sqs.delete_queue()
        .queue_url(&url)
        .send()
        .await
        .expect("delete queue");
    eventually(
        "readyz to fail",
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || status(readyz.clone()).await == 503,
    )
    .await;
    // Not a hot loop: the logged retry delays grow (0.5 s × 1.5ⁿ, ±50 % jitter, so the fourth
    // is always longer than the first).
    let delays = eventually(
        "four receive failures logged",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let delays = retry_delays(&consumer.running.stderr());
            if delays.len() >= 4 {
                Ok(delays)
            } else {
                Err(format!("{delays:?}"))
            }
        },
    )
    .await;
    assert!(
        delays[3] > delays[0],
        "receive errors back off, not a hot loop: {delays:?}"
    );
    let errors = sample(
        &consumer.metrics().await,
        "cognito_resend_sqs_receive_errors_total",
        &[],
    )
    .unwrap();
    assert!(errors >= 4.0, "receive errors counted: {errors}");

    // It comes back: receiving works again, and so does readiness.
    let again = moto::create_queue(&sqs, "flaky", &[]).await;
    assert_eq!(again, url);
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    wait_until_empty(&sqs, &url, Duration::from_secs(60)).await;
    assert_eq!(status(readyz.clone()).await, 200);
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("receiving from the queue failed"),
        "{stderr}"
    );
    assert!(stderr.contains("works again"), "{stderr}");
    assert_eq!(emu.send_counts().len(), 5);
}

/// Receives every visible message once (without deleting) and returns each one's
/// ApproximateReceiveCount after this receive.
async fn receive_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<u32> {
    let mut counts = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(300)
            .message_system_attribute_names(
                aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
            )
            .send()
            .await
            .expect("ReceiveMessage")
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return counts;
        }
        for m in got {
            let count = m
                .attributes
                .as_ref()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .expect("a receive count")
                .parse()
                .expect("a number");
            counts.push(count);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_is_one_pass_that_receives_each_message_once_then_releases_it() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    // A redrive policy that would move a message received twice to the DLQ.
    let (url, dlq) = moto::create_queue_with_dlq(&sqs, "dry", 2).await;
    let (emu, bodies) = queued_users(&sqs, &url, "dry", 25).await;

    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("plan.jsonl");
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--dry-run", "--concurrency", "4"])
        .arg("--report")
        .arg(&report_path);
    // It ends by itself: no signal.
    let (code, stderr) = Running::spawn(cmd).wait(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("dry run's pass is complete"), "{stderr}");
    let plan = report(&report_path);
    assert_eq!(plan.len(), bodies.len(), "one plan line per message");
    assert!(plan.iter().all(|l| l["outcome"] == "dry_run"), "{plan:?}");
    assert!(emu.send_counts().is_empty(), "nothing sent");
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (bodies.len() as u64, 0),
        "every message released at once when the pass ended"
    );
    assert_eq!(
        moto::queue_counts(&sqs, &dlq).await,
        (0, 0),
        "none redriven"
    );
    let counts = receive_counts(&sqs, &url).await;
    assert_eq!(
        counts,
        vec![2; bodies.len()],
        "received once by the dry run, once now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_messages_consumes_that_many_then_exits() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "slice", 5).await;
    let (emu, _) = queued_users(&sqs, &url, "slice", 25).await;

    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--max-messages", "10", "--concurrency", "4"]);
    let (code, stderr) = Running::spawn(cmd).wait(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{stderr}");
    let sends = emu.send_counts();
    assert_eq!(sends.len(), 10, "exactly --max-messages jobs: {sends:?}");
    assert!(sends.values().all(|&n| n == 1));
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (15, 0),
        "the rest untouched, visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_with_the_ledger_a_failed_message_comes_back_before_the_rest_of_its_group() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_fifo_queue(&sqs, "ledger.fifo").await;
    // One group, six different users in order: with the ledger on, each is sent once.
    let users: Vec<_> = (0..6)
        .map(|i| UserSpec::new(format!("fifo-l-{i}"), UserStatus::Unconfirmed))
        .collect();
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    // Every call is throttled at first, so the group's first job fails (one attempt allowed).
    let emu = emulator_with(users, |b| b.quota_rps(Some(0))).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &names);
    let mut cmd = command(&emu.endpoint());
    cmd.args([
        "enqueue",
        "--sqs-endpoint",
        &moto.endpoint,
        "--queue-url",
        &url,
    ])
    .args(["--fifo-group-id", "g"])
    .arg(&csv);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);

    let report_path = dir.path().join("report.jsonl");
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args(["--concurrency", "4", "--max-attempts", "1"])
        .args(["--visibility-timeout", "1s"])
        .arg("--state")
        .arg(dir.path().join("ledger.db"))
        .arg("--report")
        .arg(&report_path);
    let consumer = Consumer::start(cmd).await;
    eventually(
        "a throttled call",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || emu.stats().throttled > 0,
    )
    .await;
    emu.set_quota_rps(None);
    wait_until_empty(&sqs, &url, Duration::from_secs(90)).await;
    let (code, stderr) = consumer.stop().await;
    assert_eq!(code, 0, "{stderr}");

    let sent_order: Vec<String> = emu.sends().into_iter().map(|s| s.username).collect();
    assert_eq!(sent_order, names, "each user once, in the group's order");
    let report = report(&report_path);
    let first_user: Vec<&str> = report
        .iter()
        .filter(|l| l["username"] == names[0].as_str())
        .map(|l| l["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        first_user.first(),
        Some(&"failed"),
        "the first job failed at first: {first_user:?}"
    );
    assert_eq!(first_user.last(), Some(&"sent"), "{first_user:?}");
}

/// The delays of the "receiving from the queue failed (retrying in 1.2s)" lines, in seconds.
fn retry_delays(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter_map(|l| l.split("(retrying in ").nth(1)?.split(')').next())
        .filter_map(|d| match d.strip_suffix("ms") {
            Some(ms) => ms.parse::<f64>().ok().map(|ms| ms / 1000.0),
            None => d.strip_suffix('s')?.parse().ok(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_by_a_spend_cap_returns_the_messages_it_did_not_send() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "capped", 5).await;
    let (emu, _) = queued_users(&sqs, &url, "capped", 25).await;

    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    // The default visibility timeout (60 s): a message the consumer received but did not send
    // must come back at once, not after its visibility runs out (a receive whose answer was on
    // its way when the cap stopped the consumer included).
    cmd.args(["--max-sends", "6", "--concurrency", "4"]);
    let (code, stderr) = Running::spawn(cmd).wait(Duration::from_secs(120)).await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("--max-sends"), "{stderr}");
    let sends = emu.send_counts();
    assert_eq!(sends.len(), 6, "{sends:?}");
    // Nothing else was deleted, and every message not sent is visible again, well before any
    // visibility timeout could have brought it back.
    eventually(
        "the messages not sent back, visible: (19, 0)",
        Duration::from_secs(10),
        Duration::from_millis(500),
        async || {
            let counts = moto::queue_counts(&sqs, &url).await;
            assert_eq!(counts.0 + counts.1, 19, "{counts:?}");
            if counts == (19, 0) {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
}

/// `n` UNCONFIRMED users named `{prefix}-00`, ..., an emulator that knows them, and one job per
/// user on the queue.
async fn queued_users(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    prefix: &str,
    n: usize,
) -> (cognito_emulator::Emulator, Vec<String>) {
    let users: Vec<_> = (0..n)
        .map(|i| UserSpec::new(format!("{prefix}-{i:02}"), UserStatus::Unconfirmed))
        .collect();
    let bodies: Vec<String> = users.iter().map(|u| job(&u.username)).collect();
    let emu = emulator_with(users, |b| b).await;
    moto::send_bodies(sqs, url, &bodies, None).await;
    (emu, bodies)
}

/// Issue 21, item 1: a consumer at its day cap. Six messages, `maxReceiveCount` 2,
/// `--max-sends-per-day 1`: the first consumer sends one code and exits 4, holding the five it
/// received but did not send out of sight until the UTC day turns (not back at once, to be
/// received again and again until the redrive policy moves them to the DLQ with no outcome).
/// A restart (as Kubernetes restarts the pod) finds the day's budget spent and waits without
/// receiving anything, even messages queued since, until a signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_at_its_day_cap_holds_its_messages_back_and_a_restart_waits_without_receiving() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, dlq) = moto::create_queue_with_dlq(&sqs, "day-capped", 2).await;
    let (emu, _) = queued_users(&sqs, &url, "daycap", 6).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ledger.db");
    let consumer = || {
        let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
        cmd.args(["--max-sends-per-day", "1", "--concurrency", "2"])
            .arg("--state")
            .arg(&state);
        cmd
    };
    let (code, stderr) = Running::spawn(consumer())
        .wait(Duration::from_secs(120))
        .await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("--max-sends-per-day"), "{stderr}");
    assert_eq!(emu.send_counts().len(), 1);
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (0, 5),
        "the five not sent are held back, none visible: {stderr}"
    );

    // Messages queued since are visible; a restart at the spent cap must leave them be.
    let later: Vec<String> = (0..3).map(|i| job(&format!("daycap-later-{i}"))).collect();
    moto::send_bodies(&sqs, &url, &later, None).await;
    let mut restarted = consumer();
    restarted.args(["--metrics-addr", "127.0.0.1:0"]);
    let restarted = Running::spawn(restarted);
    let line = restarted
        .wait_for_line("metrics on http://", Duration::from_secs(60))
        .await;
    let metrics_url = url_in(&line);
    restarted
        .wait_for_line("waiting until the day turns", Duration::from_secs(60))
        .await;
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&metrics, "cognito_resend_spend_cap_waiting", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (3, 5),
        "nothing received while the budget is spent"
    );
    restarted.signal("TERM");
    let (code, stderr) = restarted.wait(Duration::from_secs(60)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("consuming"),
        "it never started receiving: {stderr}"
    );
    assert_eq!(moto::queue_counts(&sqs, &url).await, (3, 5));
    assert_eq!(
        moto::queue_counts(&sqs, &dlq).await,
        (0, 0),
        "nothing in the DLQ"
    );
    assert_eq!(emu.send_counts().len(), 1);
}

/// Issue 21, item 5: ten messages whose own `client_metadata` makes the pool's CustomMessage
/// trigger fail are those jobs' failures, not a broken trigger: the consumer does not stop
/// (exit 1, `trigger_broken`), and the plain messages behind them are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_whose_own_metadata_breaks_the_trigger_cannot_stop_the_consumer() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "trigger", 5).await;
    let users: Vec<UserSpec> = (0..15)
        .map(|i| UserSpec::new(format!("trig-{i:02}"), UserStatus::Unconfirmed))
        .collect();
    let emu = emulator_with(users, |b| {
        b.custom_message_trigger(Some(
            "arn:aws:lambda:us-east-1:123456789012:function:custom-message".into(),
        ))
        .custom_message_fails_when("template", "missing")
    })
    .await;
    // Ten with a template the trigger does not have, then five plain ones, in that order.
    let mut bodies: Vec<String> = (0..10)
        .map(|i| {
            serde_json::json!({
                "username": format!("trig-{i:02}"),
                "client_metadata": {"template": "missing"},
            })
            .to_string()
        })
        .collect();
    bodies.extend((10..15).map(|i| job(&format!("trig-{i:02}"))));
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args([
        "--concurrency",
        "1",
        "--batch-size",
        "1",
        "--max-messages",
        "15",
    ])
    .args(["--client-metadata", "wave=day-1"])
    .arg("--report")
    .arg(&report_path);
    let (code, stderr) = Running::spawn(cmd).wait(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "the consumer was not stopped: {stderr}");
    assert!(!stderr.contains("trigger_broken"), "{stderr}");
    let lines = report(&report_path);
    assert_eq!(outcomes(&lines).get("sent"), Some(&5), "{lines:?}");
    assert_eq!(outcomes(&lines).get("failed"), Some(&10), "{lines:?}");
    assert_eq!(emu.send_counts().len(), 5);
}
