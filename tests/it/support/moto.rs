//! The local SQS of the integration tests: moto's server, run by `scripts/moto_server.py`, and
//! the queue chores tests share (create queues with a DLQ or FIFO, send bodies, count, drain).
//!
//! Why the launcher and not `moto_server`: moto 5.2.5's SQS backend is not safe under
//! concurrent requests (two concurrent DeleteMessage calls can undo each other, so a deleted
//! message comes back), and the stock server is threaded. The launcher lets one request at a
//! time into moto and proves it at `/_launcher/stats` (tests/it/moto_serial.rs checks that).
//!
//! Each test starts its own server (~0.6 s) on a free loopback port, so tests never share
//! queues. The server ends when its [`Moto`] is dropped, and also when the test process dies
//! (it watches its stdin), so none outlives the run.
//!
//! Known limits of moto's SQS (measured once, by hand, while tests/it/moto_serial.rs was written;
//! no test measures them now): a request costs ~8 ms, and SendMessage and DeleteMessage cost time in proportion to the messages in
//! the queue (a SendMessageBatch of 10: 18 ms at 1,000 queued, 68 ms at 5,000, 285 ms at
//! 20,000), so keep test queues in the low thousands.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::retry::RetryPartition;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin};

/// How to get what these tests need, for every panic that finds it missing.
const HOW: &str = "run the test suite with scripts/test.sh, which installs the project venv \
                   (tests/requirements.txt: moto[server]) and sets COGNITO_RESEND_TEST_PYTHON";

/// How long a starting server may take to say it listens (it takes ~0.6 s; a cold machine
/// compiling moto's bytecode for the first time takes a few seconds).
const START_LIMIT: Duration = Duration::from_secs(30);

/// A running moto server on 127.0.0.1, stopped when dropped.
pub struct Moto {
    /// `http://127.0.0.1:PORT`: the SQS endpoint, and the host of the queue URLs moto hands out.
    pub endpoint: String,
    /// Killed on drop (`kill_on_drop`), so a failing test does not leak a server.
    _child: Child,
    /// Held open only: the launcher runs with `--exit-with-stdin`, so if this process dies
    /// without dropping `Moto` (an abort, a SIGKILL) the closed pipe still ends the server.
    _stdin: ChildStdin,
    /// What the launcher printed besides its listening line (tracebacks), for failure messages.
    output: Arc<Mutex<Vec<String>>>,
}

/// What the launcher counted, from `GET /_launcher/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LauncherStats {
    /// Requests moto served (the launcher's own paths not counted).
    pub requests: u64,
    /// Requests inside moto right now.
    pub in_flight: u64,
    /// The most requests ever inside moto at once: 1 when serialized.
    pub max_concurrency: u64,
    /// ReceiveMessage calls waiting for a message (long polls, outside the lock).
    pub long_polls: u64,
}

impl Moto {
    /// Starts a server that lets one request at a time into moto.
    pub async fn start() -> Moto {
        Self::start_with(&[]).await
    }

    /// Starts a server with extra launcher flags (`--no-serialize` is only for showing that
    /// the concurrency probe works).
    pub async fn start_with(extra_args: &[&str]) -> Moto {
        let python = match std::env::var("COGNITO_RESEND_TEST_PYTHON") {
            Ok(p) if !p.is_empty() => p,
            _ => panic!("COGNITO_RESEND_TEST_PYTHON is not set, so moto cannot start: {HOW}"),
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/moto_server.py");
        let mut child = tokio::process::Command::new(&python)
            .arg(script)
            .args(["--port", "0", "--exit-with-stdin"])
            .args(extra_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} {script} ({e}): {HOW}"));
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let output = Arc::new(Mutex::new(Vec::new()));
        // Drained for as long as the server runs: a full pipe would block the server.
        collect_lines(
            child.stderr.take().expect("stderr is piped"),
            output.clone(),
        );

        let mut first = String::new();
        let read = tokio::time::timeout(START_LIMIT, stdout.read_line(&mut first)).await;
        let endpoint = first
            .trim_end()
            .strip_prefix("listening on ")
            .map(str::to_owned);
        let Some(endpoint) = endpoint else {
            // Gone or stuck: give its stderr a moment to arrive, then say what it said.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let said = output
                .lock()
                .expect("no panics while holding it")
                .join("\n");
            let why = match read {
                Err(_) => format!("it did not say it was listening within {START_LIMIT:?}"),
                Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                Ok(Ok(_)) => format!("its first line was {first:?}"),
            };
            panic!(
                "moto did not start ({python} {script}): {why}; {HOW}\n--- its stderr ---\n{said}"
            );
        };
        collect_lines(stdout.into_inner(), output.clone());
        Moto {
            endpoint,
            _child: child,
            _stdin: stdin,
            output,
        }
    }

    /// The launcher's counters.
    pub async fn stats(&self) -> LauncherStats {
        let url = format!("{}/_launcher/stats", self.endpoint);
        let text = reqwest::get(&url)
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.output()))
            .text()
            .await
            .expect("the stats body");
        let v: serde_json::Value = serde_json::from_str(&text).expect("the stats are JSON");
        let field = |name: &str| {
            v[name]
                .as_u64()
                .unwrap_or_else(|| panic!("stats field {name} in {text}"))
        };
        LauncherStats {
            requests: field("requests"),
            in_flight: field("in_flight"),
            max_concurrency: field("max_concurrency"),
            long_polls: field("long_polls"),
        }
    }

    /// Everything the launcher printed after its listening line (tracebacks of moto errors).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .expect("no panics while holding it")
            .join("\n")
    }
}

