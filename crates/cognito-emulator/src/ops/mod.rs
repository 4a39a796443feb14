//! The Cognito operations the emulator implements, as pure functions of the shared state
//! and a request body: parse, validate (with AWS's validation messages), apply Cognito's rules,
//! and return a JSON body or a typed Cognito error.
//!
//! Nothing here knows about HTTP, faults or the rate quota: the server applies those first, so
//! a fault or a throttle can never leave a recorded send behind.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as TOKEN_BASE64;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

mod admin_create_user;

pub(crate) use admin_create_user::CREATE_NOT_IMPLEMENTED_MESSAGE;

use super::filter;
use super::model::{User, UserStatus, simulated_delivery};
use super::settings::PoolSettings;
use super::state::{ErrorCode, Operation, SendAction, SendRecord, SendRefused, Shared, lock};

/// A Cognito error answer: its code (`__type`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: Cow<'static, str>,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The `{"__type": ..., "message": ...}` body Cognito sends.
    pub(crate) fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "__type")]
            kind: &'a str,
            message: &'a str,
        }
        // Serializing two strings cannot fail.
        let body = serde_json::to_vec(&Body {
            kind: self.code.name(),
            message: &self.message,
        })
        .expect("strings serialize");
        Bytes::from(body)
    }
}

/// The message of `UnknownOperationException`: names what the emulator does implement, which is
/// what a developer calling anything else needs to know.
pub(crate) const UNKNOWN_OPERATION_MESSAGE: &str = "Unknown or unsupported operation: the emulator implements ResendConfirmationCode, AdminGetUser, ListUsers, DescribeUserPool, DescribeUserPoolClient and AdminCreateUser (MessageAction RESEND).";
pub(crate) const ATTEMPT_LIMIT_MESSAGE: &str =
    "Attempt limit exceeded, please try after some time.";
pub(crate) const EMAIL_QUOTA_MESSAGE: &str = "Exceeded daily email limit for the operation or the account. If a higher limit is required, please configure your user pool to use your own Amazon SES configuration for sending email.";

/// Runs `op` on `body`. `request_id` is only used in messages that quote it.
pub(crate) fn dispatch(
    shared: &Shared,
    op: Operation,
    body: &[u8],
    request_id: &str,
) -> Result<Bytes, ApiError> {
    match op {
        Operation::ResendConfirmationCode => resend_confirmation_code(shared, parse(body)?),
        Operation::AdminGetUser => admin_get_user(shared, parse(body)?),
        Operation::ListUsers => list_users(shared, parse(body)?, request_id),
        Operation::DescribeUserPool => describe_user_pool(shared, parse(body)?),
        Operation::DescribeUserPoolClient => describe_user_pool_client(shared, parse(body)?),
        Operation::AdminCreateUser => admin_create_user::admin_create_user(shared, parse(body)?),
        Operation::Unknown => Err(ApiError::new(
            ErrorCode::UnknownOperation,
            UNKNOWN_OPERATION_MESSAGE,
        )),
    }
}

/// Parses a JSON request body; an empty body is an empty request, as AWS treats it.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::Serialization, format!("Invalid JSON input: {e}")))
}

// ----------------------------------------------------------------------------------------------
// Input validation, in AWS's words ("1 validation error detected: Value at 'username' failed to
// satisfy constraint: Member must have length less than or equal to 128"). Sensitive members
// (usernames, client ids, hashes) are never quoted back.

