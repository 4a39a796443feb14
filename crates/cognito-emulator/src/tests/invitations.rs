//! AdminCreateUser `RESEND` through the real AWS SDK: the invitation is recorded against the
//! canonical user and apart from confirmation codes, the SDK parses each refusal into its typed
//! error, IAM's refusals (no signature, denied) come before anything else, and the UserCreation
//! quota is a budget of its own.

use aws_sdk_cognitoidentityprovider::operation::admin_create_user::{
    AdminCreateUserError, AdminCreateUserOutput,
};
use aws_sdk_cognitoidentityprovider::types::{DeliveryMediumType, MessageActionType};

use super::*;

type InviteResult = Result<
    AdminCreateUserOutput,
    SdkError<AdminCreateUserError, aws_sdk_cognitoidentityprovider::config::http::HttpResponse>,
>;

/// AdminCreateUser `RESEND` for `user` by `mediums` (none: the API's default, SMS).
async fn invite(c: &Client, user: &str, mediums: &[DeliveryMediumType]) -> InviteResult {
    let mut req = c
        .admin_create_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username(user)
        .message_action(MessageActionType::Resend);
    for m in mediums {
        req = req.desired_delivery_mediums(m.clone());
    }
    req.send().await
}

/// A pool with invited users (one by email only, one with a phone too, one with neither), an
/// UNCONFIRMED and a CONFIRMED user.
fn builder() -> EmulatorBuilder {
    Emulator::builder()
        .client(ClientSpec::new("plain"))
        .user(UserSpec::new("ivy", UserStatus::ForceChangePassword))
        .user(
            UserSpec::new("ian", UserStatus::ForceChangePassword)
                .with_phone(Some("+15555550142".into())),
        )
        .user(UserSpec::new("mute", UserStatus::ForceChangePassword).with_email(None))
        .user(UserSpec::new("alice", UserStatus::Unconfirmed))
        .user(UserSpec::new("bob", UserStatus::Confirmed))
}