/// Keeps every line of `stream` in `into`, in the background, until the stream ends.
fn collect_lines(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().expect("no panics while holding it").push(line);
        }
    });
}

/// An SQS client for `endpoint`, isolated from the machine's AWS setup: region us-east-1 and
/// dummy static credentials (moto does not check signatures, but reads the region from them).
/// The SDK's default retries are kept: the test side is not what is under test (but in a
/// retry partition of the client's own, see [`own_retry_partition`]).
pub async fn sqs_client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .retry_partition(own_retry_partition("sqs"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// A DynamoDB client for `endpoint`, set up like [`sqs_client`].
pub async fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .retry_partition(own_retry_partition("dynamodb"))
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// A retry partition no other client shares. The SDK keeps the retry token bucket of each
/// partition (by default one per service) in a process-wide static, and every test runs in one
/// process: the errors one test's clients retry (a proxy that loses answers) must not use up the
/// retries of another's.
fn own_retry_partition(service: &str) -> RetryPartition {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    RetryPartition::new(format!(
        "test-{service}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Creates a queue with these attributes; returns its URL.
pub async fn create_queue(
    client: &Client,
    name: &str,
    attrs: &[(QueueAttributeName, &str)],
) -> String {
    let mut req = client.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateQueue {name}: {e:?}"))
        .queue_url
        .unwrap_or_else(|| panic!("CreateQueue {name} returned no URL"))
}

/// The queue's ARN (what a RedrivePolicy names).
pub async fn queue_arn(client: &Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes QueueArn {url}: {e:?}"))
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| panic!("no QueueArn for {url}"))
}

/// Creates `name` and its dead-letter queue `name-dlq`: a message received
/// `max_receive_count` times and not deleted moves to the DLQ. Returns (queue URL, DLQ URL).
///
/// Like SQS, moto moves it when a later ReceiveMessage on `name` meets it again (not when its
/// visibility timeout runs out), so something must keep receiving from `name`.
pub async fn create_queue_with_dlq(
    client: &Client,
    name: &str,
    max_receive_count: u32,
) -> (String, String) {
    let dlq_url = create_queue(client, &format!("{name}-dlq"), &[]).await;
    let policy = serde_json::json!({
        "deadLetterTargetArn": queue_arn(client, &dlq_url).await,
        "maxReceiveCount": max_receive_count.to_string(),
    })
    .to_string();
    let url = create_queue(
        client,
        name,
        &[(QueueAttributeName::RedrivePolicy, policy.as_str())],
    )
    .await;
    (url, dlq_url)
}

/// Creates a FIFO queue (`.fifo` is appended to `name` if missing) without content-based
/// deduplication: [`send_bodies`] gives every message its own deduplication id, so equal
/// bodies are still separate jobs. Returns its URL.
pub async fn create_fifo_queue(client: &Client, name: &str) -> String {
    let name = if name.ends_with(".fifo") {
        name.to_owned()
    } else {
        format!("{name}.fifo")
    };
    create_queue(
        client,
        &name,
        &[
            (QueueAttributeName::FifoQueue, "true"),
            (QueueAttributeName::ContentBasedDeduplication, "false"),
        ],
    )
    .await
}

/// Sends `bodies` in order, 10 per SendMessageBatch; returns the message ids in the same order.
/// For a FIFO queue, `group` is every message's MessageGroupId (delivered in order, the group
/// blocked while one of its messages is in flight), and each gets its own deduplication id.
/// Panics if any entry fails.
pub async fn send_bodies(
    client: &Client,
    url: &str,
    bodies: &[String],
    group: Option<&str>,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(10) {
        let mut req = client.send_message_batch().queue_url(url);
        for (i, body) in chunk.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(body);
            if let Some(group) = group {
                // Unique in this process, so no send is taken for a duplicate of another
                // within the queue's 5-minute deduplication window.
                entry = entry
                    .message_group_id(group)
                    .message_deduplication_id(format!("dedup-{}", next_dedup_id()));
            }
            req = req.entries(entry.build().expect("id and body are set"));
        }
        let out = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("SendMessageBatch to {url}: {e:?}"));
        assert!(
            out.failed.is_empty(),
            "SendMessageBatch to {url} failed entries: {:?}",
            out.failed
        );
        // The answer lists entries in any order; put the ids back in the order sent.
        let mut chunk_ids = vec![String::new(); chunk.len()];
        for ok in out.successful {
            let i: usize = ok.id.trim_start_matches('m').parse().expect("our own id");
            chunk_ids[i] = ok.message_id;
        }
        ids.extend(chunk_ids);
    }
    ids
}

/// A fresh FIFO deduplication id number: no two sends in this process share one.
fn next_dedup_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// (visible, not visible): ApproximateNumberOfMessages and
/// ApproximateNumberOfMessagesNotVisible (in flight). moto counts exactly.
pub async fn queue_counts(client: &Client, url: &str) -> (u64, u64) {
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes {url}: {e:?}"))
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| -> u64 {
        attrs
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing for {url}"))
            .parse()
            .expect("a count")
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Receives and deletes until a receive comes back empty; returns the bodies, in the order
/// received. For inspecting a DLQ: messages in flight elsewhere are not waited for.
pub async fn drain_bodies(client: &Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let got = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage {url}: {e:?}"))
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return bodies;
        }
        let mut delete = client.delete_message_batch().queue_url(url);
        for (i, m) in got.iter().enumerate() {
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle.clone().expect("a receipt handle"))
                    .build()
                    .expect("id and handle are set"),
            );
        }
        let out = delete
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteMessageBatch {url}: {e:?}"));
        assert!(out.failed.is_empty(), "delete failed: {:?}", out.failed);
        bodies.extend(got.into_iter().map(|m| m.body.unwrap_or_default()));
    }
}

