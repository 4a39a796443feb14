//! The claim decision, pure: given a user's row as a store read it inside its atomic step,
//! what a claim finds. Both backends call it, so SQLite and DynamoDB cannot drift apart on who
//! gets a code.

use std::time::Duration;

use super::types::{Claim, Holder, InDoubt, Millis, Rules, Stale};

/// The decision both backends share, given a user's row as read inside their atomic step:
/// its last send, its count of codes sent, its claim (with the holding run's state), and its
/// in-doubt mark.
///
/// The cap comes first: a capped user never gets another code, so `capped` says more than
/// `cooldown` (a later wave would not reach them either). It holds across runs because a claim
/// is exclusive and a send's count is written in the same atomic step that ends its claim: the
/// next claim reads the count the last send left.
pub(crate) fn decide(
    me: &str,
    last_sent: Option<Millis>,
    sends: i64,
    holder: Option<Holder<'_>>,
    mark: Option<InDoubt>,
    take_over: Option<&Stale>,
    rules: Rules,
) -> Claim {
    if let Some(max) = rules.max_sends_per_user
        && u64::try_from(sends).is_ok_and(|n| n >= max)
    {
        return Claim::Capped { sends };
    }
    if let Some(sent) = last_sent
        && sent >= rules.cooldown_since
    {
        return Claim::Cooldown { last_sent: sent };
    }
    match holder {
        None => Claim::Granted { in_doubt: mark },
        Some(h)
            if h.run != me
                && (h.ended || take_over.is_some_and(|s| s.run == h.run && s.beats == h.beats)) =>
        {
            Claim::Granted {
                in_doubt: Some(InDoubt {
                    run: h.run.to_owned(),
                    claimed_at: h.claimed_at,
                }),
            }
        }
        Some(h) => Claim::Held {
            run: h.run.to_owned(),
            beats: h.beats,
            lease: h
                .lease
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
        },
    }
}

/// What a claim would find for a row with this last send and count, claims of runs aside
/// ([`Store::peek`](super::Store::peek), `--dry-run`): the same rules as [`decide`].
pub(crate) fn plan(last_sent: Option<Millis>, sends: i64, rules: Rules) -> Option<Claim> {
    match decide("", last_sent, sends, None, None, None, rules) {
        Claim::Granted { .. } => None,
        decided => Some(decided),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            now: 10_000,
            cooldown_since: 5_000,
            alive_since: 9_000,
            max_sends_per_user: None,
        }
    }

    fn holder(run: &str, beats: i64, ended: bool) -> Option<Holder<'_>> {
        Some(Holder {
            run,
            claimed_at: 7,
            beats,
            ended,
            lease: None,
        })
    }

    #[test]
    fn a_send_within_the_cooldown_wins_over_everything() {
        let d = decide(
            "me",
            Some(6_000),
            0,
            holder("r", 1, true),
            None,
            None,
            rules(),
        );
        assert_eq!(d, Claim::Cooldown { last_sent: 6_000 });
    }

    #[test]
    fn an_old_send_does_not_block() {
        let d = decide("me", Some(4_999), 0, None, None, None, rules());
        assert_eq!(d, Claim::Granted { in_doubt: None });
    }

    #[test]
    fn a_claim_is_taken_over_only_from_an_ended_run_or_a_counter_seen_standing_still() {
        let doubt = Claim::Granted {
            in_doubt: Some(InDoubt {
                run: "other".into(),
                claimed_at: 7,
            }),
        };
        let held = Claim::Held {
            run: "other".into(),
            beats: 3,
            lease: None,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                None,
                rules()
            ),
            held
        );
        assert_eq!(
            decide("me", None, 0, holder("other", 3, true), None, None, rules()),
            doubt
        );
        let stale = Stale {
            run: "other".into(),
            beats: 3,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                Some(&stale),
                rules()
            ),
            doubt
        );
        // The counter moved since it was judged: alive after all.
        let moved = Stale {
            run: "other".into(),
            beats: 2,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, false),
                None,
                Some(&moved),
                rules()
            ),
            held
        );
        // Another job of this same run: held, never taken over.
        let mine = decide("me", None, 0, holder("me", 3, true), None, None, rules());
        assert!(matches!(mine, Claim::Held { .. }), "{mine:?}");
    }

    #[test]
    fn an_unclaimed_user_with_a_mark_is_granted_in_doubt() {
        let mark = InDoubt {
            run: "dead".into(),
            claimed_at: 1,
        };
        let d = decide("me", None, 0, None, Some(mark.clone()), None, rules());
        assert_eq!(
            d,
            Claim::Granted {
                in_doubt: Some(mark)
            }
        );
    }

    #[test]
    fn a_user_at_the_cap_is_capped_before_anything_else_and_below_it_is_not() {
        let capped = Rules {
            max_sends_per_user: Some(2),
            ..rules()
        };
        // At the cap: capped, whether in cooldown, held, or free.
        assert_eq!(
            decide(
                "me",
                Some(6_000),
                2,
                holder("r", 1, false),
                None,
                None,
                capped
            ),
            Claim::Capped { sends: 2 }
        );
        assert_eq!(
            decide("me", None, 3, None, None, None, capped),
            Claim::Capped { sends: 3 }
        );
        // Below it, the other rules as before.
        assert_eq!(
            decide("me", None, 1, None, None, None, capped),
            Claim::Granted { in_doubt: None }
        );
        assert_eq!(
            decide("me", Some(6_000), 1, None, None, None, capped),
            Claim::Cooldown { last_sent: 6_000 }
        );
        // No cap: any count is granted.
        assert_eq!(
            decide("me", None, 1_000, None, None, None, rules()),
            Claim::Granted { in_doubt: None }
        );
        // A dry run plans by the same rules.
        assert_eq!(plan(None, 2, capped), Some(Claim::Capped { sends: 2 }));
        assert_eq!(plan(Some(4_000), 1, capped), None);
    }
}