/// A regular expression from the model, and the hand-written check that stands for it.
type Pattern = (&'static str, fn(&str) -> bool);

/// The constraints of one string member, from the botocore model.
struct Rule {
    member: &'static str,
    required: bool,
    sensitive: bool,
    min: usize,
    max: Option<usize>,
    pattern: Option<Pattern>,
}

const USERNAME: Rule = Rule {
    member: "username",
    required: true,
    sensitive: true,
    min: 1,
    max: Some(128),
    pattern: Some((r"[\p{L}\p{M}\p{S}\p{N}\p{P}]+", is_username)),
};
/// Cognito's own client ids match `[\w+]+`; the pattern is deliberately not enforced, so that
/// readable test ids such as `democlient` work. The worker never makes client ids up.
const CLIENT_ID: Rule = Rule {
    member: "clientId",
    required: true,
    sensitive: true,
    min: 1,
    max: Some(128),
    pattern: None,
};
const SECRET_HASH: Rule = Rule {
    member: "secretHash",
    required: false,
    sensitive: true,
    min: 1,
    max: Some(128),
    pattern: Some((r"[\w+=/]+", is_secret_hash)),
};
const USER_POOL_ID: Rule = Rule {
    member: "userPoolId",
    required: true,
    sensitive: false,
    min: 1,
    max: Some(55),
    pattern: Some((r"[\w-]+_[0-9a-zA-Z]+", is_user_pool_id)),
};
const PAGINATION_TOKEN: Rule = Rule {
    member: "paginationToken",
    required: false,
    sensitive: false,
    min: 1,
    max: None,
    pattern: Some((r"[\S]+", is_token)),
};
const FILTER: Rule = Rule {
    member: "filter",
    required: false,
    sensitive: false,
    min: 0,
    max: Some(256),
    pattern: None,
};

/// Letters, marks, symbols, numbers, punctuation: anything visible. Whitespace and control
/// characters are what the pattern excludes in practice.
fn is_username(s: &str) -> bool {
    s.chars().all(|c| !c.is_whitespace() && !c.is_control())
}
fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}
fn is_secret_hash(s: &str) -> bool {
    s.chars()
        .all(|c| is_word(c) || matches!(c, '+' | '=' | '/'))
}
fn is_user_pool_id(s: &str) -> bool {
    // `[\w-]+_[0-9a-zA-Z]+`: the suffix has no underscore, so split at the last one.
    s.rsplit_once('_').is_some_and(|(region, id)| {
        !region.is_empty()
            && region.chars().all(|c| is_word(c) || c == '-')
            && !id.is_empty()
            && id.chars().all(|c| c.is_ascii_alphanumeric())
    })
}
fn is_token(s: &str) -> bool {
    !s.chars().any(char::is_whitespace)
}

/// Collects constraint violations; allocates only when there is one.
#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn describe(rule: &Rule, value: Option<&str>) -> String {
        match (value, rule.sensitive) {
            (None, _) => format!("Value null at '{}'", rule.member),
            (Some(_), true) => format!("Value at '{}'", rule.member),
            (Some(v), false) => format!("Value '{v}' at '{}'", rule.member),
        }
    }

    fn check(&mut self, rule: &Rule, value: Option<&str>) {
        let Some(v) = value else {
            if rule.required {
                self.push(rule, None, "Member must not be null".into());
            }
            return;
        };
        // AWS counts UTF-16 code units (Java string length).
        let len = if v.is_ascii() {
            v.len()
        } else {
            v.encode_utf16().count()
        };
        if len < rule.min {
            let c = format!(
                "Member must have length greater than or equal to {}",
                rule.min
            );
            self.push(rule, value, c);
        }
        if let Some(max) = rule.max.filter(|max| len > *max) {
            let c = format!("Member must have length less than or equal to {max}");
            self.push(rule, value, c);
        }
        if let Some((pattern, _)) = rule.pattern.filter(|(_, ok)| !v.is_empty() && !ok(v)) {
            let c = format!("Member must satisfy regular expression pattern: {pattern}");
            self.push(rule, value, c);
        }
    }

    fn push(&mut self, rule: &Rule, value: Option<&str>, constraint: String) {
        self.0.push(format!(
            "{} failed to satisfy constraint: {constraint}",
            Self::describe(rule, value)
        ));
    }

    fn push_raw(&mut self, violation: String) {
        self.0.push(violation);
    }

    fn finish(self) -> Result<(), ApiError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(ApiError::new(
                ErrorCode::InvalidParameter,
                format!(
                    "{n} validation error{} detected: {}",
                    if n == 1 { "" } else { "s" },
                    self.0.join("; ")
                ),
            )),
        }
    }
}

