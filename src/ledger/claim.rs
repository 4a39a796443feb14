//! The claim decision, pure: given a user's row as a store read it inside its atomic step,
//! what a claim finds. Both backends call it, so SQLite and DynamoDB cannot drift apart on who
//! gets a code.

use std::time::Duration;

use super::types::{Claim, Holder, InDoubt, Known, Millis, Rules, Stale};

/// The outcome last recorded for a user, and when (`last_outcome`, `last_outcome_at`).
pub(crate) type LastOutcome<'a> = Option<(&'a str, Millis)>;

/// The decision both backends share, given a user's row as read inside their atomic step:
/// its last send, its count of codes sent, its claim (with the holding run's state), its
/// in-doubt mark, and the outcome last recorded for it.
///
/// The cap comes first: a capped user never gets another code, so `capped` says more than
/// `cooldown` (a later wave would not reach them either). It holds across runs because a claim
/// is exclusive and a send's count is written in the same atomic step that ends its claim: the
/// next claim reads the count the last send left.
///
/// What is known (`--recheck-after`) comes after the cap and the cooldown, and only for a user
/// nobody holds and nobody left in doubt: a claim of a run that died mid-call is settled by a
/// call, whatever was known before it.
#[allow(clippy::too_many_arguments)] // the row's fields, each read in the store's atomic step
pub(crate) fn decide(
    me: &str,
    last_sent: Option<Millis>,
    sends: i64,
    holder: Option<Holder<'_>>,
    mark: Option<InDoubt>,
    last_outcome: LastOutcome<'_>,
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
        None if mark.is_none() => match known(last_outcome, rules) {
            Some((known, at)) => Claim::Known { known, at },
            None => Claim::Granted { in_doubt: None },
        },
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

/// What the ledger knows of a user by `rules`: their last outcome says confirmed or missing,
/// and was recorded within `--recheck-after`.
fn known(last_outcome: LastOutcome<'_>, rules: Rules) -> Option<(Known, Millis)> {
    let since = rules.recheck_since?;
    let (outcome, at) = last_outcome?;
    (at >= since).then_some(())?;
    Known::of(outcome).map(|k| (k, at))
}

/// What a claim would find for a row with this last send, count and last outcome, claims of
/// runs aside ([`Store::peek`](super::Store::peek), `--dry-run`): the same rules as [`decide`].
pub(crate) fn plan(
    last_sent: Option<Millis>,
    sends: i64,
    last_outcome: LastOutcome<'_>,
    rules: Rules,
) -> Option<Claim> {
    match decide("", last_sent, sends, None, None, last_outcome, None, rules) {
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
            recheck_since: Some(3_000),
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
            None,
            rules(),
        );
        assert_eq!(d, Claim::Cooldown { last_sent: 6_000 });
    }

    #[test]
    fn an_old_send_does_not_block() {
        let d = decide("me", Some(4_999), 0, None, None, None, None, rules());
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
                None,
                rules()
            ),
            held
        );
        assert_eq!(
            decide(
                "me",
                None,
                0,
                holder("other", 3, true),
                None,
                None,
                None,
                rules()
            ),
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
                None,
                Some(&moved),
                rules()
            ),
            held
        );
        // Another job of this same run: held, never taken over.
        let mine = decide(
            "me",
            None,
            0,
            holder("me", 3, true),
            None,
            None,
            None,
            rules(),
        );
        assert!(matches!(mine, Claim::Held { .. }), "{mine:?}");
    }

    #[test]
    fn an_unclaimed_user_with_a_mark_is_granted_in_doubt() {
        let mark = InDoubt {
            run: "dead".into(),
            claimed_at: 1,
        };
        let d = decide("me", None, 0, None, Some(mark.clone()), None, None, rules());
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
                None,
                capped
            ),
            Claim::Capped { sends: 2 }
        );
        assert_eq!(
            decide("me", None, 3, None, None, None, None, capped),
            Claim::Capped { sends: 3 }
        );
        // Below it, the other rules as before.
        assert_eq!(
            decide("me", None, 1, None, None, None, None, capped),
            Claim::Granted { in_doubt: None }
        );
        assert_eq!(
            decide("me", Some(6_000), 1, None, None, None, None, capped),
            Claim::Cooldown { last_sent: 6_000 }
        );
        // No cap: any count is granted.
        assert_eq!(
            decide("me", None, 1_000, None, None, None, None, rules()),
            Claim::Granted { in_doubt: None }
        );
        // A dry run plans by the same rules.
        assert_eq!(
            plan(None, 2, None, capped),
            Some(Claim::Capped { sends: 2 })
        );
        assert_eq!(plan(Some(4_000), 1, None, capped), None);
    }

    #[test]
    fn a_known_outcome_within_the_recheck_window_spares_the_call_and_nothing_else_does() {
        let confirmed = Some(("already_confirmed", 3_000));
        let missing = Some(("not_found", 9_000));
        let signed_in = Some(("already_signed_in", 4_000));
        let known = |k, at| Claim::Known { known: k, at };
        let granted = Claim::Granted { in_doubt: None };
        assert_eq!(
            decide("me", None, 0, None, None, confirmed, None, rules()),
            known(Known::Confirmed, 3_000)
        );
        assert_eq!(
            decide("me", None, 0, None, None, missing, None, rules()),
            known(Known::Missing, 9_000)
        );
        assert_eq!(
            decide("me", None, 0, None, None, signed_in, None, rules()),
            known(Known::Confirmed, 4_000)
        );
        // Recorded before the window: called again.
        let old = Some(("already_confirmed", 2_999));
        assert_eq!(
            decide("me", None, 0, None, None, old, None, rules()),
            granted
        );
        // Outcomes that say nothing lasting: called.
        for o in ["failed", "sent", "cooldown", "dry_run"] {
            let last = Some((o, 9_000));
            assert_eq!(
                decide("me", None, 0, None, None, last, None, rules()),
                granted
            );
        }
        // No window (`--recheck-after 0`, or a status just read from the pool): called.
        let fresh = Rules {
            recheck_since: None,
            ..rules()
        };
        assert_eq!(
            decide("me", None, 0, None, None, confirmed, None, fresh),
            granted
        );
        // A user left in doubt by a dead run is settled by a call, whatever was known.
        let mark = InDoubt {
            run: "dead".into(),
            claimed_at: 1,
        };
        assert_eq!(
            decide(
                "me",
                None,
                0,
                None,
                Some(mark.clone()),
                confirmed,
                None,
                rules()
            ),
            Claim::Granted {
                in_doubt: Some(mark)
            }
        );
        // A live holder is still waited for; the cap and the cooldown still come first.
        let held = decide(
            "me",
            None,
            0,
            holder("other", 3, false),
            None,
            confirmed,
            None,
            rules(),
        );
        assert!(matches!(held, Claim::Held { .. }), "{held:?}");
        assert_eq!(
            decide("me", Some(6_000), 0, None, None, confirmed, None, rules()),
            Claim::Cooldown { last_sent: 6_000 }
        );
        // A dry run plans by the same rule.
        assert_eq!(
            plan(None, 0, missing, rules()),
            Some(known(Known::Missing, 9_000))
        );
    }
}
