//! In-process checks that the AWS SDK for Rust — the client the worker uses — reads the
//! emulator's answers as it reads Cognito's: typed errors with Cognito's codes and messages,
//! and an injected connection drop as a dispatch failure rather than an HTTP response. Also the
//! test-instrument behaviours clients rely on: slow requests that a client abandons send
//! nothing, and going down refuses connections, then serves again with the state intact.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::retry::RetryConfig;
use aws_sdk_cognitoidentityprovider::config::timeout::TimeoutConfig;
use aws_sdk_cognitoidentityprovider::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::retry::ErrorKind;

use super::*;

mod invitations;
mod seeding;

const SECRET: &str = "s3cret-value";

async fn emulator() -> Emulator {
    Emulator::builder()
        .client(ClientSpec::new("plain"))
        .client(ClientSpec::new("secretive").with_secret(SECRET))
        .client(ClientSpec::new("noverify").with_auto_verify(false))
        .client(ClientSpec::new("private").with_prevent_user_existence_errors(true))
        .user(UserSpec::new("alice", UserStatus::Unconfirmed))
        .user(UserSpec::new("bob", UserStatus::Confirmed))
        .user(
            UserSpec::new("carol", UserStatus::Unconfirmed)
                .with_email(None)
                .with_phone(Some("+15555550123".into())),
        )
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts")
}

/// An SDK client as the worker builds it: explicit endpoint, no SDK retries.
fn sdk(emu: &Emulator) -> Client {
    sdk_with_attempt_timeout(emu, None)
}

/// [`sdk`], with an attempt timeout when given one (the SDK drops the connection when it fires).
fn sdk_with_attempt_timeout(emu: &Emulator, attempt_timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder();
    timeouts.set_operation_attempt_timeout(attempt_timeout);
    let timeouts = timeouts.build();
    let config = aws_sdk_cognitoidentityprovider::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emu.endpoint())
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts)
        .build();
    Client::from_conf(config)
}

