//! The emulator's fidelity, judged by a second, independent AWS SDK: boto3.
//!
//! Starts six emulators in-process (normal rules, a spent email quota, a 1 rps quota, every
//! request a 500, every connection dropped, and a pool with settings: case-insensitive, email
//! and preferred_username aliases, Cognito's default email account, a custom message trigger),
//! runs `tests/boto3_faithful.py` against them with
//! the interpreter named by `COGNITO_RESEND_TEST_PYTHON` (set by `scripts/test.sh` to the
//! project venv, which has boto3), then checks the emulators' ground truth: exactly the
//! successful sends were recorded, with the metadata boto3 sent.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cognito_emulator::{
    AliasAttribute, ClientSpec, DEFAULT_USER_POOL_ID, EmailSendingAccount, Emulator,
    EmulatorBuilder, Faults, UserSpec, UserStatus, VerifiedAttribute, sub_for,
};

const SECRET: &str = "s3cret-for-tests";
const SECRET_CLIENT: &str = "secretclient";
const PLAIN_CLIENT: &str = "plainclient";
const NOVERIFY_CLIENT: &str = "noverifyclient";
const PRIVATE_CLIENT: &str = "privateclient";
const ATTEMPT_LIMIT: u32 = 2;
const LISTED: [&str; 7] = [
    "lister-01",
    "lister-02",
    "lister-03",
    "lister-04",
    "lister-05",
    "lister-06",
    "lister-07",
];
const NOT_UNCONFIRMED: [(UserStatus, &str); 7] = [
    (UserStatus::Confirmed, "bob"),
    (UserStatus::Archived, "archie"),
    (UserStatus::Compromised, "compton"),
    (UserStatus::Unknown, "unknowna"),
    (UserStatus::ResetRequired, "resetta"),
    (UserStatus::ForceChangePassword, "forcey"),
    (UserStatus::ExternalProvider, "fedora"),
];
const EMAIL_USERS: [&str; 2] = ["erin", "frank"];
const THROTTLE_USERS: [&str; 5] = ["t1", "t2", "t3", "t4", "t5"];
/// The settings pool's user: username, verified email alias, preferred_username alias.
const ALIASED: (&str, &str, &str) = ("Vera", "Vera@Example.com", "vee");
const TRIGGER: &str = "arn:aws:lambda:us-east-1:123456789012:function:custom-message";

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Every emulator has the same clients, so one set of names works everywhere.
fn with_clients(b: EmulatorBuilder) -> EmulatorBuilder {
    b.client(ClientSpec::new(SECRET_CLIENT).with_secret(SECRET))
        .client(ClientSpec::new(PLAIN_CLIENT))
        .client(ClientSpec::new(NOVERIFY_CLIENT).with_auto_verify(false))
        .client(ClientSpec::new(PRIVATE_CLIENT).with_prevent_user_existence_errors(true))
}

fn unconfirmed(names: &[&str]) -> Vec<UserSpec> {
    names
        .iter()
        .map(|n| UserSpec::new(*n, UserStatus::Unconfirmed))
        .collect()
}

async fn start(b: EmulatorBuilder) -> Emulator {
    b.start(loopback()).await.expect("emulator starts")
}

