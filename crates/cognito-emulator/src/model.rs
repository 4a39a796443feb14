//! The emulated user pool: app clients, users and the pure rules Cognito applies to them
//! (SecretHash, masked delivery destinations, `sub` values, the demo pool).
//!
//! Everything here is fixed when the emulator starts, so the hot path reads it without locks.
//! Anything that changes while the emulator runs lives in `state`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An app client of the emulated user pool.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// The app client id callers pass as `ClientId`.
    pub client_id: String,
    /// The app client secret; when set, every call must carry a valid `SecretHash`.
    pub secret: Option<String>,
    /// Cognito's `PreventUserExistenceErrors`: unknown users get a simulated success instead of
    /// `UserNotFoundException`, so callers cannot probe which usernames exist.
    pub prevent_user_existence_errors: bool,
    /// Whether the pool auto-verifies email/phone; without it Cognito refuses to resend codes.
    pub auto_verify: bool,
}

impl ClientSpec {
    /// A client without secret, with auto-verification on and user existence errors shown.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            prevent_user_existence_errors: false,
            auto_verify: true,
        }
    }

    /// Sets the client secret (calls must then carry a SecretHash).
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Sets PreventUserExistenceErrors.
    pub fn with_prevent_user_existence_errors(mut self, on: bool) -> Self {
        self.prevent_user_existence_errors = on;
        self
    }

    /// Sets whether the pool auto-verifies (and so can resend codes at all).
    pub fn with_auto_verify(mut self, on: bool) -> Self {
        self.auto_verify = on;
        self
    }
}

/// A user's status, with Cognito's wire names (`UserStatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// `UNCONFIRMED`: signed up, code not confirmed yet. The only status that can get a code.
    Unconfirmed,
    /// `CONFIRMED`
    Confirmed,
    /// `ARCHIVED`
    Archived,
    /// `COMPROMISED`
    Compromised,
    /// `UNKNOWN`
    Unknown,
    /// `RESET_REQUIRED`
    ResetRequired,
    /// `FORCE_CHANGE_PASSWORD`
    ForceChangePassword,
    /// `EXTERNAL_PROVIDER` (federated users)
    ExternalProvider,
}

impl UserStatus {
    /// The name Cognito puts on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfirmed => "UNCONFIRMED",
            Self::Confirmed => "CONFIRMED",
            Self::Archived => "ARCHIVED",
            Self::Compromised => "COMPROMISED",
            Self::Unknown => "UNKNOWN",
            Self::ResetRequired => "RESET_REQUIRED",
            Self::ForceChangePassword => "FORCE_CHANGE_PASSWORD",
            Self::ExternalProvider => "EXTERNAL_PROVIDER",
        }
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user to seed into the emulated pool.
#[derive(Debug, Clone)]
pub struct UserSpec {
    /// The username (case-sensitive, as Cognito's `username` filter).
    pub username: String,
    /// The user's status.
    pub status: UserStatus,
    /// The `email` attribute; codes go here when present.
    pub email: Option<String>,
    /// The `phone_number` attribute; codes go here by SMS when there is no email.
    pub phone: Option<String>,
    /// `UserCreateDate` (and `UserLastModifiedDate`).
    pub created: SystemTime,
    /// Further attributes (`name`, `given_name`, `custom:...`, or overrides such as `sub`).
    pub attributes: Vec<(String, String)>,
}

impl UserSpec {
    /// A user created now, with email `<username>@example.com` (or the username itself when it
    /// already looks like an email address).
    pub fn new(username: impl Into<String>, status: UserStatus) -> Self {
        let username = username.into();
        let email = if username.contains('@') {
            username.clone()
        } else {
            format!("{username}@example.com")
        };
        Self {
            username,
            status,
            email: Some(email),
            phone: None,
            created: SystemTime::now(),
            attributes: Vec::new(),
        }
    }

    /// Sets or clears the email address.
    pub fn with_email(mut self, email: Option<String>) -> Self {
        self.email = email;
        self
    }

    /// Sets or clears the phone number (E.164, e.g. `+15555550123`).
    pub fn with_phone(mut self, phone: Option<String>) -> Self {
        self.phone = phone;
        self
    }

