//! What the integration tests share: the bundled Cognito emulator with a seeded pool, CSV
//! writing, running the real `cognito-resend` binary, reading its report, scraping its metrics
//! and checking them with promtool.

pub mod moto;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cognito_emulator::{ClientSpec, Emulator, EmulatorBuilder, UserSpec, UserStatus};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cognito-resend");
/// The app client every test pool has.
pub const CLIENT: &str = "testclient";

/// A seeded emulator and the ground truth of who is what.
pub struct Pool {
    pub emu: Emulator,
    pub unconfirmed: HashSet<String>,
    pub confirmed: HashSet<String>,
    /// Usernames in the CSV that the pool does not have.
    pub missing: HashSet<String>,
    /// Every CSV username, in order.
    pub csv_usernames: Vec<String>,
}

/// Starts an emulator with the deterministic demo pool of `n` users (plus ~10% missing names in
/// the CSV list), a client `CLIENT` (with `secret` if given), configured further by `tune`.
pub async fn pool(
    n: usize,
    secret: Option<&str>,
    tune: impl FnOnce(EmulatorBuilder) -> EmulatorBuilder,
) -> Pool {
    let (users, csv_usernames) = cognito_emulator::demo_pool(n);
    let mut unconfirmed = HashSet::new();
    let mut confirmed = HashSet::new();
    let mut known = HashSet::new();
    for u in &users {
        known.insert(u.username.clone());
        match u.status {
            UserStatus::Unconfirmed => {
                unconfirmed.insert(u.username.clone());
            }
            UserStatus::Confirmed => {
                confirmed.insert(u.username.clone());
            }
            _ => {}
        }
    }
    let missing = csv_usernames
        .iter()
        .filter(|u| !known.contains(*u))
        .cloned()
        .collect();
    let mut client = ClientSpec::new(CLIENT);
    if let Some(s) = secret {
        client = client.with_secret(s);
    }
    let builder = tune(Emulator::builder().client(client).users(users));
    let emu = builder
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("the emulator starts on 127.0.0.1");
    Pool {
        emu,
        unconfirmed,
        confirmed,
        missing,
        csv_usernames,
    }
}

/// Starts an emulator with exactly these users.
pub async fn emulator_with(
    users: Vec<UserSpec>,
    tune: impl FnOnce(EmulatorBuilder) -> EmulatorBuilder,
) -> Emulator {
    tune(
        Emulator::builder()
            .client(ClientSpec::new(CLIENT))
            .users(users),
    )
    .start("127.0.0.1:0".parse().expect("valid address"))
    .await
    .expect("the emulator starts on 127.0.0.1")
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

/// A CSV with a `username` column (and an `email` column to be ignored).
pub fn usernames_csv(dir: &Path, usernames: &[String]) -> PathBuf {
    let mut text = String::from("username,email\n");
    for u in usernames {
        text.push_str(u);
        text.push_str(",ignored@example.com\n");
    }
    write_file(dir, "users.csv", text)
}

/// A ledger file of its own for every command (so tests never share the default
/// `cognito-resend.db`); a test that reruns against one ledger passes `--state`, which wins.
fn fresh_ledger() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir for ledgers"));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.path().join(format!("ledger-{n}.db"))
}

/// A command running the binary against `endpoint`, isolated from the machine's AWS setup.
/// The endpoint, the region and `--metrics-addr none` are given as environment variables: each
/// command takes only its own flags, after its name, and reads the variables of those alone, so
/// they suit every command (`report` and `ledger` ignore them). A flag a test adds wins.
pub fn command(endpoint: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("COGNITO_RESEND_LEDGER_PATH", fresh_ledger())
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // SQS needs credentials (moto accepts any); Cognito's resend is sent unsigned.
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("COGNITO_RESEND_COGNITO_ENDPOINT", endpoint)
        .env("COGNITO_RESEND_AWS_REGION", "us-east-1")
        .env("COGNITO_RESEND_METRICS_LISTEN", "none")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `cognito-resend backfill CSV --client-id CLIENT` against `endpoint`.
pub fn backfill(endpoint: &str, csv: &Path) -> tokio::process::Command {
    let mut cmd = command(endpoint);
    cmd.arg("backfill").arg(csv).args(["--client-id", CLIENT]);
    cmd
}

/// `cognito-resend consume` of `queue_url` on moto at `sqs_endpoint`, short polls for tests.
pub fn consume(endpoint: &str, sqs_endpoint: &str, queue_url: &str) -> tokio::process::Command {
    let mut cmd = command(endpoint);
    cmd.args(["consume", "--client-id", CLIENT, "--rate", "0"])
        .args(["--sqs-endpoint", sqs_endpoint, "--queue-url", queue_url])
        .args(["--wait-time", "1s"]);
    cmd
}

/// What a finished run left behind.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The `target: ...` line a run logs at its start.
pub fn target_line(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| l.contains("target: "))
        .unwrap_or_else(|| panic!("no target line in\n{stderr}"))
}

