//! Seeding the pool from files: the binary's `--users FILE`, and the same code path for tests.
//!
//! A seed file is CSV or JSON (by its extension, `.csv` / `.tsv` or `.json`, else by its first
//! character: `[` or `{` is JSON). Both describe users as fields with the same names and rules
//! ([`load`] says which); `docs/emulator.md` has the formats with an example each.
//!
//! [`seed_pool`] is what the binary does with its flags: the `--seed` demo pool, the
//! `--seed-invited` users, then every `--users` file, refusing a username seeded twice (folded in
//! a case-insensitive pool) with the file and line or index of the second one.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::model::{UserSpec, UserStatus, demo_invited, demo_pool, looks_like_phone};

/// Where in a seed file a user, or a problem, is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line of a CSV file, from 1 (the header is line 1).
    Line(u64),
    /// A position in a JSON file's array of users, from 0.
    Index(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Index(i) => write!(f, "index {i}"),
        }
    }
}

/// Why a seed file cannot seed the pool: the file, where in it (when one place is to blame),
/// and what is wrong. Displayed as `users.csv: line 3: unknown status "DONE" (...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedError {
    /// The file, as it was given.
    pub path: PathBuf,
    /// The CSV line or JSON index, when the problem is in one user.
    pub at: Option<Location>,
    /// What is wrong.
    pub message: String,
}

impl SeedError {
    fn new(path: &Path, at: Option<Location>, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            at,
            message: message.into(),
        }
    }
}

impl fmt::Display for SeedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.path.display())?;
        if let Some(at) = self.at {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SeedError {}

/// A user read from a seed file, with where it was.
#[derive(Debug, Clone)]
pub struct SeedUser {
    /// The user.
    pub user: UserSpec,
    /// Its CSV line or JSON index.
    pub at: Location,
}

/// Reads the users of a seed file, in file order.
///
/// Fields (CSV columns, JSON keys; the names are ASCII case-insensitive):
/// - `username` (or `cognito:username`, `Username`): required, without whitespace;
/// - `status` (or `cognito:user_status`, `UserStatus`, `user_status`): a `UserStatusType`
///   name, ASCII case-insensitive; default `UNCONFIRMED`;
/// - `created` (or `UserCreateDate`, `user_create_date`): RFC 3339 (`2024-01-01T00:00:00Z`,
///   an offset such as `+02:00`, or a date alone) or epoch seconds; default now;
/// - `email`, `phone_number` (E.164, such as `+15555550100`): the user's contacts, which decide
///   where codes go; a user without an `email` has none (the demo's `<username>@example.com`
///   is not added);
/// - `email_verified`, `phone_number_verified`: `true` or `false`; default `false` for an
///   UNCONFIRMED user, `true` otherwise;
/// - `Enabled`, `UserLastModifiedDate`, `MFAOptions` and other `cognito:` names (such as
///   `cognito:mfa_enabled` in Cognito's import CSV header) are ignored;
/// - any other field is a user attribute (`sub`, `name`, `custom:plan`, ...), standard
///   attribute names lowercased, others as written.
///
/// An empty value (or JSON `null`) is an absent field. A field given twice with different
/// values, an unknown status, a missing username, a username given twice (exactly: a
/// case-insensitive pool's rule is [`seed_pool`]'s), malformed CSV or JSON and an unreadable
/// file are errors naming the file and the line or index; no user is ever skipped. In a CSV
/// file, rows whose cells are all empty are not users and are skipped.
pub fn load(path: &Path) -> Result<Vec<UserSpec>, SeedError> {
    Ok(load_located(path)?.into_iter().map(|u| u.user).collect())
}

/// [`load`], with each user's line or index.
pub fn load_located(path: &Path) -> Result<Vec<SeedUser>, SeedError> {
    let bytes = std::fs::read(path)
        .map_err(|e| SeedError::new(path, None, format!("cannot read the users file: {e}")))?;
    parse(path, &bytes)
}

/// Parses `bytes` as the seed file `path` (named in errors, and whose extension picks the
/// format; see [`load`]).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<SeedUser>, SeedError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let json = match ext.as_deref() {
        Some("json") => true,
        Some("csv" | "tsv") => false,
        _ => matches!(
            strip_bom(bytes).iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'[' | b'{')
        ),
    };
    if json {
        parse_json(path, bytes)
    } else {
        parse_csv(path, bytes)
    }
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)
}

