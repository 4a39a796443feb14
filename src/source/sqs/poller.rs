//! The poller: long-polls ReceiveMessage for as many messages as there are free credits, admits
//! them to the held table and hands them to the engine; and the `/healthz` watchdog that reads
//! what it is doing ([`PollerWatch`]).

use super::*;
use crate::sync::Locked;

/// What the poller is doing, for the `/healthz` watchdog.
#[derive(Debug, Clone)]
pub(super) struct PollerWatch {
    /// Since when it has been waiting for a credit (`None`: it is not).
    pub(super) waiting_since: Option<Instant>,
    /// Since when it has been trying to receive without success (`None`: the last one worked).
    pub(super) trying_since: Option<Instant>,
    /// Why the last receive failed.
    pub(super) last_error: Option<String>,
    /// When a credit last came back.
    pub(super) last_return: Instant,
    /// The poller ended (a signal, the end of a pass, `--max-messages`): nothing to watch.
    pub(super) stopped: bool,
}

/// Why the poller is stuck: `/healthz` fails with it, and the orchestrator restarts the
/// process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Stuck {
    /// The receive has failed (or not answered) for too long.
    #[error(
        "no message could be received for {}: {}",
        humantime::format_duration(*lasted),
        last_error.as_deref().unwrap_or("the receive has not answered")
    )]
    CannotReceive {
        /// Since the first failure.
        lasted: Duration,
        /// The last error, if the receive answered one.
        last_error: Option<String>,
    },
    /// Credits went missing: the poller waits for one that no message holds.
    #[error(
        "the poller has waited {} for a credit while only {held} of {total} are held by \
         messages: credits were lost",
        humantime::format_duration(*waited)
    )]
    CreditsLost {
        /// How long it has waited.
        waited: Duration,
        /// Credits held by messages in progress.
        held: usize,
        /// Credits there are.
        total: usize,
    },
}

/// The watchdog's verdict on a snapshot of the poller: `Err(reason)` when it has been unable to
/// receive for longer than `bound`. `active` is the messages held and not parked, `total` the
/// credits there are.
pub(super) fn diagnose(
    w: &PollerWatch,
    active: usize,
    total: usize,
    now: Instant,
    bound: Duration,
) -> Result<(), Stuck> {
    if w.stopped {
        return Ok(());
    }
    if let Some(since) = w.trying_since
        && now.duration_since(since) > bound
    {
        return Err(Stuck::CannotReceive {
            lasted: whole_seconds(now.duration_since(since)),
            last_error: w.last_error.clone(),
        });
    }
    // Waiting for a credit is normal while every credit is held by a message in progress. A
    // credit that no held message has, with none coming back for as long, is lost.
    if let Some(since) = w.waiting_since
        && now.duration_since(since) > bound
        && now.duration_since(w.last_return) > bound
        && active < total
    {
        return Err(Stuck::CreditsLost {
            waited: whole_seconds(now.duration_since(since)),
            held: active,
            total,
        });
    }
    Ok(())
}

/// What became of a received message.
pub(super) enum Admitted {
    /// A new message: hand it to the engine.
    New(Input),
    /// A message this process already holds, received again: its job is already here.
    Again,
    /// No id or receipt handle: nothing can be done with it.
    Unusable,
}

/// The poller: receive as many messages as there are credits, decode, hand over. It ends on a
/// signal, when the engine is gone, at the end of a dry run's pass, or after `--max-messages`.
pub(super) async fn poll<Q: Queue>(
    shared: Arc<Shared<Q>>,
    tx: mpsc::Sender<Input>,
    ready: Readiness,
    stop: CancellationToken,
) {
    poll_until_done(&shared, tx, ready, stop).await;
    let mut w = shared.watch.locked();
    w.stopped = true;
}

pub(super) async fn poll_until_done<Q: Queue>(
    shared: &Arc<Shared<Q>>,
    tx: mpsc::Sender<Input>,
    ready: Readiness,
    stop: CancellationToken,
) {
    let settings = &shared.settings;
    let policy = receive_policy();
    let mut received_total: u64 = 0;
    loop {
        let left = match settings.max_messages {
            Some(max) if received_total >= max => {
                tracing::info!("received --max-messages ({max}) messages: receiving no more");
                return;
            }
            Some(max) => max - received_total,
            None => u64::MAX,
        };
        // Failed receives are retried by the executor (a fresh backoff after each success);
        // a stop ends the poller, between attempts or during one.
        let ran = Retry::new(&policy)
            .until(&stop)
            .run_observed(
                |_| receive_some(shared, left, &ready, &stop),
                |e, _| match e {
                    Received::Failed => Verdict::Retry(Quota::Unknown),
                    Received::Stopped => Verdict::Stop(Quota::Unknown),
                },
                |_, _, delay| {
                    let error = shared.watch.locked().last_error.clone().unwrap_or_default();
                    tracing::warn!(
                        "receiving from the queue failed (retrying in {delay:.1?}): {error}"
                    );
                },
            )
            .await;
        let Ok((messages, want)) = ran.result else {
            return;
        };
        if ran.attempts > 1 {
            tracing::info!("receiving from the queue works again");
        }
        if messages.is_empty() && shared.pass.one_pass {
            shared.give_back(want as usize);
            tracing::info!("a long poll came back empty: the dry run's pass is complete");
            return;
        }
        let unused = want as usize - messages.len().min(want as usize);
        shared.give_back(unused);
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            let input = match shared.admit(message) {
                Admitted::New(input) => input,
                Admitted::Again | Admitted::Unusable => {
                    shared.give_back(1);
                    continue;
                }
            };
            received_total += 1;
            if let Err(unsent) = tx.send(input).await {
                // The engine is gone (the run is stopping): hand back what it will not take.
                let mut back = vec![unsent.0];
                for m in messages.by_ref() {
                    match shared.admit(m) {
                        Admitted::New(input) => back.push(input),
                        Admitted::Again | Admitted::Unusable => shared.give_back(1),
                    }
                }
                for input in back {
                    if let Origin::Sqs { message_id } = input.origin() {
                        let delay = shared.return_delay(message_id);
                        shared.release(message_id, delay).await;
                    }
                }
                return;
            }
        }
    }
}

