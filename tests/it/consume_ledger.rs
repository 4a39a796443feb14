//! The send ledger under `consume`: duplicate deliveries, consumers sharing one ledger (a SQLite
//! file, or a DynamoDB table on moto), and a consumer killed with `kill -9` mid-call; and a
//! ledger that fails mid-run. Ground truth: the emulator's record of every code sent, and what is
//! left in the queue.

use crate::support;

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
        c.arg("ledger")
            .args(args)
            .args(["--state", table, "--dynamodb-endpoint", &moto.endpoint]);
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
            // A lease generous enough for heartbeats that queue behind everything else in the
            // one-request-at-a-time moto (a run whose heartbeat fails for half a lease stops).
            .args(["--claim-lease", "12s", "--visibility-timeout", "5s"])
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
        // Results are retried for up to a lease before the run gives up on the ledger, and once
        // more at the end: a short lease keeps the test's wait short.
        .args(["--claim-lease", "6s"])
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
    let (code, stderr) = running.wait(Duration::from_secs(120)).await;
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

/// Issue 21, item 6: after SIGTERM, what `consume` still has to do ends within
/// `--shutdown-grace`, whatever the ledger does: here DynamoDB stops answering result writes
/// (a proxy holds them), and recording the code just sent would retry for a whole claim lease,
/// then once more at close — past the pod's terminationGracePeriodSeconds, so SIGKILL would
/// cut the run short with its report unwritten. Within the grace, the run gives up on the
/// ledger, reports the send in doubt (unrecorded: its claim stays for the next run to judge),
/// and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_a_ledger_that_stopped_answering_is_given_up_within_the_shutdown_grace() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "grace", 5).await;
    let emu = emulator_with(
        vec![cognito_emulator::UserSpec::new(
            "graceful",
            cognito_emulator::UserStatus::Unconfirmed,
        )],
        |b| b,
    )
    .await;
    moto::send_bodies(&sqs, &url, &[job("graceful")], None).await;
    dynamo_table(&moto, "grace").await;
    // Result writes (`SET last_sent_at = :now, last_outcome = :o, ...`) get no answer.
    let slow = HoldingProxy::start(
        &moto.endpoint,
        "last_outcome = :o",
        Duration::from_secs(900),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.jsonl");
    let mut cmd = consume(&emu.endpoint(), &moto.endpoint, &url);
    cmd.args([
        "--state",
        "dynamodb://grace",
        "--dynamodb-endpoint",
        &slow.endpoint,
    ])
    // Without the bound, recording would be retried for a lease, and again at close.
    .args(["--claim-lease", "300s", "--shutdown-grace", "6s"])
    .arg("--report")
    .arg(&report_path);
    let running = start_consumer(cmd).await;
    wait_for_sends(&emu, 1).await;
    eventually(
        "the result write to reach the proxy",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || slow.held() > 0,
    )
    .await;
    running.signal("TERM");
    // Well under a lease: the run does not wait for the ledger past its grace.
    let (code, stderr) = running.wait(Duration::from_secs(90)).await;
    assert!(
        stderr.contains("shutdown grace is over"),
        "the grace ended the wait: {stderr}"
    );
    assert_eq!(code, 1, "the ledger could not record a send: {stderr}");
    let lines = report(&report_path);
    assert_eq!(lines.len(), 1, "one outcome for the one job: {lines:?}");
    // The grace was over before the message could be deleted too: it comes back, and the
    // report keeps what Cognito did (a code went out, unrecorded).
    assert_eq!(lines[0]["outcome"], "failed", "{lines:?}");
    assert_eq!(lines[0]["reason"], "ack_failed", "{lines:?}");
    assert_eq!(lines[0]["in_doubt"], true, "{lines:?}");
    assert_eq!(lines[0]["in_doubt_cause"], "unrecorded", "{lines:?}");
    assert_eq!(emu.send_counts().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// The DynamoDB store in process, on moto, behind a proxy that can lose answers.
// ---------------------------------------------------------------------------------------------

use std::sync::{Arc, Mutex};

use cognito_resend::testing::DynamoStore;
use cognito_resend::testing::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, InDoubt, Medium, Rules, RunId, SpendCap,
    Spent, Store,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP proxy on 127.0.0.1 in front of moto that, for each rule (all of whose needles occur
/// in a request), forwards the first matching request, lets moto act on it, and then closes the
/// client's connection without the answer: a write that went through and whose answer was lost.
/// Works because moto's server (werkzeug) answers one request per connection and closes it.
struct LossyProxy {
    endpoint: String,
    /// Rules not yet used.
    rules: Arc<Mutex<Vec<Vec<String>>>>,
}

impl LossyProxy {
    async fn start(upstream: &str, rules: Vec<Vec<String>>) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let rules = Arc::new(Mutex::new(rules));
        let shared = rules.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, rules) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, &rules).await;
                });
            }
        });
        Self { endpoint, rules }
    }

    fn unused_rules(&self) -> usize {
        self.rules.lock().unwrap().len()
    }
}