/// Parses a CSV seed file: a header row, then one user per row. The delimiter is `,`, or `;`
/// or a tab when the header has more of those; a UTF-8 byte order mark is skipped.
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Vec<SeedUser>, SeedError> {
    let bytes = strip_bom(bytes);
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |d: u8| first_line.iter().filter(|&&b| b == d).count();
    let delimiter = [b';', b'\t']
        .into_iter()
        .filter(|&d| count(d) > count(b','))
        .max_by_key(|&d| count(d))
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(bytes);
    let csv_error = |e: csv::Error| {
        let at = e
            .position()
            .map(|p| Location::Line(line_of(bytes, 0, 1, p.byte()).0));
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields, but the header has {expected_len}"),
            csv::ErrorKind::Utf8 { err, .. } => {
                format!("field {} is not valid UTF-8", err.field() + 1)
            }
            _ => format!("cannot read the CSV: {e}"),
        };
        SeedError::new(path, at, message)
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(SeedError::new(
            path,
            None,
            "empty file: a header row with a username column is required",
        ));
    }
    let names: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    if !names.iter().any(|n| matches!(classify(n), Field::Username)) {
        let found: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
        return Err(SeedError::new(
            path,
            Some(Location::Line(1)),
            format!(
                "the header has no username column (expected \"username\" or \
                 \"cognito:username\"); the header found: {}",
                found.join(", ")
            ),
        ));
    }
    let mut users = Vec::new();
    // The last record's line, and the byte it was counted to: records come in order, so
    // counting goes on from there.
    let (mut line, mut counted) = (1, 0usize);
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let start = record.position().map_or(counted as u64, |p| p.byte());
        (line, counted) = line_of(bytes, counted, line, start);
        if record.iter().all(|cell| cell.trim().is_empty()) {
            continue;
        }
        let fields = names
            .iter()
            .zip(record.iter())
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, value)| (name.clone(), value.to_owned()));
        let at = Location::Line(line);
        let user = user_from_fields(fields).map_err(|m| SeedError::new(path, Some(at), m))?;
        users.push(SeedUser { user, at });
    }
    check_unique(path, &users)?;
    Ok(users)
}

/// The line a record starting at byte `start` is on, counting on from line `line` at byte `from`,
/// and the byte counted to. The csv crate's own line numbers are off with CRLF line ends (a
/// record starts at the `\n` of the `\r\n` before it), so count here, up to the record's first
/// byte that ends no line.
fn line_of(bytes: &[u8], from: usize, line: u64, start: u64) -> (u64, usize) {
    let start = usize::try_from(start).map_or(bytes.len(), |s| s.min(bytes.len()));
    let first = bytes[start..]
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(bytes.len(), |i| start + i);
    let from = from.min(first);
    let newlines = bytes[from..first].iter().filter(|&&b| b == b'\n').count();
    (line + newlines as u64, first)
}

/// Parses a JSON seed file: an array of user objects, or an object whose `Users` is one (what
/// `aws cognito-idp list-users` prints). A user object has `username`, optionally `status`,
/// `created` and `attributes` (an object of name to value, or a list of `{"Name", "Value"}` as
/// Cognito writes them), and any other key is a field as in a CSV column (so attributes may
/// also be given at the top level).
pub fn parse_json(path: &Path, bytes: &[u8]) -> Result<Vec<SeedUser>, SeedError> {
    let value: Value = serde_json::from_slice(strip_bom(bytes))
        .map_err(|e| SeedError::new(path, None, format!("not valid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("Users").or_else(|| map.remove("users")) {
            Some(Value::Array(items)) => items,
            _ => return Err(not_a_user_list(path)),
        },
        _ => return Err(not_a_user_list(path)),
    };
    let mut users = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = Location::Index(i);
        let user = json_fields(item)
            .and_then(user_from_fields)
            .map_err(|m| SeedError::new(path, Some(at), m))?;
        users.push(SeedUser { user, at });
    }
    check_unique(path, &users)?;
    Ok(users)
}

