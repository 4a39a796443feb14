//! The SQS message body: a JSON object with the CSV's fields (docs/contract.md). Only `username` is
//! required; unknown fields are ignored; anything else is a problem named precisely, so the
//! `invalid` outcome says what to fix.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::job::{ResendRequest, check_client_id, check_username};

/// A body larger than this is not a job (a job is a username and a few short fields).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a body is not a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyProblem {
    /// What is wrong.
    pub reason: String,
    /// The username, when one could be read.
    pub username: Option<String>,
}

fn problem(reason: impl Into<String>) -> BodyProblem {
    BodyProblem {
        reason: reason.into(),
        username: None,
    }
}

/// Decodes a message body into a request.
pub(crate) fn decode(text: &str) -> Result<ResendRequest, BodyProblem> {
    if text.len() > MAX_BODY_BYTES {
        return Err(problem(format!(
            "body is {} bytes; a job is at most {MAX_BODY_BYTES}",
            text.len()
        )));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| problem(format!("body is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(problem(format!(
            "body must be a JSON object with a \"username\", not {}",
            kind(&value)
        )));
    };
    let username = match obj.get("username") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(problem(format!(
                "field \"username\" must be a string, not {}",
                kind(other)
            )));
        }
        None => return Err(problem("field \"username\" is missing")),
    };
    let with_user = |reason: &dyn std::fmt::Display| BodyProblem {
        reason: reason.to_string(),
        username: Some(username.clone()),
    };
    check_username(&username).map_err(|e| with_user(&e))?;
    let text_field = |name: &str| -> Result<Option<String>, BodyProblem> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(with_user(&format!(
                "field \"{name}\" must be a string, not {}",
                kind(other)
            ))),
        }
    };
    let client_id = text_field("client_id")?;
    if let Some(id) = &client_id {
        check_client_id(id).map_err(|e| with_user(&e))?;
    }
    let (action, status_action) = crate::job::action_of(
        text_field("action")?.as_deref(),
        text_field("status")?.as_deref(),
    )
    .map_err(|e| with_user(&e))?;
    Ok(ResendRequest {
        client_id,
        action,
        status_action,
        analytics_endpoint_id: text_field("analytics_endpoint_id")?,
        encoded_data: text_field("encoded_data")?,
        ip_address: text_field("ip_address")?,
        client_metadata: metadata(&obj).map_err(|e| with_user(&e))?,
        username: username.clone(),
    })
}

fn metadata(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, WrongType> {
    match obj.get("client_metadata") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(WrongType {
                    field: format!("\"client_metadata\".\"{k}\""),
                    want: "a string",
                    found: kind(other),
                }),
            })
            .collect(),
        Some(other) => Err(WrongType {
            field: "\"client_metadata\"".into(),
            want: "an object of strings",
            found: kind(other),
        }),
    }
}