async fn relay(
    mut client: TcpStream,
    upstream: &str,
    rules: &Mutex<Vec<Vec<String>>>,
) -> std::io::Result<()> {
    let Some(buf) = read_request(&mut client).await? else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    let lose = {
        let mut rules = rules.lock().unwrap();
        match rules
            .iter()
            .position(|needles| needles.iter().all(|n| text.contains(n.as_str())))
        {
            Some(i) => {
                rules.remove(i);
                true
            }
            None => false,
        }
    };
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&buf).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    if lose {
        return Ok(()); // moto acted; the client gets a closed connection instead of the answer
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

fn rules_at(now: i64) -> Rules {
    Rules {
        now,
        cooldown_since: now - 3_600_000,
        alive_since: now - 30_000,
        max_sends_per_user: None,
        recheck_since: None,
    }
}

/// A DynamoDB client like the ledger's own: the SDK's standard retries on.
async fn retrying_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, retry::RetryConfig};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(RetryConfig::standard())
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

async fn dynamo_table(moto: &Moto, name: &str) {
    DynamoStore::from_client(moto::dynamodb_client(&moto.endpoint).await, name)
        .create_table()
        .await
        .expect("create the table on moto");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_claim_whose_answer_was_lost_is_recognised_as_ours() {
    let moto = Moto::start().await;
    dynamo_table(&moto, "lossy").await;
    let direct = DynamoStore::from_client(moto::dynamodb_client(&moto.endpoint).await, "lossy");
    let now = cognito_resend::testing::now_millis();
    // A run that ended while it held a claim on "orphan".
    let dead = RunId::new();
    direct
        .begin_run(&dead, "test", Duration::from_secs(30), now)
        .await
        .unwrap();
    let c = direct
        .claim(&dead, &key(CLIENT, "orphan"), rules_at(now), None)
        .await;
    assert_eq!(c.unwrap(), Claim::Granted { in_doubt: None });
    direct.end_run(&dead, now).await.unwrap();

    // Lose the answer of the first claim write for "fresh", and of the takeover of "orphan".
    let proxy = LossyProxy::start(
        &moto.endpoint,
        vec![
            vec![
                "UpdateItem".into(),
                format!("u#{CLIENT}#fresh"),
                "attribute_not_exists(claim_run)".into(),
            ],
            vec![
                "UpdateItem".into(),
                format!("u#{CLIENT}#orphan"),
                ":dead".into(),
            ],
        ],
    )
    .await;
    let lossy = DynamoStore::from_client(retrying_client(&proxy.endpoint).await, "lossy");
    let me = RunId::new();
    lossy
        .begin_run(&me, "test", Duration::from_secs(30), now)
        .await
        .unwrap();
    // Bounded: before the fix, the retried write failed its condition against our own claim,
    // the claim was "held" by our own run, and the job polled itself forever.
    let bound = Duration::from_secs(60);
    let fresh = tokio::time::timeout(
        bound,
        lossy.claim(&me, &key(CLIENT, "fresh"), rules_at(now), None),
    )
    .await
    .expect("a bounded end")
    .unwrap();
    assert_eq!(fresh, Claim::Granted { in_doubt: None });
    let orphan = tokio::time::timeout(
        bound,
        lossy.claim(&me, &key(CLIENT, "orphan"), rules_at(now), None),
    )
    .await
    .expect("a bounded end")
    .unwrap();
    assert_eq!(
        orphan,
        Claim::Granted {
            in_doubt: Some(InDoubt {
                run: dead.0.clone(),
                claimed_at: now
            })
        }
    );
    assert_eq!(proxy.unused_rules(), 0, "both answers were lost");
    // Another job of this same run asking for the same user is held: a duplicate row waits.
    let dup = lossy
        .claim(&me, &key(CLIENT, "fresh"), rules_at(now), None)
        .await;
    assert!(matches!(dup.unwrap(), Claim::Held { .. }));
    // A result whose answer is lost is recorded once, not counted twice.
    let proxy2 = LossyProxy::start(
        &moto.endpoint,
        vec![vec![
            "UpdateItem".into(),
            format!("u#{CLIENT}#fresh"),
            "sends".into(),
        ]],
    )
    .await;
    let lossy2 = DynamoStore::from_client(retrying_client(&proxy2.endpoint).await, "lossy");
    lossy2
        .finish(&me, &key(CLIENT, "fresh"), Finish::Sent, None, now)
        .await
        .unwrap();
    assert_eq!(proxy2.unused_rules(), 0);
    let (rows, _) = direct.export_page(None, 100).await.unwrap();
    let row = rows.iter().find(|r| r.username == "fresh").unwrap();
    assert_eq!((row.sends, row.claimed_by.as_deref()), (1, None), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_dynamodb_takeover_keeps_its_in_doubt_mark_and_a_late_maybe_sent_keeps_the_cooldown()
 {
    let moto = Moto::start().await;
    dynamo_table(&moto, "marks").await;
    let db = DynamoStore::from_client(moto::dynamodb_client(&moto.endpoint).await, "marks");
    let now = cognito_resend::testing::now_millis();
    let dead = RunId::new();
    db.begin_run(&dead, "test", Duration::from_secs(30), now)
        .await
        .unwrap();
    for user in ["fay", "gus"] {
        db.claim(&dead, &key(CLIENT, user), rules_at(now), None)
            .await
            .unwrap();
    }
    db.end_run(&dead, now).await.unwrap();
    let doubt = Claim::Granted {
        in_doubt: Some(InDoubt {
            run: dead.0.clone(),
            claimed_at: now,
        }),
    };
    // Taken over, then released before the call (SIGTERM): the mark stays.
    let second = RunId::new();
    db.begin_run(&second, "test", Duration::from_secs(30), now)
        .await
        .unwrap();
    let c = db
        .claim(&second, &key(CLIENT, "fay"), rules_at(now), None)
        .await;
    assert_eq!(c.unwrap(), doubt);
    db.finish(&second, &key(CLIENT, "fay"), Finish::Release, None, now)
        .await
        .unwrap();
    let stats = db.stats(rules_at(now)).await.unwrap();
    assert_eq!(stats.doubt_marks, 1, "{stats:?}");
    let third = RunId::new();
    db.begin_run(&third, "test", Duration::from_secs(30), now)
        .await
        .unwrap();
    let c = db
        .claim(&third, &key(CLIENT, "fay"), rules_at(now), None)
        .await;
    assert_eq!(c.unwrap(), doubt, "the next run is told");
    db.finish(&third, &key(CLIENT, "fay"), Finish::Sent, None, now)
        .await
        .unwrap();
    let stats = db.stats(rules_at(now)).await.unwrap();
    assert_eq!(stats.doubt_marks, 0, "{stats:?}");

    // "gus": the dead run was not dead after all; its call ended ambiguous after the takeover.
    let c = db
        .claim(&third, &key(CLIENT, "gus"), rules_at(now), None)
        .await;
    assert!(matches!(c.unwrap(), Claim::Granted { in_doubt: Some(_) }));
    db.finish(
        &dead,
        &key(CLIENT, "gus"),
        Finish::MaybeSent("failed"),
        None,
        now,
    )
    .await
    .unwrap();
    let fourth = RunId::new();
    let c = db
        .claim(&fourth, &key(CLIENT, "gus"), rules_at(now + 1), None)
        .await;
    assert!(
        matches!(c.unwrap(), Claim::Cooldown { .. }),
        "a possible send keeps the cooldown even from a taken-over claim"
    );
}

/// Reserves `n` sends on `day` at once, half from each store; returns those granted and the
/// caps that refused the others.
async fn reserve_raced(
    stores: [&Arc<DynamoStore>; 2],
    day: &str,
    n: usize,
    caps: DayCaps,
    medium: Option<Medium>,
) -> (Vec<DayReservation>, Vec<SpendCap>) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let store = stores[i % 2].clone();
        let r = DayReservation::new(day);
        tasks.push(tokio::spawn(async move {
            let refused = store.reserve_send(&r, caps, medium).await.unwrap();
            (r, refused)
        }));
    }
    let (mut granted, mut refused) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (r, None) => granted.push(r),
            (_, Some(cap)) => refused.push(cap),
        }
    }
    (granted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_spend_reservations_never_pass_the_cap_even_raced_from_two_clients() {
    let moto = Moto::start().await;
    dynamo_table(&moto, "spend").await;
    let a = Arc::new(DynamoStore::from_client(
        moto::dynamodb_client(&moto.endpoint).await,
        "spend",
    ));
    let b = Arc::new(DynamoStore::from_client(
        moto::dynamodb_client(&moto.endpoint).await,
        "spend",
    ));
    let caps = DayCaps {
        sends: Some(25),
        ..DayCaps::default()
    };
    let day = "2030-01-01";
    let (granted, refused) = reserve_raced([&a, &b], day, 40, caps, None).await;
    assert_eq!(granted.len(), 25);
    assert!(refused.iter().all(|c| *c == SpendCap::Day), "{refused:?}");
    // Given back when nothing was sent: one more fits, then the cap holds again.
    a.settle_send(&granted[0], Spent::Nothing).await.unwrap();
    let again = DayReservation::new(day);
    assert_eq!(a.reserve_send(&again, caps, None).await.unwrap(), None);
    assert_eq!(
        b.reserve_send(&DayReservation::new(day), caps, None)
            .await
            .unwrap(),
        Some(SpendCap::Day)
    );
    // Per medium: counted from the answer; a medium cap refuses once reached.
    let email_caps = DayCaps {
        email: Some(2),
        ..DayCaps::default()
    };
    let other = "2030-01-02";
    for _ in 0..2 {
        let r = DayReservation::new(other);
        assert_eq!(a.reserve_send(&r, email_caps, None).await.unwrap(), None);
        a.settle_send(&r, Spent::Code(Medium::Email)).await.unwrap();
    }
    assert_eq!(
        b.reserve_send(&DayReservation::new(other), email_caps, None)
            .await
            .unwrap(),
        Some(SpendCap::EmailDay)
    );
    let spend = b.day_spend(other).await.unwrap();
    assert_eq!((spend.sends, spend.sms, spend.email), (2, 0, 2));
    // A medium known ahead counts with the reservation: raced from two clients, exactly the
    // cap is granted; the other medium's cap does not concern it; a give-back returns both.
    let sms_caps = DayCaps {
        sms: Some(5),
        email: Some(0),
        ..DayCaps::default()
    };
    let third = "2030-01-03";
    let (granted, refused) = reserve_raced([&a, &b], third, 12, sms_caps, Some(Medium::Sms)).await;
    assert_eq!(granted.len(), 5);
    assert!(
        refused.iter().all(|c| *c == SpendCap::SmsDay),
        "{refused:?}"
    );
    a.settle_send(&granted[0], Spent::NothingOf(Medium::Sms))
        .await
        .unwrap();
    let spend = b.day_spend(third).await.unwrap();
    assert_eq!((spend.sends, spend.sms, spend.email), (4, 4, 0));
    a.settle_send(
        &granted[1],
        Spent::Moved {
            reserved: Medium::Sms,
            sent: Medium::Email,
        },
    )
    .await
    .unwrap();
    let spend = b.day_spend(third).await.unwrap();
    assert_eq!((spend.sends, spend.sms, spend.email), (4, 3, 1));
    // The day items are not users: `ledger stats` does not count them.
    let stats = a.stats(rules_at(0)).await.unwrap();
    assert_eq!(stats.users, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_fold_whose_answer_was_lost_merges_the_row_once() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let moto = Moto::start().await;
    dynamo_table(&moto, "lossyfold").await;
    let direct = moto::dynamodb_client(&moto.endpoint).await;
    // Three spellings of one person, as the previous build wrote them.
    for (username, sends) in [("Alice", 2), ("alice", 1), ("ALICE", 4)] {
        direct
            .put_item()
            .table_name("lossyfold")
            .item("pk", AttributeValue::S(format!("u#{CLIENT}#{username}")))
            .item("client_id", AttributeValue::S(CLIENT.into()))
            .item("username", AttributeValue::S(username.into()))
            .item("sends", AttributeValue::N(sends.to_string()))
            .item("w#w", AttributeValue::N(sends.to_string()))
            .send()
            .await
            .unwrap();
    }
    // The first merge goes through and its answer is lost: the SDK sends it again.
    let proxy = LossyProxy::start(&moto.endpoint, vec![vec!["TransactWriteItems".into()]]).await;
    let lossy = DynamoStore::from_client(retrying_client(&proxy.endpoint).await, "lossyfold");
    let folded = tokio::time::timeout(Duration::from_secs(60), lossy.fold_usernames())
        .await
        .expect("a bounded end")
        .unwrap();
    assert_eq!(proxy.unused_rules(), 0, "the answer was lost");
    // The merge whose answer was lost may not be counted as this call's; it is merged once.
    assert!((1..=2).contains(&folded.rows), "{folded:?}");
    let store = DynamoStore::from_client(direct, "lossyfold");
    let (rows, _) = store.export_page(None, 100).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].username, "alice");
    assert_eq!(rows[0].sends, 7, "{rows:?}");
    assert_eq!(rows[0].waves, [("w".to_owned(), 7)].into());
}