// ----------------------------------------------------------------------------------------------
// ResendConfirmationCode

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResendRequest {
    client_id: Option<String>,
    secret_hash: Option<String>,
    username: Option<String>,
    client_metadata: Option<BTreeMap<String, String>>,
    analytics_metadata: Option<AnalyticsMetadata>,
    user_context_data: Option<UserContextData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AnalyticsMetadata {
    analytics_endpoint_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserContextData {
    ip_address: Option<String>,
    encoded_data: Option<String>,
}

fn resend_confirmation_code(shared: &Shared, req: ResendRequest) -> Result<Bytes, ApiError> {
    // Shape validation comes first, as in AWS's request pipeline (before any business rule).
    let mut v = Violations::default();
    v.check(&CLIENT_ID, req.client_id.as_deref());
    v.check(&SECRET_HASH, req.secret_hash.as_deref());
    v.check(&USERNAME, req.username.as_deref());
    v.finish()?;
    // Validation guarantees both are present.
    let (Some(client_id), Some(username)) = (req.client_id.as_deref(), req.username.as_deref())
    else {
        return Err(ApiError::new(ErrorCode::InvalidParameter, "missing member"));
    };

    let Some(client) = shared.clients.get(client_id) else {
        return Err(unknown_client(client_id));
    };
    if client.spec.secret.is_some() {
        let Some(hash) = req.secret_hash.as_deref() else {
            return Err(ApiError::new(
                ErrorCode::NotAuthorized,
                format!(
                    "Client {client_id} is configured with secret but SECRET_HASH was not received"
                ),
            ));
        };
        if !client.verify_secret_hash(username, hash) {
            return Err(ApiError::new(
                ErrorCode::NotAuthorized,
                format!("Unable to verify secret hash for client {client_id}"),
            ));
        }
    }
    if !client.spec.auto_verify || shared.pool.settings.auto_verified.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "Cannot resend codes. Auto verification not turned on.",
        ));
    }
    // The SecretHash above was checked against the Username as given (an alias, say), as
    // Cognito does; from here on the user is the canonical one it resolves to.
    let Some(position) = shared.pool.resolve(username) else {
        if client.spec.prevent_user_existence_errors {
            shared.counters.simulated_successes.fetch_add(1, Relaxed);
            return Ok(simulated_delivery(username).response_body());
        }
        return Err(ApiError::new(
            ErrorCode::UserNotFound,
            "Username/client id combination not found.",
        ));
    };
    let user = &shared.pool.users[position];
    // Only UNCONFIRMED users are waiting for a code; every other status has been through
    // confirmation (or an admin flow) already.
    if user.status != UserStatus::Unconfirmed {
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "User is already confirmed.",
        ));
    }
    let Some(body) = user.resend_body.clone() else {
        // Not a message Cognito is known to send: a pool that auto-verifies requires the
        // attribute, so real users always have one. Seeded users may not (or have only one the
        // pool does not verify).
        return Err(ApiError::new(
            ErrorCode::InvalidParameter,
            "Cannot resend codes. No email or phone_number is set for the user.",
        ));
    };

    custom_message(shared, req.client_metadata.as_ref())?;
    let by_email = user.resend_by_email;
    let refused = lock(&shared.ledger).try_send(position, by_email, || SendRecord {
        action: SendAction::Confirm,
        username: user.username.clone(),
        requested_as: username.to_owned(),
        delivery_medium: if by_email { "EMAIL" } else { "SMS" }.to_owned(),
        client_id: client.spec.client_id.clone(),
        client_metadata: req.client_metadata.unwrap_or_default(),
        analytics_endpoint_id: req.analytics_metadata.and_then(|a| a.analytics_endpoint_id),
        ip_address: req
            .user_context_data
            .as_ref()
            .and_then(|u| u.ip_address.clone()),
        encoded_data: req.user_context_data.and_then(|u| u.encoded_data),
        secret_hash_given: req.secret_hash.is_some(),
        at: SystemTime::now(),
    });
    match refused {
        Ok(()) => Ok(body),
        Err(SendRefused::AttemptLimit) => Err(ApiError::new(
            ErrorCode::LimitExceeded,
            ATTEMPT_LIMIT_MESSAGE,
        )),
        Err(SendRefused::EmailQuota) => {
            Err(ApiError::new(ErrorCode::LimitExceeded, EMAIL_QUOTA_MESSAGE))
        }
    }
}

