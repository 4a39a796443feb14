//! AdminCreateUser, as far as the emulator implements it: `MessageAction` `RESEND`, which sends
//! a FORCE_CHANGE_PASSWORD user their invitation (a new temporary password) again. The pool is
//! fixed at start, so creating users (no `MessageAction`, or `SUPPRESS`) is not implemented and
//! says so; seed such users with `EmulatorBuilder::user` instead.
//!
//! Checked against the API reference (`AdminCreateUser`: members, `DesiredDeliveryMediums`
//! "The default value is SMS", `MessageAction` "Set to RESEND to resend the invitation message to
//! a user that already exists"); where AWS's wording is not documented the choice is named in
//! docs/emulator.md.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, EMAIL_QUOTA_MESSAGE, Rule, USER_POOL_ID, USERNAME, Violations, attributes,
    check_pool, to_json,
};
use crate::model::UserStatus;
use crate::state::{ErrorCode, SendAction, SendRecord, SendRefused, Shared, lock};

/// The message of the InvalidParameterException for a `MessageAction` other than `RESEND`.
pub(crate) const CREATE_NOT_IMPLEMENTED_MESSAGE: &str = "The emulator implements AdminCreateUser only with MessageAction RESEND (sending an invitation again); creating users is not implemented: seed them with EmulatorBuilder::user.";

/// `TemporaryPassword` (`PasswordType` in the model: sensitive, up to 256, no whitespace).
const TEMPORARY_PASSWORD: Rule = Rule {
    member: "temporaryPassword",
    required: false,
    sensitive: true,
    min: 0,
    max: Some(256),
    pattern: Some((r"[\S]+", |s| !s.chars().any(char::is_whitespace))),
};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AdminCreateUserRequest {
    user_pool_id: Option<String>,
    username: Option<String>,
    user_attributes: Option<Vec<AttributeType>>,
    validation_data: Option<Vec<AttributeType>>,
    temporary_password: Option<String>,
    // Accepted and ignored: it matters only when attributes are set, which RESEND does not do.
    #[allow(dead_code)]
    force_alias_creation: Option<bool>,
    message_action: Option<String>,
    desired_delivery_mediums: Option<Vec<String>>,
    client_metadata: Option<BTreeMap<String, String>>,
}

/// `AttributeType`: `Name` (required, 1 to 32) and `Value` (up to 2048, sensitive).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeType {
    name: Option<String>,
    value: Option<String>,
}

/// Validates a list of `AttributeType`s as AWS does, member by member (`userAttributes.1.member.
/// name`, counted from 1).
fn check_attributes(v: &mut Violations, list: &'static str, items: Option<&[AttributeType]>) {
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let at = |field: &str| format!("{list}.{}.member.{field}", i + 1);
        match item.name.as_deref() {
            None => v.push_raw(format!(
                "Value null at '{}' failed to satisfy constraint: Member must not be null",
                at("name")
            )),
            Some(n) if n.is_empty() || n.chars().count() > 32 => v.push_raw(format!(
                "Value '{n}' at '{}' failed to satisfy constraint: Member must have length {}",
                at("name"),
                if n.is_empty() {
                    "greater than or equal to 1"
                } else {
                    "less than or equal to 32"
                }
            )),
            Some(_) => {}
        }
        if item
            .value
            .as_deref()
            .is_some_and(|v| v.chars().count() > 2048)
        {
            v.push_raw(format!(
                "Value at '{}' failed to satisfy constraint: Member must have length less than or equal to 2048",
                at("value")
            ));
        }
    }
}

/// The mediums an invitation goes by, in the order Cognito's model lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mediums {
    sms: bool,
    email: bool,
}

impl Mediums {
    /// `DesiredDeliveryMediums`, defaulting to SMS as documented; `Err` with the offending
    /// list for a value that is not `SMS` or `EMAIL`.
    fn parse(given: Option<&[String]>) -> Result<Self, String> {
        let given = given.unwrap_or_default();
        if given.is_empty() {
            return Ok(Self {
                sms: true,
                email: false,
            });
        }
        if given.iter().any(|m| m != "SMS" && m != "EMAIL") {
            return Err(format!(
                "Value '[{}]' at 'desiredDeliveryMediums' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [SMS, EMAIL]]",
                given.join(", ")
            ));
        }
        Ok(Self {
            sms: given.iter().any(|m| m == "SMS"),
            email: given.iter().any(|m| m == "EMAIL"),
        })
    }

    fn wire(self) -> &'static str {
        match (self.email, self.sms) {
            (true, true) => "EMAIL,SMS",
            (true, false) => "EMAIL",
            _ => "SMS",
        }
    }
}

