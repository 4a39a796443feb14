//! The metrics with real Prometheus tooling: a Prometheus server (Debian `prometheus`) scrapes a
//! running backfill and a PromQL query over its HTTP API returns the counts the emulator's
//! ground truth says; a Pushgateway (Debian `prometheus-pushgateway`) receives a backfill's final
//! metrics. Both run on loopback, started and stopped by the tests.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use support::*;

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn tool(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "{var} is not set, so {what} cannot start: run the tests with scripts/test.sh, which \
             installs it"
        ),
    }
}

/// A server process killed when dropped.
struct Server {
    _child: tokio::process::Child,
    base: String,
}

/// Starts `program` on a free loopback port (`args` builds its arguments for a port) and waits
/// until `ready_path` answers. A port found free can be taken by someone else before the server
/// binds it: a server that exits before it is ready is started again on another port.
async fn start(program: &str, args: impl Fn(u16) -> Vec<String>, ready_path: &str) -> Server {
    for _ in 0..5 {
        let port = free_port();
        let mut child = tokio::process::Command::new(program)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        // Ready, or exited: most likely the port was taken meanwhile, so another one.
        let ready = eventually(
            format!("{program} to become ready on {base}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            async || {
                let answer = match reqwest::get(format!("{base}{ready_path}")).await {
                    Ok(r) if r.status().is_success() => return Ok(true),
                    Ok(r) => format!("{ready_path} answered {}", r.status()),
                    Err(e) => format!("{ready_path}: {e}"),
                };
                if child.try_wait().expect("try_wait works").is_some() {
                    return Ok(false);
                }
                Err(answer)
            },
        )
        .await;
        if ready {
            return Server {
                _child: child,
                base,
            };
        }
    }
    panic!("{program} exited before it was ready, five times on five ports");
}

/// The `/metrics` text of a server.
async fn scrape(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape /metrics")
        .text()
        .await
        .expect("a /metrics body")
}

