//! A batch of queue messages already in memory: the records of one SQS event given to the Lambda
//! function. The event source mapping has received them, and will delete every record that the
//! function's answer does not name as a batch item failure; so the source keeps, per message, what
//! its job's outcome means for it ([`sqs::disposition`], the same decision `consume` acts on), and
//! at the end names every record that must come back.
//!
//! A record must come back unless its job is done *and settled*: the engine settles a job only
//! after the ledger has its result, so a record is never answered as done ahead of the ledger.
//! Records the run never started (a deadline, a stop) get no settle at all, and come back too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::sqs::{self, Disposition};
use crate::job::{AckError, Input, Origin, Outcome, Settle, Source};
use crate::sync::Locked;
use crate::telemetry::metrics;

/// The records of one event, handed to the engine one at a time.
pub(crate) struct BatchSource {
    inputs: VecDeque<Input>,
    fates: Arc<Fates>,
}

/// What became of each record, by message id, in the order the event listed them.
#[derive(Default)]
pub(crate) struct Fates {
    order: Vec<String>,
    settled: Mutex<HashMap<String, Disposition>>,
    /// Records handed back never started (settled with `None`).
    unstarted: Mutex<std::collections::HashSet<String>>,
    /// Set at a spend cap ([`Settle::hold_back`]): how long the records never started should
    /// stay away.
    hold: Mutex<Option<std::time::Duration>>,
}

impl BatchSource {
    /// A batch of decoded messages (see [`sqs::input`]).
    pub(crate) fn new(inputs: Vec<Input>) -> Self {
        let mut order = Vec::with_capacity(inputs.len());
        for input in &inputs {
            if let Origin::Sqs { message_id } = input.origin()
                && !order.contains(message_id)
            {
                order.push(message_id.clone());
            }
        }
        Self {
            inputs: inputs.into(),
            fates: Arc::new(Fates {
                order,
                ..Fates::default()
            }),
        }
    }

    /// Ends the batch: the message ids that must come back, in the event's order (every record
    /// not settled as done), counted in `cognito_resend_sqs_messages_total` as `consume` counts
    /// them (`deleted` is what the event source mapping deletes). Call once the engine stopped.
    pub(crate) fn finish(&self) -> Vec<String> {
        let settled = self.fates.settled.locked();
        let mut returned = Vec::new();
        for id in &self.fates.order {
            metrics::sqs_message("received");
            match settled.get(id) {
                Some(Disposition::Delete) => metrics::sqs_message("deleted"),
                Some(Disposition::Redrive) => {
                    metrics::sqs_message("invalid");
                    returned.push(id.clone());
                }
                _ => {
                    metrics::sqs_message("returned");
                    returned.push(id.clone());
                }
            }
        }
        returned
    }
}

impl BatchSource {
    /// After a spend cap ([`Settle::hold_back`] with a time): how long, and the records never
    /// started (handed back, or never reached), in the event's order. They must stay away that
    /// long — the mapping would otherwise redeliver them at the visibility timeout, and count
    /// each delivery toward the queue's redrive policy while the budget is spent. Call once the
    /// engine stopped.
    pub(crate) fn held_back(&self) -> Option<(std::time::Duration, Vec<String>)> {
        let hold = (*self.fates.hold.locked())?;
        let settled = self.fates.settled.locked();
        let unstarted = self.fates.unstarted.locked();
        let ids = self
            .fates
            .order
            .iter()
            .filter(|id| unstarted.contains(*id) || !settled.contains_key(*id))
            .cloned()
            .collect();
        Some((hold, ids))
    }
}

impl Source for BatchSource {
    fn label(&self) -> &'static str {
        "sqs"
    }

    async fn next(&mut self) -> Option<Input> {
        self.inputs.pop_front()
    }

    fn settler(&self) -> Arc<dyn Settle> {
        self.fates.clone()
    }
}

