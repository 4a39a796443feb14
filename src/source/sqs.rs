//! The SQS source: a long-running consumer of one queue.
//!
//! Four tasks cooperate around a table of the messages this process holds (received, not yet
//! settled):
//!
//! - the **poller** long-polls ReceiveMessage, asking for no more messages than there are free
//!   *credits* (`--concurrency` plus one batch): a message never waits in a local buffer long
//!   enough for its visibility to run out, and when jobs slow down (Cognito throttles), receiving
//!   slows too. Receive errors back off with jitter and make `/readyz` fail until a receive works.
//! - the **heartbeat** extends the visibility of held messages before it runs out (batched
//!   ChangeMessageVisibility), up to a maximum total, so a slow or retrying job is not handed to
//!   another consumer.
//! - the **acker** batches DeleteMessageBatch calls for finished jobs (after their outcome is
//!   recorded) and retries the entries a partial failure names.
//! - [`Source::next`] hands decoded messages to the engine; for a FIFO queue it hands out one
//!   message per MessageGroupId at a time, in order.
//!
//! What each outcome does to its message (SPEC.md): terminal outcomes delete it; `dry_run` and
//! jobs never started return it at once (visibility 0); `failed` leaves it invisible for a delay
//! that grows with its receive count (an hour for Cognito's per-user attempt limit), so
//! redeliveries back off and the queue's redrive policy eventually moves it to the DLQ; `invalid`
//! is left alone for the same redrive policy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Input, Job, Origin, Settle, Source, Unreadable};
use crate::outcome::{Outcome, OutcomeKind};
use crate::telemetry::metrics;
use crate::telemetry::server::Readiness;

pub mod body;

/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// How long a job that hit Cognito's per-user attempt limit stays away (SPEC: an hour).
const ATTEMPT_LIMIT_DELAY: Duration = Duration::from_secs(3600);
/// How long the acker waits to fill a batch of deletes.
const ACK_LINGER: Duration = Duration::from_millis(20);
/// Attempts for one delete or visibility change before giving up on it.
const ACK_ATTEMPTS: u32 = 4;

/// How the consumer talks to its queue.
#[derive(Debug, Clone)]
pub struct SqsSettings {
    /// The queue.
    pub queue_url: String,
    /// Messages per ReceiveMessage, 1 to 10.
    pub batch_size: u32,
    /// Long-poll wait, 0 to 20 s.
    pub wait_time: Duration,
    /// Visibility of a received message, renewed by the heartbeat while its job runs.
    pub visibility_timeout: Duration,
    /// Stop renewing visibility after a message has been held this long.
    pub max_extension: Duration,
    /// Engine concurrency: with one batch, the number of messages held at most.
    pub concurrency: usize,
}

/// A received message this process holds.
#[derive(Debug)]
struct Held {
    receipt_handle: String,
    receive_count: u32,
    group: Option<String>,
    received_at: Instant,
    visible_until: Instant,
}

/// State shared by the tasks and the settler.
struct Shared {
    client: Client,
    settings: SqsSettings,
    held: Mutex<HashMap<String, Held>>,
    /// One per message held; the poller takes them, settling gives them back.
    credits: Arc<Semaphore>,
    fifo: bool,
    fifo_state: Mutex<FifoState>,
    fifo_ready: Notify,
    acks: mpsc::UnboundedSender<AckRequest>,
}

/// Per-group queues of a FIFO queue's messages: one in progress per group, in order.
#[derive(Default)]
struct FifoState {
    waiting: HashMap<String, VecDeque<Input>>,
    busy: HashSet<String>,
    ready: VecDeque<Input>,
}

/// A delete for the acker, with who to tell when it is done.
struct AckRequest {
    message_id: String,
    receipt_handle: String,
    /// `Ok` once deleted; `Err` when the delete failed for good.
    done: oneshot::Sender<Result<(), String>>,
}

/// The consumer of one queue, as a [`Source`].
pub struct SqsSource {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Input>,
    stop: CancellationToken,
    poller: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
}

/// Builds the SQS client. Unlike Cognito's ResendConfirmationCode, SQS needs IAM credentials:
/// the standard AWS chain provides them. Retries of SQS calls are the SDK's standard ones (SQS
/// throttling and 5xx); the attempt timeout covers a long poll plus a margin, so a hung poll
/// cannot stall the consumer.
pub async fn connect(
    region: Option<&str>,
    endpoint: Option<&url::Url>,
    wait_time: Duration,
) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(wait_time + Duration::from_secs(10))
        .build();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    Client::new(&loader.load().await)
}