/// Waits until the queue has nothing visible and nothing in flight (bounded).
pub async fn wait_until_empty(client: &Client, url: &str, limit: Duration) {
    super::eventually(
        "an empty queue",
        limit,
        Duration::from_millis(250),
        async || match queue_counts(client, url).await {
            (0, 0) => Ok(()),
            (visible, in_flight) => Err(format!("{visible} visible, {in_flight} in flight")),
        },
    )
    .await
}

/// A job message body for `username`.
pub fn job(username: &str) -> String {
    serde_json::json!({ "username": username }).to_string()
}

// ---------------------------------------------------------------------------------------------
// moto's Cognito (cognito-idp), on the same server: it serves every service on one port, so
// `--cognito-endpoint <endpoint>` points the binary's Cognito client and pool client at it.
// moto 5.2.5 has CreateUserPool, CreateUserPoolClient, SignUp, AdminCreateUser,
// AdminConfirmSignUp, ListUsers, AdminGetUser, DescribeUserPool and DescribeUserPoolClient, but
// no ResendConfirmationCode: only the read paths (and dry runs) can be checked against it.
// ---------------------------------------------------------------------------------------------

use aws_sdk_cognitoidentityprovider as idp;

/// A password moto's default policy accepts (8+ characters, upper, lower, digit, symbol).
pub const PASSWORD: &str = "Passw0rd!-moto";