fn not_a_user_list(path: &Path) -> SeedError {
    SeedError::new(
        path,
        None,
        "expected an array of users, or an object with a \"Users\" array (as `aws cognito-idp \
         list-users` prints)",
    )
}

/// A JSON user object as (name, value) fields.
fn json_fields(item: Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(map) = item else {
        return Err(format!("a user must be a JSON object, not {}", kind(&item)));
    };
    let mut fields = Vec::new();
    for (key, value) in map {
        if key.eq_ignore_ascii_case("attributes") {
            match value {
                Value::Null => {}
                Value::Object(attrs) => {
                    for (name, v) in attrs {
                        push_scalar(&mut fields, name, v)?;
                    }
                }
                Value::Array(list) => {
                    for entry in list {
                        let (name, v) = name_value(entry)?;
                        push_scalar(&mut fields, name, v)?;
                    }
                }
                other => {
                    return Err(format!(
                        "\"{key}\" must be an object of name to value, or a list of {{\"Name\", \
                         \"Value\"}}, not {}",
                        kind(&other)
                    ));
                }
            }
        } else if !matches!(classify(&key), Field::Ignored) {
            push_scalar(&mut fields, key, value)?;
        }
    }
    Ok(fields)
}

/// One `{"Name": ..., "Value": ...}` entry of a Cognito attribute list.
fn name_value(entry: Value) -> Result<(String, Value), String> {
    let bad = |what: &str| {
        format!("an entry of \"Attributes\" must be an object {{\"Name\", \"Value\"}}: {what}")
    };
    let Value::Object(map) = entry else {
        return Err(bad(&format!("found {}", kind(&entry))));
    };
    let mut name = None;
    let mut value = Value::Null;
    for (k, v) in map {
        if k.eq_ignore_ascii_case("name") {
            match v {
                Value::String(s) => name = Some(s),
                other => return Err(bad(&format!("its Name is {}", kind(&other)))),
            }
        } else if k.eq_ignore_ascii_case("value") {
            value = v;
        }
    }
    Ok((name.ok_or_else(|| bad("it has no Name"))?, value))
}