/// The service error's code and message, or a description of the non-service failure.
fn code_and_message<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    err: SdkError<E, R>,
) -> (String, String) {
    match err {
        SdkError::ServiceError(e) => {
            let e = e.into_err();
            (
                e.code().unwrap_or("<none>").to_owned(),
                e.message().unwrap_or("<none>").to_owned(),
            )
        }
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sees_cognito_typed_errors() {
    let emu = emulator().await;
    let c = sdk(&emu);
    let resend = |client: &str, user: &str| {
        c.resend_confirmation_code()
            .client_id(client)
            .username(user)
            .send()
    };

    let err = resend("nope", "alice").await.expect_err("unknown client");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_resource_not_found_exception()));
    assert_eq!(
        code_and_message(err).1,
        "User pool client nope does not exist."
    );

    let err = resend("secretive", "alice").await.expect_err("no hash");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_not_authorized_exception()));
    assert_eq!(
        code_and_message(err).1,
        "Client secretive is configured with secret but SECRET_HASH was not received"
    );

    let err = c
        .resend_confirmation_code()
        .client_id("secretive")
        .username("alice")
        .secret_hash(secret_hash(SECRET, "bob", "secretive"))
        .send()
        .await
        .expect_err("wrong hash");
    assert_eq!(
        code_and_message(err),
        (
            "NotAuthorizedException".into(),
            "Unable to verify secret hash for client secretive".into()
        )
    );

    let err = resend("noverify", "alice")
        .await
        .expect_err("no auto-verify");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_invalid_parameter_exception()));

    let err = resend("plain", "bob").await.expect_err("confirmed");
    assert_eq!(
        code_and_message(err),
        (
            "InvalidParameterException".into(),
            "User is already confirmed.".into()
        )
    );

    let err = resend("plain", "zed").await.expect_err("missing");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_user_not_found_exception()));

    let ok = resend("private", "zed").await.expect("simulated success");
    assert_eq!(
        ok.code_delivery_details()
            .and_then(|d| d.delivery_medium())
            .map(|m| m.as_str()),
        Some("EMAIL")
    );

    let ok = c
        .resend_confirmation_code()
        .client_id("secretive")
        .username("alice")
        .secret_hash(secret_hash(SECRET, "alice", "secretive"))
        .client_metadata("k", "v")
        .send()
        .await
        .expect("valid hash");
    let details = ok.code_delivery_details().expect("details");
    assert_eq!(details.destination(), Some("a***@e***"));
    assert_eq!(details.attribute_name(), Some("email"));

    let ok = resend("plain", "carol").await.expect("sms user");
    let details = ok.code_delivery_details().expect("details");
    assert_eq!(details.destination(), Some("+*******0123"));
    assert_eq!(details.delivery_medium().map(|m| m.as_str()), Some("SMS"));

    emu.set_attempt_limit(Some(1));
    let err = resend("plain", "alice").await.expect_err("attempt limit");
    assert_eq!(
        code_and_message(err),
        (
            "LimitExceededException".into(),
            ATTEMPT_LIMIT_MESSAGE.into()
        )
    );
    emu.set_attempt_limit(None);
    // One email code so far (alice's; carol's went by SMS, which the email quota ignores).
    emu.set_email_quota(Some(1));
    let err = resend("plain", "alice").await.expect_err("email quota");
    assert_eq!(
        code_and_message(err),
        ("LimitExceededException".into(), EMAIL_QUOTA_MESSAGE.into())
    );
    emu.set_email_quota(None);

    emu.set_quota_rps(Some(0));
    let err = resend("plain", "alice").await.expect_err("throttled");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_too_many_requests_exception()));
    assert_eq!(code_and_message(err).1, "Rate exceeded");
    emu.set_quota_rps(None);

    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let err = resend("plain", "alice").await.expect_err("internal error");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_internal_error_exception()));
    if let SdkError::ServiceError(e) = &err {
        assert_eq!(e.raw().status().as_u16(), 500);
    }
    emu.set_faults(Faults::default());

    let got = c
        .admin_get_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("carol")
        .send()
        .await
        .expect("admin get user");
    assert_eq!(got.user_status().map(|s| s.as_str()), Some("UNCONFIRMED"));
    assert!(got.user_create_date().is_some());
    let err = c
        .admin_get_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("zed")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(
        code_and_message(err),
        (
            "UserNotFoundException".into(),
            "User does not exist.".into()
        )
    );
    let listed = c
        .list_users()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .filter("cognito:user_status = \"UNCONFIRMED\"")
        .limit(1)
        .send()
        .await
        .expect("list users");
    assert_eq!(listed.users().len(), 1);
    assert!(listed.pagination_token().is_some());

    // Ground truth: exactly the two successful real sends (the simulated one records nothing).
    let sends = emu.sends();
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
        [("alice", "secretive", true), ("carol", "plain", false)]
    );
    assert_eq!(
        sends[0].client_metadata.get("k").map(String::as_str),
        Some("v")
    );
    let stats = emu.stats();
    assert_eq!(stats.simulated_successes, 1);
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.errors_injected, 1);
    assert_eq!(stats.sends_total, 2);
    assert_eq!(stats.emails_sent, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_sees_a_dropped_connection_as_a_dispatch_failure() {
    let emu = emulator().await;
    let c = sdk(&emu);
    emu.set_faults(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    });
    let err = c
        .resend_confirmation_code()
        .client_id("plain")
        .username("alice")
        .send()
        .await
        .expect_err("dropped");
    match &err {
        SdkError::DispatchFailure(failure) => {
            // hyper reports "IncompleteMessage"; the SDK files it as a transient connector
            // error, exactly as it does when a real endpoint closes a connection mid-request.
            assert_eq!(
                failure.as_other(),
                Some(ErrorKind::TransientError),
                "{failure:?}"
            );
        }
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
    assert_eq!(emu.stats().connections_dropped, 1);
    assert!(emu.sends().is_empty(), "a dropped request sends nothing");

    // The client recovers on a new connection once the fault is gone.
    emu.set_faults(Faults::default());
    c.resend_confirmation_code()
        .client_id("plain")
        .username("alice")
        .send()
        .await
        .expect("sent after the fault is cleared");
    assert_eq!(emu.send_counts().get("alice"), Some(&1));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_reflects_client_concurrency() {
    let emu = emulator().await;
    emu.set_faults(Faults {
        latency: Duration::from_millis(500),
        ..Faults::default()
    });
    let c = sdk(&emu);
    let calls = (0..6).map(|_| {
        let c = c.clone();
        tokio::spawn(async move {
            c.admin_get_user()
                .user_pool_id(DEFAULT_USER_POOL_ID)
                .username("alice")
                .send()
                .await
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("task runs").expect("call succeeds");
    }
    let stats = emu.stats();
    assert_eq!(stats.max_in_flight, 6);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.requests_by_operation.get("AdminGetUser"), Some(&6));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_protocol_and_introspection() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let post = |target: &str, body: &'static str| {
        http.post(emu.endpoint())
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
            .send()
    };

    let resp = post("AWSCognitoIdentityProviderService.SignUp", "{}")
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(
        resp.headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok()),
        Some("UnknownOperationException")
    );

    let resp = post("AWSCognitoIdentityProviderService.ListUsers", "{oops")
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value =
        serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(body["__type"], "SerializationException");

    let resp = post(
        "AWSCognitoIdentityProviderService.ResendConfirmationCode",
        r#"{"ClientId":"plain","Username":"alice"}"#,
    )
    .await
    .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(
        resp.headers()
            .get("x-amzn-RequestId")
            .and_then(|v| v.to_str().ok())
            .map(str::len),
        Some(36)
    );

    let stats: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/_emulator/stats", emu.endpoint()))
            .send()
            .await
            .expect("stats")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(stats["requests_total"], 3);
    assert_eq!(stats["sends_total"], 1);
    assert_eq!(stats["distinct_users_sent"], 1);
    assert_eq!(stats["users_sent_more_than_once"], 0);
    assert_eq!(stats["errors_by_type"]["UnknownOperationException"], 1);
    let sends: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/_emulator/sends", emu.endpoint()))
            .send()
            .await
            .expect("sends")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(sends, serde_json::json!({"alice": 1}));

    let addr = emu.addr();
    emu.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port is closed after shutdown"
    );
}

#[tokio::test]
async fn refuses_non_loopback_addresses() {
    let err = Emulator::builder()
        .start("0.0.0.0:0".parse().expect("valid address"))
        .await
        .expect_err("not loopback");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// A ResendConfirmationCode for `plain`/`alice` as raw HTTP/1.1 bytes, for tests that need to
/// control the socket themselves.
fn raw_resend_request() -> String {
    let body = r#"{"ClientId":"plain","Username":"alice"}"#;
    format!(
        "POST / HTTP/1.1\r\nHost: emulator\r\n\
         X-Amz-Target: AWSCognitoIdentityProviderService.ResendConfirmationCode\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Polls `cond` every 10 ms for up to `within`; whether it became true.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Connects to `addr` every 20 ms until the emulator listens again, asserting that every
/// failure meanwhile is a refusal; returns when it first accepted.
async fn wait_until_listening(addr: SocketAddr) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            // While nothing listens, a connect whose ephemeral source port happens to be the
            // emulator's port connects to itself (TCP simultaneous open); that is not it.
            Ok(s) if s.local_addr().ok() != Some(addr) => return Instant::now(),
            Ok(_self_connected) => {}
            Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}"),
        }
        assert!(
            Instant::now() < deadline,
            "the emulator did not come back up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_abandoned_by_a_timed_out_client_sends_nothing() {
    let emu = emulator().await;
    emu.set_faults(Faults {
        slow_rate: 1.0,
        slow_latency: Duration::from_secs(1),
        ..Faults::default()
    });
    let impatient = sdk_with_attempt_timeout(&emu, Some(Duration::from_millis(200)));
    let asked = Instant::now();
    let err = impatient
        .resend_confirmation_code()
        .client_id("plain")
        .username("alice")
        .send()
        .await
        .expect_err("the attempt times out during the hold");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
    // The SDK closed the connection; hyper dropped the held request well before its hold ended.
    assert!(
        eventually(Duration::from_millis(500), || {
            let stats = emu.stats();
            stats.slow_abandoned == 1 && stats.in_flight == 0
        })
        .await,
        "{:?}",
        emu.stats()
    );
    // Past the end of the hold: still nothing sent.
    tokio::time::sleep_until((asked + Duration::from_millis(1300)).into()).await;
    assert!(emu.sends().is_empty(), "{:?}", emu.sends());
    let stats = emu.stats();
    assert_eq!(
        (stats.slow_held, stats.slow_abandoned, stats.sends_total),
        (1, 1, 0)
    );

    let patient = sdk(&emu);
    let asked = Instant::now();
    patient
        .resend_confirmation_code()
        .client_id("plain")
        .username("alice")
        .send()
        .await
        .expect("a patient client gets the answer");
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "held for the slow latency"
    );
    assert_eq!(emu.send_counts().get("alice"), Some(&1));
    let stats = emu.stats();
    assert_eq!(
        (stats.slow_held, stats.slow_abandoned, stats.sends_total),
        (2, 1, 1)
    );
    emu.shutdown().await;
}

/// Pins down the hyper behaviour the slow hold relies on, whatever the client library: a
/// connection closed (fully, or only its write side) while its request is held drops the
/// handler, so the operation never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_during_a_slow_hold_cancels_the_request() {
    let emu = emulator().await;
    emu.set_faults(Faults {
        slow_rate: 1.0,
        slow_latency: Duration::from_secs(1),
        ..Faults::default()
    });
    let asked = Instant::now();
    let mut closed = TcpStream::connect(emu.addr()).await.expect("connects");
    let mut half_closed = TcpStream::connect(emu.addr()).await.expect("connects");
    for s in [&mut closed, &mut half_closed] {
        s.write_all(raw_resend_request().as_bytes())
            .await
            .expect("request written");
    }
    assert!(
        eventually(Duration::from_millis(500), || emu.stats().in_flight == 2).await,
        "both requests are being held: {:?}",
        emu.stats()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(closed);
    half_closed.shutdown().await.expect("write side closed");
    assert!(
        eventually(Duration::from_millis(500), || {
            let stats = emu.stats();
            stats.in_flight == 0 && stats.slow_abandoned == 2
        })
        .await,
        "{:?}",
        emu.stats()
    );
    // The half-closed client gets no answer either: the server closed its side too.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), half_closed.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection");
    assert!(
        read.is_err() || rest.is_empty(),
        "unexpected answer {rest:?}"
    );
    tokio::time::sleep_until((asked + Duration::from_millis(1300)).into()).await;
    assert_eq!(emu.stats().sends_total, 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_down_refuses_connections_then_serves_again_with_state_intact() {
    let emu = emulator().await;
    let c = sdk(&emu);
    let resend = || {
        c.resend_confirmation_code()
            .client_id("plain")
            .username("alice")
            .send()
    };
    resend().await.expect("sent while up");
    let addr = emu.addr();

    // An idle connection, and one whose request is being handled (held by the latency).
    let mut idle = TcpStream::connect(addr).await.expect("connects");
    emu.set_faults(Faults {
        latency: Duration::from_secs(2),
        ..Faults::default()
    });
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move {
            c.resend_confirmation_code()
                .client_id("plain")
                .username("alice")
                .send()
                .await
        }
    });
    assert!(eventually(Duration::from_secs(1), || emu.stats().in_flight == 1).await);

    let asked = Instant::now();
    emu.go_down(Duration::from_millis(500)).await;
    assert!(
        asked.elapsed() < Duration::from_millis(400),
        "goes down at once"
    );
    emu.set_faults(Faults::default());
    assert_eq!(
        emu.stats().in_flight,
        0,
        "the request being handled was dropped"
    );
    let err = in_flight
        .await
        .expect("task runs")
        .expect_err("dropped unanswered");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    let err = TcpStream::connect(addr)
        .await
        .expect_err("refused while down");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = resend().await.expect_err("down");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");

    let back = wait_until_listening(addr).await;
    assert!(
        back - asked >= Duration::from_millis(500),
        "{:?}",
        back - asked
    );
    resend().await.expect("sent once back up");
    assert_eq!(emu.send_counts().get("alice"), Some(&2));
    let stats = emu.stats();
    assert_eq!((stats.downs, stats.sends_total), (1, 2));
    emu.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_works_while_down_and_a_second_go_down_only_extends() {
    let emu = emulator().await;
    let addr = emu.addr();
    emu.go_down(Duration::from_secs(30)).await;
    emu.go_down(Duration::from_millis(10)).await;
    assert_eq!(emu.stats().downs, 1, "already down: not counted again");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a shorter window does not shorten the current one"
    );
    tokio::time::timeout(Duration::from_secs(2), emu.shutdown())
        .await
        .expect("shutdown does not wait out the window");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "stays down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_endpoint_answers_then_goes_down() {
    let emu = emulator().await;
    let http = reqwest::Client::new();
    let down = format!("{}/_emulator/down", emu.endpoint());
    let resp = http.post(&down).send().await.expect("answered");
    assert_eq!(resp.status().as_u16(), 400, "the window is required");
    let resp = http
        .post(format!("{down}?for=soon"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 400);
    let resp = http
        .get(format!("{down}?for=1s"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(emu.stats().downs, 0);

    let asked = Instant::now();
    let resp = http
        .post(format!("{down}?for=300ms"))
        .send()
        .await
        .expect("answered before going down");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "down for 300ms\n");
    let err = TcpStream::connect(emu.addr())
        .await
        .expect_err("down once answered");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let back = wait_until_listening(emu.addr()).await;
    assert!(
        back - asked >= Duration::from_millis(300),
        "{:?}",
        back - asked
    );
    let stats: serde_json::Value = serde_json::from_str(
        &http
            .get(format!("{}/_emulator/stats", emu.endpoint()))
            .send()
            .await
            .expect("stats once back up")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(stats["downs"], 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_after_acting_send_the_code_and_lose_the_answer() {
    let emu = emulator().await;
    let client = sdk(&emu);
    let resend = || {
        client
            .resend_confirmation_code()
            .client_id("plain")
            .username("alice")
            .send()
    };

    emu.set_faults(Faults {
        error_after_rate: 1.0,
        ..Faults::default()
    });
    let err = resend().await.expect_err("a 500");
    let (code, _) = code_and_message(err);
    assert_eq!(code, "InternalErrorException");
    assert_eq!(
        emu.send_counts().get("alice"),
        Some(&1),
        "sent all the same"
    );

    emu.set_faults(Faults {
        drop_after_rate: 1.0,
        ..Faults::default()
    });
    let err = resend().await.expect_err("no answer");
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    assert_eq!(
        emu.send_counts().get("alice"),
        Some(&2),
        "sent all the same"
    );

    let stats = emu.stats();
    assert_eq!(stats.errors_after_acting, 1);
    assert_eq!(stats.dropped_after_acting, 1);
    assert_eq!(stats.users_sent_more_than_once, 1);

    // The faults before acting send nothing: the contrast the worker's classification relies on
    // being unable to see, and so treats every dropped answer as ambiguous.
    emu.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    resend().await.expect_err("a 500");
    assert_eq!(emu.send_counts().get("alice"), Some(&2));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_changes_from_outside_and_rates_count_what_the_server_saw() {
    let emu = Emulator::builder()
        .client(ClientSpec::new("plain"))
        .user(UserSpec::new("alice", UserStatus::Unconfirmed))
        // Its first step is far off: until then --quota (here 2) holds.
        .quota_rps(Some(2))
        .quota_schedule(Some("1h=0".parse().expect("valid schedule")))
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let http = reqwest::Client::new();
    let resend = || {
        http.post(emu.endpoint())
            .header(
                "X-Amz-Target",
                "AWSCognitoIdentityProviderService.ResendConfirmationCode",
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(r#"{"ClientId":"plain","Username":"alice"}"#)
            .send()
    };
    let admin = |query: &str| {
        http.post(format!("{}/_emulator/quota?{query}", emu.endpoint()))
            .send()
    };
    let get_json = |what: &str| {
        let url = format!("{}/_emulator/{what}", emu.endpoint());
        let http = http.clone();
        async move {
            let text = http
                .get(url)
                .send()
                .await
                .expect("answered")
                .text()
                .await
                .expect("body");
            serde_json::from_str::<serde_json::Value>(&text).expect("json")
        }
    };

    // Quota 0 throttles everything; a schedule step at 0 s then lifts it to 1000.
    let resp = admin("rps=0").await.expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    for _ in 0..3 {
        assert_eq!(resend().await.expect("answered").status().as_u16(), 400);
    }
    let resp = admin("schedule=0s%3D1000%2C1h%3D0")
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);
    for _ in 0..2 {
        assert_eq!(resend().await.expect("answered").status().as_u16(), 200);
    }
    assert_eq!(emu.stats().quota_rps, Some(1000));
    for bad in ["rps=lots", "schedule=20s", "for=2s", ""] {
        let resp = admin(bad).await.expect("answered");
        assert_eq!(resp.status().as_u16(), 400, "{bad:?} is refused");
    }
    let resp = http
        .get(format!("{}/_emulator/quota", emu.endpoint()))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status().as_u16(), 405);

    let stats = get_json("stats").await;
    assert_eq!(stats["accepted"], 2);
    assert_eq!(stats["throttled"], 3);
    assert_eq!(stats["quota_rps"], 1000);
    let rates = get_json("rates").await;
    assert_eq!(rates["quota_rps"], 1000);
    let elapsed = rates["elapsed_s"].as_f64().expect("elapsed seconds");
    let seconds = rates["seconds"].as_array().expect("a list of seconds");
    let sum = |key: &str| {
        seconds
            .iter()
            .map(|s| s[key].as_u64().expect("a count"))
            .sum::<u64>()
    };
    assert_eq!((sum("accepted"), sum("throttled")), (2, 3));
    assert!(
        seconds
            .iter()
            .all(|s| s["second"].as_f64().expect("a second") <= elapsed),
        "every counted second has begun by the time of the answer"
    );
    assert_eq!(
        emu.rates().iter().map(|s| s.accepted).sum::<u64>(),
        2,
        "the in-process view agrees"
    );
    emu.shutdown().await;
}

// ----------------------------------------------------------------------------------------------
// The pool's settings: DescribeUserPool, DescribeUserPoolClient, and how Usernames resolve.

type ResendResult = Result<
    aws_sdk_cognitoidentityprovider::operation::resend_confirmation_code::ResendConfirmationCodeOutput,
    SdkError<
        aws_sdk_cognitoidentityprovider::operation::resend_confirmation_code::ResendConfirmationCodeError,
        aws_sdk_cognitoidentityprovider::config::http::HttpResponse,
    >,
>;

/// ResendConfirmationCode for `user` through `client` (no SecretHash).
async fn resend(c: &Client, client: &str, user: &str) -> ResendResult {
    c.resend_confirmation_code()
        .client_id(client)
        .username(user)
        .send()
        .await
}

/// AdminGetUser's canonical Username for `name`, or the service error's code.
async fn get_user(c: &Client, name: &str) -> Result<String, String> {
    match c
        .admin_get_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username(name)
        .send()
        .await
    {
        Ok(u) => Ok(u.username().to_owned()),
        Err(e) => Err(code_and_message(e).0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_parses_describe_user_pool_and_client() {
    use aws_sdk_cognitoidentityprovider::types::{
        AliasAttributeType, EmailSendingAccountType, PreventUserExistenceErrorTypes,
        UserPoolMfaType, VerifiedAttributeType,
    };
    const TRIGGER: &str = "arn:aws:lambda:us-east-1:123456789012:function:custom-message";
    let emu = Emulator::builder()
        .user_pool_name("signups")
        .case_sensitive(Some(false))
        .alias_attributes([AliasAttribute::Email, AliasAttribute::PreferredUsername])
        .auto_verified_attributes([VerifiedAttribute::Email])
        .email_sending_account(EmailSendingAccount::CognitoDefault)
        .custom_message_trigger(Some(TRIGGER.into()))
        .client(
            ClientSpec::new("secretive")
                .with_secret(SECRET)
                .with_name("web app"),
        )
        .client(ClientSpec::new("private").with_prevent_user_existence_errors(true))
        .users([
            UserSpec::new("alice", UserStatus::Unconfirmed),
            UserSpec::new("bob", UserStatus::Confirmed),
        ])
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    let out = c
        .describe_user_pool()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .send()
        .await
        .expect("describe user pool");
    let pool = out.user_pool().expect("UserPool");
    assert_eq!(pool.id(), Some(DEFAULT_USER_POOL_ID));
    assert_eq!(pool.name(), Some("signups"));
    assert_eq!(
        pool.arn(),
        Some("arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_Emulator")
    );
    let created = pool.creation_date().expect("CreationDate").secs();
    assert!(created > 1_700_000_000, "epoch seconds: {created}");
    assert_eq!(pool.last_modified_date().map(|d| d.secs()), Some(created));
    assert_eq!(
        pool.username_configuration().map(|u| u.case_sensitive()),
        Some(false)
    );
    assert_eq!(
        pool.alias_attributes(),
        [
            AliasAttributeType::Email,
            AliasAttributeType::PreferredUsername
        ]
    );
    assert!(pool.username_attributes().is_empty());
    assert_eq!(
        pool.auto_verified_attributes(),
        [VerifiedAttributeType::Email]
    );
    let email = pool.email_configuration().expect("EmailConfiguration");
    assert_eq!(
        email.email_sending_account(),
        Some(&EmailSendingAccountType::CognitoDefault)
    );
    assert_eq!(email.source_arn(), None);
    assert_eq!(
        pool.lambda_config().and_then(|l| l.custom_message()),
        Some(TRIGGER)
    );
    assert_eq!(pool.estimated_number_of_users(), 2);
    assert_eq!(pool.mfa_configuration(), Some(&UserPoolMfaType::Off));

    let client = c
        .describe_user_pool_client()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .client_id("secretive")
        .send()
        .await
        .expect("describe client");
    let client = client.user_pool_client().expect("UserPoolClient");
    assert_eq!(client.user_pool_id(), Some(DEFAULT_USER_POOL_ID));
    assert_eq!(client.client_id(), Some("secretive"));
    assert_eq!(client.client_name(), Some("web app"));
    assert_eq!(client.client_secret(), Some(SECRET));
    assert_eq!(
        client.prevent_user_existence_errors(),
        Some(&PreventUserExistenceErrorTypes::Legacy)
    );
    assert_eq!(client.creation_date().map(|d| d.secs()), Some(created));
    let private = c
        .describe_user_pool_client()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .client_id("private")
        .send()
        .await
        .expect("describe client");
    let private = private.user_pool_client().expect("UserPoolClient");
    assert_eq!(private.client_secret(), None, "no secret, no member");
    assert_eq!(private.client_name(), Some("private"), "named by its id");
    assert_eq!(
        private.prevent_user_existence_errors(),
        Some(&PreventUserExistenceErrorTypes::Enabled)
    );

    // Unknown pools and clients are typed ResourceNotFoundExceptions, in Cognito's words.
    let err = c
        .describe_user_pool()
        .user_pool_id("us-east-1_Nope")
        .send()
        .await
        .expect_err("unknown pool");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_resource_not_found_exception()));
    assert_eq!(
        code_and_message(err).1,
        "User pool us-east-1_Nope does not exist."
    );
    let err = c
        .describe_user_pool_client()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .client_id("nope")
        .send()
        .await
        .expect_err("unknown client");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_resource_not_found_exception()));
    assert_eq!(
        code_and_message(err).1,
        "User pool client nope does not exist."
    );
    let err = c
        .describe_user_pool_client()
        .user_pool_id("us-east-1_Nope")
        .client_id("secretive")
        .send()
        .await
        .expect_err("unknown pool");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_resource_not_found_exception()));
    let err = c
        .list_users()
        .user_pool_id("us-east-1_Nope")
        .send()
        .await
        .expect_err("unknown pool");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_resource_not_found_exception()));
    let err = c
        .describe_user_pool()
        .user_pool_id("no-underscore")
        .send()
        .await
        .expect_err("malformed pool id");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_invalid_parameter_exception()));
    emu.shutdown().await;

    // The defaults: no UsernameConfiguration at all (unset: case-sensitive), no aliases, both
    // attributes auto-verified, the developer's own SES identity, no trigger.
    let emu = emulator().await;
    let c = sdk(&emu);
    let out = c
        .describe_user_pool()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .send()
        .await
        .expect("describe user pool");
    let pool = out.user_pool().expect("UserPool");
    assert!(pool.username_configuration().is_none());
    assert!(pool.alias_attributes().is_empty());
    assert_eq!(
        pool.auto_verified_attributes(),
        [
            VerifiedAttributeType::Email,
            VerifiedAttributeType::PhoneNumber
        ]
    );
    let email = pool.email_configuration().expect("EmailConfiguration");
    assert_eq!(
        email.email_sending_account(),
        Some(&EmailSendingAccountType::Developer)
    );
    assert!(
        email
            .source_arn()
            .is_some_and(|a| a.starts_with("arn:aws:ses:us-east-1:"))
    );
    assert_eq!(pool.lambda_config().and_then(|l| l.custom_message()), None);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_insensitive_pool_finds_users_whatever_the_case() {
    let emu = Emulator::builder()
        .case_sensitive(Some(false))
        .client(ClientSpec::new("plain"))
        .user(UserSpec::new("Alice", UserStatus::Unconfirmed))
        .user(UserSpec::new("Zed", UserStatus::Unconfirmed))
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    for spelling in ["ALICE", "alice", "Alice"] {
        resend(&c, "plain", spelling).await.expect("sent");
        assert_eq!(get_user(&c, spelling).await, Ok("Alice".into()));
    }
    let listed = c
        .list_users()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .filter("username = \"aLiCe\"")
        .send()
        .await
        .expect("list users");
    let names: Vec<&str> = listed.users().iter().filter_map(|u| u.username()).collect();
    assert_eq!(names, ["Alice"]);
    let listed = c
        .list_users()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .filter("username ^= \"ZE\"")
        .send()
        .await
        .expect("list users");
    let names: Vec<&str> = listed.users().iter().filter_map(|u| u.username()).collect();
    assert_eq!(names, ["Zed"]);

    // Ground truth per person: three spellings, one user who got three codes.
    let sends = emu.sends();
    let who: Vec<(&str, &str)> = sends
        .iter()
        .map(|s| (s.username.as_str(), s.requested_as.as_str()))
        .collect();
    assert_eq!(
        who,
        [("Alice", "ALICE"), ("Alice", "alice"), ("Alice", "Alice")]
    );
    assert_eq!(emu.codes_sent_to("aLICE"), Some(3));
    assert_eq!(emu.codes_sent_to("zed"), Some(0));
    assert_eq!(emu.codes_sent_to("nobody"), None);
    assert_eq!(emu.canonical_username("ALICE"), Some("Alice"));
    assert_eq!(
        emu.send_counts(),
        HashMap::from([("Alice".to_owned(), 3usize)])
    );
    let stats = emu.stats();
    assert_eq!(
        (stats.distinct_users_sent, stats.users_sent_more_than_once),
        (1, 1)
    );
    emu.shutdown().await;

    // The same names in an unset (case-sensitive) pool: only the exact spelling exists.
    let emu = Emulator::builder()
        .client(ClientSpec::new("plain"))
        .user(UserSpec::new("Alice", UserStatus::Unconfirmed))
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    let err = resend(&c, "plain", "alice")
        .await
        .expect_err("case-sensitive");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_user_not_found_exception()));
    assert_eq!(
        get_user(&c, "ALICE").await,
        Err("UserNotFoundException".into())
    );
    emu.shutdown().await;

    // Two users whose names fold together cannot be seeded in a case-insensitive pool.
    let err = Emulator::builder()
        .case_sensitive(Some(false))
        .user(UserSpec::new("Bob", UserStatus::Unconfirmed))
        .user(UserSpec::new("bob", UserStatus::Unconfirmed))
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect_err("a seeding error");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("case-insensitive"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_attribute_pool_resolves_email_and_sub() {
    let uuid = sub_for("erin");
    let emu = Emulator::builder()
        .username_attributes([UsernameAttribute::Email])
        .client(ClientSpec::new("plain"))
        .client(ClientSpec::new("secretive").with_secret(SECRET))
        .user(
            UserSpec::new(uuid.clone(), UserStatus::Unconfirmed)
                .with_sub(uuid.clone())
                .with_email(Some("erin@example.com".into())),
        )
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    // An unverified email names the user in a username-attribute pool.
    let ok = resend(&c, "plain", "erin@example.com").await.expect("sent");
    assert_eq!(
        ok.code_delivery_details().and_then(|d| d.destination()),
        Some("e***@e***")
    );
    assert_eq!(get_user(&c, "erin@example.com").await, Ok(uuid.clone()));
    assert_eq!(get_user(&c, &uuid).await, Ok(uuid.clone()));
    // The SecretHash is over the Username as sent: here the email.
    c.resend_confirmation_code()
        .client_id("secretive")
        .username("erin@example.com")
        .secret_hash(secret_hash(SECRET, "erin@example.com", "secretive"))
        .send()
        .await
        .expect("hash over the email");
    // Case-sensitive pool (unset): the email's case matters too.
    assert_eq!(
        get_user(&c, "Erin@example.com").await,
        Err("UserNotFoundException".into())
    );
    let sends = emu.sends();
    assert!(sends.iter().all(|s| s.username == uuid), "{sends:?}");
    assert_eq!(sends[0].requested_as, "erin@example.com");
    assert_eq!(emu.codes_sent_to(&uuid), Some(2));
    assert_eq!(emu.stats().users_sent_more_than_once, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_pool_resolves_verified_email_preferred_username_and_sub_only() {
    let emu = Emulator::builder()
        .case_sensitive(Some(false))
        .alias_attributes([AliasAttribute::Email, AliasAttribute::PreferredUsername])
        .client(ClientSpec::new("plain"))
        .client(ClientSpec::new("private").with_prevent_user_existence_errors(true))
        .user(
            // Unconfirmed, yet its email verified (an administrator marked it so).
            UserSpec::new("vera", UserStatus::Unconfirmed)
                .with_email(Some("Vera@Example.com".into()))
                .with_email_verified(true)
                .with_preferred_username("V"),
        )
        // A plain signed-up user: email unverified, so no email alias yet.
        .user(UserSpec::new("ursula", UserStatus::Unconfirmed))
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    resend(&c, "plain", "vera@example.com")
        .await
        .expect("verified email alias, any case");
    resend(&c, "plain", "v").await.expect("preferred username");
    resend(&c, "plain", &sub_for("vera")).await.expect("sub");
    assert_eq!(get_user(&c, "VERA@example.com").await, Ok("vera".into()));
    assert_eq!(get_user(&c, "V").await, Ok("vera".into()));

    let err = resend(&c, "plain", "ursula@example.com")
        .await
        .expect_err("unverified email is no alias");
    assert_eq!(
        code_and_message(err),
        (
            "UserNotFoundException".into(),
            "Username/client id combination not found.".into()
        )
    );
    assert_eq!(
        get_user(&c, "ursula@example.com").await,
        Err("UserNotFoundException".into())
    );
    // Under PreventUserExistenceErrors, the unknown alias gets a simulated success: no send.
    resend(&c, "private", "ursula@example.com")
        .await
        .expect("simulated success");
    assert_eq!(get_user(&c, &sub_for("ursula")).await, Ok("ursula".into()));
    resend(&c, "plain", "URSULA").await.expect("username");

    // Ground truth per person: vera got three codes by three names, ursula one.
    let sends = emu.sends();
    let who: Vec<(&str, &str)> = sends
        .iter()
        .map(|s| (s.username.as_str(), s.requested_as.as_str()))
        .collect();
    let vera_sub = sub_for("vera");
    assert_eq!(
        who,
        [
            ("vera", "vera@example.com"),
            ("vera", "v"),
            ("vera", vera_sub.as_str()),
            ("ursula", "URSULA"),
        ]
    );
    assert_eq!(emu.codes_sent_to("vera"), Some(3));
    assert_eq!(emu.codes_sent_to("V"), Some(3));
    assert_eq!(emu.codes_sent_to("ursula"), Some(1));
    let stats = emu.stats();
    assert_eq!(stats.sends_total, 4);
    assert_eq!(
        (stats.distinct_users_sent, stats.users_sent_more_than_once),
        (2, 1)
    );
    assert_eq!(stats.simulated_successes, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_default_email_account_sends_fifty_emails_a_day() {
    let users = (0..=COGNITO_DEFAULT_DAILY_EMAILS)
        .map(|i| UserSpec::new(format!("e{i:02}"), UserStatus::Unconfirmed))
        .chain([
            UserSpec::new("sms-only", UserStatus::Unconfirmed)
                .with_email(None)
                .with_phone(Some("+15555550123".into())),
            // Both attributes, both auto-verified: Cognito sends the code by SMS.
            UserSpec::new("both", UserStatus::Unconfirmed).with_phone(Some("+15555550199".into())),
        ]);
    let emu = Emulator::builder()
        .email_sending_account(EmailSendingAccount::CognitoDefault)
        .client(ClientSpec::new("plain"))
        .users(users)
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    for i in 0..COGNITO_DEFAULT_DAILY_EMAILS {
        resend(&c, "plain", &format!("e{i:02}"))
            .await
            .expect("within the daily 50");
    }
    let err = resend(&c, "plain", &format!("e{COGNITO_DEFAULT_DAILY_EMAILS:02}"))
        .await
        .expect_err("the 51st email");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_limit_exceeded_exception()));
    assert_eq!(code_and_message(err).1, EMAIL_QUOTA_MESSAGE);
    // SMS codes are not emails.
    for user in ["sms-only", "both"] {
        let ok = resend(&c, "plain", user).await.expect("SMS still goes");
        assert_eq!(
            ok.code_delivery_details()
                .and_then(|d| d.delivery_medium())
                .map(|m| m.as_str()),
            Some("SMS")
        );
    }
    let stats = emu.stats();
    assert_eq!(stats.emails_sent, COGNITO_DEFAULT_DAILY_EMAILS);
    assert_eq!(stats.sends_total, COGNITO_DEFAULT_DAILY_EMAILS + 2);
    assert_eq!(stats.errors_by_type.get("LimitExceededException"), Some(&1));
    let sms: Vec<String> = emu
        .sends()
        .into_iter()
        .filter(|s| s.delivery_medium == "SMS")
        .map(|s| s.username)
        .collect();
    assert_eq!(sms, ["sms-only", "both"]);
    emu.shutdown().await;

    // An explicit quota wins over the account's default.
    let emu = Emulator::builder()
        .email_sending_account(EmailSendingAccount::CognitoDefault)
        .email_quota(Some(1))
        .client(ClientSpec::new("plain"))
        .users([
            UserSpec::new("a", UserStatus::Unconfirmed),
            UserSpec::new("b", UserStatus::Unconfirmed),
        ])
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    resend(&c, "plain", "a").await.expect("the one email");
    let err = resend(&c, "plain", "b").await.expect_err("quota of one");
    assert_eq!(code_and_message(err).1, EMAIL_QUOTA_MESSAGE);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_message_trigger_that_throws_on_some_metadata_fails_only_those_requests() {
    let emu = Emulator::builder()
        .custom_message_trigger(Some(
            "arn:aws:lambda:us-east-1:123456789012:function:custom-message".into(),
        ))
        .custom_message_fails_when("template", "missing")
        .client(ClientSpec::new("plain"))
        .users([
            UserSpec::new("alice", UserStatus::Unconfirmed),
            UserSpec::new("bob", UserStatus::Unconfirmed),
        ])
        .start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts");
    let c = sdk(&emu);
    let err = c
        .resend_confirmation_code()
        .client_id("plain")
        .username("alice")
        .client_metadata("template", "missing")
        .send()
        .await
        .expect_err("the trigger throws");
    let (code, message) = code_and_message(err);
    assert_eq!(code, "UserLambdaValidationException");
    assert!(
        message.starts_with("CustomMessage failed with error "),
        "{message}"
    );
    assert!(emu.sends().is_empty(), "no code is sent");
    // Other metadata, or none: the trigger runs fine.
    for (user, value) in [("alice", "spring"), ("bob", "")] {
        let mut req = c
            .resend_confirmation_code()
            .client_id("plain")
            .username(user);
        if !value.is_empty() {
            req = req.client_metadata("template", value);
        }
        req.send().await.expect("sent");
    }
    assert_eq!(emu.sends().len(), 2);
}