/// A field of the wrong JSON type.
#[derive(Debug, thiserror::Error)]
#[error("field {field} must be {want}, not {found}")]
struct WrongType {
    /// The field, quoted as JSON (a path for a nested one).
    field: String,
    /// The type it must have.
    want: &'static str,
    /// The type it has.
    found: &'static str,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The body `enqueue` writes for a request: the inverse of [`decode`].
pub(crate) fn encode(req: &ResendRequest) -> String {
    let mut obj = Map::new();
    obj.insert("username".into(), Value::String(req.username.clone()));
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            obj.insert(k.into(), Value::String(v.clone()));
        }
    };
    put("client_id", &req.client_id);
    put("action", &req.action.map(|a| a.as_str().to_owned()));
    put(
        "status",
        &req.status_action.map(|a| {
            match a {
                crate::job::Action::Confirm => "UNCONFIRMED",
                crate::job::Action::Invite => "FORCE_CHANGE_PASSWORD",
            }
            .to_owned()
        }),
    );
    put("analytics_endpoint_id", &req.analytics_endpoint_id);
    put("encoded_data", &req.encoded_data);
    put("ip_address", &req.ip_address);
    if !req.client_metadata.is_empty() {
        obj.insert(
            "client_metadata".into(),
            Value::Object(
                req.client_metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            ),
        );
    }
    Value::Object(obj).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_body_round_trips() {
        let req = ResendRequest {
            username: "josé".into(),
            action: Some(crate::job::Action::Invite),
            status_action: Some(crate::job::Action::Invite),
            client_id: Some("c1".into()),
            client_metadata: BTreeMap::from([("k".into(), "v".into())]),
            analytics_endpoint_id: Some("ep".into()),
            encoded_data: Some("ENC".into()),
            ip_address: Some("192.0.2.1".into()),
        };
        assert_eq!(decode(&encode(&req)), Ok(req));
    }

    #[test]
    fn only_username_is_required_and_unknown_fields_are_ignored() {
        let req = decode(r#"{"username":"a","email":"a@x","extra":[1,2]}"#).unwrap();
        assert_eq!(req.username, "a");
        assert_eq!(req.client_id, None);
    }

    #[test]
    fn poison_bodies_are_named() {
        let cases = [
            ("not json", "not JSON"),
            ("[1,2]", "not an array"),
            ("{}", "\"username\" is missing"),
            (
                r#"{"username":5}"#,
                "\"username\" must be a string, not a number",
            ),
            (r#"{"username":""}"#, "empty"),
            (
                r#"{"username":"a","client_id":7}"#,
                "\"client_id\" must be a string",
            ),
            (
                r#"{"username":"a","client_id":"c-1"}"#,
                "client_id contains '-'",
            ),
            (r#"{"username":"a\u200bb"}"#, "U+200B"),
            (
                r#"{"username":"a","client_metadata":[]}"#,
                "\"client_metadata\" must be an object",
            ),
            (
                r#"{"username":"a","client_metadata":{"k":1}}"#,
                "\"client_metadata\".\"k\"",
            ),
        ];
        for (body, expected) in cases {
            let err = decode(body).unwrap_err();
            assert!(err.reason.contains(expected), "{body}: {}", err.reason);
        }
        let long = format!(r#"{{"username":"{}"}}"#, "x".repeat(129));
        assert!(decode(&long).unwrap_err().reason.contains("129"));
        // A client id Cognito would refuse never reaches the ledger key (a DynamoDB key has
        // its own size limit, and a long one must not stop the run).
        let long_client = format!(r#"{{"username":"a","client_id":"{}"}}"#, "c".repeat(129));
        assert!(decode(&long_client).unwrap_err().reason.contains("129"));
        let huge = format!(r#"{{"username":"a","pad":"{}"}}"#, "x".repeat(200 * 1024));
        assert!(decode(&huge).unwrap_err().reason.contains("bytes"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn valid_username() -> impl Strategy<Value = String> {
            // Cognito's pattern: letters, marks, symbols, numbers, punctuation; no spaces.
            "[\\p{L}\\p{N}\\p{P}\\p{S}]{1,128}"
        }

        fn field() -> impl Strategy<Value = Option<String>> {
            proptest::option::of("\\PC{1,40}")
        }

        fn client_id() -> impl Strategy<Value = Option<String>> {
            proptest::option::of("[A-Za-z0-9_+]{1,128}")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn every_valid_request_round_trips(
                username in valid_username(),
                client_id in client_id(),
                analytics_endpoint_id in field(),
                encoded_data in field(),
                ip_address in field(),
                client_metadata in proptest::collection::btree_map("\\PC{1,20}", "\\PC{0,40}", 0..5),
                action in proptest::option::of(proptest::sample::select(crate::job::Action::ALL.to_vec())),
            ) {
                let req = ResendRequest {
                    username,
                    action,
                    status_action: None,
                    client_id,
                    client_metadata,
                    analytics_endpoint_id,
                    encoded_data,
                    ip_address,
                };
                prop_assert_eq!(decode(&encode(&req)), Ok(req));
            }

            #[test]
            fn any_text_decodes_or_names_its_problem(text in "\\PC{0,300}") {
                match decode(&text) {
                    Ok(req) => prop_assert!(check_username(&req.username).is_ok()),
                    Err(p) => prop_assert!(!p.reason.is_empty()),
                }
            }

            #[test]
            fn any_json_value_decodes_or_names_its_problem(
                username in proptest::option::of(prop_oneof![
                    "\\PC{0,200}".prop_map(Value::String),
                    any::<i64>().prop_map(Value::from),
                    Just(Value::Null),
                    Just(Value::Array(vec![])),
                ]),
                client_id in proptest::option::of(prop_oneof![
                    "\\PC{0,20}".prop_map(Value::String),
                    any::<bool>().prop_map(Value::Bool),
                ]),
            ) {
                let mut obj = Map::new();
                if let Some(u) = username.clone() { obj.insert("username".into(), u); }
                if let Some(c) = client_id { obj.insert("client_id".into(), c); }
                let text = Value::Object(obj).to_string();
                match decode(&text) {
                    Ok(req) => prop_assert_eq!(Some(Value::String(req.username)), username),
                    Err(p) => prop_assert!(!p.reason.is_empty()),
                }
            }
        }
    }
}
