//! The Lambda function (`cognito-resend-lambda`, feature `lambda`) on a real local Lambda
//! runtime: cargo-lambda's `cargo lambda watch`, the Lambda runtime API emulator, which builds
//! the function with `cargo run --features lambda` (in this build's target directory) and runs
//! it as Lambda would, polling for events; `cargo lambda invoke` sends it SQS events and
//! EventBridge scheduled events. Around it: the bundled Cognito emulator (the ground truth of
//! who got a code), moto's DynamoDB (the ledger), SQS (the queue an event source mapping reads)
//! and Secrets Manager (the client secret).
//!
//! cargo-lambda's emulator gives every invocation the same deadline, 600000 ms after the Unix
//! epoch, long past: the function ignores it (with a warning) and takes its deadline from
//! `lambda.timeout`, which these tests set, as the SAM template does.
//!
//! The event source mapping itself is not emulated by cargo-lambda; where a test needs one, it
//! does what the mapping does: receive up to 10 messages, invoke with them, delete every record
//! the answer does not name.

// The integration tests' support (tests/it/main.rs), of which this binary uses a part.
#[path = "it/support/mod.rs"]
#[allow(dead_code)]
mod support;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cognito_emulator::{Faults, UserSpec, UserStatus};
use serde_json::{Value, json};
use support::moto::{self, Moto};
use support::{CLIENT, command, run};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How to get cargo-lambda, for the panic that finds it missing.
const HOW: &str = "run the test suite with scripts/test.sh, which installs cargo-lambda in the \
                   project venv (tests/requirements.txt) and sets COGNITO_RESEND_TEST_CARGO_LAMBDA";

/// cargo-lambda starts the function at the first invocation, building it first (`cargo run
/// --features lambda`): minutes on a cold target directory. Every invocation is given as long.
const INVOKE_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The line cargo-lambda logs once its runtime API listens.
const LISTENING: &str = "starting Runtime server";

/// The line the function logs once its container is ready (`cmd::lambda::serve`).
const READY: &str = "cognito-resend Lambda function ready";

/// The client secret of the test pool's app client, kept in moto's Secrets Manager.
const SECRET: &str = "lambda-test-client-secret";

/// `cargo lambda watch` running the function, stopped when dropped.
struct Function {
    child: tokio::process::Child,
    port: u16,
    /// Everything cargo-lambda and the function printed, stdout and stderr, line by line.
    output: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    invocations: std::sync::atomic::AtomicU32,
}

