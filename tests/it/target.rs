//! What a run will hit, in plain sight (issue 24, items 3, 5 and 6): the target line every run
//! logs, the AWS conventions (`--profile`, `--endpoint-url`, the SDK's endpoint variables), and
//! `check` checking the region, the credentials and the endpoints before anything is sent.
//!
//! Nothing here reaches AWS or the instance metadata service: every endpoint is on 127.0.0.1
//! (a closed port where nothing should answer), the AWS config files are paths that do not exist,
//! and the metadata service is disabled or pointed at a closed loopback port.

use std::path::Path;

use crate::support::*;

/// A port that was free a moment ago: connecting to it is refused.
fn closed_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The binary with an environment of its own and nothing of the machine's AWS setup: no region,
/// no credentials, no profile, AWS config files that do not exist, the metadata service off,
/// and `HOME` in `dir`.
fn bare(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("COGNITO_RESEND_METRICS_LISTEN", "none")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `check` without a region anywhere exits 2, as a run does, with the run's message; the
/// settings are still printed, and the region's FAIL line says why.
#[tokio::test]
async fn check_exits_2_without_a_region() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bare(dir.path());
    cmd.args(["check", "--client-id", CLIENT, "--state", "none"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains("# FAIL region: no AWS region: set --region"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains("check failed: region"),
        "{}",
        ran.stderr
    );
    // The same words a run says.
    let mut cmd = bare(dir.path());
    let csv = usernames_csv(dir.path(), &["z".to_owned()]);
    cmd.args(["backfill", "--client-id", CLIENT, "--state", "none"])
        .arg(&csv);
    let backfill = run(cmd).await;
    assert_eq!(backfill.code, 2, "{}", backfill.stderr);
    assert!(
        backfill
            .stderr
            .contains("no AWS region: set --region (aws.region) or AWS_REGION"),
        "{}",
        backfill.stderr
    );
}

/// `check` prints the target, checks that the endpoint answers with a connection alone (the
/// emulator sees no request at all), says credentials are not needed for the unsigned resend,
/// and fails — exit 2 — on an endpoint where nothing listens, or on signed calls without
/// credentials. `--offline` checks neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_checks_the_endpoint_and_the_credentials_without_a_call() {
    let emu = emulator_with(Vec::new(), |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let check = |endpoint: &str| {
        let mut cmd = bare(dir.path());
        cmd.args(["check", "--client-id", CLIENT, "--region", "eu-west-3"])
            .args(["--cognito-endpoint", endpoint])
            .arg("--state")
            .arg(&ledger);
        cmd
    };
    let ran = run(check(&emu.endpoint())).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let target = ran
        .stdout
        .lines()
        .find(|l| l.starts_with("# target: "))
        .unwrap_or_else(|| panic!("no target in\n{}", ran.stdout));
    for part in [
        format!("Cognito {}", emu.endpoint()),
        "(--cognito-endpoint)".to_owned(),
        "region eu-west-3".to_owned(),
        format!("client id {CLIENT}"),
        format!("ledger {}", ledger.display()),
        "rate 10/s".to_owned(),
    ] {
        assert!(target.contains(&part), "{part:?} not in {target}");
    }
    for line in [
        "# ok   region: eu-west-3",
        "# ok   credentials: none needed",
        &format!("# ok   Cognito endpoint {}", emu.endpoint()),
    ] {
        assert!(ran.stdout.contains(line), "{line:?} not in\n{}", ran.stdout);
    }
    assert_eq!(emu.stats().requests_total, 0, "check sent no request");
    assert!(!ledger.exists(), "check creates no ledger");

    let nobody = format!("http://{}", closed_port());
    let ran = run(check(&nobody)).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .contains(&format!("# FAIL Cognito endpoint {nobody}")),
        "{}",
        ran.stdout
    );
    let mut offline = check(&nobody);
    offline.arg("--offline");
    let ran = run(offline).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("--offline"), "{}", ran.stdout);

    // A queue is signed: without credentials that is a FAIL, named.
    // Its endpoint on loopback too (a closed port: that check fails, which is not the point here).
    let sqs = format!("http://{}", closed_port());
    let mut queue = check(&emu.endpoint());
    queue
        .args(["--queue-url", "http://127.0.0.1:9/000000000000/jobs"])
        .args(["--sqs-endpoint", &sqs]);
    let ran = run(queue).await;
    assert_eq!(ran.code, 2, "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with("# FAIL credentials: the queue (--queue-url) need")),
        "{}",
        ran.stdout
    );
    let mut queue = check(&emu.endpoint());
    queue
        .args(["--queue-url", "http://127.0.0.1:9/000000000000/jobs"])
        .args(["--sqs-endpoint", &sqs])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret-never-shown");
    let ran = run(queue).await;
    assert!(
        ran.stdout.contains("# ok   credentials: found"),
        "{}",
        ran.stdout
    );
    assert!(!ran.stdout.contains("test-secret-never-shown"));
    assert!(!ran.stderr.contains("test-secret-never-shown"));
}

