//! What a job's outcome does to its message ([`disposition`]), and the settler that does it:
//! delete, return at once, leave invisible for a growing delay, hold back at a spend cap, or
//! park for a dry run's pass.

use super::*;
use crate::sync::Locked;

impl<Q: Queue> Settle for Shared<Q> {
    fn hold_back(&self, hold: Duration) {
        if hold.is_zero() {
            // The budget is back for the next run: hand back at once, as at any stop.
            return;
        }
        *self.held_back_until.locked() = Some(Instant::now() + hold);
        tracing::info!(
            "a spend cap holds the messages this consumer has not started back for {}: they \
             stay invisible until its budget comes back (at most {} after each was received), \
             and nothing more is received",
            humantime::format_duration(whole_seconds(hold)),
            humantime::format_duration(MAX_VISIBILITY),
        );
        self.stop.cancel();
    }

    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), AckError>> {
        Box::pin(async move {
            let Origin::Sqs { message_id } = origin else {
                return Ok(());
            };
            if self.pass.one_pass {
                // A dry run changes nothing in the queue: the plan is reported, and every
                // message goes back together when the pass ends.
                self.park(message_id);
                return Ok(());
            }
            match disposition(outcome) {
                // Never started: back at once, unless a spend cap holds it back.
                Disposition::ReturnNow if outcome.is_none() => {
                    let delay = self.return_delay(message_id);
                    self.release(message_id, delay).await;
                    Ok(())
                }
                Disposition::ReturnNow => {
                    self.release(message_id, Duration::ZERO).await;
                    Ok(())
                }
                Disposition::Redrive => {
                    metrics::sqs_message("invalid");
                    self.forget(message_id);
                    Ok(())
                }
                Disposition::ReturnLater { attempt_limit } => {
                    let delay = if attempt_limit {
                        ATTEMPT_LIMIT_DELAY
                    } else {
                        self.redelivery_delay(message_id)
                    };
                    self.release(message_id, delay).await;
                    Ok(())
                }
                Disposition::Delete => self.delete(message_id).await,
            }
        })
    }
}

/// What a job's outcome does to its queue message (docs/contract.md): the one decision both
/// `consume` and the Lambda function (whose event source mapping deletes every record not
/// reported as a batch item failure) act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The job is done (`sent`, `already_confirmed`, `not_found`, `cooldown`): delete it.
    Delete,
    /// Never started, a dry run, or stopped between retries: back at once, for this consumer
    /// later or another one now.
    ReturnNow,
    /// `invalid`: left alone, so the queue's redrive policy moves it to the DLQ.
    Redrive,
    /// `failed`: back later (an hour for Cognito's per-user attempt limit).
    ReturnLater {
        /// The job hit the attempt limit.
        attempt_limit: bool,
    },
}

/// The [`Disposition`] of a job that ended so (`None`: never attempted).
pub(crate) fn disposition(outcome: Option<&Outcome>) -> Disposition {
    match outcome.map(|o| (o.kind, o.reason.as_ref())) {
        None
        | Some((OutcomeKind::DryRun, _))
        | Some((OutcomeKind::Failed, Some(Reason::Interrupted))) => Disposition::ReturnNow,
        Some((OutcomeKind::Invalid, _)) => Disposition::Redrive,
        Some((OutcomeKind::Failed, reason)) => Disposition::ReturnLater {
            attempt_limit: reason == Some(&Reason::AttemptLimit),
        },
        Some(_) => Disposition::Delete,
    }
}

impl<Q: Queue> Shared<Q> {
    /// How long a failed job's message stays away (see [`redelivery_delay`]).
    pub(super) fn redelivery_delay(&self, message_id: &str) -> Duration {
        let count = self
            .held
            .locked()
            .get(message_id)
            .map_or(1, |h| h.receive_count);
        redelivery_delay(self.settings.visibility_timeout, count)
    }

    /// How long a message never started stays away when handed back: no time at all, unless a
    /// spend cap holds messages back ([`Settle::hold_back`]); then until its budget comes back,
    /// within SQS's limit of 12 hours of visibility after a receive (less a minute, for the
    /// calls' own time).
    pub(super) fn return_delay(&self, message_id: &str) -> Duration {
        let Some(until) = *self.held_back_until.locked() else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let received = self
            .held
            .locked()
            .get(message_id)
            .map_or(now, |h| h.received_at);
        held_back_delay(until, received, now)
    }