impl Function {
    /// Starts the runtime emulator, which starts the function (with `settings` as its
    /// environment, plus isolation from the machine's AWS setup) at the first invocation.
    async fn start(settings: &[(&str, String)]) -> Function {
        let cargo_lambda = match std::env::var("COGNITO_RESEND_TEST_CARGO_LAMBDA") {
            Ok(p) if !p.is_empty() => p,
            _ => panic!("COGNITO_RESEND_TEST_CARGO_LAMBDA is not set: {HOW}"),
        };
        let port = free_port();
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let mut cmd = tokio::process::Command::new(&cargo_lambda);
        cmd.args(["lambda", "watch", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(["--features", "lambda", "--bin", "cognito-resend-lambda"])
            .args(["--manifest-path", manifest])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Inherit the build's environment (CARGO_TARGET_DIR, PATH, the toolchain), so the
        // function is built where this test was; but nothing of the machine's AWS setup or of
        // our own settings.
        for (key, _) in std::env::vars() {
            if key.starts_with("AWS_") || key.starts_with("COGNITO_RESEND_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("COGNITO_RESEND_AWS_REGION", "us-east-1");
        for (k, v) in settings {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cargo_lambda} ({e}): {HOW}"));
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("piped"), output.clone());
        collect(child.stderr.take().expect("piped"), output.clone());
        let function = Function {
            child,
            port,
            output,
            dir: tempfile::tempdir().expect("a temp dir"),
            invocations: Default::default(),
        };
        function.wait_for(LISTENING, Duration::from_secs(60)).await;
        function
    }

    /// Waits (at most `limit`) for an output line containing `needle`.
    async fn wait_for(&self, needle: &str, limit: Duration) {
        support::eventually(
            format!("a line containing {needle:?}"),
            limit,
            Duration::from_millis(50),
            || {
                let lines = self.lines();
                if lines.iter().any(|l| l.contains(needle)) {
                    Ok(())
                } else {
                    Err(format!("the output so far:\n{}", lines.join("\n")))
                }
            },
        )
        .await
    }

    fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// `cargo lambda invoke` with `payload`; the function's answer.
    async fn invoke(&self, payload: &Value) -> Value {
        let out = self.call(payload).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cargo lambda invoke failed: {}\n{stdout}\nfunction output:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.lines().join("\n")
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("the answer is JSON ({e}): {stdout}"))
    }

    /// An invocation that must fail: what the caller and the function's log said.
    async fn invoke_err(&self, payload: &Value) -> String {
        let out = self.call(payload).await;
        let said = format!(
            "{}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.lines().join("\n")
        );
        assert!(!out.status.success(), "the invocation succeeded: {said}");
        said
    }

    async fn call(&self, payload: &Value) -> std::process::Output {
        let n = self
            .invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.dir.path().join(format!("event-{n}.json"));
        std::fs::write(&file, payload.to_string()).expect("write the event");
        let cargo_lambda = std::env::var("COGNITO_RESEND_TEST_CARGO_LAMBDA").expect(HOW);
        tokio::time::timeout(
            INVOKE_LIMIT,
            tokio::process::Command::new(cargo_lambda)
                .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &self.port.to_string()])
                .arg("--data-file")
                .arg(&file)
                .args(["--output-format", "json"])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("the invocation answered within {INVOKE_LIMIT:?}"))
        .expect("cargo lambda invoke runs")
    }

    /// The EMF lines the function wrote (JSON objects with `_aws`), in order.
    fn emf(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("_aws").is_some())
            .collect()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // SIGINT lets cargo-lambda stop the function it started; kill_on_drop follows.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn collect(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// An SQS record as an event source mapping delivers it.
fn record(message_id: &str, body: &str) -> Value {
    json!({
        "messageId": message_id,
        "receiptHandle": format!("handle-{message_id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1800000000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:cognito-resend",
        "awsRegion": "us-east-1"
    })
}

fn sqs_event(records: &[(&str, String)]) -> Value {
    json!({"Records": records.iter().map(|(id, body)| record(id, body)).collect::<Vec<_>>()})
}

/// An EventBridge scheduled event.
fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "schedule-1", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-29T02:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/cognito-resend-backfill"],
        "detail": {}
    })
}

/// A scheduled event whose rule's input carries flags for its backfill (a reminder wave).
fn scheduled_wave(args: &[&str]) -> Value {
    let mut event = scheduled_event();
    event["detail"] = json!({ "args": args });
    event
}