/// Runs the CustomMessage trigger as a message is made, before anything is sent: a function
/// that throws (for a request whose `ClientMetadata` matches `custom_message_fails_when`) ends
/// the request with `UserLambdaValidationException`, and nothing is sent.
fn custom_message(
    shared: &Shared,
    client_metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), ApiError> {
    let settings = &shared.pool.settings;
    if let (Some(_), Some((key, value))) = (
        &settings.custom_message_arn,
        &settings.custom_message_fails_when,
    ) && client_metadata.and_then(|m| m.get(key)) == Some(value)
    {
        return Err(ApiError::new(
            ErrorCode::UserLambdaValidation,
            format!("CustomMessage failed with error no message for {key} {value:?}."),
        ));
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------------
// AdminGetUser and ListUsers

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute<'a> {
    name: &'a str,
    value: &'a str,
}

/// A user's attributes, optionally restricted to `only` (ListUsers' AttributesToGet).
fn attributes<'a>(user: &'a User, only: Option<&[String]>) -> Vec<Attribute<'a>> {
    user.attributes
        .iter()
        .filter(|(name, _)| only.is_none_or(|only| only.iter().any(|o| o == name)))
        .map(|(name, value)| Attribute { name, value })
        .collect()
}

/// Cognito's answer for a client id the pool does not have.
fn unknown_client(client_id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!("User pool client {client_id} does not exist."),
    )
}