pub(super) fn admin_create_user(
    shared: &Shared,
    req: AdminCreateUserRequest,
) -> Result<Bytes, ApiError> {
    let mut v = Violations::default();
    v.check(&USER_POOL_ID, req.user_pool_id.as_deref());
    v.check(&USERNAME, req.username.as_deref());
    check_attributes(&mut v, "userAttributes", req.user_attributes.as_deref());
    check_attributes(&mut v, "validationData", req.validation_data.as_deref());
    v.check(&TEMPORARY_PASSWORD, req.temporary_password.as_deref());
    if let Some(action) = req
        .message_action
        .as_deref()
        .filter(|a| *a != "RESEND" && *a != "SUPPRESS")
    {
        v.push_raw(format!(
            "Value '{action}' at 'messageAction' failed to satisfy constraint: Member must satisfy enum value set: [RESEND, SUPPRESS]"
        ));
    }
    let mediums = Mediums::parse(req.desired_delivery_mediums.as_deref());
    if let Err(violation) = &mediums {
        v.push_raw(violation.clone());
    }
    v.finish()?;
    check_pool(shared, req.user_pool_id.as_deref())?;
    let (Some(username), Ok(mediums)) = (req.username.as_deref(), mediums) else {
        // Validation guarantees both.
        return Err(ApiError::new(ErrorCode::InvalidParameter, "missing member"));
    };
    if req.message_action.as_deref() != Some("RESEND") {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            CREATE_NOT_IMPLEMENTED_MESSAGE,
        ));
    }

    // Resolved as AdminGetUser resolves a Username; the invitation is the canonical user's.
    let position = shared
        .pool
        .resolve(username)
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "User does not exist."))?;
    let user = &shared.pool.users[position];
    if user.status != UserStatus::ForceChangePassword {
        return Err(ApiError::new(
            ErrorCode::UnsupportedUserState,
            format!(
                "Resend not possible. {} status is not FORCE_CHANGE_PASSWORD.",
                user.username
            ),
        ));
    }
    // Every requested medium needs its attribute (Cognito: "No email provided but desired
    // delivery medium was Email", even with SMS requested too).
    if mediums.email && user.attribute("email").is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "No email provided but desired delivery medium was Email",
        ));
    }
    if mediums.sms && user.attribute("phone_number").is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "No phone_number provided but desired delivery medium was Sms",
        ));
    }
    // Cognito calls the CustomMessage trigger (source CustomMessage_AdminCreateUser) as it makes
    // the invitation; a function that throws ends the request, and nothing is sent.
    super::custom_message(shared, req.client_metadata.as_ref())?;

    let refused = lock(&shared.ledger).try_invite(position, mediums.email, || SendRecord {
        action: SendAction::Invite,
        username: user.username.clone(),
        requested_as: username.to_owned(),
        delivery_medium: mediums.wire().to_owned(),
        client_id: String::new(),
        client_metadata: req.client_metadata.clone().unwrap_or_default(),
        analytics_endpoint_id: None,
        encoded_data: None,
        ip_address: None,
        secret_hash_given: false,
        at: SystemTime::now(),
    });
    match refused {
        Ok(()) => {}
        Err(SendRefused::EmailQuota) => {
            return Err(ApiError::new(ErrorCode::LimitExceeded, EMAIL_QUOTA_MESSAGE));
        }
        Err(SendRefused::AttemptLimit) => {
            // `try_invite` has no attempt limit; kept total for the match.
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                super::ATTEMPT_LIMIT_MESSAGE,
            ));
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        user: super::UserJson<'a>,
    }
    // RESEND resets the temporary password, so the user was modified now (users report
    // UserLastModifiedDate no longer equal to UserCreateDate after a RESEND).
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(user.created, |d| d.as_millis() as f64 / 1000.0);
    Ok(to_json(&Response {
        user: super::UserJson {
            username: &user.username,
            attributes: attributes(user, None),
            user_create_date: user.created,
            user_last_modified_date: now,
            enabled: true,
            user_status: user.status.as_str(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mediums_default_to_sms_and_refuse_unknown_values() {
        assert_eq!(
            Mediums::parse(None),
            Ok(Mediums {
                sms: true,
                email: false
            })
        );
        let both = Mediums::parse(Some(&["EMAIL".to_owned(), "SMS".to_owned()])).expect("valid");
        assert_eq!(both.wire(), "EMAIL,SMS");
        let err = Mediums::parse(Some(&["FAX".to_owned()])).expect_err("not a medium");
        assert!(err.contains("enum value set: [SMS, EMAIL]"), "{err}");
    }
}
