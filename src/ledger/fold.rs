//! Folding a ledger's usernames: the one-time migration of its keys to the case-insensitive
//! key of a person ([`crate::job::UserKey`]).
//!
//! Until keys were folded, the ledger keyed a user by the row's spelling, so `alice`, `Alice`
//! and `ALICE` were three rows, and a case-insensitive pool's user could get a code for each.
//! [`super::Store::fold_usernames`] merges every row whose username differs from its
//! [`fold_username`](crate::job::fold_username) into the row of the folded key (created if
//! missing) and removes it, once per ledger (a marker records it), and only when a run opens the
//! ledger for a case-insensitive pool ([`super::open`]). Both stores merge with [`merge`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::{InDoubt, Millis};

/// What [`super::Store::fold_usernames`] did: `rows` rows with a non-folded username were
/// merged into `users` users (the rows of their folded keys). Zeros once the ledger's keys are
/// folded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Folded {
    /// Rows merged into another and removed.
    pub rows: u64,
    /// Users (folded keys) they were merged into.
    pub users: u64,
}

/// A claim as a row holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hold {
    /// The claiming run.
    pub run: String,
    /// When it claimed.
    pub claimed_at: Millis,
    /// DynamoDB's `claim_token` (how a claim whose answer was lost is told to be ours): it goes
    /// with its claim.
    pub token: Option<String>,
}

/// A user's row, as both stores keep it, in the shape the fold merges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Row {
    /// Codes sent.
    pub sends: i64,
    /// The last send.
    pub last_sent_at: Option<Millis>,
    /// The last outcome recorded.
    pub last_outcome: Option<String>,
    /// When it was recorded.
    pub last_outcome_at: Option<Millis>,
    /// The claim held on the user.
    pub claim: Option<Hold>,
    /// The in-doubt mark.
    pub doubt: Option<InDoubt>,
    /// Codes sent per wave.
    pub waves: BTreeMap<String, i64>,
}