/// Cognito's answer for a user pool id that is not the emulated pool.
fn check_pool(shared: &Shared, pool_id: Option<&str>) -> Result<(), ApiError> {
    match pool_id {
        Some(id) if id == shared.pool_id => Ok(()),
        id => Err(ApiError::new(
            ErrorCode::ResourceNotFound,
            format!("User pool {} does not exist.", id.unwrap_or_default()),
        )),
    }
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Our response types are strings, numbers and lists of them: serialization cannot fail.
    Bytes::from(serde_json::to_vec(value).expect("response types serialize"))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AdminGetUserRequest {
    user_pool_id: Option<String>,
    username: Option<String>,
}

fn admin_get_user(shared: &Shared, req: AdminGetUserRequest) -> Result<Bytes, ApiError> {
    let mut v = Violations::default();
    v.check(&USER_POOL_ID, req.user_pool_id.as_deref());
    v.check(&USERNAME, req.username.as_deref());
    v.finish()?;
    check_pool(shared, req.user_pool_id.as_deref())?;
    // Any name Cognito resolves (another case, an alias, the sub); the answer always carries
    // the canonical Username.
    let user = req
        .username
        .as_deref()
        .and_then(|name| shared.pool.resolve(name))
        .map(|i| &shared.pool.users[i])
        .ok_or_else(|| ApiError::new(ErrorCode::UserNotFound, "User does not exist."))?;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        username: &'a str,
        user_attributes: Vec<Attribute<'a>>,
        user_create_date: f64,
        user_last_modified_date: f64,
        enabled: bool,
        user_status: &'static str,
    }
    Ok(to_json(&Response {
        username: &user.username,
        user_attributes: attributes(user, None),
        user_create_date: user.created,
        user_last_modified_date: user.created,
        enabled: true,
        user_status: user.status.as_str(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUsersRequest {
    user_pool_id: Option<String>,
    attributes_to_get: Option<Vec<String>>,
    limit: Option<i64>,
    pagination_token: Option<String>,
    filter: Option<String>,
}

/// ListUsers' page size when `Limit` is absent (or 0), and its maximum.
const MAX_PAGE: usize = 60;
const TOKEN_PREFIX: &[u8] = b"emu1:";

/// An opaque continuation token: the last username of the previous page. Users are listed in
/// username order, so the next page starts right after it, whatever was added or removed.
pub(crate) fn encode_token(last_username: &str) -> String {
    let mut raw = Vec::with_capacity(TOKEN_PREFIX.len() + last_username.len());
    raw.extend_from_slice(TOKEN_PREFIX);
    raw.extend_from_slice(last_username.as_bytes());
    TOKEN_BASE64.encode(raw)
}

pub(crate) fn decode_token(token: &str) -> Option<String> {
    let raw = TOKEN_BASE64.decode(token).ok()?;
    let name = raw.strip_prefix(TOKEN_PREFIX)?;
    String::from_utf8(name.to_vec()).ok()
}

/// A user as ListUsers and AdminCreateUser answer it (`UserType`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UserJson<'a> {
    username: &'a str,
    attributes: Vec<Attribute<'a>>,
    user_create_date: f64,
    user_last_modified_date: f64,
    enabled: bool,
    user_status: &'static str,
}

fn list_users(shared: &Shared, req: ListUsersRequest, request_id: &str) -> Result<Bytes, ApiError> {
    let mut v = Violations::default();
    v.check(&USER_POOL_ID, req.user_pool_id.as_deref());
    match req.limit {
        Some(n) if n > MAX_PAGE as i64 => v.push_raw(format!(
            "Value '{n}' at 'limit' failed to satisfy constraint: Member must have value less than or equal to {MAX_PAGE}"
        )),
        Some(n) if n < 0 => v.push_raw(format!(
            "Value '{n}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 0"
        )),
        _ => {}
    }
    v.check(&PAGINATION_TOKEN, req.pagination_token.as_deref());
    v.check(&FILTER, req.filter.as_deref());
    v.finish()?;
    check_pool(shared, req.user_pool_id.as_deref())?;

    let mut filter = filter::parse(req.filter.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, filter::PARSE_ERROR))?;
    let fold = shared.pool.settings.case_insensitive();
    if let Some(f) = filter.as_mut().filter(|_| fold) {
        f.fold_username();
    }
    let users = &shared.pool.users;
    let start = match req.pagination_token.as_deref() {
        None => 0,
        Some(token) => {
            let last = decode_token(token).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidParameter,
                    format!("Paging marker {token} is invalid for request {request_id}"),
                )
            })?;
            users.partition_point(|u| u.username.as_str() <= last.as_str())
        }
    };
    let limit = match req.limit {
        Some(n) if n > 0 => n as usize,
        _ => MAX_PAGE,
    };

    let mut matching = users[start..]
        .iter()
        .filter(|u| filter.as_ref().is_none_or(|f| f.matches(u, fold)));
    let page: Vec<&User> = matching.by_ref().take(limit).collect();
    // A token only when another matching user exists, so the last page has none.
    let pagination_token = match page.last() {
        Some(last) if matching.next().is_some() => Some(encode_token(&last.username)),
        _ => None,
    };

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        users: Vec<UserJson<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pagination_token: Option<String>,
    }
    let only = req.attributes_to_get.as_deref();
    Ok(to_json(&Response {
        users: page
            .iter()
            .map(|u| UserJson {
                username: &u.username,
                attributes: attributes(u, only),
                user_create_date: u.created,
                user_last_modified_date: u.created,
                enabled: true,
                user_status: u.status.as_str(),
            })
            .collect(),
        pagination_token,
    }))
}

// ----------------------------------------------------------------------------------------------
// DescribeUserPool and DescribeUserPoolClient

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeUserPoolRequest {
    user_pool_id: Option<String>,
}

