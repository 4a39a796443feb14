//! The emulated user pool: app clients, users and the pure rules Cognito applies to them
//! (SecretHash, masked delivery destinations, which medium a code goes by, `sub` values, which
//! user a `Username` names, the demo pool).
//!
//! Everything here is fixed when the emulator starts, so the hot path reads it without locks.
//! Anything that changes while the emulator runs lives in `state`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::settings::{AliasAttribute, PoolSettings, UsernameAttribute, VerifiedAttribute};

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
    /// An emulator knob per client (in Cognito it is the pool's `AutoVerifiedAttributes`): when
    /// false, this client's calls see a pool with no auto-verified attribute.
    pub auto_verify: bool,
    /// The app client name (`ClientName` in DescribeUserPoolClient); `None` uses the client id.
    pub name: Option<String>,
}

impl ClientSpec {
    /// A client without secret, with auto-verification on and user existence errors shown.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            secret: None,
            prevent_user_existence_errors: false,
            auto_verify: true,
            name: None,
        }
    }

    /// Sets the app client name DescribeUserPoolClient reports (default: the client id).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
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

impl UserStatus {
    /// Every status, in the order Cognito's model lists them (`UserStatusType`).
    pub const ALL: &'static [UserStatus] = &[
        Self::Unconfirmed,
        Self::Confirmed,
        Self::Archived,
        Self::Compromised,
        Self::Unknown,
        Self::ResetRequired,
        Self::ForceChangePassword,
        Self::ExternalProvider,
    ];
}

impl std::str::FromStr for UserStatus {
    type Err = String;

    /// The wire name (`UNCONFIRMED`, `FORCE_CHANGE_PASSWORD`, ...), ASCII case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown status {s:?} (one of {})", names.join(", "))
            })
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
    /// The canonical username, as AdminGetUser and ListUsers return it. In a pool with
    /// `UsernameAttributes` it is typically the user's `sub` (Cognito makes it a UUID), and it
    /// can't look like an email address or phone number there.
    pub username: String,
    /// The user's status.
    pub status: UserStatus,
    /// The `email` attribute; codes go here when present.
    pub email: Option<String>,
    /// The `phone_number` attribute; codes go here by SMS when there is no email.
    pub phone: Option<String>,
    /// `UserCreateDate` (and `UserLastModifiedDate`).
    pub created: SystemTime,
    /// Further attributes (`name`, `given_name`, `preferred_username`, `custom:...`, or
    /// overrides such as `sub` and `email_verified`). Without a `sub`, the user gets
    /// [`sub_for`] of its username.
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

    /// Sets the `sub` attribute (default: [`sub_for`] of the username).
    pub fn with_sub(self, sub: impl Into<String>) -> Self {
        self.with_attribute("sub", sub)
    }

    /// Sets `email_verified` (default: `"false"` for an UNCONFIRMED user, `"true"` otherwise).
    /// An email alias only resolves once verified.
    pub fn with_email_verified(self, verified: bool) -> Self {
        self.with_attribute("email_verified", if verified { "true" } else { "false" })
    }

    /// Sets `phone_number_verified` (default as for [`UserSpec::with_email_verified`]).
    pub fn with_phone_verified(self, verified: bool) -> Self {
        self.with_attribute(
            "phone_number_verified",
            if verified { "true" } else { "false" },
        )
    }

    /// Sets the `preferred_username` attribute (an alias when the pool's `AliasAttributes` has
    /// `preferred_username`).
    pub fn with_preferred_username(self, name: impl Into<String>) -> Self {
        self.with_attribute("preferred_username", name)
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
    /// The canonical username.
    pub(crate) username: String,
    pub(crate) status: UserStatus,
    /// Seconds since the epoch, millisecond precision, as Cognito's timestamps.
    pub(crate) created: f64,
    /// Every attribute, `sub` first, as AdminGetUser and ListUsers return them.
    pub(crate) attributes: Vec<(String, String)>,
    /// The complete ResendConfirmationCode success body, built once so a send answers with a
    /// reference-counted clone; `None` when the user has none of the pool's auto-verified
    /// attributes.
    pub(crate) resend_body: Option<Bytes>,
    /// Whether that code goes by email (and so counts against the email quota).
    pub(crate) resend_by_email: bool,
}

