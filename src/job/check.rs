//! The checks every source applies to a job's username and client id, so a bad one is
//! `invalid` without a call: Cognito's limits, and no invisible characters.

use super::MAX_USERNAME_CHARS;

/// Checks a username the way Cognito's model constrains it, so a bad one is `invalid` without a
/// call: not empty, at most 128 characters, no whitespace, control or format characters.
///
/// Format characters (Unicode category Cf: zero-width spaces, bidirectional overrides such as
/// U+202E, a byte order mark inside the text) are invisible: a username holding one looks like
/// another user's in every log, report and terminal. Cognito's own pattern
/// (`[\p{L}\p{M}\p{S}\p{N}\p{P}]+`) has no room for them either. Every source (CSV, SQS, the
/// pool) passes its usernames through here.
pub(crate) fn check_username(username: &str) -> Result<(), BadField> {
    const FIELD: &str = "username";
    if username.is_empty() {
        return Err(BadField::Empty(FIELD));
    }
    let chars = username.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(BadField::TooLong {
            field: FIELD,
            chars,
            max: MAX_USERNAME_CHARS,
        });
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(BadField::Whitespace(FIELD));
    }
    if let Some(c) = username.chars().find(|&c| is_format_char(c)) {
        return Err(BadField::FormatChar(FIELD, c));
    }
    Ok(())
}

/// Why a username or client id is not one Cognito would take: a job's `invalid` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadField {
    /// Nothing there.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Longer than Cognito's model allows.
    #[error("{field} is {chars} characters long; Cognito allows at most {max}")]
    TooLong {
        /// `username` or `client_id`.
        field: &'static str,
        /// Its length in characters.
        chars: usize,
        /// Cognito's limit.
        max: usize,
    },
    /// Whitespace or a control character.
    #[error("{0} contains whitespace or control characters")]
    Whitespace(&'static str),
    /// An invisible format character (Unicode category Cf).
    #[error("{0} contains the invisible format character U+{code:04X}", code = u32::from(*.1))]
    FormatChar(&'static str, char),
    /// A character outside the client id's pattern.
    #[error(
        "{0} contains {1:?} (U+{code:04X}); Cognito allows only letters, digits, `_` and `+`",
        code = u32::from(*.1)
    )]
    NotInPattern(&'static str, char),
}

/// Cognito's limit on an app client id's length, in characters.
pub(crate) const MAX_CLIENT_ID_CHARS: usize = 128;

/// Checks an app client id against Cognito's model (`[\w+]+`, 1 to 128 characters; `\w` is
/// ASCII there: letters, digits, `_`). A job's client id becomes part of the ledger key and of
/// a DynamoDB item, so one that Cognito would refuse anyway is `invalid` before it gets there.
pub(crate) fn check_client_id(client_id: &str) -> Result<(), BadField> {
    const FIELD: &str = "client_id";
    if client_id.is_empty() {
        return Err(BadField::Empty(FIELD));
    }
    let chars = client_id.chars().count();
    if chars > MAX_CLIENT_ID_CHARS {
        return Err(BadField::TooLong {
            field: FIELD,
            chars,
            max: MAX_CLIENT_ID_CHARS,
        });
    }
    if let Some(c) = client_id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '+'))
    {
        return Err(BadField::NotInPattern(FIELD, c));
    }
    Ok(())
}

/// Unicode's format characters (general category Cf, Unicode 15.1), by range. An explicit list
/// rather than a crate: it is short, and it changes only when Unicode adds a Cf character (rare;
/// any character added later would still be refused by Cognito's pattern on the call).
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a Unicode format character (category Cf).
pub(crate) fn is_format_char(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}
