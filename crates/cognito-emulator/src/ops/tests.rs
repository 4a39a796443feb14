//! Unit tests of the operations: each runs `dispatch` on a request body against a small pool.

use super::*;
use crate::model::{Client, ClientSpec, Pool, UserSpec};
use crate::quota::RateQuota;
use crate::state::{Counters, FaultKnobs, Ledger};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

fn shared(users: Vec<UserSpec>, clients: Vec<ClientSpec>) -> Shared {
    shared_with(PoolSettings::default(), users, clients)
}

fn shared_with(settings: PoolSettings, users: Vec<UserSpec>, clients: Vec<ClientSpec>) -> Shared {
    let pool = Pool::new(users, settings).expect("valid pool");
    let n = pool.users.len();
    Shared {
        pool_id: "us-east-1_Test".into(),
        created: 1_700_000_000.0,
        pool,
        clients: clients
            .into_iter()
            .map(|c| (c.client_id.clone(), Client::new(c)))
            .collect::<HashMap<_, _>>(),
        faults: FaultKnobs::default(),
        counters: Counters::default(),
        quota: RateQuota::new(None, None, std::time::Instant::now()),
        user_creation_quota: RateQuota::new(None, None, std::time::Instant::now()),
        denied: crate::iam::Denied::default(),
        ledger: Mutex::new(Ledger::new(n, None, None, true)),
        delay: crate::delay::PreciseDelay::start(),
        // No accept loop here: nothing reads it, and operations never go down.
        down: tokio::sync::mpsc::unbounded_channel().0,
    }
}

fn call(s: &Shared, op: Operation, body: Value) -> Result<Value, ApiError> {
    let out = dispatch(s, op, body.to_string().as_bytes(), "req-1")?;
    Ok(serde_json::from_slice(&out).expect("responses are JSON"))
}

fn pool_of(n: usize) -> Shared {
    let users = (0..n)
        .map(|i| UserSpec::new(format!("u{i:03}"), UserStatus::Unconfirmed))
        .collect();
    shared(users, vec![ClientSpec::new("c")])
}