fn push_scalar(fields: &mut Vec<(String, String)>, name: String, v: Value) -> Result<(), String> {
    let value = match v {
        Value::Null => return Ok(()),
        Value::String(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("\"{name}\" must be a string, not {}", kind(&other))),
    };
    fields.push((name, value));
    Ok(())
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

/// What a field name means.
enum Field {
    Username,
    Status,
    Created,
    Ignored,
    Email,
    Phone,
    /// `email_verified` or `phone_number_verified`.
    Verified(&'static str),
    /// A user attribute, with the name to store it under.
    Attribute(String),
}

/// Cognito's standard attributes, stored under their lowercase names whatever case a header
/// used.
const STANDARD_ATTRIBUTES: &[&str] = &[
    "address",
    "birthdate",
    "family_name",
    "gender",
    "given_name",
    "locale",
    "middle_name",
    "name",
    "nickname",
    "picture",
    "preferred_username",
    "profile",
    "sub",
    "updated_at",
    "website",
    "zoneinfo",
];

fn classify(name: &str) -> Field {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "username" | "cognito:username" => Field::Username,
        "status" | "user_status" | "userstatus" | "cognito:user_status" => Field::Status,
        "created" | "user_create_date" | "usercreatedate" => Field::Created,
        "enabled" | "userlastmodifieddate" | "user_last_modified_date" | "mfaoptions" => {
            Field::Ignored
        }
        "email" => Field::Email,
        "phone_number" => Field::Phone,
        "email_verified" => Field::Verified("email_verified"),
        "phone_number_verified" => Field::Verified("phone_number_verified"),
        _ if lower.starts_with("cognito:") => Field::Ignored,
        _ if STANDARD_ATTRIBUTES.contains(&lower.as_str()) => Field::Attribute(lower),
        _ => Field::Attribute(name.to_owned()),
    }
}

/// One user from its fields (see [`load`]); the error says what is wrong with it.
fn user_from_fields(
    fields: impl IntoIterator<Item = (String, String)>,
) -> Result<UserSpec, String> {
    // Every field once, under the name it is stored as: a second, different value is an error.
    let mut given: Vec<(String, String, Field)> = Vec::new();
    for (name, value) in fields {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        let field = classify(&name);
        let key = match &field {
            Field::Ignored => continue,
            Field::Username => "username".to_owned(),
            Field::Status => "status".to_owned(),
            Field::Created => "created".to_owned(),
            Field::Email => "email".to_owned(),
            Field::Phone => "phone_number".to_owned(),
            Field::Verified(n) => (*n).to_owned(),
            Field::Attribute(n) => n.clone(),
        };
        match given.iter().find(|(k, _, _)| *k == key) {
            Some((_, v, _)) if v.as_str() == value => {}
            Some((_, v, _)) => {
                return Err(format!(
                    "{key} is given twice, as {v:?} and as {value:?} (field {name:?})"
                ));
            }
            None => given.push((key, value.to_owned(), field)),
        }
    }
    let mut username = None;
    let mut status = UserStatus::Unconfirmed;
    let mut created = None;
    let mut email = None;
    let mut phone = None;
    let mut attributes = Vec::new();
    for (key, value, field) in given {
        match field {
            Field::Username => {
                if value.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "username {value:?} has whitespace (Cognito usernames cannot)"
                    ));
                }
                username = Some(value);
            }
            Field::Status => status = value.parse()?,
            Field::Created => {
                created = Some(parse_time(&value).ok_or_else(|| {
                    format!(
                        "created {value:?} is not a date (RFC 3339 such as \
                         2024-01-01T00:00:00Z, or epoch seconds)"
                    )
                })?);
            }
            Field::Email => email = Some(value),
            Field::Phone => {
                if !looks_like_phone(&value) {
                    return Err(format!(
                        "phone_number {value:?} is not in E.164 format (a + and digits, such \
                         as +15555550100), as Cognito requires"
                    ));
                }
                phone = Some(value);
            }
            Field::Verified(name) => {
                let v = value.to_ascii_lowercase();
                if v != "true" && v != "false" {
                    return Err(format!("{name} is {value:?}, not true or false"));
                }
                attributes.push((key, v));
            }
            Field::Attribute(_) => attributes.push((key, value)),
            Field::Ignored => {}
        }
    }
    let username = username.ok_or("missing username")?;
    let mut user = UserSpec::new(username, status)
        .with_email(email)
        .with_phone(phone);
    if let Some(created) = created {
        user = user.with_created(created);
    }
    user.attributes = attributes;
    Ok(user)
}

/// RFC 3339 (with `Z`, an offset, or none, meaning UTC; a date alone is its midnight UTC), or
/// epoch seconds.
fn parse_time(s: &str) -> Option<SystemTime> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    if s.len() == 10 {
        return humantime::parse_rfc3339_weak(&format!("{s}T00:00:00Z")).ok();
    }
    // humantime reads UTC (`Z`, `+00:00` or nothing); apply any other offset here.
    let b = s.as_bytes();
    if s.len() > 16 && b[s.len() - 3] == b':' && matches!(b[s.len() - 6], b'+' | b'-') {
        let (base, offset) = s.split_at(s.len() - 6);
        let hours: u64 = offset[1..3].parse().ok()?;
        let minutes: u64 = offset[4..6].parse().ok()?;
        let offset = Duration::from_secs(hours * 3600 + minutes * 60);
        let local = humantime::parse_rfc3339_weak(base).ok()?;
        return if offset.is_zero() {
            Some(local)
        } else if b[s.len() - 6] == b'+' {
            local.checked_sub(offset)
        } else {
            local.checked_add(offset)
        };
    }
    humantime::parse_rfc3339_weak(s).ok()
}