/// Personal data has an end on DynamoDB too: `ledger init` enables TTL on `expires_at`, a run
/// with `--retention` sets it on every user it records (that long after the outcome), and
/// `ledger forget` / `ledger prune` delete the items they name and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_rows_expire_with_the_retention_and_can_be_forgotten_or_pruned() {
    use cognito_emulator::{UserSpec, UserStatus};
    let moto = Moto::start().await;
    let names: Vec<String> = (0..4).map(|i| format!("person-{i}")).collect();
    let emu = emulator_with(
        names
            .iter()
            .map(|n| UserSpec::new(n.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let table = "retained";
    let state = format!("dynamodb://{table}");
    let ledger = |args: &[&str]| {
        let mut c = command(&emu.endpoint());
        c.arg("ledger")
            .args(args)
            .args(["--state", &state, "--dynamodb-endpoint", &moto.endpoint]);
        c
    };
    let ran = run(ledger(&["init"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let ddb = moto::dynamodb_client(&moto.endpoint).await;
    let ttl = ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(
        ttl.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );

    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &names);
    let mut cmd = backfill(&emu.endpoint(), &csv);
    cmd.args(["--state", &state, "--dynamodb-endpoint", &moto.endpoint])
        .args(["--retention", "30d"]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let items = ddb.scan().table_name(table).send().await.unwrap();
    let users: Vec<_> = items
        .items()
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("u#"))
        .collect();
    assert_eq!(users.len(), 4);
    for item in &users {
        let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
        let month = 30 * 86_400;
        assert!(
            (before + month..before + month + 120).contains(&expires),
            "expires_at {expires} is 30 days after the send ({before})"
        );
    }

    let ran = run(ledger(&["forget", "person-1", "--client-id", CLIENT])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("forgot 1 user row(s)"),
        "{}",
        ran.stdout
    );
    let user_pks = || async {
        let items = ddb.scan().table_name(table).send().await.unwrap();
        let mut pks: Vec<String> = items
            .items()
            .iter()
            .map(|i| i["pk"].as_s().unwrap().clone())
            .filter(|pk| pk.starts_with("u#"))
            .collect();
        pks.sort();
        pks
    };
    assert_eq!(
        user_pks().await,
        ["person-0", "person-2", "person-3"]
            .map(|u| format!("u#{CLIENT}#{u}"))
            .to_vec()
    );
    let ran = run(ledger(&["prune", "--inactive-for", "365d"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(user_pks().await.len(), 3, "nothing idle for a year");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let ran = run(ledger(&["prune", "--inactive-for", "1ms", "--force"])).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stdout.contains("pruned 3 user row(s)"),
        "{}",
        ran.stdout
    );
    assert!(user_pks().await.is_empty());
}

/// Issue 21, item 2: a reservation or a settlement whose answer is lost (the SDK sends it again)
/// counts once. Seen before: a give-back sent twice gave back two reservations; cap 2, three
/// codes sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_give_back_whose_answer_was_lost_gives_back_one_reservation() {
    let moto = Moto::start().await;
    dynamo_table(&moto, "lossyspend").await;
    let direct =
        DynamoStore::from_client(moto::dynamodb_client(&moto.endpoint).await, "lossyspend");
    let day = "2030-02-01";
    let caps = DayCaps {
        sends: Some(2),
        ..DayCaps::default()
    };
    // Two reservations: the cap. One call sends nothing and gives its reservation back; the
    // answer of that give-back is lost, and the SDK sends it again.
    let (first, second) = (DayReservation::new(day), DayReservation::new(day));
    assert_eq!(direct.reserve_send(&first, caps, None).await.unwrap(), None);
    assert_eq!(
        direct.reserve_send(&second, caps, None).await.unwrap(),
        None
    );
    let proxy = LossyProxy::start(
        &moto.endpoint,
        vec![vec!["UpdateItem".into(), format!("d#{day}")]],
    )
    .await;
    let lossy = DynamoStore::from_client(retrying_client(&proxy.endpoint).await, "lossyspend");
    lossy.settle_send(&first, Spent::Nothing).await.unwrap();
    assert_eq!(proxy.unused_rules(), 0, "the answer was lost");
    assert_eq!(direct.day_spend(day).await.unwrap().sends, 1);
    // One more fits (the one given back), and then the cap holds: two codes, not three.
    let third = DayReservation::new(day);
    assert_eq!(direct.reserve_send(&third, caps, None).await.unwrap(), None);
    assert_eq!(
        direct
            .reserve_send(&DayReservation::new(day), caps, None)
            .await
            .unwrap(),
        Some(SpendCap::Day)
    );

    // Every other write of a reservation, each answer lost once: the per-medium counts stay
    // exact, and every settled token is let go.
    let day = "2030-02-02";
    let caps = DayCaps {
        sends: Some(10),
        sms: Some(5),
        email: Some(5),
    };
    let sms = Some(Medium::Sms);
    let [a, b, c, d] = [(); 4].map(|()| DayReservation::new(day));
    let reserve = |r: &DayReservation| vec!["UpdateItem".to_owned(), r.token.clone()];
    let settle = |r: &DayReservation| {
        vec![
            "UpdateItem".to_owned(),
            r.token.clone(),
            "DELETE held".to_owned(),
        ]
    };
    let proxy = LossyProxy::start(
        &moto.endpoint,
        vec![
            reserve(&a),
            settle(&a),
            settle(&b),
            reserve(&c),
            settle(&c),
            settle(&d),
        ],
    )
    .await;
    let lossy = DynamoStore::from_client(retrying_client(&proxy.endpoint).await, "lossyspend");
    let spend = || async { direct.day_spend(day).await.unwrap() };
    let counts = |s: DaySpend| (s.sends, s.sms, s.email);
    // Reserved ahead as SMS, answer lost: reserved once.
    assert_eq!(lossy.reserve_send(&a, caps, sms).await.unwrap(), None);
    assert_eq!(counts(spend().await), (1, 1, 0));
    // Nothing sent: both counts given back, once.
    lossy
        .settle_send(&a, Spent::NothingOf(Medium::Sms))
        .await
        .unwrap();
    assert_eq!(counts(spend().await), (0, 0, 0));
    // The medium not known ahead; an email went out: counted once.
    assert_eq!(lossy.reserve_send(&b, caps, None).await.unwrap(), None);
    lossy
        .settle_send(&b, Spent::Code(Medium::Email))
        .await
        .unwrap();
    assert_eq!(counts(spend().await), (1, 0, 1));
    // Reserved as SMS, sent by email: moved once.
    assert_eq!(lossy.reserve_send(&c, caps, sms).await.unwrap(), None);
    lossy
        .settle_send(
            &c,
            Spent::Moved {
                reserved: Medium::Sms,
                sent: Medium::Email,
            },
        )
        .await
        .unwrap();
    assert_eq!(counts(spend().await), (2, 0, 2));
    // Reserved as SMS and sent by SMS: kept as counted.
    assert_eq!(lossy.reserve_send(&d, caps, sms).await.unwrap(), None);
    lossy.settle_send(&d, Spent::Kept).await.unwrap();
    assert_eq!(counts(spend().await), (3, 1, 2));
    assert_eq!(proxy.unused_rules(), 0, "every answer named was lost");
    let item = moto::dynamodb_client(&moto.endpoint)
        .await
        .get_item()
        .table_name("lossyspend")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("d#{day}")),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(
        !item.contains_key("held"),
        "every settled reservation's token is gone: {item:?}"
    );
}