fn list(s: &Shared, extra: Value) -> Result<Value, ApiError> {
    let mut body = json!({"UserPoolId": "us-east-1_Test"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    call(s, Operation::ListUsers, body)
}

fn names(page: &Value) -> Vec<String> {
    page["Users"]
        .as_array()
        .expect("Users is a list")
        .iter()
        .map(|u| u["Username"].as_str().expect("Username").to_owned())
        .collect()
}

#[test]
fn pagination_walks_every_user_once_in_order() {
    let s = pool_of(25);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let extra = match &token {
            Some(t) => json!({"Limit": 10, "PaginationToken": t}),
            None => json!({"Limit": 10}),
        };
        let page = list(&s, extra).expect("page");
        pages += 1;
        seen.extend(names(&page));
        match page["PaginationToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("u{i:03}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn exact_last_page_has_no_token_and_default_limit_is_60() {
    let s = pool_of(20);
    let page = list(&s, json!({"Limit": 20})).expect("page");
    assert_eq!(names(&page).len(), 20);
    assert!(page.get("PaginationToken").is_none());
    let s = pool_of(61);
    let page = list(&s, json!({})).expect("page");
    assert_eq!(names(&page).len(), 60);
    assert!(page["PaginationToken"].is_string());
}

#[test]
fn pagination_follows_the_filter() {
    let users = (0..30)
        .map(|i| {
            let status = if i % 3 == 0 {
                UserStatus::Confirmed
            } else {
                UserStatus::Unconfirmed
            };
            UserSpec::new(format!("u{i:03}"), status)
        })
        .collect();
    let s = shared(users, vec![]);
    let filter = r#"cognito:user_status = "UNCONFIRMED""#;
    let first = list(&s, json!({"Limit": 15, "Filter": filter})).expect("page");
    let t = first["PaginationToken"].as_str().expect("more pages");
    let second = list(
        &s,
        json!({"Limit": 15, "Filter": filter, "PaginationToken": t}),
    )
    .expect("page");
    assert_eq!(names(&first).len() + names(&second).len(), 20);
    assert!(second.get("PaginationToken").is_none());
}

#[test]
fn bad_tokens_limits_and_filters_are_invalid_parameters() {
    let s = pool_of(3);
    for extra in [
        json!({"PaginationToken": "not-a-token"}),
        json!({"PaginationToken": encode_token("u000").replace('Z', "Y") + "!!"}),
        json!({"PaginationToken": ""}),
        json!({"Limit": 61}),
        json!({"Limit": -1}),
        json!({"Filter": "username = alice"}),
    ] {
        let err = list(&s, extra.clone()).expect_err("must fail");
        assert_eq!(err.code, ErrorCode::InvalidParameter, "{extra}");
    }
    let err = list(&s, json!({"Limit": 100})).expect_err("over 60");
    assert_eq!(
        err.message,
        "1 validation error detected: Value '100' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 60"
    );
    let err = list(&s, json!({"Filter": "email = "})).expect_err("bad filter");
    assert_eq!(err.message, "Error while parsing filter.");
    assert_eq!(decode_token(&encode_token("u001")).as_deref(), Some("u001"));
}

#[test]
fn attributes_to_get_restricts_attributes() {
    let s = pool_of(1);
    let page = list(&s, json!({"AttributesToGet": ["email"]})).expect("page");
    assert_eq!(
        page["Users"][0]["Attributes"],
        json!([{"Name": "email", "Value": "u000@example.com"}])
    );
}

#[test]
fn unknown_pool_and_user() {
    let s = pool_of(1);
    let err = call(
        &s,
        Operation::AdminGetUser,
        json!({"UserPoolId": "us-east-1_Other", "Username": "u000"}),
    )
    .expect_err("unknown pool");
    assert_eq!(err.code, ErrorCode::ResourceNotFound);
    assert_eq!(err.message, "User pool us-east-1_Other does not exist.");
    let err = call(
        &s,
        Operation::AdminGetUser,
        json!({"UserPoolId": "us-east-1_Test", "Username": "nobody"}),
    )
    .expect_err("unknown user");
    assert_eq!(
        (err.code, err.message.as_ref()),
        (ErrorCode::UserNotFound, "User does not exist.")
    );
    let ok = call(
        &s,
        Operation::AdminGetUser,
        json!({"UserPoolId": "us-east-1_Test", "Username": "u000"}),
    )
    .expect("found");
    assert_eq!(ok["UserStatus"], "UNCONFIRMED");
    assert_eq!(ok["Enabled"], true);
}

#[test]
fn resend_validation_messages_match_aws() {
    let s = pool_of(1);
    let long = "x".repeat(129);
    let err = call(
        &s,
        Operation::ResendConfirmationCode,
        json!({"ClientId": "c", "Username": long}),
    )
    .expect_err("too long");
    assert_eq!(
        err.message,
        "1 validation error detected: Value at 'username' failed to satisfy constraint: Member must have length less than or equal to 128"
    );
    let err = call(&s, Operation::ResendConfirmationCode, json!({})).expect_err("empty");
    assert_eq!(
        err.message,
        "2 validation errors detected: Value null at 'clientId' failed to satisfy constraint: Member must not be null; Value null at 'username' failed to satisfy constraint: Member must not be null"
    );
    let err =
        dispatch(&s, Operation::ResendConfirmationCode, b"{not json", "r").expect_err("bad json");
    assert_eq!(err.code, ErrorCode::Serialization);
    let err = call(
        &s,
        Operation::ResendConfirmationCode,
        json!({"ClientId": "c", "Username": 5}),
    )
    .expect_err("wrong type");
    assert_eq!(err.code, ErrorCode::Serialization);
}

#[test]
fn resend_records_metadata_and_answers_precomputed_body() {
    let s = pool_of(1);
    let ok = call(
        &s,
        Operation::ResendConfirmationCode,
        json!({
            "ClientId": "c", "Username": "u000",
            "ClientMetadata": {"campaign": "spring"},
            "AnalyticsMetadata": {"AnalyticsEndpointId": "ep-1"},
            "UserContextData": {"IpAddress": "192.0.2.1", "EncodedData": "blob"}
        }),
    )
    .expect("sent");
    assert_eq!(
        ok,
        json!({"CodeDeliveryDetails": {"Destination": "u***@e***", "DeliveryMedium": "EMAIL", "AttributeName": "email"}})
    );
    let sends = s.sends();
    assert_eq!(sends.len(), 1);
    let r = &sends[0];
    assert_eq!((r.username.as_str(), r.client_id.as_str()), ("u000", "c"));
    assert_eq!(
        r.client_metadata.get("campaign").map(String::as_str),
        Some("spring")
    );
    assert_eq!(r.analytics_endpoint_id.as_deref(), Some("ep-1"));
    assert_eq!(r.ip_address.as_deref(), Some("192.0.2.1"));
    assert_eq!(r.encoded_data.as_deref(), Some("blob"));
    assert!(!r.secret_hash_given);
}

#[test]
fn describe_user_pool_omits_what_is_unset() {
    let s = pool_of(2);
    let out = call(
        &s,
        Operation::DescribeUserPool,
        json!({"UserPoolId": "us-east-1_Test"}),
    )
    .expect("described");
    let pool = &out["UserPool"];
    for absent in [
        "UsernameConfiguration",
        "AliasAttributes",
        "UsernameAttributes",
    ] {
        assert!(pool.get(absent).is_none(), "{absent} in {pool}");
    }
    assert_eq!(pool["LambdaConfig"], json!({}));
    assert_eq!(pool["CreationDate"], json!(1_700_000_000.0));
    assert_eq!(pool["EstimatedNumberOfUsers"], 2);
    assert_eq!(
        pool["AutoVerifiedAttributes"],
        json!(["email", "phone_number"])
    );
    assert_eq!(
        pool["EmailConfiguration"]["EmailSendingAccount"],
        "DEVELOPER"
    );

    let settings = PoolSettings {
        case_sensitive: Some(true),
        auto_verified: vec![],
        ..PoolSettings::default()
    };
    let s = shared_with(settings, vec![], vec![ClientSpec::new("c")]);
    let out = call(
        &s,
        Operation::DescribeUserPool,
        json!({"UserPoolId": "us-east-1_Test"}),
    )
    .expect("described");
    assert_eq!(
        out["UserPool"]["UsernameConfiguration"],
        json!({"CaseSensitive": true})
    );
    assert!(out["UserPool"].get("AutoVerifiedAttributes").is_none());
    let err = call(
        &s,
        Operation::ResendConfirmationCode,
        json!({"ClientId": "c", "Username": "anyone"}),
    )
    .expect_err("nothing auto-verified");
    assert_eq!(
        err.message,
        "Cannot resend codes. Auto verification not turned on."
    );
    let err = call(
        &s,
        Operation::DescribeUserPoolClient,
        json!({"UserPoolId": "us-east-1_Test"}),
    )
    .expect_err("no client id");
    assert_eq!(
        err.message,
        "1 validation error detected: Value null at 'clientId' failed to satisfy constraint: Member must not be null"
    );
}

#[test]
fn admin_create_user_validation_messages_match_aws() {
    let s = shared(
        vec![UserSpec::new("ivy", UserStatus::ForceChangePassword)],
        vec![],
    );
    let create = |body: Value| call(&s, Operation::AdminCreateUser, body);
    let err = create(json!({})).expect_err("empty");
    assert_eq!(
        err.message,
        "2 validation errors detected: Value null at 'userPoolId' failed to satisfy constraint: Member must not be null; Value null at 'username' failed to satisfy constraint: Member must not be null"
    );
    let err = create(json!({
        "UserPoolId": "us-east-1_Test", "Username": "ivy", "MessageAction": "RESENT",
        "DesiredDeliveryMediums": ["FAX"], "UserAttributes": [{"Value": "x"}]
    }))
    .expect_err("three violations");
    assert_eq!(err.code, ErrorCode::InvalidParameter);
    assert_eq!(
        err.message,
        "3 validation errors detected: Value null at 'userAttributes.1.member.name' failed to satisfy constraint: Member must not be null; Value 'RESENT' at 'messageAction' failed to satisfy constraint: Member must satisfy enum value set: [RESEND, SUPPRESS]; Value '[FAX]' at 'desiredDeliveryMediums' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [SMS, EMAIL]]"
    );
    let err = create(
        json!({"UserPoolId": "us-east-1_Other", "Username": "ivy", "MessageAction": "RESEND"}),
    )
    .expect_err("unknown pool");
    assert_eq!(err.code, ErrorCode::ResourceNotFound);
    let err = create(json!({"UserPoolId": "us-east-1_Test", "Username": "ivy"}))
        .expect_err("creating is not implemented");
    assert_eq!(
        (err.code, err.message.as_ref()),
        (ErrorCode::InvalidParameter, CREATE_NOT_IMPLEMENTED_MESSAGE)
    );
    let ok = create(json!({
        "UserPoolId": "us-east-1_Test", "Username": "ivy", "MessageAction": "RESEND",
        "DesiredDeliveryMediums": ["EMAIL"], "TemporaryPassword": "Temp-1234",
        "ClientMetadata": {"campaign": "spring"}
    }))
    .expect("invited again");
    assert_eq!(ok["User"]["Username"], "ivy");
    assert_eq!(ok["User"]["UserStatus"], "FORCE_CHANGE_PASSWORD");
    assert_eq!(ok["User"]["Enabled"], true);
    assert!(ok["User"]["UserCreateDate"].is_f64());
    let sends = s.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].action, SendAction::Invite);
    assert_eq!(sends[0].client_id, "");
    assert_eq!(
        sends[0].client_metadata.get("campaign").map(String::as_str),
        Some("spring")
    );
}