async fn start(b: EmulatorBuilder) -> Emulator {
    b.start("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("emulator starts")
}

const EMAIL: DeliveryMediumType = DeliveryMediumType::Email;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_invites_again_and_refusals_are_typed() {
    let emu = start(builder()).await;
    let c = sdk(&emu);

    let out = invite(&c, "ivy", &[EMAIL]).await.expect("invited again");
    let user = out.user().expect("the User");
    assert_eq!(user.username(), Some("ivy"));
    assert_eq!(
        user.user_status().map(|s| s.as_str()),
        Some("FORCE_CHANGE_PASSWORD")
    );
    assert!(user.enabled());
    let email = user
        .attributes()
        .iter()
        .find(|a| a.name() == "email")
        .and_then(|a| a.value());
    assert_eq!(email, Some("ivy@example.com"));
    assert!(user.user_create_date().is_some() && user.user_last_modified_date().is_some());
    assert_eq!(emu.invitations_sent_to("ivy"), Some(1));
    assert_eq!(
        emu.codes_sent_to("ivy"),
        Some(0),
        "an invitation is no code"
    );
    assert!(emu.send_counts().is_empty());

    // By its sub, as AdminGetUser resolves a Username: the same person.
    invite(&c, &sub_for("ivy"), &[EMAIL]).await.expect("by sub");
    assert_eq!(emu.invite_counts().get("ivy"), Some(&2));

    for (who, status) in [("alice", "UNCONFIRMED"), ("bob", "CONFIRMED")] {
        let err = invite(&c, who, &[EMAIL]).await.expect_err(status);
        assert!(
            matches!(&err, SdkError::ServiceError(e)
                if matches!(e.err(), AdminCreateUserError::UnsupportedUserStateException(_))),
            "{err:?}"
        );
        assert_eq!(
            code_and_message(err).1,
            format!("Resend not possible. {who} status is not FORCE_CHANGE_PASSWORD.")
        );
    }
    let err = invite(&c, "zed", &[EMAIL]).await.expect_err("unknown");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_user_not_found_exception()));
    assert_eq!(code_and_message(err).1, "User does not exist.");

    // No medium given: SMS, the documented default, which ivy has no phone for.
    let err = invite(&c, "ivy", &[]).await.expect_err("no phone");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_invalid_parameter_exception()));
    assert_eq!(
        code_and_message(err).1,
        "No phone_number provided but desired delivery medium was Sms"
    );
    let err = invite(&c, "mute", &[EMAIL]).await.expect_err("no email");
    assert_eq!(
        code_and_message(err),
        (
            "InvalidParameterException".into(),
            "No email provided but desired delivery medium was Email".into()
        )
    );

    invite(&c, "ian", &[EMAIL, DeliveryMediumType::Sms])
        .await
        .expect("both");
    invite(&c, "ian", &[]).await.expect("SMS by default");

    // Creating users is not implemented, and says so rather than pretending.
    let err = c
        .admin_create_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("newcomer")
        .message_action(MessageActionType::Suppress)
        .send()
        .await
        .expect_err("no creation");
    assert_eq!(
        code_and_message(err),
        (
            "InvalidParameterException".into(),
            CREATE_USER_NOT_IMPLEMENTED_MESSAGE.into()
        )
    );

    let sends = emu.sends();
    let seen: Vec<(SendAction, &str, &str, &str)> = sends
        .iter()
        .map(|s| {
            (
                s.action,
                s.username.as_str(),
                s.requested_as.as_str(),
                s.delivery_medium.as_str(),
            )
        })
        .collect();
    let sub = sub_for("ivy");
    assert_eq!(
        seen,
        [
            (SendAction::Invite, "ivy", "ivy", "EMAIL"),
            (SendAction::Invite, "ivy", sub.as_str(), "EMAIL"),
            (SendAction::Invite, "ian", "ian", "EMAIL,SMS"),
            (SendAction::Invite, "ian", "ian", "SMS"),
        ]
    );
    let stats = emu.stats();
    assert_eq!(
        (
            stats.invitations_total,
            stats.distinct_users_invited,
            stats.users_invited_more_than_once,
            stats.emails_sent,
            stats.sends_total
        ),
        (4, 2, 2, 3, 0)
    );
    assert_eq!(
        stats.requests_by_operation.get("AdminCreateUser"),
        Some(&10)
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_denied_admin_calls_are_refused_as_aws_does() {
    let emu = start(builder().deny(IamAction::AdminCreateUser)).await;
    let http = reqwest::Client::new();
    let raw = |target: &str, body: &'static str| {
        http.post(emu.endpoint())
            .header(
                "X-Amz-Target",
                format!("AWSCognitoIdentityProviderService.{target}"),
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
            .send()
    };
    let resp = raw(
        "AdminCreateUser",
        r#"{"UserPoolId":"us-east-1_Emulator","Username":"ivy","MessageAction":"RESEND","DesiredDeliveryMediums":["EMAIL"]}"#,
    )
    .await
    .expect("answered");
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.headers()
            .get("x-amzn-ErrorType")
            .and_then(|v| v.to_str().ok()),
        Some("MissingAuthenticationTokenException")
    );
    let body: serde_json::Value =
        serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(body["message"], MISSING_AUTHENTICATION_TOKEN_MESSAGE);
    // The other admin operations answer unsigned requests as they always did.
    let resp = raw(
        "AdminGetUser",
        r#"{"UserPoolId":"us-east-1_Emulator","Username":"ivy"}"#,
    )
    .await
    .expect("answered");
    assert_eq!(resp.status().as_u16(), 200);

    // Signed, but IAM denies it.
    let c = sdk(&emu);
    let err = invite(&c, "ivy", &[EMAIL]).await.expect_err("denied");
    if let SdkError::ServiceError(e) = &err {
        assert_eq!(e.raw().status().as_u16(), 400);
    }
    assert_eq!(
        code_and_message(err),
        (
            "AccessDeniedException".into(),
            access_denied_message(IamAction::AdminCreateUser, DEFAULT_USER_POOL_ID)
        )
    );
    assert!(emu.sends().is_empty(), "refused before anything was sent");

    emu.allow(IamAction::AdminCreateUser);
    emu.deny(IamAction::AdminGetUser);
    invite(&c, "ivy", &[EMAIL]).await.expect("allowed again");
    assert_eq!(
        get_user(&c, "ivy").await,
        Err("AccessDeniedException".into())
    );
    let stats = emu.stats();
    assert_eq!(stats.errors_by_type.get("AccessDeniedException"), Some(&2));
    assert_eq!(
        stats
            .errors_by_type
            .get("MissingAuthenticationTokenException"),
        Some(&1)
    );
    assert_eq!(stats.invitations_total, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_creation_quota_never_touches_the_resend_quota() {
    let emu = start(builder().user_creation_quota_rps(Some(0))).await;
    let c = sdk(&emu);

    let err = invite(&c, "ivy", &[EMAIL]).await.expect_err("throttled");
    assert!(
        matches!(&err, SdkError::ServiceError(e)
            if matches!(e.err(), AdminCreateUserError::TooManyRequestsException(_))),
        "{err:?}"
    );
    assert_eq!(code_and_message(err).1, "Rate exceeded");
    resend(&c, "plain", "alice")
        .await
        .expect("the resend's budget is untouched");

    // And the other way round, changed from outside as a benchmark would.
    let http = reqwest::Client::new();
    let admin = |query: &str| {
        http.post(format!("{}/_emulator/quota?{query}", emu.endpoint()))
            .send()
    };
    let ok = admin("rps=off&category=user_creation")
        .await
        .expect("answered");
    assert_eq!(ok.status().as_u16(), 200);
    assert_eq!(
        admin("rps=1&category=nope")
            .await
            .expect("answered")
            .status()
            .as_u16(),
        400
    );
    emu.set_quota_rps(Some(0));
    let err = resend(&c, "plain", "alice")
        .await
        .expect_err("resend throttled");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_too_many_requests_exception()));
    invite(&c, "ivy", &[EMAIL])
        .await
        .expect("the UserCreation budget is untouched");

    let counted = |seconds: Vec<SecondCount>| {
        seconds
            .iter()
            .fold((0, 0), |(a, t), s| (a + s.accepted, t + s.throttled))
    };
    assert_eq!(counted(emu.rates_of(QuotaCategory::UserCreation)), (1, 1));
    assert_eq!(counted(emu.rates()), (1, 1));
    assert_eq!(emu.rates_of(QuotaCategory::Resend), emu.rates());
    let rates: serde_json::Value = serde_json::from_str(
        &http
            .get(format!(
                "{}/_emulator/rates?category=user_creation",
                emu.endpoint()
            ))
            .send()
            .await
            .expect("answered")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(rates["category"], "user_creation");
    assert_eq!(rates["quota_rps"], serde_json::Value::Null);
    let stats = emu.stats();
    assert_eq!(
        (
            stats.user_creation_accepted,
            stats.user_creation_throttled,
            stats.accepted,
            stats.throttled
        ),
        (1, 1, 1, 1)
    );
    assert_eq!((stats.invitations_total, stats.sends_total), (1, 1));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_spend_the_email_quota_and_meet_triggers_and_faults() {
    let emu = start(
        builder()
            .email_quota(Some(1))
            .custom_message_trigger(Some(
                "arn:aws:lambda:us-east-1:123456789012:function:custom-message".into(),
            ))
            .custom_message_fails_when("template", "missing"),
    )
    .await;
    let c = sdk(&emu);
    invite(&c, "ivy", &[EMAIL]).await.expect("the one email");
    let err = resend(&c, "plain", "alice").await.expect_err("email quota");
    assert_eq!(code_and_message(err).1, EMAIL_QUOTA_MESSAGE);
    // AdminCreateUser's model lists no LimitExceededException: the SDK gives it as an
    // unmodeled service error, its code and message intact.
    let err = invite(&c, "ian", &[EMAIL]).await.expect_err("email quota");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().meta().code().is_some()));
    assert_eq!(
        code_and_message(err),
        ("LimitExceededException".into(), EMAIL_QUOTA_MESSAGE.into())
    );
    invite(&c, "ian", &[DeliveryMediumType::Sms])
        .await
        .expect("SMS is no email");

    let err = c
        .admin_create_user()
        .user_pool_id(DEFAULT_USER_POOL_ID)
        .username("ian")
        .message_action(MessageActionType::Resend)
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
    assert_eq!(emu.invitations_sent_to("ian"), Some(1));

    // After acting: the invitation is sent and recorded, the answer lost.
    emu.set_faults(Faults {
        error_after_rate: 1.0,
        ..Faults::default()
    });
    let err = invite(&c, "ian", &[]).await.expect_err("500 after acting");
    assert!(matches!(&err, SdkError::ServiceError(e) if e.err().is_internal_error_exception()));
    assert_eq!(emu.invitations_sent_to("ian"), Some(2));
    let stats = emu.stats();
    assert_eq!((stats.emails_sent, stats.invitations_total), (1, 3));
    emu.shutdown().await;
}