/// Runs to completion (bounded: a hung run fails the test).
pub async fn run(mut cmd: tokio::process::Command) -> Ran {
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("cognito-resend finished within 240 s")
        .expect("cognito-resend could be started");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The report's job lines: every line but the records about the run (`run`, `run_end`: those
/// say their `kind`).
pub fn report(path: &Path) -> Vec<serde_json::Value> {
    report_lines(path)
        .into_iter()
        .filter(|l| l.get("kind").is_none())
        .collect()
}

/// Every line of the report, the records about the run included.
pub fn report_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the report exists");
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("report line {l:?} is JSON: {e}"))
        })
        .collect()
}

/// Report lines per outcome.
pub fn outcomes(report: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in report {
        *m.entry(
            line["outcome"]
                .as_str()
                .expect("outcome is a string")
                .to_owned(),
        )
        .or_insert(0) += 1;
    }
    m
}

/// Usernames in the report with this outcome.
pub fn users_with(report: &[serde_json::Value], outcome: &str) -> HashSet<String> {
    report
        .iter()
        .filter(|l| l["outcome"] == outcome)
        .map(|l| l["username"].as_str().expect("username").to_owned())
        .collect()
}

/// A running process whose stderr is collected line by line.
pub struct Running {
    pub child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<tokio::sync::Notify>,
    /// Ends when stderr is closed and every line has been read.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn spawn(mut cmd: tokio::process::Command) -> Self {
        cmd.stderr(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().expect("cognito-resend could be started");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let new_line = Arc::new(tokio::sync::Notify::new());
        let (l, n) = (lines.clone(), new_line.clone());
        let reader = tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                l.lock().unwrap().push(line);
                n.notify_waiters();
            }
        });
        Self {
            child,
            lines,
            new_line,
            reader: Some(reader),
        }
    }

    /// Waits (at most `limit`) for a stderr line containing `needle`, and returns it.
    pub async fn wait_for_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.new_line.notified();
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no stderr line containing {needle:?} within {limit:?}; stderr so far:\n{}",
                    self.stderr()
                );
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().expect("still running");
        let ok = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    pub async fn wait(mut self, limit: Duration) -> (i32, String) {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("exited within {limit:?}; stderr:\n{}", self.stderr()))
            .expect("wait works");
        // Every line the process wrote is read once its stderr closes (bounded: a grandchild
        // could hold the pipe open).
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        (status.code().unwrap_or(-1), self.stderr())
    }
}

/// Runs a one-shot command that keeps serving its final metrics (`--metrics-linger`), scrapes
/// `/metrics`, then ends it with SIGTERM. Returns the exposition, the exit code and stderr.
pub async fn run_and_scrape(mut cmd: tokio::process::Command) -> (String, i32, String) {
    cmd.args(["--metrics-addr", "127.0.0.1:0", "--metrics-linger", "5m"]);
    let running = Running::spawn(cmd);
    let line = running
        .wait_for_line("serving final metrics on http://", Duration::from_secs(240))
        .await;
    let url = url_in(&line);
    let body = reqwest::get(&url)
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("metrics body");
    running.signal("TERM");
    let (code, stderr) = running.wait(Duration::from_secs(30)).await;
    (body, code, stderr)
}

/// The first http:// URL in a log line.
pub fn url_in(line: &str) -> String {
    let start = line.find("http://").expect("a URL in the line");
    line[start..]
        .split_whitespace()
        .next()
        .expect("a URL in the line")
        .to_owned()
}

/// The value of a sample, by name and labels (all of them given, in any order).
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in exposition.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let have: HashMap<&str, &str> = label_text
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if have.len() == labels.len() && labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            return value.parse().ok();
        }
    }
    None
}

