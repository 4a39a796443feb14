//! Who a job is for: the person behind the row's string, before anything is claimed.
//!
//! Cognito resolves a `Username` the way the pool is set up: case-insensitively in a
//! case-insensitive pool, and an alias (email, phone number, `preferred_username`) or the
//! user's `sub` to the user it names. So `alice`, `Alice` and `alice@example.com` can be one
//! person, and keying the ledger by the row's string would send that person three codes. Here
//! a job gets its [`UserKey`](crate::job::UserKey): the canonical username (the one
//! `AdminGetUser` answers with), folded when the pool is case-insensitive or unknown.
//!
//! A pool read (`AdminGetUser`, under the precheck's own rate limit, through the one retry
//! layer) is made for a row when it can change the answer: with `--precheck` (every row: its
//! status decides), when the pool has alias or username attributes (any row may be an alias),
//! and for a row shaped like a `sub` (any pool resolves those). Answers are cached for the run,
//! keyed by the row's folded spelling, so a file that names a person five times reads the pool
//! once. Without pool access (no `--user-pool-id`), rows that look like an email, a phone
//! number or a `sub` are keyed as written and counted, so the summary can say how many might be
//! someone else's alias.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cognito::admin::{PoolAdmin, PoolUser};
use crate::cognito::profile::PoolProfile;
use crate::job::UsernameCase;
use crate::sync::Locked;

/// Answers kept at most; past it the cache starts over (a bound on memory for a run over
/// millions of rows: 100,000 entries are about 20 MB).
const CACHE_MAX: usize = 100_000;

/// How the engine tells who a job is for.
#[derive(Default)]
pub struct IdentityConfig {
    /// How the pool compares usernames (from the pool profile, `--case-sensitive-usernames`,
    /// or the default: insensitive).
    pub case: UsernameCase,
    /// Pool reads, when the run has the pool (`--user-pool-id`) and needs them.
    pub lookup: Option<PoolLookup>,
}

/// The pool reads a run makes for its jobs.
pub struct PoolLookup {
    /// The signed pool client.
    pub admin: PoolAdmin,
    /// `--precheck`: every row is read, and only `UNCONFIRMED` users are sent.
    pub precheck: bool,
    /// The pool has alias or username attributes: every row is read (resolved).
    pub resolve_aliases: bool,
    /// What the pool said at the start: the medium of each user's code comes from it.
    pub profile: PoolProfile,
    /// `--precheck-rate`: these reads per second at most (`None`: no limit).
    pub rate: Option<f64>,
}

impl PoolLookup {
    /// Whether `username` is read from the pool before its claim.
    pub(crate) fn wants(&self, username: &str) -> bool {
        self.precheck || self.resolve_aliases || looks_like_sub(username)
    }
}

/// What the pool said about a row.
#[derive(Debug, Clone)]
pub(crate) enum Looked {
    /// The user it names.
    Found(PoolUser),
    /// No user answers to it.
    Missing,
}

/// The run's cache of pool answers, by the row's spelling as the pool compares it.
#[derive(Default)]
pub(crate) struct Answers {
    map: Mutex<HashMap<String, Looked>>,
}

impl Answers {
    /// A cached answer for `spelling` (already keyed by the pool's case rule).
    pub(crate) fn get(&self, spelling: &str) -> Option<Looked> {
        self.map.locked().get(spelling).cloned()
    }

    /// Keeps `answer` for `spelling`.
    pub(crate) fn put(&self, spelling: String, answer: Looked) {
        let mut map = self.map.locked();
        if map.len() >= CACHE_MAX {
            map.clear();
        }
        map.insert(spelling, answer);
    }
}

/// Whether a row looks like something other than a plain username: an email address, a phone
/// number in E.164 form, or a `sub` (a UUID). Only counted (and, for a `sub`, resolved when the
/// pool is known): a username may legitimately look like any of them.
pub(crate) fn looks_like_alias(username: &str) -> bool {
    username.contains('@') || looks_like_phone(username) || looks_like_sub(username)
}

/// `+` and 7 to 15 digits (E.164).
fn looks_like_phone(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A UUID in its 8-4-4-4-12 hex form, as Cognito writes a `sub`.
pub(crate) fn looks_like_sub(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_shapes_are_told_from_plain_usernames() {
        for alias in [
            "alice@example.com",
            "+15550100123",
            "0b5e6a2c-3f1d-4c7e-9a8b-1c2d3e4f5a6b",
        ] {
            assert!(looks_like_alias(alias), "{alias}");
        }
        for plain in ["alice", "alice.smith", "+1", "15550100123", "user-1-2-3-4"] {
            assert!(!looks_like_alias(plain), "{plain}");
        }
        assert!(looks_like_sub("0B5E6A2C-3F1D-4C7E-9A8B-1C2D3E4F5A6B"));
    }

    #[test]
    fn the_cache_is_bounded() {
        let answers = Answers::default();
        for i in 0..=CACHE_MAX {
            answers.put(format!("u{i}"), Looked::Missing);
        }
        // The put that found it full started over.
        assert!(answers.get("u0").is_none());
        assert!(answers.get(&format!("u{CACHE_MAX}")).is_some());
    }
}