/// Checks the queue exists and is reachable before any work starts. Returns a warning to log
/// when it has no redrive policy (invalid messages would then come back forever).
pub async fn check_queue(client: &Client, queue_url: &str) -> Result<Option<String>, String> {
    let attrs = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| {
            format!(
                "sqs.queue_url (--queue-url): cannot use {queue_url}: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            )
        })?;
    let has_redrive = attrs
        .attributes()
        .is_some_and(|a| a.contains_key(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy));
    Ok((!has_redrive).then(|| {
        format!(
            "{queue_url} has no redrive policy: invalid and failing messages will come back \
             forever; give it a dead-letter queue (maxReceiveCount)"
        )
    }))
}

impl SqsSource {
    /// Starts polling `settings.queue_url`. `stop` ends polling (a signal); `ready` reflects
    /// whether receiving works.
    pub fn start(
        client: Client,
        settings: SqsSettings,
        ready: Readiness,
        stop: CancellationToken,
    ) -> Self {
        let fifo = settings.queue_url.ends_with(".fifo");
        let credits = Arc::new(Semaphore::new(
            settings.concurrency + settings.batch_size as usize,
        ));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client,
            settings,
            held: Mutex::new(HashMap::new()),
            credits,
            fifo,
            fifo_state: Mutex::new(FifoState::default()),
            fifo_ready: Notify::new(),
            acks: ack_tx,
        });
        let (tx, rx) = mpsc::channel(shared.settings.batch_size as usize);
        let poller = tokio::spawn(poll(shared.clone(), tx, ready, stop.clone()));
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), stop.clone()));
        let acker = tokio::spawn(acker(shared.clone(), ack_rx));
        Self {
            shared,
            rx,
            stop,
            poller,
            heartbeat,
            acker,
        }
    }

    /// After the engine is done: stop polling, return what was received but never started,
    /// and wait for pending deletes.
    pub async fn close(self) {
        let Self {
            shared,
            mut rx,
            stop,
            poller,
            heartbeat,
            acker,
        } = self;
        stop.cancel();
        rx.close();
        let mut leftover = Vec::new();
        while let Some(input) = rx.recv().await {
            leftover.push(input);
        }
        if shared.fifo {
            let mut f = lock(&shared.fifo_state);
            leftover.extend(f.ready.drain(..));
            for (_, q) in f.waiting.drain() {
                leftover.extend(q);
            }
        }
        for input in leftover {
            shared.release(input.origin(), Duration::ZERO).await;
        }
        let _ = poller.await;
        heartbeat.abort();
        // The acker ends when every sender is gone: ours is in `shared`, clones in settle calls.
        drop(shared);
        let _ = acker.await;
    }
}

impl Source for SqsSource {
    fn label(&self) -> &'static str {
        "sqs"
    }

    async fn next(&mut self) -> Option<Input> {
        if !self.shared.fifo {
            return self.rx.recv().await;
        }
        loop {
            let notified = self.shared.fifo_ready.notified();
            if let Some(input) = lock(&self.shared.fifo_state).ready.pop_front() {
                return Some(input);
            }
            tokio::select! {
                received = self.rx.recv() => {
                    let input = received?;
                    self.shared.fifo_admit(input);
                }
                _ = notified => {}
            }
        }
    }

    fn settler(&self) -> Arc<dyn Settle> {
        self.shared.clone()
    }
}

impl Settle for Shared {
    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Origin::Sqs { message_id } = origin else {
                return Ok(());
            };
            match outcome.map(|o| (o.kind, o.reason.as_deref())) {
                // Never started, dry run, or stopped between retries: back at once, for this
                // consumer later or another one now.
                None
                | Some((OutcomeKind::DryRun, _))
                | Some((OutcomeKind::Failed, Some("interrupted"))) => {
                    self.release(origin, Duration::ZERO).await;
                    Ok(())
                }
                Some((OutcomeKind::Invalid, _)) => {
                    metrics::sqs_message("invalid");
                    self.forget(message_id);
                    Ok(())
                }
                Some((OutcomeKind::Failed, reason)) => {
                    let delay = match reason {
                        Some("attempt_limit") => ATTEMPT_LIMIT_DELAY,
                        _ => self.redelivery_delay(message_id),
                    };
                    self.release(origin, delay).await;
                    Ok(())
                }
                Some(_) => self.delete(message_id).await,
            }
        })
    }
}