/// Runs `promtool check metrics` on the exposition; fails the test if promtool is missing.
pub fn promtool_check(exposition: &str) {
    let promtool =
        std::env::var("COGNITO_RESEND_TEST_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool ({promtool}) is needed to check the metrics exposition and could not be \
                 started: {e}. Run the tests with scripts/test.sh, which installs it."
            )
        });
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics rejected the exposition:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `cond` every `every` until it holds, and returns what it gave; panics naming `what`
/// (what was waited for) and how long it waited if it still does not hold after `limit`.
///
/// `cond` answers `bool`, or `Result`: `Ok(value)` when the wait is over, `Err(seen)` with
/// what it saw instead, which the panic shows (the last one). It may be async
/// (`async || queue_counts(..).await == (0, 0)`) or not (`|| emu.sends().len() >= n`), and may
/// keep state between polls. Checked once more after the limit, never left mid-poll.
pub async fn eventually<C: Polled, M>(
    what: impl std::fmt::Display,
    limit: Duration,
    every: Duration,
    mut cond: impl Condition<C, M>,
) -> C::Value {
    let started = tokio::time::Instant::now();
    loop {
        let seen = match cond.check().await.polled() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        let waited = started.elapsed();
        if waited >= limit {
            match seen {
                Some(seen) => panic!(
                    "gave up waiting for {what} after {waited:?} (limit {limit:?}); last seen: \
                     {seen}"
                ),
                None => panic!("gave up waiting for {what} after {waited:?} (limit {limit:?})"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// What a condition of [`eventually`] answers: whether the wait is over, and with what.
pub trait Polled {
    /// What [`eventually`] returns.
    type Value;
    /// What the condition saw while it did not hold, for the panic.
    type Seen: std::fmt::Display;
    fn polled(self) -> Result<Self::Value, Option<Self::Seen>>;
}

impl Polled for bool {
    type Value = ();
    type Seen = &'static str;
    fn polled(self) -> Result<(), Option<&'static str>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T, E: std::fmt::Display> Polled for Result<T, E> {
    type Value = T;
    type Seen = E;
    fn polled(self) -> Result<T, Option<E>> {
        self.map_err(Some)
    }
}

/// A condition [`eventually`] polls: a closure, async or not. (`M` only tells the two kinds of
/// closure apart, which one blanket impl over both could not.)
pub trait Condition<C, M> {
    fn check(&mut self) -> impl Future<Output = C>;
}

/// Marks [`Condition`]'s impl for async closures.
pub struct IsAsync;
/// Marks [`Condition`]'s impl for plain closures.
pub struct IsSync;

impl<C: Polled, F: AsyncFnMut() -> C> Condition<C, IsAsync> for F {
    fn check(&mut self) -> impl Future<Output = C> {
        self()
    }
}

impl<C: Polled, F: FnMut() -> C> Condition<C, IsSync> for F {
    async fn check(&mut self) -> C {
        self()
    }
}

/// Waits (at most 60 s) until the emulator has sent `n` codes.
pub async fn wait_for_sends(emu: &Emulator, n: usize) {
    eventually(
        format!("{n} sends"),
        Duration::from_secs(60),
        Duration::from_millis(5),
        || emu.sends().len() >= n,
    )
    .await
}

/// [`pool`] with every answer delayed by `latency`.
pub async fn slow_pool(n: usize, latency: Duration) -> Pool {
    pool(n, None, |b| {
        b.faults(cognito_emulator::Faults {
            latency,
            ..Default::default()
        })
    })
    .await
}

/// An HTTP proxy on 127.0.0.1 in front of `upstream` (moto) that holds every request containing
/// `needle` for `hold` before forwarding it: a service that has stopped answering some calls
/// (a DynamoDB whose writes time out). Other requests pass at once. Works because moto's
/// server answers one request per connection and closes it.
pub struct HoldingProxy {
    pub endpoint: String,
    held: Arc<std::sync::atomic::AtomicUsize>,
}

impl HoldingProxy {
    pub async fn start(upstream: &str, needle: &str, hold: Duration) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (counted, needle) = (held.clone(), needle.to_owned());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, needle, counted) =
                    (upstream.clone(), needle.clone(), counted.clone());
                tokio::spawn(async move {
                    let _ = hold_or_pass(client, &upstream, &needle, hold, &counted).await;
                });
            }
        });
        Self { endpoint, held }
    }

    /// Requests held so far.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One HTTP/1.1 request read from `client`: the head, then Content-Length bytes of body
/// (`None` if the client closed before sending one). What the test proxies forward.
pub async fn read_request(client: &mut tokio::net::TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    // One request: the head, then Content-Length bytes of body.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf))
}

async fn hold_or_pass(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    needle: &str,
    hold: Duration,
    held: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(buf) = read_request(&mut client).await? else {
        return Ok(());
    };
    if String::from_utf8_lossy(&buf).contains(needle) {
        held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(hold).await;
    }
    let mut up = tokio::net::TcpStream::connect(upstream).await?;
    up.write_all(&buf).await?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer).await?;
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// A listener on 127.0.0.1 that accepts connections and never answers: a Pushgateway (or any
/// HTTP service) that hangs. Returns its `http://` URL; it serves until the test ends.
#[allow(dead_code, reason = "only tests/lambda.rs uses it")]
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the black hole");
    let url = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            open.push(conn); // kept open, never read from or written to
        }
    });
    url
}

/// The ledger key of `username` under `client_id`, as given (already folded).
pub fn key(client_id: &str, username: &str) -> cognito_resend::testing::UserKey {
    cognito_resend::testing::UserKey {
        client_id: client_id.into(),
        username: username.into(),
    }
}