/// `sum by (outcome)` of the jobs counter, as Prometheus answers an instant query.
async fn outcomes_in_prometheus(base: &str) -> std::collections::BTreeMap<String, u64> {
    let query = r#"sum by (outcome) (cognito_resend_jobs_total{job="cognito-resend"})"#;
    let text = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .expect("query Prometheus")
        .text()
        .await
        .expect("Prometheus answers");
    let body: serde_json::Value = serde_json::from_str(&text).expect("Prometheus answers JSON");
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|r| {
            (
                r["metric"]["outcome"].as_str().unwrap().to_owned(),
                r["value"][1].as_str().unwrap().parse::<f64>().unwrap() as u64,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_run_and_promql_returns_the_emulators_counts() {
    let prometheus = tool("COGNITO_RESEND_TEST_PROMETHEUS", "Prometheus");
    let pool = pool(300, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    // Port 0: the worker binds a free port itself and logs it, so no port changes hands.
    cmd.args(["--rate", "0", "--metrics-linger", "5m"])
        .args(["--metrics-addr", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    let line = running
        .wait_for_line("serving final metrics on http://", Duration::from_secs(120))
        .await;
    let metrics_url = url_in(&line);
    let metrics_target = metrics_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();

    let config = write_file(
        dir.path(),
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: cognito-resend\n    \
             static_configs:\n      - targets: ['{metrics_target}']\n"
        ),
    );
    let server = start(
        &prometheus,
        |port| {
            vec![
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
    )
    .await;

    let expected = std::collections::BTreeMap::from([
        ("sent".to_owned(), pool.unconfirmed.len() as u64),
        ("already_confirmed".to_owned(), pool.confirmed.len() as u64),
        // Invitations' outcome, pre-registered at 0 like every other.
        ("already_signed_in".to_owned(), 0),
        ("not_found".to_owned(), pool.missing.len() as u64),
        ("cooldown".to_owned(), 0),
        ("capped".to_owned(), 0),
        ("known_confirmed".to_owned(), 0),
        ("known_missing".to_owned(), 0),
        ("dry_run".to_owned(), 0),
        ("invalid".to_owned(), 0),
        ("failed".to_owned(), 0),
    ]);
    eventually(
        format!("Prometheus to have what the emulator says, {expected:?}"),
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let seen = outcomes_in_prometheus(&server.base).await;
            if seen == expected {
                Ok(())
            } else {
                Err(format!("Prometheus has {seen:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        pool.emu.send_counts().len() as u64,
        expected["sent"],
        "and the emulator agrees with itself"
    );
    running.signal("TERM");
    let (code, stderr) = running.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_pushes_its_final_metrics_to_a_pushgateway() {
    let pushgateway = tool("COGNITO_RESEND_TEST_PUSHGATEWAY", "the Pushgateway");
    let server = start(
        &pushgateway,
        |port| {
            vec![
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--persistence.file=".to_owned(),
            ]
        },
        "/-/ready",
    )
    .await;
    let pool = pool(200, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--pushgateway", &server.base]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("pushed the final metrics"),
        "{}",
        ran.stderr
    );

    let exposition = scrape(&server.base).await;
    let pushed = |outcome: &str| {
        sample(
            &exposition,
            "cognito_resend_jobs_total",
            &[
                ("command", "backfill"),
                ("instance", ""),
                ("job", "cognito-resend"),
                ("outcome", outcome),
                ("action", "confirm"),
                ("source", "csv"),
            ],
        )
        .unwrap_or_else(|| panic!("no pushed {outcome} count in:\n{exposition}"))
    };
    assert_eq!(pushed("sent") as usize, pool.unconfirmed.len());
    assert_eq!(pushed("already_confirmed") as usize, pool.confirmed.len());
    assert_eq!(pushed("not_found") as usize, pool.missing.len());
    assert!(
        exposition.contains("push_time_seconds{") && exposition.contains("command=\"backfill\""),
        "the Pushgateway records when the run pushed"
    );
    promtool_check(&exposition);

    // A run stopped early by the spent email quota says why in what it pushes, so an alert can
    // tell that stop from the others.
    let quota = emulator_with(
        (0..50)
            .map(|i| {
                cognito_emulator::UserSpec::new(
                    format!("quota-{i}"),
                    cognito_emulator::UserStatus::Unconfirmed,
                )
            })
            .collect(),
        |b| b.email_quota(Some(10)),
    )
    .await;
    let names: Vec<String> = (0..50).map(|i| format!("quota-{i}")).collect();
    let quota_csv = usernames_csv(dir.path(), &names);
    let mut cmd = backfill(&quota.endpoint(), &quota_csv);
    cmd.args([
        "--rate",
        "0",
        "--concurrency",
        "1",
        "--pushgateway",
        &server.base,
    ]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 1, "stopped early: {}", ran.stderr);
    let exposition = scrape(&server.base).await;
    let stopped = |reason: &str| {
        sample(
            &exposition,
            "cognito_resend_stopped_total",
            &[
                ("command", "backfill"),
                ("instance", ""),
                ("job", "cognito-resend"),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(stopped("email_quota"), Some(1.0), "{exposition}");
    assert_eq!(
        stopped("not_authorized"),
        Some(0.0),
        "every reason is there, at 0"
    );

    // A Pushgateway that is not there: the run still succeeds, and says the push failed.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.args(["--rate", "0", "--pushgateway", &gone]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("pushing the final metrics failed"),
        "{}",
        ran.stderr
    );
}

/// What an operator reaches for first, scraped from a running backfill: which build it is
/// (`cognito_resend_build_info`), the standard process metrics, and how many of the jobs it knows
/// it has are left (`cognito_resend_jobs_known`, `_remaining`: a dashboard's ETA) — mid-run
/// between none and all, and none once the run is done. `promtool check metrics` accepts it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_exports_its_build_the_process_and_the_jobs_it_has_left() {
    let pool = pool(60, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let rows = pool.csv_usernames.len() as f64;
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    // Slow enough (60 rows at 10/s) to be scraped mid-run.
    cmd.args([
        "--rate",
        "10",
        "--concurrency",
        "2",
        "--metrics-linger",
        "5m",
    ])
    .args(["--metrics-addr", "127.0.0.1:0"]);
    let running = Running::spawn(cmd);
    let line = running
        .wait_for_line("metrics on http://", Duration::from_secs(120))
        .await;
    let url = url_in(&line);
    let mid = eventually(
        "jobs known = the CSV's rows and some, not all, remaining",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || {
            let m = scrape(url.trim_end_matches("/metrics")).await;
            let known = sample(&m, "cognito_resend_jobs_known", &[]);
            let left = sample(&m, "cognito_resend_jobs_remaining", &[]);
            match (known, left) {
                (Some(k), Some(r)) if k == rows && r > 0.0 && r < k => Ok(m),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let build = sample(
        &mid,
        "cognito_resend_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("arch", std::env::consts::ARCH),
            ("os", std::env::consts::OS),
        ],
    );
    assert_eq!(build, Some(1.0), "build_info in:\n{mid}");
    let process =
        |name: &str| sample(&mid, name, &[]).unwrap_or_else(|| panic!("{name} in:\n{mid}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = process("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 300.0,
        "started {started}, now {now}"
    );
    assert!(process("process_cpu_seconds_total") >= 0.0);
    let resident = process("process_resident_memory_bytes");
    assert!(resident > 1e6, "resident {resident}");
    assert!(process("process_virtual_memory_bytes") >= resident);
    let fds = process("process_open_fds");
    assert!(fds >= 3.0 && fds <= process("process_max_fds"), "fds {fds}");
    promtool_check(&mid);

    running
        .wait_for_line("serving final metrics on http://", Duration::from_secs(120))
        .await;
    let end = scrape(url.trim_end_matches("/metrics")).await;
    assert_eq!(sample(&end, "cognito_resend_jobs_known", &[]), Some(rows));
    assert_eq!(
        sample(&end, "cognito_resend_jobs_remaining", &[]),
        Some(0.0)
    );
    // The medium as Cognito and the report spell it.
    assert_eq!(
        sample(
            &end,
            "cognito_resend_codes_sent_total",
            &[("medium", "EMAIL")]
        ),
        Some(pool.unconfirmed.len() as f64)
    );
    promtool_check(&end);
    running.signal("TERM");
    let (code, stderr) = running.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{stderr}");
}