impl Shared {
    /// How long a failed job's message stays away (see [`redelivery_delay`]).
    fn redelivery_delay(&self, message_id: &str) -> Duration {
        let count = lock(&self.held)
            .get(message_id)
            .map_or(1, |h| h.receive_count);
        redelivery_delay(self.settings.visibility_timeout, count)
    }

    /// Stops holding a message without touching it (its visibility runs out on its own).
    fn forget(&self, message_id: &str) {
        let held = lock(&self.held).remove(message_id);
        if let Some(h) = held {
            self.group_done(h.group.as_deref());
            self.credits.add_permits(1);
        }
    }

    /// Hands a message back to the queue: visible again after `delay` (0 = at once).
    async fn release(&self, origin: &Origin, delay: Duration) {
        let Origin::Sqs { message_id } = origin else {
            return;
        };
        let held = lock(&self.held).remove(message_id);
        let Some(h) = held else { return };
        self.set_visibility(message_id, &h.receipt_handle, delay)
            .await;
        self.credits.add_permits(1);
        if delay.is_zero() || !self.fifo {
            self.group_done(h.group.as_deref());
            return;
        }
        // A FIFO message that failed comes back later: the messages of its group held here must
        // not overtake it. Hand them back too; SQS delivers the group again in order.
        let Some(group) = h.group else { return };
        let behind: Vec<Input> = {
            let mut f = lock(&self.fifo_state);
            f.busy.remove(&group);
            f.waiting.remove(&group).map(Vec::from).unwrap_or_default()
        };
        for input in behind {
            let Origin::Sqs { message_id } = input.origin().clone() else {
                continue;
            };
            let held = lock(&self.held).remove(&message_id);
            if let Some(h) = held {
                self.set_visibility(&message_id, &h.receipt_handle, Duration::ZERO)
                    .await;
                self.credits.add_permits(1);
            }
        }
        self.fifo_ready.notify_one();
    }