/// The message ids an SQS answer names.
fn failures(answer: &Value) -> BTreeSet<String> {
    answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("an SQS batch response: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("an id").to_owned())
        .collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Creates the ledger's DynamoDB table in moto (`cognito-resend ledger init`).
async fn ledger_table(emulator: &str, moto: &Moto, table: &str) {
    let mut cmd = command(emulator);
    cmd.args(["ledger", "init", "--state", &format!("dynamodb://{table}")])
        .args(["--dynamodb-endpoint", &moto.endpoint]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "ledger init: {}", ran.stderr);
}

/// What every test function gets: the emulator, the ledger on moto, the client id, a deadline
/// (`lambda.timeout`, since the local runtime gives none) and quick retries.
fn base_settings(emulator: &str, moto: &Moto, table: &str) -> Vec<(&'static str, String)> {
    vec![
        ("COGNITO_RESEND_COGNITO_ENDPOINT", emulator.to_owned()),
        ("COGNITO_RESEND_COGNITO_CLIENT_ID", CLIENT.to_owned()),
        ("COGNITO_RESEND_LEDGER_PATH", format!("dynamodb://{table}")),
        (
            "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT",
            moto.endpoint.clone(),
        ),
        ("COGNITO_RESEND_RUN_RATE", "0".into()),
        ("COGNITO_RESEND_RETRY_MAX_ATTEMPTS", "3".into()),
        ("COGNITO_RESEND_RETRY_INITIAL_BACKOFF", "10ms".into()),
        ("COGNITO_RESEND_RETRY_MAX_BACKOFF", "50ms".into()),
        ("COGNITO_RESEND_LAMBDA_TIMEOUT", "120s".into()),
    ]
}

/// A batch of good, duplicate, already-confirmed, unknown, poison, attempt-limited and
/// foreign-client records answers exactly the records that must come back; a redelivery of the
/// whole batch sends nothing more; a throttle storm returns every record it touched, and the
/// redelivery after it sends each user once. The client secret comes from Secrets Manager, read
/// once, with the rest of the container, at its cold start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_batch_returns_exactly_the_records_that_must_come_back_and_sends_each_user_once() {
    let users = [
        "good-1", "good-2", "good-3", "limited", "storm-1", "storm-2",
    ]
    .into_iter()
    .map(|u| UserSpec::new(u, UserStatus::Unconfirmed))
    .chain([UserSpec::new("confirmed", UserStatus::Confirmed)]);
    let emu = cognito_emulator::Emulator::builder()
        .client(cognito_emulator::ClientSpec::new(CLIENT).with_secret(SECRET))
        .users(users)
        // Cognito's per-user limit, at one resend an hour: `limited` gets a code from elsewhere
        // first, so the function's call meets LimitExceededException ("Attempt limit exceeded").
        .attempt_limit(Some(1))
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the emulator starts");
    let moto = Moto::start().await;
    ledger_table(&emu.endpoint(), &moto, "lambda-batch").await;
    let secrets = secrets_client(&moto.endpoint).await;
    secrets
        .create_secret()
        .name("cognito-resend/client-secret")
        .secret_string(json!({ "client_secret": SECRET }).to_string())
        .send()
        .await
        .expect("CreateSecret in moto");
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = support::usernames_csv(dir.path(), &["limited".to_owned()]);
    let mut cmd = support::backfill(&emu.endpoint(), &elsewhere);
    cmd.args(["--state", "none"])
        .env("COGNITO_RESEND_CLIENT_SECRET", SECRET);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "the code from elsewhere: {}", ran.stderr);

    let mut settings = base_settings(&emu.endpoint(), &moto, "lambda-batch");
    settings.push((
        "COGNITO_RESEND_LAMBDA_CLIENT_SECRET_ID",
        "cognito-resend/client-secret".into(),
    ));
    settings.push(("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.clone()));
    let function = Function::start(&settings).await;

    let job = |u: &str| moto::job(u);
    let batch = sqs_event(&[
        ("m-good-1", job("good-1")),
        ("m-good-2", job("good-2")),
        ("m-dup-1", job("good-1")),
        ("m-confirmed", job("confirmed")),
        ("m-unknown", job("nobody-by-this-name")),
        ("m-poison", "this is not JSON".into()),
        ("m-no-user", r#"{"client_metadata": {"k": "v"}}"#.into()),
        ("m-limited", job("limited")),
        (
            "m-foreign",
            json!({"username": "good-3", "client_id": "foreign"}).to_string(),
        ),
        ("m-good-3", job("good-3")),
    ]);
    let must_come_back = ids(&["m-poison", "m-no-user", "m-limited", "m-foreign"]);
    let answer = function.invoke(&batch).await;
    assert_eq!(failures(&answer), must_come_back, "{answer}");
    let once: HashMap<String, usize> = ["good-1", "good-2", "good-3", "limited"]
        .iter()
        .map(|u| ((*u).to_owned(), 1))
        .collect();
    assert_eq!(emu.send_counts(), once);
    assert!(
        emu.sends().iter().all(|s| s.secret_hash_given),
        "every call carried the SecretHash of the secret read from Secrets Manager"
    );

    // The mapping delivers the whole batch again (a visibility timeout ran out): the ledger
    // makes every good record `cooldown`, done without a call.
    let again = function.invoke(&batch).await;
    assert_eq!(failures(&again), must_come_back, "{again}");
    assert_eq!(emu.send_counts(), once);

    // A throttle storm: every call answered TooManyRequestsException until the retry budget
    // (3 attempts) runs out. Those records come back, nothing is sent.
    emu.set_quota_rps(Some(0));
    let storm = sqs_event(&[("m-storm-1", job("storm-1")), ("m-storm-2", job("storm-2"))]);
    let answer = function.invoke(&storm).await;
    assert_eq!(failures(&answer), ids(&["m-storm-1", "m-storm-2"]));
    assert!(emu.stats().throttled >= 6, "{:?}", emu.stats());
    assert_eq!(emu.send_counts(), once);
    emu.set_quota_rps(None);
    let answer = function.invoke(&storm).await;
    assert_eq!(failures(&answer), BTreeSet::new());
    let mut twice_stormed = once.clone();
    twice_stormed.insert("storm-1".into(), 1);
    twice_stormed.insert("storm-2".into(), 1);
    assert_eq!(emu.send_counts(), twice_stormed);

    // Built once per container: one cold start for four invocations, and EMF lines for each
    // invocation saying what it did (the first: three codes sent).
    let ready = function
        .lines()
        .iter()
        .filter(|l| l.contains(READY))
        .count();
    assert_eq!(ready, 1, "the container started once");
    let emf = function.emf();
    let invocations: BTreeSet<&str> = emf
        .iter()
        .map(|l| l["request_id"].as_str().expect("a request id"))
        .collect();
    assert_eq!(invocations.len(), 4, "EMF lines for each invocation");
    let cold: Vec<&Value> = emf.iter().filter(|l| l["cold_start"] == true).collect();
    assert!(
        !cold.is_empty() && cold.iter().all(|l| l["request_id"] == emf[0]["request_id"]),
        "only the first invocation is a cold start"
    );
    let sent_first = emf
        .iter()
        .find(|l| {
            l["request_id"] == emf[0]["request_id"]
                && l["outcome"] == "sent"
                && l["source"] == "sqs"
        })
        .expect("an EMF line for outcome=sent in the first invocation");
    assert_eq!(sent_first["cognito_resend_jobs_total"], json!(3.0));
    let dims = &sent_first["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    assert_eq!(dims, &json!([["action", "outcome", "source"], []]));
}

async fn secrets_client(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// With calls that take a second each, one at a time, and a deadline (`lambda.timeout`) 8 s
/// after arrival with a 4 s margin, the function stops taking records after 4 s: it answers
/// every record whose user it did not send to as a failure, and none it did; the redelivery of
/// those sends each of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_deadline_returns_the_records_not_started_and_the_redelivery_sends_them_once() {
    let users: Vec<String> = (0..10).map(|i| format!("slow-{i}")).collect();
    let emu = support::emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| {
            b.faults(Faults {
                latency: Duration::from_secs(1),
                ..Default::default()
            })
        },
    )
    .await;
    let moto = Moto::start().await;
    ledger_table(&emu.endpoint(), &moto, "lambda-deadline").await;
    let mut settings = base_settings(&emu.endpoint(), &moto, "lambda-deadline");
    settings.retain(|(k, _)| *k != "COGNITO_RESEND_LAMBDA_TIMEOUT");
    settings.push(("COGNITO_RESEND_LAMBDA_TIMEOUT", "8s".into()));
    settings.push(("COGNITO_RESEND_LAMBDA_MARGIN", "4s".into()));
    settings.push(("COGNITO_RESEND_RUN_CONCURRENCY", "1".into()));
    let function = Function::start(&settings).await;

    let records: Vec<(String, String)> = users
        .iter()
        .map(|u| (format!("m-{u}"), moto::job(u)))
        .collect();
    let event = |rs: &[(String, String)]| {
        let rs: Vec<(&str, String)> = rs.iter().map(|(i, b)| (i.as_str(), b.clone())).collect();
        sqs_event(&rs)
    };
    let answer = function.invoke(&event(&records)).await;
    let returned = failures(&answer);
    let sent: BTreeSet<String> = emu.send_counts().keys().map(|u| format!("m-{u}")).collect();
    let all: BTreeSet<String> = records.iter().map(|(i, _)| i.clone()).collect();
    assert!(!sent.is_empty(), "some records ran before the deadline");
    assert!(!returned.is_empty(), "the deadline came before all ten");
    assert_eq!(
        returned,
        all.difference(&sent).cloned().collect(),
        "exactly the records not sent come back"
    );
    assert!(
        function
            .lines()
            .iter()
            .any(|l| l.contains("deadline is near")),
        "the deadline stopped the batch"
    );

    emu.set_faults(Faults::default());
    let rest: Vec<(String, String)> = records
        .iter()
        .filter(|(i, _)| returned.contains(i))
        .cloned()
        .collect();
    let answer = function.invoke(&event(&rest)).await;
    assert_eq!(failures(&answer), BTreeSet::new(), "{answer}");
    let counts = emu.send_counts();
    assert_eq!(counts.len(), users.len());
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

/// Scheduled events run `backfill --from-pool` within each invocation's deadline: each one
/// sends what it can, and the next one goes on from the ledger, until the pool is done. Every
/// UNCONFIRMED user is sent once, no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backfills_go_on_from_the_ledger_until_every_unconfirmed_user_is_sent_once() {
    // The app client has a secret, given in the function's environment (issue 21, item 9: a
    // schedule's own flags were refused whenever the secret came from the environment).
    const ENV_SECRET: &str = "schedule-client-secret";
    let pool = support::pool(60, Some(ENV_SECRET), |b| {
        b.faults(Faults {
            latency: Duration::from_millis(200),
            ..Default::default()
        })
    })
    .await;
    let moto = Moto::start().await;
    ledger_table(&pool.emu.endpoint(), &moto, "lambda-schedule").await;
    let mut settings = base_settings(&pool.emu.endpoint(), &moto, "lambda-schedule");
    settings.retain(|(k, _)| *k != "COGNITO_RESEND_LAMBDA_TIMEOUT");
    settings.push(("COGNITO_RESEND_LAMBDA_TIMEOUT", "4s".into()));
    settings.push(("COGNITO_RESEND_LAMBDA_MARGIN", "2s".into()));
    settings.push(("COGNITO_RESEND_RUN_CONCURRENCY", "2".into()));
    settings.push((
        "COGNITO_RESEND_COGNITO_USER_POOL_ID",
        pool.emu.user_pool_id().to_owned(),
    ));
    settings.push(("COGNITO_RESEND_CLIENT_SECRET", ENV_SECRET.to_owned()));
    let function = Function::start(&settings).await;

    let summaries = scheduled_until_complete(&function, &scheduled_event()).await;
    let last = summaries.last().expect("at least one invocation");
    assert_eq!(last["complete"], true, "the pool was done: {summaries:#?}");
    assert!(
        summaries.len() >= 2 && summaries[0]["stopped"] == "deadline",
        "the first invocation stopped at its deadline and a later one went on: {summaries:#?}"
    );
    let counts = pool.emu.send_counts();
    let sent: std::collections::HashSet<String> = counts.keys().cloned().collect();
    assert_eq!(
        sent, pool.unconfirmed,
        "every UNCONFIRMED user, no one else"
    );
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");

    // Reminder waves on the same function: the schedule's input carries the wave's flags over
    // the environment, as a CronJob's args do. The second wave sends everyone again, tagged; the
    // third is over the lifetime cap and sends nothing.
    let day2 = [
        "--wave",
        "day-2",
        "--cooldown",
        "0s",
        "--max-sends-per-user",
        "2",
        "--client-metadata",
        "wave=day-2",
        // Credentials in a flag's URL never reach the logs (the flags are logged, redacted).
        "--pushgateway",
        "http://wave:hunter2@127.0.0.1:9/?token=s3cret",
    ];
    let waves = scheduled_until_complete(&function, &scheduled_wave(&day2)).await;
    let sent: u64 = waves
        .iter()
        .map(|s| s["outcomes"]["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, pool.unconfirmed.len() as u64, "{waves:#?}");
    let counts = pool.emu.send_counts();
    assert!(counts.values().all(|&n| n == 2), "{counts:?}");
    let tagged = pool
        .emu
        .sends()
        .iter()
        .filter(|s| s.client_metadata.get("wave").map(String::as_str) == Some("day-2"))
        .count();
    assert_eq!(
        tagged,
        pool.unconfirmed.len(),
        "the second wave's codes carry its metadata"
    );
    let day3 = [
        "--wave",
        "day-3",
        "--cooldown",
        "0s",
        "--max-sends-per-user",
        "2",
    ];
    let capped = scheduled_until_complete(&function, &scheduled_wave(&day3)).await;
    let capped: u64 = capped
        .iter()
        .map(|s| s["outcomes"]["capped"].as_u64().unwrap())
        .sum();
    assert_eq!(capped, pool.unconfirmed.len() as u64);
    assert!(pool.emu.send_counts().values().all(|&n| n == 2));
    // A misspelt or container-level flag fails the invocation, naming it; nothing is sent.
    let refused = function
        .invoke_err(&scheduled_wave(&["--wave", "day-4", "--state", "none"]))
        .await;
    assert!(refused.contains("--state"), "{refused}");
    let secret_file = function.dir.path().join("other-secret");
    std::fs::write(&secret_file, "another").unwrap();
    let refused = function
        .invoke_err(&scheduled_wave(&[
            "--wave",
            "day-4",
            "--client-secret-file",
            secret_file.to_str().unwrap(),
        ]))
        .await;
    assert!(refused.contains("--client-secret-file"), "{refused}");
    let leaked: Vec<String> = function
        .lines()
        .into_iter()
        .filter(|l| l.contains("hunter2") || l.contains("s3cret") || l.contains(ENV_SECRET))
        .collect();
    assert!(leaked.is_empty(), "secrets in the logs: {leaked:#?}");
}

/// Scheduled invocations of `event` until one says the pool is done (at most 30).
async fn scheduled_until_complete(function: &Function, event: &Value) -> Vec<Value> {
    let mut summaries = Vec::new();
    for _ in 0..30 {
        let summary = function.invoke(event).await;
        let complete = summary["complete"] == true;
        summaries.push(summary);
        if complete {
            break;
        }
    }
    summaries
}

/// The event source mapping's loop over a real queue (moto): receive up to 10, invoke, delete
/// what the answer does not name. Every message is sent twice (duplicate deliveries), and one
/// is poison: each user gets one code, and the poison message ends in the DLQ by the queue's
/// redrive policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_drained_through_the_function_sends_each_user_once_and_poison_goes_to_the_dlq() {
    let users: Vec<String> = (0..12).map(|i| format!("queued-{i}")).collect();
    let emu = support::emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let moto = Moto::start().await;
    ledger_table(&emu.endpoint(), &moto, "lambda-queue").await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, dlq) = moto::create_queue_with_dlq(&sqs, "lambda-jobs", 2).await;
    let mut bodies: Vec<String> = users.iter().map(|u| moto::job(u)).collect();
    bodies.extend(users.iter().map(|u| moto::job(u)));
    bodies.push("poison".into());
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let arn = moto::queue_arn(&sqs, &url).await;

    let pushgateway = Pushgateway::start().await;
    let mut settings = base_settings(&emu.endpoint(), &moto, "lambda-queue");
    settings.push((
        "COGNITO_RESEND_METRICS_PUSHGATEWAY",
        pushgateway.url.clone(),
    ));
    let function = Function::start(&settings).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue drained within 120 s"
        );
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            let (visible, invisible) = moto::queue_counts(&sqs, &url).await;
            if visible + invisible == 0 {
                break;
            }
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                    "body": m.body(), "attributes": {}, "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                    "eventSourceARN": arn, "awsRegion": "us-east-1"
                })
            })
            .collect();
        let answer = function.invoke(&json!({ "Records": records })).await;
        let failed = failures(&answer);
        for m in &messages {
            if !failed.contains(m.message_id().unwrap_or_default()) {
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        }
    }
    let counts = emu.send_counts();
    assert_eq!(counts.len(), users.len(), "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(
        moto::drain_bodies(&sqs, &dlq).await,
        vec!["poison".to_owned()]
    );

    // `--pushgateway` keeps working: every invocation pushed the container's metrics.
    let pushes = pushgateway.pushes();
    assert!(!pushes.is_empty(), "the function pushed its metrics");
    let (path, body) = pushes.last().unwrap();
    assert_eq!(path, "/metrics/job/cognito-resend/command/lambda");
    assert!(
        body.contains(
            r#"cognito_resend_jobs_total{source="sqs",action="confirm",outcome="sent"} 12"#
        ),
        "{body}"
    );
}

