//! What every section's validation shares: how a raw value is layered (serde: a flag that says
//! nothing leaves the key to a lower layer; numbers stay text until validated) and how text
//! becomes a typed value. Each parser here says only what is wrong with the value
//! ([`Invalid`]); the section that calls it adds which setting it was ([`super::ConfigError`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Whether a flag's value says nothing, so a lower layer decides.
pub(super) trait Unset {
    fn is_unset(&self) -> bool;
}

impl Unset for Option<String> {
    fn is_unset(&self) -> bool {
        self.as_deref().is_none_or(|s| s.trim().is_empty())
    }
}

impl Unset for Option<PathBuf> {
    fn is_unset(&self) -> bool {
        self.as_ref()
            .is_none_or(|p| p.to_string_lossy().trim().is_empty())
    }
}

impl Unset for Vec<String> {
    fn is_unset(&self) -> bool {
        self.is_empty()
    }
}

/// A boolean flag that is absent says nothing: it must not undo `true` from the file.
impl Unset for bool {
    fn is_unset(&self) -> bool {
        !*self
    }
}

/// serde's `skip_serializing_if` for every setting: an unset value leaves the key to a lower
/// layer.
pub(super) fn unset<T: Unset>(value: &T) -> bool {
    value.is_unset()
}

/// A value as text, whether TOML wrote it as a number or a string (flags and environment
/// variables always give text): numbers and durations are parsed once, by the validation, so a
/// bad one gets the same error naming its key whichever layer it came from.
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Int(i64),
        Float(f64),
        Str(String),
    }
    Ok(Some(match Text::deserialize(d)? {
        Text::Int(n) => n.to_string(),
        Text::Float(x) => x.to_string(),
        Text::Str(s) => s,
    }))
}

/// A built-in default, as the sections write them.
pub(super) fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}

/// A layered value as text; every key validation parses has a default, so an unset one reads
/// as empty and fails its parse naming the key.
pub(super) fn given(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// A text value with its surrounding blanks gone, `None` if nothing is left.
pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// What is wrong with a value, whichever setting it was given for.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Invalid {
    /// Not a number of the kind the setting takes.
    #[error("{0:?} is not a valid number")]
    NotANumber(String),
    /// Not a duration.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A duration that must not be zero.
    #[error("must be longer than 0")]
    Zero,
    /// A negative or non-finite rate.
    #[error("{0} must be 0 (no limit) or a positive number of calls per second")]
    NegativeRate(f64),
    /// A rate below [`MIN_RATE`].
    #[error(
        "{0} calls per second is below the smallest rate, {MIN_RATE} (one call every {every} \
         s); 0 means no limit",
        every = 1.0 / MIN_RATE
    )]
    TinyRate(f64),
    /// Not a URL (shown redacted).
    #[error("{shown:?} is not a URL: {source}")]
    NotAUrl {
        /// The text, its credentials redacted.
        shown: String,
        /// What the URL parser said.
        source: url::ParseError,
    },
    /// A URL of another scheme than http(s) (shown redacted).
    #[error("{0:?} must be an http or https URL")]
    NotHttp(String),
    /// Not a time or a date.
    #[error("{text:?} is not a time like 2026-11-01T00:00:00Z or a date like 2026-11-01: {source}")]
    NotATime {
        /// The text given.
        text: String,
        /// What the time parser said.
        source: humantime::TimestampError,
    },
}

/// A duration that does not parse: what [`parse_duration`] says.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a duration like 250ms, 30s, 10m or 24h ({source})")]
pub(crate) struct DurationError {
    /// The text given, trimmed.
    text: String,
    /// What humantime said.
    source: humantime::DurationError,
}

/// Parses "250ms", "30s", "10m", "24h" (and combinations like "1h 30m"); a bare `0` is zero.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|source| DurationError {
        text: t.to_owned(),
        source,
    })
}

/// A number of any kind the settings take.
pub(super) fn number<T: std::str::FromStr>(text: &str) -> Result<T, Invalid> {
    text.trim()
        .parse()
        .map_err(|_| Invalid::NotANumber(text.to_owned()))
}

/// A count where 0 means "none" (no cap, no limit).
pub(super) fn count(text: &str) -> Result<Option<u64>, Invalid> {
    let n: u64 = number(text)?;
    Ok((n > 0).then_some(n))
}

/// A duration; 0 allowed.
pub(super) fn duration(text: &str) -> Result<Duration, Invalid> {
    Ok(parse_duration(text)?)
}

/// A duration longer than 0.
pub(super) fn positive_duration(text: &str) -> Result<Duration, Invalid> {
    let d = duration(text)?;
    if d.is_zero() {
        return Err(Invalid::Zero);
    }
    Ok(d)
}

/// The smallest non-zero calls-per-second a rate setting accepts: one call every 1000 s. A
/// smaller one is almost certainly a typo, and its interval (1/rate) overflows the timers the
/// rate limiter works with.
pub(crate) const MIN_RATE: f64 = 0.001;

/// A calls-per-second setting: 0 means no limit (`None`).
pub(super) fn rate(text: &str) -> Result<Option<f64>, Invalid> {
    let rate: f64 = number(text)?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(Invalid::NegativeRate(rate));
    }
    if rate > 0.0 && rate < MIN_RATE {
        return Err(Invalid::TinyRate(rate));
    }
    Ok((rate > 0.0).then_some(rate))
}

/// An http(s) URL, if one was given.
pub(super) fn http_url(text: Option<String>) -> Result<Option<url::Url>, Invalid> {
    let Some(s) = non_empty(text) else {
        return Ok(None);
    };
    // Echoed redacted: a URL may carry a user and password (a Pushgateway behind basic auth).
    let shown = redact_url(&s);
    let url = url::Url::parse(&s).map_err(|source| Invalid::NotAUrl {
        shown: shown.clone(),
        source,
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Invalid::NotHttp(shown));
    }
    Ok(Some(url))
}

/// An RFC 3339 time (`2026-11-01T00:00:00Z`), or a date (`2026-11-01`, midnight UTC).
pub(super) fn timestamp(value: Option<&str>) -> Result<Option<std::time::SystemTime>, Invalid> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let full = if v.len() == 10 {
        format!("{v}T00:00:00Z")
    } else {
        v.to_owned()
    };
    humantime::parse_rfc3339_weak(&full)
        .map(Some)
        .map_err(|source| Invalid::NotATime {
            text: v.to_owned(),
            source,
        })
}

/// A URL as it may be shown (`check`, logs, errors): user and password, if any, replaced by
/// `<redacted>`. Works on text, so a URL that does not even parse is redacted too.
pub(crate) fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_owned();
    };
    let rest = &text[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &text[..scheme_end], &rest[at..]),
        None => text.to_owned(),
    }
}