fn describe_user_pool(shared: &Shared, req: DescribeUserPoolRequest) -> Result<Bytes, ApiError> {
    let mut v = Violations::default();
    v.check(&USER_POOL_ID, req.user_pool_id.as_deref());
    v.finish()?;
    check_pool(shared, req.user_pool_id.as_deref())?;
    let settings: &PoolSettings = &shared.pool.settings;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct UsernameConfiguration {
        case_sensitive: bool,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct EmailConfiguration {
        email_sending_account: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        source_arn: Option<String>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct LambdaConfig<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        custom_message: Option<&'a str>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct UserPool<'a> {
        id: &'a str,
        name: &'a str,
        arn: String,
        creation_date: f64,
        last_modified_date: f64,
        // Unset by the builder: absent, as in a pool created without it (case-sensitive).
        #[serde(skip_serializing_if = "Option::is_none")]
        username_configuration: Option<UsernameConfiguration>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        alias_attributes: Vec<&'static str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        username_attributes: Vec<&'static str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        auto_verified_attributes: Vec<&'static str>,
        email_configuration: EmailConfiguration,
        lambda_config: LambdaConfig<'a>,
        estimated_number_of_users: usize,
        mfa_configuration: &'static str,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        user_pool: UserPool<'a>,
    }
    Ok(to_json(&Response {
        user_pool: UserPool {
            id: &shared.pool_id,
            name: &settings.name,
            arn: PoolSettings::pool_arn(&shared.pool_id),
            creation_date: shared.created,
            last_modified_date: shared.created,
            username_configuration: settings
                .case_sensitive
                .map(|case_sensitive| UsernameConfiguration { case_sensitive }),
            alias_attributes: settings
                .alias_attributes
                .iter()
                .map(|a| a.as_str())
                .collect(),
            username_attributes: settings
                .username_attributes
                .iter()
                .map(|a| a.as_str())
                .collect(),
            auto_verified_attributes: settings.auto_verified.iter().map(|a| a.as_str()).collect(),
            email_configuration: EmailConfiguration {
                email_sending_account: settings.email_account.as_str(),
                source_arn: settings.source_arn(&shared.pool_id),
            },
            lambda_config: LambdaConfig {
                custom_message: settings.custom_message_arn.as_deref(),
            },
            estimated_number_of_users: shared.pool.users.len(),
            mfa_configuration: "OFF",
        },
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeUserPoolClientRequest {
    user_pool_id: Option<String>,
    client_id: Option<String>,
}

fn describe_user_pool_client(
    shared: &Shared,
    req: DescribeUserPoolClientRequest,
) -> Result<Bytes, ApiError> {
    let mut v = Violations::default();
    v.check(&USER_POOL_ID, req.user_pool_id.as_deref());
    v.check(&CLIENT_ID, req.client_id.as_deref());
    v.finish()?;
    check_pool(shared, req.user_pool_id.as_deref())?;
    let client_id = req.client_id.as_deref().unwrap_or_default();
    let client = shared
        .clients
        .get(client_id)
        .ok_or_else(|| unknown_client(client_id))?;
    let spec = &client.spec;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct UserPoolClient<'a> {
        user_pool_id: &'a str,
        client_name: &'a str,
        client_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_secret: Option<&'a str>,
        creation_date: f64,
        last_modified_date: f64,
        // The defaults of a client created through the API.
        refresh_token_validity: u32,
        allowed_o_auth_flows_user_pool_client: bool,
        prevent_user_existence_errors: &'static str,
        enable_token_revocation: bool,
        enable_propagate_additional_user_context_data: bool,
        auth_session_validity: u32,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response<'a> {
        user_pool_client: UserPoolClient<'a>,
    }
    Ok(to_json(&Response {
        user_pool_client: UserPoolClient {
            user_pool_id: &shared.pool_id,
            client_name: spec.name.as_deref().unwrap_or(&spec.client_id),
            client_id: &spec.client_id,
            client_secret: spec.secret.as_deref(),
            creation_date: shared.created,
            last_modified_date: shared.created,
            refresh_token_validity: 30,
            allowed_o_auth_flows_user_pool_client: false,
            prevent_user_existence_errors: if spec.prevent_user_existence_errors {
                "ENABLED"
            } else {
                "LEGACY"
            },
            enable_token_revocation: true,
            enable_propagate_additional_user_context_data: false,
            auth_session_validity: 3,
        },
    }))
}

#[cfg(test)]
mod tests;