/// The interpreter to run, or a panic that says how to get one.
async fn python() -> String {
    const HOW: &str = "run the test suite with scripts/test.sh, which creates the project venv \
                       with boto3 and sets COGNITO_RESEND_TEST_PYTHON";
    let python = match std::env::var("COGNITO_RESEND_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("COGNITO_RESEND_TEST_PYTHON is not set: {HOW}"),
    };
    let probe = tokio::process::Command::new(&python)
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match probe {
        Ok(status) if status.success() => python,
        Ok(_) => panic!("{python} cannot import boto3: {HOW}"),
        Err(err) => panic!("cannot run {python} ({err}): {HOW}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reads_the_emulator_as_cognito() {
    let python = python().await;

    let main_users = unconfirmed(&["alice", "dave"])
        .into_iter()
        .chain(unconfirmed(&LISTED))
        .chain(std::iter::once(
            UserSpec::new("carol", UserStatus::Unconfirmed)
                .with_email(None)
                .with_phone(Some("+15555550123".into())),
        ))
        .chain(
            NOT_UNCONFIRMED
                .iter()
                .map(|(status, name)| UserSpec::new(*name, *status)),
        );
    let main = start(
        with_clients(Emulator::builder())
            .users(main_users)
            .attempt_limit(Some(ATTEMPT_LIMIT)),
    )
    .await;
    let email = start(
        with_clients(Emulator::builder())
            .users(unconfirmed(&EMAIL_USERS))
            .email_quota(Some(1)),
    )
    .await;
    let throttle = start(
        with_clients(Emulator::builder())
            .users(unconfirmed(&THROTTLE_USERS))
            .quota_rps(Some(1)),
    )
    .await;
    let errors = start(
        with_clients(Emulator::builder())
            .users(unconfirmed(&["alice"]))
            .faults(Faults {
                error_rate: 1.0,
                ..Faults::default()
            }),
    )
    .await;
    let drops = start(
        with_clients(Emulator::builder())
            .users(unconfirmed(&["alice"]))
            .faults(Faults {
                drop_rate: 1.0,
                ..Faults::default()
            }),
    )
    .await;

    let settings = start(
        with_clients(Emulator::builder())
            .user_pool_name("signups")
            .case_sensitive(Some(false))
            .alias_attributes([AliasAttribute::Email, AliasAttribute::PreferredUsername])
            .auto_verified_attributes([VerifiedAttribute::Email])
            .email_sending_account(EmailSendingAccount::CognitoDefault)
            .custom_message_trigger(Some(TRIGGER.into()))
            .users([
                UserSpec::new(ALIASED.0, UserStatus::Unconfirmed)
                    .with_email(Some(ALIASED.1.into()))
                    .with_email_verified(true)
                    .with_preferred_username(ALIASED.2),
                // Unverified email: no alias.
                UserSpec::new("ursula", UserStatus::Unconfirmed),
            ]),
    )
    .await;

    let json = |v: serde_json::Value| v.to_string();
    let not_unconfirmed: serde_json::Map<String, serde_json::Value> = NOT_UNCONFIRMED
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), (*n).into()))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boto3_faithful.py");
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .args(["--main", &main.endpoint()])
        .args(["--email-quota", &email.endpoint()])
        .args(["--throttle", &throttle.endpoint()])
        .args(["--errors", &errors.endpoint()])
        .args(["--drops", &drops.endpoint()])
        .args(["--settings", &settings.endpoint()])
        .args(["--aliased", &json(serde_json::json!(ALIASED))])
        .args(["--aliased-sub", &sub_for(ALIASED.0)])
        .args(["--trigger", TRIGGER])
        .args(["--pool", DEFAULT_USER_POOL_ID])
        .args(["--secret", SECRET])
        .args(["--secret-client", SECRET_CLIENT])
        .args(["--plain-client", PLAIN_CLIENT])
        .args(["--noverify-client", NOVERIFY_CLIENT])
        .args(["--private-client", PRIVATE_CLIENT])
        .args(["--user", "alice"])
        .args(["--sms-user", "carol"])
        .args(["--limited-user", "dave"])
        .args(["--attempt-limit", &ATTEMPT_LIMIT.to_string()])
        .args(["--list-prefix", "lister-"])
        .args(["--listed", &json(serde_json::json!(LISTED))])
        .args([
            "--not-unconfirmed",
            &json(serde_json::Value::Object(not_unconfirmed)),
        ])
        .args(["--email-users", &json(serde_json::json!(EMAIL_USERS))])
        .args(["--throttle-users", &json(serde_json::json!(THROTTLE_USERS))])
        // Keep the developer's AWS setup (profiles, proxies) out of the picture.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("boto3 checks finish within 2 minutes")
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boto3 checks failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(stdout.contains("boto3: all checks passed"), "{stdout}");
    // Shown with --nocapture: the list of checks boto3 made.
    println!("{stdout}");

    // Ground truth on the main emulator: exactly the successful sends, in order, with the
    // metadata boto3 sent. Errors and the simulated success recorded nothing.
    let sends = main.sends();
    let who: Vec<(&str, &str, bool)> = sends
        .iter()
        .map(|s| {
            (
                s.username.as_str(),
                s.client_id.as_str(),
                s.secret_hash_given,
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("alice", SECRET_CLIENT, true),
            ("carol", PLAIN_CLIENT, false),
            ("dave", PLAIN_CLIENT, false),
            ("dave", PLAIN_CLIENT, false),
        ]
    );
    let first = &sends[0];
    assert_eq!(
        first
            .client_metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("campaign", "reminder-1"), ("lang", "en")]
    );
    assert_eq!(first.analytics_endpoint_id.as_deref(), Some("endpoint-42"));
    assert_eq!(first.ip_address.as_deref(), Some("192.0.2.10"));
    assert_eq!(first.encoded_data.as_deref(), Some("ZW5jb2RlZA=="));
    assert!(sends[1].client_metadata.is_empty());
    let stats = main.stats();
    assert_eq!(stats.sends_total, 4);
    assert_eq!(stats.distinct_users_sent, 3);
    assert_eq!(stats.users_sent_more_than_once, 1);
    assert_eq!(stats.simulated_successes, 1);
    assert_eq!(
        main.send_counts().get("dave"),
        Some(&(ATTEMPT_LIMIT as usize))
    );
    assert_eq!(stats.errors_by_type.get("LimitExceededException"), Some(&1));

    let sends = email.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].username, EMAIL_USERS[0]);

    // Every throttle call was either sent or throttled, never both.
    let stats = throttle.stats();
    assert!(stats.throttled >= 1, "{stats:?}");
    assert_eq!(stats.sends_total + stats.throttled, stats.requests_total);
    assert_eq!(stats.requests_total, THROTTLE_USERS.len() as u64);

    let stats = errors.stats();
    assert!(errors.sends().is_empty());
    assert_eq!(stats.errors_injected, 1);
    assert_eq!(stats.errors_by_type.get("InternalErrorException"), Some(&1));

    let stats = drops.stats();
    assert!(drops.sends().is_empty());
    assert_eq!(stats.connections_dropped, stats.requests_total);
    assert!(stats.connections_dropped >= 1);

    // The settings pool: every spelling boto3 used named the same person, recorded canonically.
    let sends = settings.sends();
    let who: Vec<(&str, &str)> = sends
        .iter()
        .map(|s| (s.username.as_str(), s.requested_as.as_str()))
        .collect();
    let folded_email = ALIASED.1.to_uppercase();
    let upper_name = ALIASED.0.to_uppercase();
    assert_eq!(
        who,
        [
            (ALIASED.0, upper_name.as_str()),
            (ALIASED.0, folded_email.as_str()),
            (ALIASED.0, ALIASED.2),
        ]
    );
    assert_eq!(settings.codes_sent_to(ALIASED.2), Some(3));
    let stats = settings.stats();
    assert_eq!(
        (stats.distinct_users_sent, stats.users_sent_more_than_once),
        (1, 1)
    );

    for emu in [main, email, throttle, errors, drops, settings] {
        emu.shutdown().await;
    }
}