    /// ChangeMessageVisibility, retried a few times; counts `returned` for a delay of 0.
    async fn set_visibility(&self, message_id: &str, receipt_handle: &str, delay: Duration) {
        let seconds = delay.as_secs().min(MAX_VISIBILITY.as_secs() - 1) as i32;
        for tries in 1..=ACK_ATTEMPTS {
            let changed = self
                .client
                .change_message_visibility()
                .queue_url(&self.settings.queue_url)
                .receipt_handle(receipt_handle)
                .visibility_timeout(seconds)
                .send()
                .await;
            match changed {
                Ok(_) => break,
                Err(e) if tries < ACK_ATTEMPTS => {
                    tracing::debug!(message_id, "changing visibility failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(tries))).await;
                }
                Err(e) => {
                    // It comes back when its current visibility runs out instead.
                    tracing::warn!(
                        message_id,
                        "could not change the message's visibility: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(&e)
                    );
                    return;
                }
            }
        }
        if delay.is_zero() {
            metrics::sqs_message("returned");
        }
    }

    /// Deletes a finished job's message (batched by the acker) and waits for it.
    async fn delete(&self, message_id: &str) -> Result<(), String> {
        let held = lock(&self.held)
            .get(message_id)
            .map(|h| h.receipt_handle.clone());
        let Some(receipt_handle) = held else {
            return Ok(());
        };
        let (done, wait) = oneshot::channel();
        let queued = self.acks.send(AckRequest {
            message_id: message_id.to_owned(),
            receipt_handle,
            done,
        });
        let deleted = match queued {
            Ok(()) => wait
                .await
                .unwrap_or_else(|_| Err("the acker stopped before deleting it".into())),
            Err(_) => Err("the acker is not running".into()),
        };
        let held = lock(&self.held).remove(message_id);
        if let Some(h) = held {
            self.group_done(h.group.as_deref());
            self.credits.add_permits(1);
        }
        deleted
    }

    /// A FIFO message arrives: ready at once if its group is idle, else queued behind it.
    fn fifo_admit(&self, input: Input) {
        let Origin::Sqs { message_id } = input.origin() else {
            return;
        };
        let group = lock(&self.held)
            .get(message_id)
            .and_then(|h| h.group.clone());
        let mut f = lock(&self.fifo_state);
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
    fn group_done(&self, group: Option<&str>) {
        let (Some(g), true) = (group, self.fifo) else {
            return;
        };
        let mut f = lock(&self.fifo_state);
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

/// Failed jobs come back later each time: the visibility timeout doubled per receive so far,
/// capped a minute under SQS's 12-hour limit.
fn redelivery_delay(visibility_timeout: Duration, receive_count: u32) -> Duration {
    let factor = 2u32.saturating_pow(receive_count.max(1).saturating_sub(1).min(16));
    visibility_timeout
        .saturating_mul(factor)
        .min(MAX_VISIBILITY - Duration::from_secs(60))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the maps consistent; a panic elsewhere cannot corrupt them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The poller: receive as many messages as there are credits, decode, hand over.
async fn poll(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Input>,
    ready: Readiness,
    stop: CancellationToken,
) {
    let mut errors = backoff_schedule();
    let mut failing = false;
    loop {
        // One credit to start with (wait for it), then whatever else is free, up to a batch.
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            c = shared.credits.clone().acquire_owned() => match c { Ok(c) => c, Err(_) => return },
        };
        first.forget();
        let mut want: u32 = 1;
        while want < shared.settings.batch_size {
            match shared.credits.clone().try_acquire_owned() {
                Ok(c) => {
                    c.forget();
                    want += 1;
                }
                Err(_) => break,
            }
        }
        let received = tokio::select! {
            biased;
            // A signal cancels the long poll at once: nothing was received by it.
            _ = stop.cancelled() => {
                shared.credits.add_permits(want as usize);
                return;
            }
            r = shared
                .client
                .receive_message()
                .queue_url(&shared.settings.queue_url)
                .max_number_of_messages(want as i32)
                .wait_time_seconds(shared.settings.wait_time.as_secs() as i32)
                .visibility_timeout(shared.settings.visibility_timeout.as_secs() as i32)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .send() => r,
        };
        let messages = match received {
            Ok(out) => {
                if failing {
                    tracing::info!("receiving from the queue works again");
                    failing = false;
                }
                ready.set(true);
                errors = backoff_schedule();
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                shared.credits.add_permits(want as usize);
                ready.set(false);
                failing = true;
                metrics::sqs_receive_error();
                let delay = backoff::backoff::Backoff::next_backoff(&mut errors)
                    .unwrap_or(Duration::from_secs(30));
                tracing::warn!(
                    "receiving from the queue failed (retrying in {delay:.1?}): {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let unused = want as usize - messages.len().min(want as usize);
        shared.credits.add_permits(unused);
        let mut messages = messages.into_iter();
        while let Some(message) = messages.next() {
            let Some(input) = shared.admit(message) else {
                // No id or receipt handle: nothing can be done with it, and its credit is back.
                shared.credits.add_permits(1);
                continue;
            };
            if let Err(unsent) = tx.send(input).await {
                // The engine is gone (the run is stopping): hand back what it will not take.
                let rest = messages.filter_map(|m| shared.admit(m));
                for input in std::iter::once(unsent.0).chain(rest) {
                    shared.release(input.origin(), Duration::ZERO).await;
                }
                return;
            }
        }
    }
}

impl Shared {
    /// Records a received message as held and decodes it.
    fn admit(&self, message: Message) -> Option<Input> {
        let message_id = message.message_id?;
        let receipt_handle = message.receipt_handle?;
        metrics::sqs_message("received");
        let attrs = message.attributes.unwrap_or_default();
        let receive_count = attrs
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let group = attrs
            .get(&MessageSystemAttributeName::MessageGroupId)
            .cloned();
        let now = Instant::now();
        lock(&self.held).insert(
            message_id.clone(),
            Held {
                receipt_handle,
                receive_count,
                group,
                received_at: now,
                visible_until: now + self.settings.visibility_timeout,
            },
        );
        let origin = Origin::Sqs { message_id };
        let text = message.body.unwrap_or_default();
        Some(match body::decode(&text) {
            Ok(request) => Input::Job(Job { origin, request }),
            Err(problem) => Input::Unreadable(Unreadable {
                reason: format!("message {}: {}", origin_id(&origin), problem.reason),
                username: problem.username,
                origin,
            }),
        })
    }
}

fn origin_id(origin: &Origin) -> &str {
    match origin {
        Origin::Sqs { message_id } => message_id,
        Origin::Csv { .. } | Origin::Pool { .. } => "",
    }
}

fn backoff_schedule() -> backoff::ExponentialBackoff {
    backoff::ExponentialBackoff {
        initial_interval: Duration::from_millis(500),
        current_interval: Duration::from_millis(500),
        max_interval: Duration::from_secs(30),
        max_elapsed_time: None,
        ..backoff::ExponentialBackoff::default()
    }
}

/// The heartbeat: renew the visibility of held messages before it runs out.
async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let vt = shared.settings.visibility_timeout;
    let every = (vt / 4).clamp(Duration::from_millis(200), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tick.tick() => {}
        }
        // After a stop the engine is still draining: keep its messages invisible until the end
        // (close() aborts this task).
        let now = Instant::now();
        let due: Vec<(String, String)> = lock(&shared.held)
            .iter()
            .filter(|(_, h)| {
                h.visible_until.saturating_duration_since(now) < vt / 2
                    && now.duration_since(h.received_at) + vt <= shared.settings.max_extension
            })
            .map(|(id, h)| (id.clone(), h.receipt_handle.clone()))
            .collect();
        for chunk in due.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, handle))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .visibility_timeout(vt.as_secs() as i32)
                        .build()
                        .ok()
                })
                .collect();
            let changed = shared
                .client
                .change_message_visibility_batch()
                .queue_url(&shared.settings.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed: HashSet<usize> = match &changed {
                Ok(out) => out
                    .failed()
                    .iter()
                    .filter_map(|f| f.id().parse().ok())
                    .collect(),
                Err(e) => {
                    tracing::warn!(
                        "extending message visibility failed: {}",
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    );
                    (0..chunk.len()).collect()
                }
            };
            let mut held = lock(&shared.held);
            for (i, (id, _)) in chunk.iter().enumerate() {
                if failed.contains(&i) {
                    continue;
                }
                if let Some(h) = held.get_mut(id) {
                    h.visible_until = now + vt;
                }
            }
            drop(held);
            metrics::sqs_visibility_extended((chunk.len() - failed.len()) as u64);
        }
        if stop.is_cancelled() {
            tokio::time::sleep(every).await;
        }
    }
}

/// The acker: DeleteMessageBatch in tens, retrying the entries a partial failure names.
async fn acker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AckRequest>) {
    // Senders live in `Shared`; holding it here would keep the loop from ever ending.
    let client = shared.client.clone();
    let queue_url = shared.settings.queue_url.clone();
    drop(shared);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + ACK_LINGER;
        while batch.len() < 10 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        delete_batch(&client, &queue_url, batch).await;
    }
}