    /// Sets the creation time.
    pub fn with_created(mut self, created: SystemTime) -> Self {
        self.created = created;
        self
    }

    /// Adds (or overrides) an attribute.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((name.into(), value.into()));
        self
    }
}

/// `SecretHash = Base64(HMAC-SHA256(key = client secret, message = username + client id))`.
///
/// The emulator keeps its own copy (rather than using the worker's) so that a mistake in the
/// worker's hashing cannot be mirrored by the emulator and go unnoticed.
pub fn secret_hash(secret: &str, username: &str, client_id: &str) -> String {
    let mut mac = keyed_mac(secret);
    mac.update(username.as_bytes());
    mac.update(client_id.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

fn keyed_mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long keys are hashed first), so this cannot fail.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length")
}

/// An app client as the emulator uses it: the spec plus a pre-keyed HMAC, so that checking a
/// SecretHash on the hot path costs one clone and two updates instead of a key schedule.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) spec: ClientSpec,
    mac: Option<Hmac<Sha256>>,
}

impl Client {
    pub(crate) fn new(spec: ClientSpec) -> Self {
        let mac = spec.secret.as_deref().map(keyed_mac);
        Self { spec, mac }
    }

    /// Whether `given` is the SecretHash of `username` for this client. Only meaningful when
    /// the client has a secret.
    pub(crate) fn verify_secret_hash(&self, username: &str, given: &str) -> bool {
        let Some(mac) = &self.mac else {
            return true;
        };
        let mut mac = mac.clone();
        mac.update(username.as_bytes());
        mac.update(self.spec.client_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        // Encode into a stack buffer: 32 bytes are 44 base64 characters.
        let mut buf = [0u8; 44];
        match BASE64.encode_slice(digest, &mut buf) {
            Ok(n) => &buf[..n] == given.as_bytes(),
            Err(_) => false,
        }
    }
}

/// A user as the emulator serves it, with everything derived once at start.
pub(crate) struct User {
    pub(crate) username: String,
    pub(crate) status: UserStatus,
    /// Seconds since the epoch, millisecond precision, as Cognito's timestamps.
    pub(crate) created: f64,
    /// Every attribute, `sub` first, as AdminGetUser and ListUsers return them.
    pub(crate) attributes: Vec<(String, String)>,
    /// The complete ResendConfirmationCode success body, built once so a send answers with a
    /// reference-counted clone; `None` when the user has neither email nor phone.
    pub(crate) resend_body: Option<Bytes>,
}

impl User {
    pub(crate) fn from_spec(spec: UserSpec) -> Self {
        let verified = if spec.status == UserStatus::Unconfirmed {
            "false"
        } else {
            "true"
        };
        let mut attributes = vec![("sub".to_owned(), sub_for(&spec.username))];
        if let Some(email) = &spec.email {
            attributes.push(("email".to_owned(), email.clone()));
            attributes.push(("email_verified".to_owned(), verified.to_owned()));
        }
        if let Some(phone) = &spec.phone {
            attributes.push(("phone_number".to_owned(), phone.clone()));
            attributes.push(("phone_number_verified".to_owned(), verified.to_owned()));
        }
        for (name, value) in spec.attributes {
            match attributes.iter_mut().find(|(n, _)| *n == name) {
                Some(existing) => existing.1 = value,
                None => attributes.push((name, value)),
            }
        }
        let resend_body =
            delivery_for(spec.email.as_deref(), spec.phone.as_deref()).map(|d| d.response_body());
        Self {
            username: spec.username,
            status: spec.status,
            created: epoch_seconds(spec.created),
            attributes,
            resend_body,
        }
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Seconds since the epoch with millisecond precision (Cognito's JSON timestamps).
fn epoch_seconds(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    d.as_millis() as f64 / 1000.0
}

/// A deterministic, UUID-shaped `sub` for a username, so runs are reproducible.
fn sub_for(username: &str) -> String {
    let h = Sha256::digest(username.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // Shape it as a version 4, RFC 4122 variant UUID, as Cognito's subs are.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Where a code goes: Cognito's `CodeDeliveryDetailsType`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Delivery {
    pub(crate) destination: String,
    pub(crate) delivery_medium: &'static str,
    pub(crate) attribute_name: &'static str,
}

impl Delivery {
    /// `{"CodeDeliveryDetails": {...}}`, the ResendConfirmationCode success body.
    pub(crate) fn response_body(&self) -> Bytes {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            code_delivery_details: &'a Delivery,
        }
        // Serializing plain strings into a Vec cannot fail.
        let body = serde_json::to_vec(&Body {
            code_delivery_details: self,
        })
        .expect("plain strings serialize");
        Bytes::from(body)
    }
}

/// Email first, as a pool that auto-verifies email does; SMS when the user only has a phone.
pub(crate) fn delivery_for(email: Option<&str>, phone: Option<&str>) -> Option<Delivery> {
    if let Some(email) = email {
        return Some(Delivery {
            destination: mask_email(email),
            delivery_medium: "EMAIL",
            attribute_name: "email",
        });
    }
    phone.map(|phone| Delivery {
        destination: mask_phone(phone),
        delivery_medium: "SMS",
        attribute_name: "phone_number",
    })
}

/// Cognito's masking: first character of the local part and of the domain, `a***@e***`.
pub(crate) fn mask_email(email: &str) -> String {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    let mut out = String::with_capacity(10);
    out.extend(local.chars().next());
    out.push_str("***@");
    out.extend(domain.chars().next());
    out.push_str("***");
    out
}

/// Cognito's masking: the `+`, then stars, then the last four digits, `+*******0123`.
pub(crate) fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    let keep_from = chars.len().saturating_sub(4);
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (i == 0 && c == '+') || i >= keep_from {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The simulated answer Cognito gives for an unknown user when the client has
/// PreventUserExistenceErrors on: a plausible masked email, derived from the username so it is
/// stable across calls.
pub(crate) fn simulated_delivery(username: &str) -> Delivery {
    let destination = if username.contains('@') {
        mask_email(username)
    } else {
        let first = username.chars().next().unwrap_or('u');
        let h = Sha256::digest(username.as_bytes());
        let domain = char::from(b'a' + h[0] % 26);
        format!("{first}***@{domain}***")
    };
    Delivery {
        destination,
        delivery_medium: "EMAIL",
        attribute_name: "email",
    }
}

/// The users of the emulated pool, sorted by username (ListUsers' stable order), with a
/// position index for O(1) lookups.
pub(crate) struct Pool {
    pub(crate) users: Vec<User>,
    index: HashMap<String, usize>,
}

impl Pool {
    /// Builds the pool; a later spec with the same username replaces an earlier one.
    pub(crate) fn new(specs: Vec<UserSpec>) -> Self {
        let mut by_name: HashMap<String, UserSpec> = HashMap::with_capacity(specs.len());
        for spec in specs {
            by_name.insert(spec.username.clone(), spec);
        }
        let mut users: Vec<User> = by_name.into_values().map(User::from_spec).collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        let index = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.username.clone(), i))
            .collect();
        Self { users, index }
    }

    pub(crate) fn position(&self, username: &str) -> Option<usize> {
        self.index.get(username).copied()
    }
}

/// A deterministic demo/test pool of `n` usernames `user-000001`, `user-000002`, ...
///
/// In every run of ten consecutive names, 7 are UNCONFIRMED, 2 CONFIRMED and 1 is not in the pool
/// at all (interleaved, not in blocks), so a backfill over the returned list meets every common
/// outcome. Returns the users to seed and every username for a CSV (pool users and missing ones,
/// in order). Creation times are one minute apart from 2024-01-01T00:00:00Z, so created-before /
/// created-after windows select predictable slices.
pub fn demo_pool(n: usize) -> (Vec<UserSpec>, Vec<String>) {
    /// Which slot of each run of ten gets which fate; `None` means "missing from the pool".
    const PATTERN: [Option<UserStatus>; 10] = [
        Some(UserStatus::Unconfirmed),
        Some(UserStatus::Unconfirmed),
        Some(UserStatus::Confirmed),
        Some(UserStatus::Unconfirmed),
        None,
        Some(UserStatus::Unconfirmed),
        Some(UserStatus::Unconfirmed),
        Some(UserStatus::Confirmed),
        Some(UserStatus::Unconfirmed),
        Some(UserStatus::Unconfirmed),
    ];
    const START: u64 = 1_704_067_200; // 2024-01-01T00:00:00Z
    let mut users = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    for i in 1..=n {
        let name = format!("user-{i:06}");
        if let Some(status) = PATTERN[(i - 1) % PATTERN.len()] {
            let created = UNIX_EPOCH + Duration::from_secs(START + 60 * i as u64);
            users.push(UserSpec::new(name.clone(), status).with_created(created));
        }
        names.push(name);
    }
    (users, names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_matches_python_hmac() {
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"s3cret",
        //   b"alice"+b"client1",hashlib.sha256).digest()).decode())'
        assert_eq!(
            secret_hash("s3cret", "alice", "client1"),
            "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="
        );
    }

    #[test]
    fn client_verifies_its_own_hashes_only() {
        let client = Client::new(ClientSpec::new("client1").with_secret("s3cret"));
        assert!(client.verify_secret_hash("alice", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
        assert!(!client.verify_secret_hash("bob", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
        assert!(!client.verify_secret_hash("alice", "garbage"));
        let other = Client::new(ClientSpec::new("client2").with_secret("s3cret"));
        assert!(!other.verify_secret_hash("alice", "OLH8A5YiDq5WyVbgkLVAtm0hdL7P1QQ+z61K3T8oAEk="));
    }

    #[test]
    fn masks_like_cognito() {
        assert_eq!(mask_email("alice@example.com"), "a***@e***");
        assert_eq!(mask_email("x@y"), "x***@y***");
        assert_eq!(mask_email("no-at-sign"), "n***@***");
        assert_eq!(mask_phone("+15555550123"), "+*******0123");
        assert_eq!(mask_phone("123"), "123");
        assert_eq!(simulated_delivery("bob@corp.io").destination, "b***@c***");
        let fake = simulated_delivery("ghost");
        assert!(fake.destination.starts_with("g***@"), "{fake:?}");
        assert_eq!(fake, simulated_delivery("ghost"), "stable across calls");
    }

    #[test]
    fn delivery_prefers_email_then_sms() {
        let d = delivery_for(Some("a@b.c"), Some("+15555550123")).expect("has email");
        assert_eq!((d.delivery_medium, d.attribute_name), ("EMAIL", "email"));
        let d = delivery_for(None, Some("+15555550123")).expect("has phone");
        assert_eq!(
            (d.delivery_medium, d.attribute_name),
            ("SMS", "phone_number")
        );
        assert_eq!(delivery_for(None, None), None);
        let body = Delivery::response_body(&delivery_for(Some("a@b.c"), None).expect("email"));
        assert_eq!(
            &body[..],
            br#"{"CodeDeliveryDetails":{"Destination":"a***@b***","DeliveryMedium":"EMAIL","AttributeName":"email"}}"#
        );
    }

    #[test]
    fn users_get_stable_subs_and_overridable_attributes() {
        let a = User::from_spec(UserSpec::new("alice", UserStatus::Unconfirmed));
        let b = User::from_spec(
            UserSpec::new("alice", UserStatus::Confirmed).with_attribute("email", "x@y.z"),
        );
        assert_eq!(a.attribute("sub"), b.attribute("sub"));
        let sub = a.attribute("sub").expect("sub is always set");
        assert_eq!(sub.len(), 36);
        assert_eq!(&sub[14..15], "4");
        assert_eq!(a.attribute("email"), Some("alice@example.com"));
        assert_eq!(a.attribute("email_verified"), Some("false"));
        assert_eq!(b.attribute("email"), Some("x@y.z"));
        assert_eq!(b.attribute("email_verified"), Some("true"));
    }

    #[test]
    fn demo_pool_has_the_documented_mix() {
        let (users, names) = demo_pool(1000);
        assert_eq!(names.len(), 1000);
        assert_eq!(names[0], "user-000001");
        assert_eq!(users.len(), 900);
        let unconfirmed = users
            .iter()
            .filter(|u| u.status == UserStatus::Unconfirmed)
            .count();
        assert_eq!(unconfirmed, 700);
        let (again, _) = demo_pool(1000);
        assert!(
            users
                .iter()
                .zip(&again)
                .all(|(a, b)| a.username == b.username && a.created == b.created)
        );
    }
}