    /// Gives `n` credits back to the poller.
    pub(super) fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.credits.add_permits(n);
        self.watch.locked().last_return = Instant::now();
    }

    /// Stops holding a message and gives its credit back, in one step (the watchdog compares
    /// the two). `None`: not held (settled already, or never admitted).
    pub(super) fn unhold(&self, message_id: &str) -> Option<Held> {
        let mut held = self.held.locked();
        let h = held.remove(message_id)?;
        if !h.parked {
            self.give_back(1);
        }
        Some(h)
    }

    /// A dry run's settled message: keep it invisible until the pass ends, free its credit and
    /// its FIFO group.
    pub(super) fn park(&self, message_id: &str) {
        let group = {
            let mut held = self.held.locked();
            let Some(h) = held.get_mut(message_id) else {
                return;
            };
            if h.parked {
                return;
            }
            h.parked = true;
            self.give_back(1);
            h.group.clone()
        };
        self.group_done(group.as_deref());
    }

    /// Stops holding a message without touching it (its visibility runs out on its own).
    pub(super) fn forget(&self, message_id: &str) {
        if let Some(h) = self.unhold(message_id) {
            self.group_done(h.group.as_deref());
        }
    }

    /// Hands every message still held back to the queue (in batches): visible at once, or,
    /// held back by a spend cap, when its budget comes back ([`Shared::return_delay`]).
    pub(super) async fn release_all(&self) {
        let held_back_until = *self.held_back_until.locked();
        let now = Instant::now();
        let handles: Vec<(String, String, Duration)> = self
            .held
            .locked()
            .drain()
            .map(|(id, h)| {
                let delay = held_back_until.map_or(Duration::ZERO, |until| {
                    held_back_delay(until, h.received_at, now)
                });
                (id, h.receipt_handle, delay)
            })
            .collect();
        for chunk in handles.chunks(10) {
            let receipts: Vec<String> = chunk.iter().map(|(_, r, _)| r.clone()).collect();
            // One visibility for the batch: the shortest, so none passes SQS's limit.
            let delay = chunk.iter().map(|(_, _, d)| *d).min().unwrap_or_default();
            let pending: Mutex<Vec<usize>> = Mutex::new((0..chunk.len()).collect());
            let policy = ack_policy(Duration::from_millis(100));
            // Each attempt hands back the entries still pending; the executor repeats it.
            let _ = Retry::new(&policy)
                .until(&self.give_up)
                .run(
                    |_| {
                        let (pending, receipts) = (&pending, &receipts);
                        async move {
                            let batch: Vec<String> = pending
                                .locked()
                                .iter()
                                .map(|&i| receipts[i].clone())
                                .collect();
                            let failed = match bounded(
                                &self.give_up,
                                self.queue.change_visibility_batch(&batch, delay),
                            )
                            .await
                            {
                                Ok(failed) => failed,
                                Err(e) => {
                                    tracing::debug!("returning messages failed: {e}");
                                    (0..batch.len()).collect()
                                }
                            };
                            for _ in 0..batch.len() - failed.len() {
                                metrics::sqs_message("returned");
                            }
                            let mut pending = pending.locked();
                            let still: Vec<usize> = pending
                                .iter()
                                .enumerate()
                                .filter(|(k, _)| failed.contains(k))
                                .map(|(_, &i)| i)
                                .collect();
                            *pending = still;
                            if pending.is_empty() { Ok(()) } else { Err(()) }
                        }
                    },
                    |_, _| Verdict::Retry(Quota::Unknown),
                )
                .await;
            let pending = pending.unlocked();
            for i in pending {
                // It comes back when its current visibility runs out instead.
                tracing::warn!(
                    message_id = chunk[i].0,
                    "could not return the message to the queue"
                );
            }
        }
    }

    /// Hands a message back to the queue: visible again after `delay` (0 = at once).
    pub(super) async fn release(&self, message_id: &str, delay: Duration) {
        let Some(h) = self.unhold(message_id) else {
            return;
        };
        self.set_visibility(message_id, &h.receipt_handle, delay)
            .await;
        if delay.is_zero() || !self.fifo {
            self.group_done(h.group.as_deref());
            return;
        }
        // A FIFO message that failed comes back later: the messages of its group held here must
        // not overtake it. Hand them back too; SQS delivers the group again in order.
        let Some(group) = h.group else { return };
        let behind: Vec<Input> = {
            let mut f = self.fifo_state.locked();
            f.busy.remove(&group);
            f.waiting.remove(&group).map(Vec::from).unwrap_or_default()
        };
        for input in behind {
            let Origin::Sqs { message_id } = input.origin().clone() else {
                continue;
            };
            // Never started: at once, or held back with the rest at a spend cap.
            let delay = self.return_delay(&message_id);
            if let Some(h) = self.unhold(&message_id) {
                self.set_visibility(&message_id, &h.receipt_handle, delay)
                    .await;
            }
        }
        self.fifo_ready.notify_one();
    }

    /// ChangeMessageVisibility, retried a few times; counts `returned` for a delay of 0.
    pub(super) async fn set_visibility(
        &self,
        message_id: &str,
        receipt_handle: &str,
        delay: Duration,
    ) {
        let policy = ack_policy(Duration::from_millis(100));
        let ran = Retry::new(&policy)
            .until(&self.give_up)
            .run(
                |_| {
                    bounded(
                        &self.give_up,
                        self.queue.change_visibility(receipt_handle, delay),
                    )
                },
                |e, attempts| {
                    tracing::debug!(message_id, attempts, "changing visibility failed: {e}");
                    Verdict::Retry(Quota::Unknown)
                },
            )
            .await;
        if let Err(failure) = ran.result {
            // It comes back when its current visibility runs out instead.
            let e = failure
                .into_last()
                .map_or_else(|| "the run's time was up".to_owned(), |e| e.to_string());
            tracing::warn!(message_id, "could not change the message's visibility: {e}");
            return;
        }
        // Never started: back to the queue, at once or when a spend cap's budget is back.
        if delay.is_zero() || self.held_back_until.locked().is_some() {
            metrics::sqs_message("returned");
        }
    }

    /// Deletes a finished job's message (batched by the acker) and waits for it. When the
    /// message was received again meanwhile, the delete is repeated with the newer receipt
    /// handle: SQS may ignore a delete with an outdated one.
    pub(super) async fn delete(&self, message_id: &str) -> Result<(), AckError> {
        let mut tried: Option<String> = None;
        let mut result = Ok(());
        for _ in 0..ACK_ATTEMPTS {
            let current = self
                .held
                .locked()
                .get(message_id)
                .map(|h| h.receipt_handle.clone());
            let Some(receipt_handle) = current else {
                return Ok(());
            };
            if tried.as_ref() == Some(&receipt_handle) {
                break;
            }
            let (done, wait) = oneshot::channel();
            let queued = self.acks.send(AckRequest {
                message_id: message_id.to_owned(),
                receipt_handle: receipt_handle.clone(),
                done,
            });
            result = match queued {
                Ok(()) => wait.await.unwrap_or(Err(AckError::Stopped)),
                Err(_) => Err(AckError::Stopped),
            };
            tried = Some(receipt_handle);
        }
        if let Some(h) = self.unhold(message_id) {
            self.group_done(h.group.as_deref());
        }
        result
    }

    /// A FIFO message arrives: ready at once if its group is idle, else queued behind it.
    pub(super) fn fifo_admit(&self, input: Input) {
        let Origin::Sqs { message_id } = input.origin() else {
            return;
        };
        let group = self
            .held
            .locked()
            .get(message_id)
            .and_then(|h| h.group.clone());
        let mut f = self.fifo_state.locked();
        match group {
            Some(g) if f.busy.contains(&g) => f.waiting.entry(g).or_default().push_back(input),
            Some(g) => {
                f.busy.insert(g);
                f.ready.push_back(input);
            }
            None => f.ready.push_back(input),
        }
    }

    /// A FIFO group's message is settled: the next one of the group may start.
    pub(super) fn group_done(&self, group: Option<&str>) {
        let (Some(g), true) = (group, self.fifo) else {
            return;
        };
        let mut f = self.fifo_state.locked();
        let next = f.waiting.get_mut(g).and_then(VecDeque::pop_front);
        match next {
            Some(input) => f.ready.push_back(input),
            None => {
                f.waiting.remove(g);
                f.busy.remove(g);
            }
        }
        drop(f);
        self.fifo_ready.notify_one();
    }
}

/// How long a message received at `received` is kept away, now, when held back until
/// `until`: that long, within SQS's 12 hours of visibility counted from the receive (less a
/// minute for the call's own time).
pub(crate) fn held_back_delay(until: Instant, received: Instant, now: Instant) -> Duration {
    let limit = MAX_VISIBILITY
        .saturating_sub(now.saturating_duration_since(received))
        .saturating_sub(Duration::from_secs(60));
    until.saturating_duration_since(now).min(limit)
}

/// Failed jobs come back later each time: the visibility timeout doubled per receive so far,
/// capped a minute under SQS's 12-hour limit.
pub(super) fn redelivery_delay(visibility_timeout: Duration, receive_count: u32) -> Duration {
    let factor = 2u32.saturating_pow(receive_count.max(1).saturating_sub(1).min(16));
    visibility_timeout
        .saturating_mul(factor)
        .min(MAX_VISIBILITY - Duration::from_secs(60))
}