async fn delete_batch(client: &Client, queue_url: &str, mut batch: Vec<AckRequest>) {
    for attempt in 1..=ACK_ATTEMPTS {
        let entries: Vec<_> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.receipt_handle)
                    .build()
                    .ok()
            })
            .collect();
        let result = client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let failed: HashSet<usize> = match &result {
            Ok(out) => {
                for f in out.failed() {
                    tracing::debug!(
                        code = f.code(),
                        message = f.message(),
                        "a delete in the batch failed"
                    );
                }
                out.failed()
                    .iter()
                    .filter_map(|f| f.id().parse().ok())
                    .collect()
            }
            Err(e) => {
                tracing::warn!(
                    "DeleteMessageBatch failed (attempt {attempt}): {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
                (0..batch.len()).collect()
            }
        };
        let mut retry = Vec::new();
        for (i, r) in batch.into_iter().enumerate() {
            if failed.contains(&i) {
                retry.push(r);
            } else {
                metrics::sqs_message("deleted");
                let _ = r.done.send(Ok(()));
            }
        }
        if retry.is_empty() {
            return;
        }
        metrics::sqs_delete_retried(retry.len() as u64);
        batch = retry;
        if attempt < ACK_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
    for r in batch {
        // The job's outcome stands (and the ledger will make the redelivery harmless); the
        // message comes back when its visibility runs out.
        tracing::error!(
            message_id = r.message_id,
            "could not delete the message after {ACK_ATTEMPTS} attempts: it will be redelivered"
        );
        metrics::sqs_message("delete_failed");
        let _ = r.done.send(Err(format!(
            "the message could not be deleted after {ACK_ATTEMPTS} attempts"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeliveries_back_off_with_the_receive_count() {
        let vt = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=5).map(|n| redelivery_delay(vt, n).as_secs()).collect();
        assert_eq!(delays, [60, 120, 240, 480, 960]);
        assert_eq!(
            redelivery_delay(vt, 0),
            vt,
            "a missing count counts as the first"
        );
        assert_eq!(
            redelivery_delay(vt, 30),
            MAX_VISIBILITY - Duration::from_secs(60),
            "never past SQS's limit"
        );
    }
}