/// A Cognito user pools client for `endpoint`, set up like [`sqs_client`].
pub async fn cognito_client(endpoint: &str) -> idp::Client {
    let config = idp::Config::builder()
        .behavior_version(idp::config::BehaviorVersion::latest())
        .retry_partition(own_retry_partition("cognito-idp"))
        .region(idp::config::Region::new("us-east-1"))
        .credentials_provider(idp::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    idp::Client::from_conf(config)
}

/// How a test pool is created.
#[derive(Debug, Clone, Default)]
pub struct PoolSpec {
    /// `UsernameConfiguration.CaseSensitive`; `None`: no `UsernameConfiguration` at all.
    pub case_sensitive: Option<bool>,
    /// `UsernameAttributes` (`email`): users sign up with their email, the username is an id.
    pub username_attributes: Vec<idp::types::UsernameAttributeType>,
    /// `AliasAttributes`.
    pub alias_attributes: Vec<idp::types::AliasAttributeType>,
}

/// Creates a user pool (email auto-verified) in moto; returns its id.
pub async fn create_user_pool(client: &idp::Client, name: &str, spec: &PoolSpec) -> String {
    let mut req = client
        .create_user_pool()
        .pool_name(name)
        .auto_verified_attributes(idp::types::VerifiedAttributeType::Email);
    if let Some(cs) = spec.case_sensitive {
        req = req.username_configuration(
            idp::types::UsernameConfigurationType::builder()
                .case_sensitive(cs)
                .build()
                .expect("CaseSensitive is set"),
        );
    }
    for a in &spec.username_attributes {
        req = req.username_attributes(a.clone());
    }
    for a in &spec.alias_attributes {
        req = req.alias_attributes(a.clone());
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("CreateUserPool {name}: {e:?}"))
        .user_pool
        .and_then(|p| p.id)
        .unwrap_or_else(|| panic!("CreateUserPool {name} returned no pool id"))
}

/// Creates an app client (with a generated secret if `secret`); returns its id.
pub async fn create_app_client(
    client: &idp::Client,
    pool_id: &str,
    name: &str,
    secret: bool,
) -> String {
    client
        .create_user_pool_client()
        .user_pool_id(pool_id)
        .client_name(name)
        .generate_secret(secret)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateUserPoolClient {name} in {pool_id}: {e:?}"))
        .user_pool_client
        .and_then(|c| c.client_id)
        .unwrap_or_else(|| panic!("CreateUserPoolClient {name} returned no client id"))
}

/// SignUp on a client without a secret: the user is UNCONFIRMED. Returns its `sub` (which, in a
/// pool with username attributes, is also the username the pool gave it).
pub async fn sign_up(client: &idp::Client, client_id: &str, username: &str, email: &str) -> String {
    let out = client
        .sign_up()
        .client_id(client_id)
        .username(username)
        .password(PASSWORD)
        .user_attributes(attr("email", email))
        .send()
        .await
        .unwrap_or_else(|e| panic!("SignUp {username}: {e:?}"));
    assert!(!out.user_confirmed, "SignUp {username}: confirmed already");
    out.user_sub
}

/// AdminConfirmSignUp: the user becomes CONFIRMED.
pub async fn admin_confirm(client: &idp::Client, pool_id: &str, username: &str) {
    client
        .admin_confirm_sign_up()
        .user_pool_id(pool_id)
        .username(username)
        .send()
        .await
        .unwrap_or_else(|e| panic!("AdminConfirmSignUp {username}: {e:?}"));
}

/// AdminCreateUser (no invitation): the user is FORCE_CHANGE_PASSWORD. Returns its username.
pub async fn admin_create(
    client: &idp::Client,
    pool_id: &str,
    username: &str,
    email: &str,
) -> String {
    client
        .admin_create_user()
        .user_pool_id(pool_id)
        .username(username)
        .temporary_password(PASSWORD)
        .message_action(idp::types::MessageActionType::Suppress)
        .user_attributes(attr("email", email))
        .send()
        .await
        .unwrap_or_else(|e| panic!("AdminCreateUser {username}: {e:?}"))
        .user
        .and_then(|u| u.username)
        .unwrap_or_else(|| panic!("AdminCreateUser {username} returned no user"))
}

fn attr(name: &str, value: &str) -> idp::types::AttributeType {
    idp::types::AttributeType::builder()
        .name(name)
        .value(value)
        .build()
        .expect("the name is set")
}

/// Every user ListUsers returns (all pages), with its status: (username, status).
pub async fn list_users(
    client: &idp::Client,
    pool_id: &str,
    filter: Option<&str>,
) -> Vec<(String, String)> {
    let mut users = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_users()
            .user_pool_id(pool_id)
            .set_filter(filter.map(str::to_owned))
            .limit(7) // small pages, so pagination is exercised
            .set_pagination_token(token.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListUsers {pool_id} {filter:?}: {e:?}"));
        for u in out.users.unwrap_or_default() {
            users.push((
                u.username.expect("a username"),
                u.user_status
                    .map(|s| s.as_str().to_owned())
                    .expect("a status"),
            ));
        }
        match out.pagination_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return users,
        }
    }
}