impl Settle for Fates {
    fn hold_back(&self, hold: std::time::Duration) {
        if !hold.is_zero() {
            *self.hold.locked() = Some(hold);
        }
    }

    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), AckError>> {
        if let Origin::Sqs { message_id } = origin {
            if outcome.is_none() {
                self.unstarted.locked().insert(message_id.clone());
            }
            let mut settled = self.settled.locked();
            let fate = sqs::disposition(outcome);
            // A message listed twice in one event is done only if every copy's job is.
            let keep = match settled.get(message_id) {
                Some(Disposition::Delete) | None => fate,
                Some(other) => *other,
            };
            settled.insert(message_id.clone(), keep);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{OutcomeKind, Reason};

    fn outcome(kind: OutcomeKind) -> Outcome {
        Outcome::new(kind, 1)
    }

    #[tokio::test]
    async fn only_records_settled_as_done_are_left_out_of_the_failures() {
        let bodies = [
            ("m-sent", r#"{"username":"a"}"#),
            ("m-cooldown", r#"{"username":"b"}"#),
            ("m-failed", r#"{"username":"c"}"#),
            ("m-interrupted", r#"{"username":"d"}"#),
            ("m-poison", "not json"),
            ("m-never-started", r#"{"username":"e"}"#),
            ("m-not-reached", r#"{"username":"f"}"#),
        ];
        let mut source = BatchSource::new(
            bodies
                .iter()
                .map(|(id, body)| sqs::input((*id).to_owned(), body))
                .collect(),
        );
        let settler = source.settler();
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(source.next().await.expect("an input"));
        }
        assert!(matches!(&seen[4], Input::Unreadable(u) if u.reason.contains("m-poison")));
        let settle = |i: usize, o: Option<Outcome>| {
            let settler = settler.clone();
            let origin = seen[i].origin().clone();
            async move { settler.settle(&origin, o.as_ref()).await.unwrap() }
        };
        settle(0, Some(outcome(OutcomeKind::Sent))).await;
        settle(1, Some(outcome(OutcomeKind::Cooldown))).await;
        settle(2, Some(Outcome::failed(Reason::RetriesExhausted, None, 10))).await;
        settle(3, Some(Outcome::failed(Reason::Interrupted, None, 1))).await;
        settle(4, Some(outcome(OutcomeKind::Invalid))).await;
        settle(5, None).await;
        assert_eq!(
            source.finish(),
            [
                "m-failed",
                "m-interrupted",
                "m-poison",
                "m-never-started",
                "m-not-reached"
            ]
        );
    }

    #[tokio::test]
    async fn a_spend_cap_holds_back_the_records_never_started_and_only_them() {
        let mut source = BatchSource::new(
            ["m1", "m2", "m3", "m4"]
                .iter()
                .map(|id| sqs::input((*id).to_owned(), r#"{"username":"a"}"#))
                .collect(),
        );
        let settler = source.settler();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(source.next().await.expect("an input"));
        }
        assert_eq!(source.held_back(), None, "no cap, nothing held back");
        settler
            .settle(seen[0].origin(), Some(&outcome(OutcomeKind::Sent)))
            .await
            .unwrap();
        let failed = Outcome::failed(Reason::RetriesExhausted, None, 3);
        settler
            .settle(seen[1].origin(), Some(&failed))
            .await
            .unwrap();
        let hold = std::time::Duration::from_secs(3600);
        settler.hold_back(hold);
        settler.settle(seen[2].origin(), None).await.unwrap();
        // m3 was refused its reservation, m4 never reached: both held; m2 failed on its own.
        assert_eq!(
            source.held_back(),
            Some((hold, vec!["m3".into(), "m4".into()]))
        );
        assert_eq!(source.finish(), ["m2", "m3", "m4"]);
    }

    #[tokio::test]
    async fn a_message_listed_twice_is_done_only_if_both_copies_are() {
        let source = BatchSource::new(vec![
            sqs::input("m1".into(), r#"{"username":"a"}"#),
            sqs::input("m1".into(), r#"{"username":"a"}"#),
        ]);
        let origin = Origin::Sqs {
            message_id: "m1".into(),
        };
        let settler = source.settler();
        let failed = Outcome::failed(Reason::RetriesExhausted, None, 3);
        settler.settle(&origin, Some(&failed)).await.unwrap();
        settler
            .settle(&origin, Some(&outcome(OutcomeKind::Sent)))
            .await
            .unwrap();
        assert_eq!(source.finish(), ["m1"]);
    }
}