/// Why [`receive_some`] brought nothing.
pub(super) enum Received {
    /// The receive failed (counted, its error kept for `/healthz` and the retry's log line,
    /// credits given back): retried.
    Failed,
    /// A stop came first: the poller ends.
    Stopped,
}

/// One receive attempt: a credit (waiting for it), then whatever other credits are free up to a
/// batch (and `left`), then ReceiveMessage for that many. On a failure the credits go back and
/// `/readyz` fails until a receive works.
pub(super) async fn receive_some<Q: Queue>(
    shared: &Arc<Shared<Q>>,
    left: u64,
    ready: &Readiness,
    stop: &CancellationToken,
) -> Result<(Vec<Message>, u32), Received> {
    let settings = &shared.settings;
    // One credit to start with (wait for it), then whatever else is free, up to a batch.
    let waiting_since = Instant::now();
    shared.watch.locked().waiting_since = Some(waiting_since);
    let first = tokio::select! {
        biased;
        _ = stop.cancelled() => return Err(Received::Stopped),
        c = shared.credits.clone().acquire_owned() => match c {
            Ok(c) => c,
            Err(_) => return Err(Received::Stopped),
        },
    };
    first.forget();
    {
        let mut w = shared.watch.locked();
        w.waiting_since = None;
        // Time spent waiting for a credit (busy) is not time spent failing to receive.
        let now = Instant::now();
        let waited = now.duration_since(waiting_since);
        w.trying_since = Some(w.trying_since.map_or(now, |t| t + waited));
    }
    let mut want: u32 = 1;
    while want < settings.batch_size && u64::from(want) < left {
        match shared.credits.clone().try_acquire_owned() {
            Ok(c) => {
                c.forget();
                want += 1;
            }
            Err(_) => break,
        }
    }
    let receive = shared
        .queue
        .receive(want, settings.wait_time, settings.visibility_timeout);
    tokio::pin!(receive);
    let received = tokio::select! {
        r = &mut receive => r,
        _ = stop.cancelled() => {
            // The answer may be on its way, its messages already invisible: wait a moment
            // for it, so they are held and handed back at once by close() instead of staying
            // away until their visibility runs out. An empty long poll is just abandoned.
            if let Ok(Ok(messages)) = tokio::time::timeout(STOP_RECEIVE_GRACE, &mut receive).await {
                shared.give_back(want as usize - messages.len().min(want as usize));
                for message in messages {
                    if !matches!(shared.admit(message), Admitted::New(_)) {
                        shared.give_back(1);
                    }
                }
            } else {
                shared.give_back(want as usize);
            }
            return Err(Received::Stopped);
        }
    };
    match received {
        Ok(messages) => {
            {
                let mut w = shared.watch.locked();
                w.trying_since = None;
                w.last_error = None;
            }
            ready.set(true);
            Ok((messages, want))
        }
        Err(e) => {
            shared.give_back(want as usize);
            ready.set(false);
            metrics::sqs_receive_error();
            shared.watch.locked().last_error = Some(e.to_string());
            Err(Received::Failed)
        }
    }
}

impl<Q: Queue> Shared<Q> {
    /// Records a received message as held and decodes it. A message already held came back
    /// because its visibility lapsed while its job ran here: the held entry takes the new
    /// receipt handle (the one SQS honours now) and the job already running keeps going.
    pub(super) fn admit(&self, message: Message) -> Admitted {
        let (Some(message_id), Some(receipt_handle)) = (message.message_id, message.receipt_handle)
        else {
            return Admitted::Unusable;
        };
        let attrs = message.attributes.unwrap_or_default();
        let receive_count = attrs
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let group = attrs
            .get(&MessageSystemAttributeName::MessageGroupId)
            .cloned();
        let now = Instant::now();
        {
            let mut held = self.held.locked();
            if let Some(h) = held.get_mut(&message_id) {
                h.receipt_handle = receipt_handle;
                h.receive_count = receive_count;
                h.visible_until = now + self.settings.visibility_timeout;
                drop(held);
                tracing::warn!(
                    message_id,
                    receive_count,
                    "a message came back while its job still runs here (its visibility lapsed): \
                     the running job keeps it"
                );
                return Admitted::Again;
            }
            held.insert(
                message_id.clone(),
                Held {
                    receipt_handle,
                    receive_count,
                    group,
                    received_at: now,
                    visible_until: now + self.settings.visibility_timeout,
                    parked: false,
                },
            );
        }
        metrics::sqs_message("received");
        Admitted::New(input(message_id, &message.body.unwrap_or_default()))
    }
}

impl<Q: Queue> Shared<Q> {
    /// The `/healthz` probe (see [`diagnose`]).
    pub(super) fn health(&self) -> Result<(), Stuck> {
        let active = self.held.locked().values().filter(|h| !h.parked).count();
        let watch = self.watch.locked().clone();
        diagnose(
            &watch,
            active,
            self.total_credits,
            Instant::now(),
            stall_bound(self.settings.wait_time),
        )
    }
}