impl User {
    pub(crate) fn from_spec(spec: UserSpec, settings: &PoolSettings) -> Self {
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
        let delivery = delivery_for(spec.email.as_deref(), spec.phone.as_deref(), settings);
        Self {
            username: spec.username,
            status: spec.status,
            created: epoch_seconds(spec.created),
            attributes,
            resend_by_email: delivery
                .as_ref()
                .is_some_and(|d| d.delivery_medium == "EMAIL"),
            resend_body: delivery.map(|d| d.response_body()),
        }
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name_verified` is `"true"`.
    fn verified(&self, name: &str) -> bool {
        self.attribute(&format!("{name}_verified")) == Some("true")
    }

    /// Every value this user answers to as a `Username`, as Cognito resolves one (the API
    /// reference: "typically your user's username, but it can be any of their alias
    /// attributes. If username isn't an alias attribute in your user pool, this value must be
    /// the sub of a local user"), with what it is, for seeding errors.
    fn identifiers(&self, settings: &PoolSettings) -> Vec<(&'static str, &str)> {
        let mut ids = vec![("username", self.username.as_str())];
        ids.extend(self.attribute("sub").map(|v| ("sub", v)));
        let email = self.attribute("email");
        let phone = self.attribute("phone_number");
        if settings.username_attribute(UsernameAttribute::Email) {
            ids.extend(email.map(|v| ("email", v)));
        }
        if settings.username_attribute(UsernameAttribute::PhoneNumber) {
            ids.extend(phone.map(|v| ("phone_number", v)));
        }
        // Aliases: email and phone only once verified, preferred_username always.
        if settings.alias(AliasAttribute::Email) && self.verified("email") {
            ids.extend(email.map(|v| ("email alias", v)));
        }
        if settings.alias(AliasAttribute::PhoneNumber) && self.verified("phone_number") {
            ids.extend(phone.map(|v| ("phone_number alias", v)));
        }
        if settings.alias(AliasAttribute::PreferredUsername) {
            ids.extend(
                self.attribute("preferred_username")
                    .map(|v| ("preferred_username alias", v)),
            );
        }
        ids
    }
}

/// Whether `s` has the shape of an email address (`local@domain`).
fn looks_like_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    })
}

/// Whether `s` has the shape of an E.164 phone number (`+` and digits).
pub(crate) fn looks_like_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A username Cognito would not have stored in a pool with these settings.
fn check_username(username: &str, settings: &PoolSettings) -> Result<(), String> {
    let email = looks_like_email(username);
    let phone = looks_like_phone(username);
    if (email && settings.alias(AliasAttribute::Email))
        || (phone && settings.alias(AliasAttribute::PhoneNumber))
    {
        return Err(format!(
            "username {username:?} has the format of an alias attribute of the pool; Cognito \
             refuses such usernames (\"If email is selected as an alias, a username can't match \
             a valid email format\", and likewise for phone numbers)"
        ));
    }
    if (email && settings.username_attribute(UsernameAttribute::Email))
        || (phone && settings.username_attribute(UsernameAttribute::PhoneNumber))
    {
        return Err(format!(
            "username {username:?} is an email address or phone number, but in a pool with \
             UsernameAttributes Cognito stores a UUID as the username: seed the user with its \
             canonical username (for example its sub) and give the email or phone as attributes"
        ));
    }
    Ok(())
}

/// Seconds since the epoch with millisecond precision (Cognito's JSON timestamps).
fn epoch_seconds(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    d.as_millis() as f64 / 1000.0
}

/// The `sub` the emulator gives a user seeded without one: a deterministic, UUID-shaped (version
/// 4) value derived from the username, so runs are reproducible and tests can know it ahead.
pub fn sub_for(username: &str) -> String {
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

/// Where a confirmation code goes, by the pool's `AutoVerifiedAttributes`: by SMS when the pool
/// verifies phone numbers and the user has one, else by email when it verifies email and the
/// user has one. Cognito documents the first rule: "If a user signs up with both a phone number
/// and an email address, and your user pool settings require verification of both attributes,
/// a verification code is sent via SMS to the phone."
pub(crate) fn delivery_for(
    email: Option<&str>,
    phone: Option<&str>,
    settings: &PoolSettings,
) -> Option<Delivery> {
    if let Some(phone) = phone.filter(|_| settings.verifies(VerifiedAttribute::PhoneNumber)) {
        return Some(Delivery {
            destination: mask_phone(phone),
            delivery_medium: "SMS",
            attribute_name: "phone_number",
        });
    }
    email
        .filter(|_| settings.verifies(VerifiedAttribute::Email))
        .map(|email| Delivery {
            destination: mask_email(email),
            delivery_medium: "EMAIL",
            attribute_name: "email",
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

/// The users of the emulated pool, sorted by username (ListUsers' stable order), with an index
/// of every value each user answers to as a `Username` (folded in a case-insensitive pool).
pub(crate) struct Pool {
    pub(crate) users: Vec<User>,
    pub(crate) settings: PoolSettings,
    index: HashMap<String, usize>,
}

impl Pool {
    /// Builds the pool; a later spec with the same username replaces an earlier one. Fails on
    /// what Cognito would never hold: usernames that fold together in a case-insensitive pool,
    /// an alias or username attribute shared by two users, usernames shaped like the pool's
    /// alias or username attributes, and settings Cognito refuses.
    pub(crate) fn new(specs: Vec<UserSpec>, settings: PoolSettings) -> Result<Self, String> {
        settings.validate()?;
        let mut by_name: HashMap<String, UserSpec> = HashMap::with_capacity(specs.len());
        for spec in specs {
            by_name.insert(spec.username.clone(), spec);
        }
        for name in by_name.keys() {
            check_username(name, &settings)?;
        }
        let mut users: Vec<User> = by_name
            .into_values()
            .map(|spec| User::from_spec(spec, &settings))
            .collect();
        users.sort_by(|a, b| a.username.cmp(&b.username));
        let mut index: HashMap<String, usize> = HashMap::with_capacity(users.len() * 2);
        for (position, user) in users.iter().enumerate() {
            for (what, value) in user.identifiers(&settings) {
                let key = settings.fold(value).into_owned();
                match index.entry(key) {
                    Entry::Vacant(e) => {
                        e.insert(position);
                    }
                    Entry::Occupied(e) if *e.get() == position => {}
                    Entry::Occupied(e) => {
                        let other = &users[*e.get()].username;
                        let folded = if settings.case_insensitive() {
                            " (the pool is case-insensitive)"
                        } else {
                            ""
                        };
                        return Err(format!(
                            "users {other:?} and {:?} both answer to {:?}{folded}: the {what} \
                             of {:?} is already a username, sub or alias of {other:?}",
                            user.username,
                            e.key(),
                            user.username,
                        ));
                    }
                }
            }
        }
        Ok(Self {
            users,
            settings,
            index,
        })
    }

    /// The user a request's `Username` names: the canonical username, the `sub`, or an active
    /// alias or username attribute (see `User::identifiers`), folded in a case-insensitive pool.
    pub(crate) fn resolve(&self, name: &str) -> Option<usize> {
        self.index.get(self.settings.fold(name).as_ref()).copied()
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

/// `n` deterministic invited users `invited-000001`, `invited-000002`, ...: created by an
/// administrator (AdminCreateUser) and never signed in, so FORCE_CHANGE_PASSWORD, the users
/// only AdminCreateUser `RESEND` reaches. Each has an email (`<name>@example.com`); every
/// other one (the even ones) also a phone number, so both `DesiredDeliveryMediums` can be
/// exercised. Creation times are one minute apart from 2024-01-01T00:00:00Z, as in
/// [`demo_pool`], which this leaves unchanged: seed both to mix them.
pub fn demo_invited(n: usize) -> Vec<UserSpec> {
    const START: u64 = 1_704_067_200; // 2024-01-01T00:00:00Z
    (1..=n)
        .map(|i| {
            let created = UNIX_EPOCH + Duration::from_secs(START + 60 * i as u64);
            let phone = (i % 2 == 0).then(|| format!("+1555{i:07}"));
            UserSpec::new(format!("invited-{i:06}"), UserStatus::ForceChangePassword)
                .with_phone(phone)
                .with_created(created)
        })
        .collect()
}

#[cfg(test)]
mod tests;