/// A stand-in for an instance metadata service that refuses every request (403, as a host that
/// blocks it answers), on loopback: the SDK's credential chain then warns, with a screen of
/// detail. Returns its URL.
async fn refusing_metadata_service() -> String {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                while let Ok(Some(_)) = read_request(&mut client).await {
                    let answer = "HTTP/1.1 403 Forbidden\r\ncontent-length: 6\r\n\r\ndenied";
                    if client.write_all(answer.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    url
}

/// A signed command without credentials says so in one line: the SDK's credential chain, which
/// tries the instance metadata service (here one on loopback that refuses), logs nothing of its
/// own at the default verbosity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_is_one_line_without_the_sdks_provider_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bare(dir.path());
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        // Files that exist (and are empty): a missing one is a warning of its own, and a useful one.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            refusing_metadata_service().await,
        )
        .args(["discover", "--region", "us-east-1"])
        .args(["--user-pool-id", "us-east-1_Example"])
        .args(["--cognito-endpoint", &format!("http://{}", closed_port())]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("no AWS credentials were found"),
        "{}",
        ran.stderr
    );
    for line in ran.stderr.lines() {
        assert!(
            line.contains("INFO target: ") || line.starts_with("error: "),
            "a line that is neither the target nor the error:\n{}",
            ran.stderr
        );
        assert!(
            !line.contains("provider") || line.contains("no AWS credentials"),
            "the SDK's provider chain spoke:\n{}",
            ran.stderr
        );
    }
}

/// `--profile` is a flag of ours (no clap tip "to pass '--profile' as a value"), listed by
/// `--help`, and the profile it names is the one the SDK reads: here its region. `--endpoint-url`
/// is `--cognito-endpoint`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_and_endpoint_url_are_taken_as_the_aws_cli_takes_them() {
    let help = std::process::Command::new(BIN)
        .args(["backfill", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--profile <PROFILE>",
        "--endpoint-url",
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
    ] {
        assert!(help.contains(flag), "backfill --help lacks {flag}:\n{help}");
    }

    let pool = pool(20, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "aws-config",
        "[profile staging]\nregion = ap-southeast-2\n",
    );
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = bare(dir.path());
    cmd.env("AWS_CONFIG_FILE", &config)
        .args(["backfill", "--profile", "staging", "--rate", "0"])
        .args(["--endpoint-url", &pool.emu.endpoint()])
        .args(["--client-id", CLIENT])
        .arg("--state")
        .arg(dir.path().join("ledger.db"))
        .arg(&csv);
    let ran = run(cmd).await;
    assert!(
        !ran.stderr.contains("to pass '--profile'"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.emu.stats().sends_total as usize,
        pool.unconfirmed.len()
    );
    let target = target_line(&ran.stderr);
    assert!(
        target.contains("region ap-southeast-2") && target.contains("profile staging"),
        "{target}"
    );

    // COGNITO_RESEND_AWS_PROFILE and AWS_PROFILE name it too.
    for var in ["COGNITO_RESEND_AWS_PROFILE", "AWS_PROFILE"] {
        let mut cmd = bare(dir.path());
        cmd.env("AWS_CONFIG_FILE", &config)
            .env(var, "staging")
            .args(["check", "--offline", "--state", "none"]);
        let ran = run(cmd).await;
        assert_eq!(ran.code, 0, "{var}: {}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains("# ok   region: ap-southeast-2"),
            "{var}: {}",
            ran.stdout
        );
    }
}

/// The SDK honours `AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER` without any flag of ours: a run
/// reaches the emulator through it, and its target names that endpoint, not "AWS".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_from_the_sdks_environment_is_the_target() {
    let pool = pool(20, None, |b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = usernames_csv(dir.path(), &pool.csv_usernames);
    let mut cmd = backfill(&pool.emu.endpoint(), &csv);
    cmd.env_remove("COGNITO_RESEND_COGNITO_ENDPOINT")
        .env(
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            pool.emu.endpoint(),
        )
        .args(["--rate", "0"]);
    let ran = run(cmd).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(
        pool.emu.stats().sends_total as usize,
        pool.unconfirmed.len()
    );
    let target = target_line(&ran.stderr);
    assert!(
        target.contains(&format!("Cognito {}", pool.emu.endpoint()))
            && target.contains("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER")
            && !target.contains("Cognito AWS"),
        "{target}"
    );
}