/// A stand-in Pushgateway: answers every request 200 and keeps each PUT's path and body.
struct Pushgateway {
    url: String,
    pushes: Arc<Mutex<Vec<(String, String)>>>,
}

impl Pushgateway {
    async fn start() -> Pushgateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let pushes = Arc::new(Mutex::new(Vec::new()));
        let kept = pushes.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(one_push(conn, kept.clone()));
            }
        });
        Pushgateway { url, pushes }
    }

    fn pushes(&self) -> Vec<(String, String)> {
        self.pushes.lock().unwrap().clone()
    }
}

/// One request on `conn`: headers, then Content-Length bytes of body; kept, answered 200.
async fn one_push(mut conn: tokio::net::TcpStream, kept: Arc<Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length = text[..end]
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() < end + 4 + length {
            continue;
        }
        let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
        let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
        kept.lock().unwrap().push((path, body));
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
}

/// Issue 21, item 1, the Lambda: at a per-day spend cap, the records not started are answered
/// as failures (as before) and held back until the UTC day turns (ChangeMessageVisibility), so
/// the event source mapping does not deliver them again at the visibility timeout, each time
/// counted toward the redrive policy, and drain the queue into the DLQ with no outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_day_cap_the_function_holds_back_the_records_it_did_not_start() {
    let users: Vec<String> = (0..4).map(|i| format!("capped-{i}")).collect();
    let emu = support::emulator_with(
        users
            .iter()
            .map(|u| UserSpec::new(u.clone(), UserStatus::Unconfirmed))
            .collect(),
        |b| b,
    )
    .await;
    let moto = Moto::start().await;
    ledger_table(&emu.endpoint(), &moto, "lambda-capped").await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let (url, _dlq) = moto::create_queue_with_dlq(&sqs, "lambda-capped", 2).await;
    let bodies: Vec<String> = users.iter().map(|u| moto::job(u)).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;
    let arn = moto::queue_arn(&sqs, &url).await;
    let mut settings = base_settings(&emu.endpoint(), &moto, "lambda-capped");
    settings.push(("COGNITO_RESEND_LIMITS_MAX_SENDS_PER_DAY", "1".into()));
    settings.push(("COGNITO_RESEND_RUN_CONCURRENCY", "1".into()));
    settings.push(("COGNITO_RESEND_SQS_ENDPOINT", moto.endpoint.clone()));
    let function = Function::start(&settings).await;

    // What the mapping does, with a visibility timeout of 0 so that whatever the function does
    // not hold back is visible again at once.
    let messages = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    assert_eq!(messages.len(), 4);
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                "body": m.body(), "attributes": {}, "messageAttributes": {},
                "md5OfBody": m.md5_of_body(), "eventSource": "aws:sqs",
                "eventSourceARN": arn, "awsRegion": "us-east-1"
            })
        })
        .collect();
    let answer = function.invoke(&json!({ "Records": records })).await;
    let failed = failures(&answer);
    assert_eq!(emu.send_counts().len(), 1, "the day's one send");
    assert_eq!(failed.len(), 3, "{answer}");
    for m in &messages {
        if !failed.contains(m.message_id().unwrap_or_default()) {
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("DeleteMessage");
        }
    }
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (0, 3),
        "the three not started are held back, none visible; function output:\n{}",
        function.lines().join("\n")
    );
}

