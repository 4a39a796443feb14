//! `check`'s view of the settings: the typed settings serialize under the keys of the TOML file
//! (0 for "no limit", durations as `30s`, URLs with their credentials redacted, the client
//! secret as the file it came from), so what `check` prints is itself a settings file that
//! loads back to the same settings. The serializers here are the typed fields'
//! `serialize_with`.

use std::fmt::Display;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use super::Settings;
use super::cognito::{CLIENT_SECRET_ENV, ClientSecret, SecretSource};
use super::value::redact_url;

impl Settings {
    /// The effective settings as TOML, secrets redacted: what `check` prints.
    pub(crate) fn render_redacted(&self) -> String {
        /// The region and profile live with the Cognito settings (every client reads them
        /// from there) but are the `aws` section's keys.
        #[derive(Serialize)]
        struct Aws<'a> {
            region: Option<&'a str>,
            profile: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Shown<'a> {
            #[serde(flatten)]
            settings: &'a Settings,
            aws: Aws<'a>,
        }
        let doc = toml::to_string(&Shown {
            settings: self,
            aws: Aws {
                region: self.cognito.region.as_deref(),
                profile: self.cognito.profile.as_deref(),
            },
        })
        .expect("the settings serialize as TOML");
        let doc = durations_as_written(&doc, &self.written);
        let mut head: String = self
            .warnings
            .iter()
            .map(|w| format!("# WARNING: {w}\n"))
            .collect();
        head.push_str("# effective settings");
        if let Some(p) = &self.config_file {
            head.push_str(&format!(" (file: {})", p.display()));
        }
        head.push('\n');
        match &self.cognito.secret {
            None => head.push_str("# client secret: not set (no SecretHash is sent)\n"),
            Some((_, SecretSource::File(_))) => {
                head.push_str("# client secret: <redacted>, read from client_secret_file\n")
            }
            Some((_, SecretSource::Env)) => head.push_str(&format!(
                "# client secret: <redacted>, from {CLIENT_SECRET_ENV}\n"
            )),
            Some((_, SecretSource::SecretsManager(id))) => head.push_str(&format!(
                "# client secret: <redacted>, from Secrets Manager secret {id}\n"
            )),
        }
        head + &doc
    }
}

/// `doc` (the settings as TOML) with every duration spelled as it was written: `cooldown =
/// "24h"` for a `24h` given, where the typed value alone would print `1day`. A value is replaced
/// only by a written text that parses to the same duration, so what loads back is unchanged.
fn durations_as_written(doc: &str, written: &serde_json::Value) -> String {
    let mut section = String::new();
    let mut out = String::with_capacity(doc.len());
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        }
        let as_written = line.split_once(" = ").and_then(|(key, value)| {
            let shown: String = toml::from_str::<toml::Value>(&format!("v = {value}"))
                .ok()?
                .get("v")?
                .as_str()?
                .to_owned();
            let given = written.get(&section)?.get(key)?.as_str()?.trim();
            let same = super::parse_duration(&shown).ok()? == super::parse_duration(given).ok()?;
            (same && given != shown).then(|| {
                let quoted = toml::Value::String(given.to_owned()).to_string();
                format!("{key} = {quoted}")
            })
        });
        out.push_str(as_written.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub(super) fn opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// `None` means "keep forever", which the file writes as `0s`.
pub(super) fn duration_or_zero<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    duration(&d.unwrap_or_default(), s)
}

pub(super) fn time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.collect_str(&humantime::format_rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// `None` means "no limit" or "no cap", which the file writes as 0.
pub(super) fn zero_if_none<T, S>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error>
where
    T: Serialize + Default,
    S: Serializer,
{
    match v {
        Some(v) => v.serialize(s),
        None => T::default().serialize(s),
    }
}

/// A URL, its user and password (if any) redacted.
pub(super) fn url<S: Serializer>(u: &Option<url::Url>, s: S) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => s.serialize_str(&redact_url(u.as_str())),
        None => s.serialize_none(),
    }
}

pub(super) fn listen<S: Serializer>(a: &super::metrics::Listen, s: S) -> Result<S::Ok, S::Error> {
    use super::metrics::Listen;
    match a {
        Listen::At(a) => s.collect_str(a),
        // Left out (`skip_serializing_if`): no value stands for "each command's default".
        Listen::Off | Listen::Default => s.serialize_str("none"),
    }
}

pub(super) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The client secret shows only as the file it was read from; never its value.
pub(super) fn secret_file<S: Serializer>(
    secret: &Option<(ClientSecret, SecretSource)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some((_, SecretSource::File(p))) => s.collect_str(&p.display()),
        _ => s.serialize_none(),
    }
}

pub(super) fn no_secret_file(secret: &Option<(ClientSecret, SecretSource)>) -> bool {
    !matches!(secret, Some((_, SecretSource::File(_))))
}