/// A username twice in one file is an error naming both places.
fn check_unique(path: &Path, users: &[SeedUser]) -> Result<(), SeedError> {
    let mut seen: HashMap<&str, Location> = HashMap::with_capacity(users.len());
    for u in users {
        if let Some(first) = seen.insert(&u.user.username, u.at) {
            return Err(SeedError::new(
                path,
                Some(u.at),
                format!(
                    "duplicate username {:?}: already at {first}",
                    u.user.username
                ),
            ));
        }
    }
    Ok(())
}

/// The users the binary seeds, and the usernames its `--csv-out` lists.
#[derive(Debug, Clone)]
pub struct SeededPool {
    /// Every user to seed: the demo pool's, the invited ones, then each file's in order.
    pub users: Vec<UserSpec>,
    /// Every username, in that order, with the demo pool's missing ones in their place.
    pub usernames: Vec<String>,
}

impl SeededPool {
    /// The pool as a CSV a backfill can read (the binary's `--csv-out`): `username,email,status`
    /// for every username, with empty email and status for the demo pool's usernames that are
    /// not in the pool, and an empty email for users without one (phone-only users).
    pub fn write_csv(&self, path: &Path) -> Result<(), csv::Error> {
        let known: HashMap<&str, &UserSpec> = self
            .users
            .iter()
            .map(|u| (u.username.as_str(), u))
            .collect();
        let mut w = csv::Writer::from_path(path)?;
        w.write_record(["username", "email", "status"])?;
        for name in &self.usernames {
            match known.get(name.as_str()) {
                Some(u) => w.write_record([
                    name.as_str(),
                    u.email.as_deref().unwrap_or(""),
                    u.status.as_str(),
                ])?,
                None => w.write_record([name.as_str(), "", ""])?,
            }
        }
        w.flush()?;
        Ok(())
    }
}

/// What the binary seeds: [`demo_pool`]`(seed)`, [`demo_invited`]`(seed_invited)`, then the
/// users of each of `files` ([`load`]). A username seeded twice (one from a file, the other
/// from a file or the demo pool's names, missing ones included) is an error at the second one;
/// when `case_sensitive` is `Some(false)`, usernames are compared folded with
/// `str::to_lowercase`, as the pool compares them.
pub fn seed_pool(
    seed: usize,
    seed_invited: usize,
    files: &[PathBuf],
    case_sensitive: Option<bool>,
) -> Result<SeededPool, SeedError> {
    let folded = case_sensitive == Some(false);
    let fold = |s: &str| {
        if folded {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let (mut users, mut usernames) = demo_pool(seed);
    let invited = demo_invited(seed_invited);
    // Folded username -> (where it was seeded, as written there).
    let mut taken: HashMap<String, (String, String)> = HashMap::new();
    for name in &usernames {
        taken.insert(fold(name), ("--seed".to_owned(), name.clone()));
    }
    for u in &invited {
        taken.insert(
            fold(&u.username),
            ("--seed-invited".to_owned(), u.username.clone()),
        );
    }
    usernames.extend(invited.iter().map(|u| u.username.clone()));
    users.extend(invited);
    for path in files {
        for SeedUser { user, at } in load_located(path)? {
            let key = fold(&user.username);
            if let Some((origin, first)) = taken.get(&key) {
                let spelled = if *first == user.username {
                    String::new()
                } else {
                    format!(" (as {first:?}; the pool is case-insensitive)")
                };
                return Err(SeedError::new(
                    path,
                    Some(at),
                    format!(
                        "duplicate username {:?}: already seeded by {origin}{spelled}",
                        user.username
                    ),
                ));
            }
            taken.insert(
                key,
                (format!("{} {at}", path.display()), user.username.clone()),
            );
            usernames.push(user.username.clone());
            users.push(user);
        }
    }
    Ok(SeededPool { users, usernames })
}

#[cfg(test)]
mod tests;