/// Issue 21, item 6: past the deadline, everything the function still has to do is bounded by
/// the time left. Here DynamoDB stops answering result writes (a proxy holds them: the record
/// would be retried for a whole claim lease, then again at close) and the Pushgateway accepts
/// connections and never answers (the push would take ~31 s): each invocation still ends
/// before its timeout (12 s), so Lambda never cuts it short and sends the whole batch back. The
/// code sent is answered done (in doubt, unrecorded), not resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_deadline_a_silent_ledger_and_pushgateway_are_given_up_before_the_timeout() {
    let emu =
        support::emulator_with(vec![UserSpec::new("late", UserStatus::Unconfirmed)], |b| b).await;
    let moto = Moto::start().await;
    ledger_table(&emu.endpoint(), &moto, "lambda-late").await;
    let slow = support::HoldingProxy::start(
        &moto.endpoint,
        "last_outcome = :o",
        Duration::from_secs(900),
    )
    .await;
    let pushgateway = support::black_hole().await;
    let mut settings = base_settings(&emu.endpoint(), &moto, "lambda-late");
    settings.retain(|(k, _)| {
        *k != "COGNITO_RESEND_LAMBDA_TIMEOUT" && *k != "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT"
    });
    settings.push((
        "COGNITO_RESEND_LEDGER_DYNAMODB_ENDPOINT",
        slow.endpoint.clone(),
    ));
    settings.push(("COGNITO_RESEND_LAMBDA_TIMEOUT", "12s".into()));
    settings.push(("COGNITO_RESEND_LAMBDA_MARGIN", "6s".into()));
    settings.push(("COGNITO_RESEND_LEDGER_CLAIM_LEASE", "300s".into()));
    settings.push(("COGNITO_RESEND_METRICS_PUSHGATEWAY", pushgateway));
    settings.push(("COGNITO_RESEND_LOG_FORMAT", "json".into()));
    let function = Function::start(&settings).await;

    // The first invocation starts the container (cargo-lambda builds it first): a poison record.
    let answer = function
        .invoke(&sqs_event(&[("m-warm", "poison".to_owned())]))
        .await;
    assert_eq!(failures(&answer), ids(&["m-warm"]));
    let answer = function
        .invoke(&sqs_event(&[("m-late", moto::job("late"))]))
        .await;
    assert_eq!(failures(&answer), BTreeSet::new(), "{answer}");
    assert_eq!(emu.send_counts().len(), 1);
    assert!(
        slow.held() >= 1,
        "the result write reached the silent ledger"
    );
    let lines = function.lines();
    let took: Vec<f64> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "invocation done")
        .filter_map(|v| v["seconds"].as_f64())
        .collect();
    assert_eq!(took.len(), 2, "{}", lines.join("\n"));
    assert!(
        took.iter().all(|&s| s < 12.0),
        "every invocation answered before its 12 s timeout: {took:?}\n{}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sent code(s) could not be recorded in the ledger")),
        "the send is reported unrecorded: {}",
        lines.join("\n")
    );
}