/// Merges two rows of one person (`into` is the folded key's row, or the merge so far):
///
/// - sends add up, and so do the codes of each wave;
/// - the latest `last_sent_at` wins;
/// - `last_outcome` and `last_outcome_at` come from the row with the latest `last_outcome_at`
///   (a row with an outcome and no time, as version 1 wrote, counts as the oldest; a tie keeps
///   `into`'s);
/// - an in-doubt mark survives: if either row has one it is kept; if both, the earlier
///   (`doubt_at`; a tie keeps `into`'s);
/// - a claim: if one row holds one it is kept (with its token); if both, the newer (`claimed_at`;
///   a tie keeps `into`'s) is kept and the other becomes the in-doubt mark, unless there is one
///   already — a claim is a call that may have happened, so it must not be forgotten.
///
/// The empty row ([`Row::default`]) is the identity: merging into it gives the other row.
pub(crate) fn merge(into: Row, from: Row) -> Row {
    let sends = into.sends.saturating_add(from.sends);
    let last_sent_at = into.last_sent_at.max(from.last_sent_at);
    let outcome_key = |r: &Row| (r.last_outcome_at, r.last_outcome.is_some());
    let (last_outcome, last_outcome_at) = if outcome_key(&from) > outcome_key(&into) {
        (from.last_outcome, from.last_outcome_at)
    } else {
        (into.last_outcome, into.last_outcome_at)
    };
    let mut doubt = match (into.doubt, from.doubt) {
        (Some(a), Some(b)) if b.claimed_at < a.claimed_at => Some(b),
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let claim = match (into.claim, from.claim) {
        (Some(a), Some(b)) => {
            let (kept, other) = if b.claimed_at > a.claimed_at {
                (b, a)
            } else {
                (a, b)
            };
            doubt.get_or_insert(InDoubt {
                run: other.run,
                claimed_at: other.claimed_at,
            });
            Some(kept)
        }
        (a, b) => a.or(b),
    };
    let mut waves = into.waves;
    for (wave, n) in from.waves {
        let count = waves.entry(wave).or_default();
        *count = count.saturating_add(n);
    }
    Row {
        sends,
        last_sent_at,
        last_outcome,
        last_outcome_at,
        claim,
        doubt,
        waves,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(run: &str, at: Millis) -> Option<Hold> {
        Some(Hold {
            run: run.into(),
            claimed_at: at,
            token: Some(format!("tok-{run}")),
        })
    }

    fn mark(run: &str, at: Millis) -> Option<InDoubt> {
        Some(InDoubt {
            run: run.into(),
            claimed_at: at,
        })
    }

    #[test]
    fn sends_and_waves_add_up_and_the_latest_send_and_outcome_win() {
        let a = Row {
            sends: 2,
            last_sent_at: Some(100),
            last_outcome: Some("sent".into()),
            last_outcome_at: Some(100),
            waves: [("w1".to_owned(), 1), ("w2".to_owned(), 1)].into(),
            ..Row::default()
        };
        let b = Row {
            sends: 3,
            last_sent_at: Some(90),
            last_outcome: Some("failed".into()),
            last_outcome_at: Some(200),
            waves: [("w2".to_owned(), 2), ("w3".to_owned(), 1)].into(),
            ..Row::default()
        };
        let m = merge(a.clone(), b.clone());
        assert_eq!(m.sends, 5);
        assert_eq!(m.last_sent_at, Some(100));
        assert_eq!(
            (m.last_outcome.as_deref(), m.last_outcome_at),
            (Some("failed"), Some(200))
        );
        assert_eq!(
            m.waves,
            [
                ("w1".to_owned(), 1),
                ("w2".to_owned(), 3),
                ("w3".to_owned(), 1)
            ]
            .into()
        );
        // The same either way round (no ties here).
        assert_eq!(merge(b, a), m);
    }

    #[test]
    fn the_empty_row_is_the_identity() {
        let a = Row {
            sends: 1,
            last_sent_at: Some(5),
            last_outcome: Some("sent".into()),
            last_outcome_at: Some(5),
            claim: hold("r", 6),
            doubt: mark("d", 4),
            waves: [("w".to_owned(), 1)].into(),
        };
        assert_eq!(merge(Row::default(), a.clone()), a);
        assert_eq!(merge(a.clone(), Row::default()), a);
    }

    #[test]
    fn an_outcome_without_a_time_loses_to_one_with_a_time_and_beats_none() {
        let old = Row {
            last_outcome: Some("sent".into()),
            ..Row::default()
        };
        let timed = Row {
            last_outcome: Some("failed".into()),
            last_outcome_at: Some(1),
            ..Row::default()
        };
        assert_eq!(
            merge(old.clone(), timed.clone()).last_outcome.as_deref(),
            Some("failed")
        );
        assert_eq!(
            merge(Row::default(), old.clone()).last_outcome.as_deref(),
            Some("sent")
        );
        assert_eq!(merge(timed, old).last_outcome_at, Some(1));
    }

    #[test]
    fn an_in_doubt_mark_survives_and_of_two_the_earlier_is_kept() {
        let with = |d| Row {
            doubt: d,
            ..Row::default()
        };
        assert_eq!(
            merge(with(None), with(mark("a", 5))).doubt,
            mark("a", 5),
            "either side"
        );
        assert_eq!(merge(with(mark("a", 5)), with(None)).doubt, mark("a", 5));
        assert_eq!(
            merge(with(mark("a", 5)), with(mark("b", 3))).doubt,
            mark("b", 3)
        );
        assert_eq!(
            merge(with(mark("a", 3)), with(mark("b", 5))).doubt,
            mark("a", 3)
        );
    }

    #[test]
    fn a_single_claim_is_kept_with_its_token() {
        let claimed = Row {
            claim: hold("r", 7),
            ..Row::default()
        };
        let m = merge(Row::default(), claimed.clone());
        assert_eq!(m.claim, hold("r", 7));
        assert_eq!(m.doubt, None);
        assert_eq!(merge(claimed, Row::default()).claim, hold("r", 7));
    }

    #[test]
    fn of_two_claims_the_newer_is_kept_and_the_other_becomes_the_mark_unless_there_is_one() {
        let claimed = |run, at, doubt| Row {
            claim: hold(run, at),
            doubt,
            ..Row::default()
        };
        let m = merge(claimed("old", 5, None), claimed("new", 9, None));
        assert_eq!(m.claim, hold("new", 9));
        assert_eq!(m.doubt, mark("old", 5));
        let m = merge(claimed("new", 9, None), claimed("old", 5, None));
        assert_eq!(m.claim, hold("new", 9));
        assert_eq!(m.doubt, mark("old", 5));
        // A mark already there stays (the earlier of two marks, as ever).
        let m = merge(claimed("old", 5, mark("d", 8)), claimed("new", 9, None));
        assert_eq!((m.claim, m.doubt), (hold("new", 9), mark("d", 8)));
        let m = merge(
            claimed("old", 5, mark("d", 8)),
            claimed("new", 9, mark("e", 2)),
        );
        assert_eq!((m.claim, m.doubt), (hold("new", 9), mark("e", 2)));
    }
}
