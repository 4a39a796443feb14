//! Where jobs come from. A [`Source`] yields [`Input`]s one at a time, when the engine has room
//! for them, and is told how each job ended ([`Settle`]), so a queue can acknowledge it. The
//! engine does not know which source it runs.
//!
//! - [`csv`]: a backfill file or stdin, streamed through a bounded channel.
//! - [`sqs`]: a queue, long-polled, with visibility heartbeats and batched deletes.
//! - [`pool`]: the user pool itself (ListUsers), for `discover` and `backfill --from-pool`.

pub mod csv;
pub mod pool;
pub mod sqs;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

use crate::outcome::Outcome;

/// Cognito's limit on a username's length, in characters.
pub const MAX_USERNAME_CHARS: usize = 128;

/// One ResendConfirmationCode to make, with every request field a job may carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResendRequest {
    /// The Cognito username (personal data: logs show it hashed).
    pub username: String,
    /// The job's own app client id; `None` uses `--client-id`.
    pub client_id: Option<String>,
    /// ClientMetadata, passed to the pool's Lambda triggers.
    pub client_metadata: BTreeMap<String, String>,
    /// AnalyticsMetadata.AnalyticsEndpointId.
    pub analytics_endpoint_id: Option<String>,
    /// UserContextData.EncodedData (advanced security).
    pub encoded_data: Option<String>,
    /// UserContextData.IpAddress.
    pub ip_address: Option<String>,
}

/// Where a job came from: the `source` field of the report and the key for acknowledging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A CSV record starting at this line (the header is line 1).
    Csv {
        /// 1-based line number.
        line: u64,
    },
    /// An SQS message.
    Sqs {
        /// Its MessageId.
        message_id: String,
    },
    /// A user discovered in the pool (`backfill --from-pool`).
    Pool {
        /// 1-based, in discovery order.
        index: u64,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Csv { line } => write!(f, "csv:{line}"),
            Self::Sqs { message_id } => write!(f, "sqs:{message_id}"),
            Self::Pool { index } => write!(f, "pool:{index}"),
        }
    }
}

/// A readable job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Where it came from.
    pub origin: Origin,
    /// What to send.
    pub request: ResendRequest,
}

/// A row or message that could not be read: it ends as outcome `invalid`.
#[derive(Debug, Clone)]
pub struct Unreadable {
    /// Where it came from.
    pub origin: Origin,
    /// What is wrong, naming the row or message.
    pub reason: String,
    /// The username, when one could be read at all.
    pub username: Option<String>,
}

/// What a source yields.
#[derive(Debug, Clone)]
pub enum Input {
    /// A job to run.
    Job(Job),
    /// A row or message that cannot become a job.
    Unreadable(Unreadable),
}

impl Input {
    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        match self {
            Self::Job(j) => &j.origin,
            Self::Unreadable(u) => &u.origin,
        }
    }
}

/// A stream of jobs.
pub trait Source: Send {
    /// The `source` label of `cognito_resend_jobs_total`.
    fn label(&self) -> &'static str;

    /// The next input, or `None` at the end. Called only when the engine can start a job now, so
    /// a source never needs to read further ahead than its own small buffer.
    fn next(&mut self) -> impl Future<Output = Option<Input>> + Send;

    /// The acknowledger the engine tells each job's fate.
    fn settler(&self) -> std::sync::Arc<dyn Settle>;

    /// The error that ended the input early (an unreadable file, a failed discovery), if any:
    /// jobs before it have their outcomes, the rest were never read.
    fn take_failure(&mut self) -> Option<String> {
        None
    }
}

/// Told how each job ended, before the outcome is reported.
pub trait Settle: Send + Sync {
    /// `Some(outcome)`: the job ended so. `None`: the job was never attempted (the run stopped
    /// first) and should come back later. `Err(detail)`: the source could not acknowledge the
    /// outcome (a queue message that could not be deleted will come back), so the job is not
    /// done: the engine reports it `failed` with reason `ack_failed`.
    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// For sources with nothing to acknowledge (a file: rerunning it is how it resumes).
#[derive(Debug, Default)]
pub struct NothingToSettle;

impl Settle for NothingToSettle {
    fn settle<'a>(
        &'a self,
        _: &'a Origin,
        _: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Checks a username the way Cognito's model constrains it, so a bad one is `invalid` without a
/// call: not empty, at most 128 characters, no whitespace, control or format characters.
///
/// Format characters (Unicode category Cf: zero-width spaces, bidirectional overrides such as
/// U+202E, a byte order mark inside the text) are invisible: a username holding one looks like
/// another user's in every log, report and terminal. Cognito's own pattern
/// (`[\p{L}\p{M}\p{S}\p{N}\p{P}]+`) has no room for them either. Every source (CSV, SQS, the
/// pool) passes its usernames through here.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("username is empty".into());
    }
    let chars = username.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(format!(
            "username is {chars} characters long; Cognito allows at most {MAX_USERNAME_CHARS}"
        ));
    }
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("username contains whitespace or control characters".into());
    }
    if let Some(c) = username.chars().find(|&c| is_format_char(c)) {
        return Err(format!(
            "username contains the invisible format character U+{:04X}",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Cognito's limit on an app client id's length, in characters.
pub const MAX_CLIENT_ID_CHARS: usize = 128;

/// Checks an app client id against Cognito's model (`[\w+]+`, 1 to 128 characters; `\w` is
/// ASCII there: letters, digits, `_`). A job's client id becomes part of the ledger key and of
/// a DynamoDB item, so one that Cognito would refuse anyway is `invalid` before it gets there.
pub fn check_client_id(client_id: &str) -> Result<(), String> {
    if client_id.is_empty() {
        return Err("client_id is empty".into());
    }
    let chars = client_id.chars().count();
    if chars > MAX_CLIENT_ID_CHARS {
        return Err(format!(
            "client_id is {chars} characters long; Cognito allows at most {MAX_CLIENT_ID_CHARS}"
        ));
    }
    if let Some(c) = client_id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '+'))
    {
        return Err(format!(
            "client_id contains {c:?} (U+{:04X}); Cognito allows only letters, digits, `_` and `+`",
            u32::from(c)
        ));
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
pub fn is_format_char(c: char) -> bool {
    let c = u32::from(c);
    FORMAT_CHARS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_characters_are_refused_like_control_characters() {
        for bad in [
            "ali\u{200B}ce",
            "\u{202E}ecila",
            "bob\u{FEFF}",
            "a\u{2066}b",
            "soft\u{00AD}hyphen",
            "tag\u{E0041}",
        ] {
            let err = check_username(bad).unwrap_err();
            assert!(err.contains("format character"), "{bad:?}: {err}");
        }
        for bad in ["a b", "tab\there", "nl\n", "nul\0"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        for good in [
            "alice",
            "+15551234567",
            "-dash",
            "josé",
            "名前",
            "a@b.c",
            "=x",
        ] {
            assert_eq!(check_username(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn client_ids_follow_cognitos_pattern() {
        for good in ["1example23456789", "abc_DEF+9", &"a".repeat(128)] {
            assert_eq!(check_client_id(good), Ok(()), "{good:?}");
        }
        let cases = [
            (String::new(), "empty"),
            ("a".repeat(129), "129 characters"),
            ("c1 ".into(), "' '"),
            ("c-1".into(), "'-'"),
            ("c\u{200B}1".into(), "U+200B"),
            ("clïent".into(), "U+00EF"),
            ("c/1".into(), "'/'"),
        ];
        for (bad, expected) in cases {
            let err = check_client_id(&bad).unwrap_err();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }
}
