//! The SQS source: a long-running consumer of one queue.
//!
//! Four tasks cooperate around a table of the messages this process holds (received, not yet
//! settled), keyed by message id:
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
//! Credits balance exactly: every message received takes one, and it comes back exactly once —
//! when the message is settled, or at once when the receive brought back a message this process
//! already holds. That happens when a held message's visibility lapses (extensions failed, or the
//! job ran past `--max-extension`) and SQS delivers it again: the job already running here keeps
//! it, with the new receipt handle (the one a delete must use), and no second job starts. A
//! watchdog reads the poller's state for `/healthz` ([`PollerWatch`]): the probe fails when
//! receiving has not worked for [`STALL_POLLS`] long polls, or when the poller waits for a credit
//! that no held message has.
//!
//! What each outcome does to its message (docs/contract.md): terminal outcomes delete it; jobs never
//! started return it at once (visibility 0), unless a spend cap holds them back until its budget
//! comes back ([`Settle::hold_back`]: the poller stops, and every message not started stays
//! invisible until then, within SQS's 12 hours); `failed` leaves it invisible for a delay that grows
//! with its receive count (an hour for Cognito's per-user attempt limit), so redeliveries back
//! off and the queue's redrive policy eventually moves it to the DLQ; `invalid` is left alone for
//! the same redrive policy.
//!
//! A dry run (`consume --dry-run`, [`Pass::one_pass`]) is one pass: each message is held,
//! whatever its planned outcome, until a long poll comes back empty (or `--max-messages` were
//! received); then every message is released at once, so each is received exactly once and
//! nothing in the queue changes but its receive count (+1).
//!
//! The SQS calls go through the [`Queue`] trait ([`SqsQueue`] in production), so this logic is
//! tested in-process against a fake queue on tokio's paused clock (`sqs/tests.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName,
};
use futures::future::BoxFuture;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::QueueSettings;
use crate::job::{Input, Job, Origin, Reason, Settle, Source, Unreadable};
use crate::outcome::{Outcome, OutcomeKind};
use crate::retry::{Backoff, Budget, Policy, Quota, Retry, Verdict};
use crate::telemetry::metrics;
use crate::telemetry::server::Readiness;

pub(crate) mod body;
#[cfg(test)]
mod tests;

/// After a stop, how long an in-flight receive may still bring its answer (whose messages are
/// then handed back at once rather than left invisible for a visibility timeout).
const STOP_RECEIVE_GRACE: Duration = Duration::from_secs(2);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// How long a job that hit Cognito's per-user attempt limit stays away (the contract: an hour).
const ATTEMPT_LIMIT_DELAY: Duration = Duration::from_secs(3600);
/// How long the acker waits to fill a batch of deletes.
const ACK_LINGER: Duration = Duration::from_millis(20);
/// Attempts for one delete or visibility change before giving up on it.
const ACK_ATTEMPTS: u32 = 4;
/// How a delete, a visibility change or a hand-back is retried: [`ACK_ATTEMPTS`] attempts,
/// `initial`, then doubling. Every queue error is retried: the SDK's own retries are off, and a
/// repeated delete or visibility change is harmless.
fn ack_policy(initial: Duration) -> Policy {
    let backoff = Backoff::new(initial, initial * 8, 2.0, 0.0).expect("a valid constant backoff");
    Policy::new(backoff, Budget::attempts(ACK_ATTEMPTS))
}

/// How failed receives are retried: for as long as it takes (until a stop), 0.5 s growing by
/// half each time to 30 s, ±50 % jitter so that many consumers do not retry in step. `/healthz`
/// reports a poller that cannot receive ([`STALL_POLLS`]).
fn receive_policy() -> Policy {
    let backoff = Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        1.5,
        0.5,
    )
    .expect("a valid constant backoff");
    Policy::new(backoff, Budget::UNLIMITED)
}

/// How `check_queue`'s GetQueueAttributes is retried: a few quick attempts, for a blip at start.
fn check_policy() -> Policy {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 2.0, 0.5)
        .expect("a valid constant backoff");
    Policy::new(backoff, Budget::attempts(3))
}

/// A ReceiveMessage attempt lasts at most the long poll plus this (the SDK's attempt timeout).
const POLL_MARGIN: Duration = Duration::from_secs(10);
/// `/healthz` fails after this many long polls' worth of time without a working receive (with
/// the defaults, 4 × (20 s + 10 s) = 2 minutes): long enough for the SDK's own retries and a few
/// backoffs, short enough that an orchestrator restarts a stuck consumer within minutes.
pub(crate) const STALL_POLLS: u32 = 4;

/// How long the poller may go without a working receive before `/healthz` fails, for a long
/// poll of `wait_time`.
pub(crate) fn stall_bound(wait_time: Duration) -> Duration {
    (wait_time + POLL_MARGIN) * STALL_POLLS
}

/// What the consumer takes from the run besides its `[sqs]` section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass {
    /// Engine concurrency (`run.concurrency`): with one batch, the number of messages held at
    /// most.
    pub concurrency: usize,
    /// `--dry-run`: one pass. Stop receiving at the first empty long poll, hold every settled
    /// message instead of acting on it, and release them all together at [`SqsSource::close`].
    pub one_pass: bool,
}

/// A queue call that failed, rendered with its whole error chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct QueueError(pub String);

/// The SQS calls the consumer makes. [`SqsQueue`] is the real one; tests use a fake.
pub(crate) trait Queue: Send + Sync + 'static {
    /// ReceiveMessage: at most `max` messages, long-polling `wait`, invisible for `visibility`,
    /// with the ApproximateReceiveCount and MessageGroupId attributes.
    fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;

    /// ChangeMessageVisibility of one message.
    fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// ChangeMessageVisibilityBatch (at most 10): the indexes of the entries that failed.
    fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        visibility: Duration,
    ) -> impl Future<Output = Result<HashSet<usize>, QueueError>> + Send;

    /// DeleteMessageBatch (at most 10): the indexes of the entries that failed.
    fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> impl Future<Output = Result<HashSet<usize>, QueueError>> + Send;
}

/// The real queue: one queue URL through the AWS SDK.
#[derive(Debug, Clone)]
pub(crate) struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`, through `client` (see [`connect`]).
    pub(crate) fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }
}

/// Seconds for SQS: whole seconds, under its 12-hour ceiling.
fn visibility_seconds(d: Duration) -> i32 {
    d.as_secs().min(MAX_VISIBILITY.as_secs() - 1) as i32
}

fn sdk_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(visibility_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_seconds(visibility))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&e))
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        visibility: Duration,
    ) -> Result<HashSet<usize>, QueueError> {
        let entries: Vec<_> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(visibility_seconds(visibility))
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse().ok())
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<HashSet<usize>, QueueError> {
        let entries: Vec<_> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        for f in out.failed() {
            tracing::debug!(
                code = f.code(),
                message = f.message(),
                "a delete in the batch failed"
            );
        }
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse().ok())
            .collect())
    }
}

/// A received message this process holds.
#[derive(Debug)]
struct Held {
    /// From the latest receive: SQS acts on the newest receipt of a message.
    receipt_handle: String,
    receive_count: u32,
    group: Option<String>,
    received_at: Instant,
    visible_until: Instant,
    /// A dry run's settled message, kept invisible until the pass ends; its credit is back.
    parked: bool,
}

/// What the poller is doing, for the `/healthz` watchdog.
#[derive(Debug, Clone)]
struct PollerWatch {
    /// Since when it has been waiting for a credit (`None`: it is not).
    waiting_since: Option<Instant>,
    /// Since when it has been trying to receive without success (`None`: the last one worked).
    trying_since: Option<Instant>,
    /// Why the last receive failed.
    last_error: Option<String>,
    /// When a credit last came back.
    last_return: Instant,
    /// The poller ended (a signal, the end of a pass, `--max-messages`): nothing to watch.
    stopped: bool,
}

/// The watchdog's verdict on a snapshot of the poller: `Err(reason)` when it has been unable to
/// receive for longer than `bound`. `active` is the messages held and not parked, `total` the
/// credits there are.
fn diagnose(
    w: &PollerWatch,
    active: usize,
    total: usize,
    now: Instant,
    bound: Duration,
) -> Result<(), String> {
    if w.stopped {
        return Ok(());
    }
    if let Some(since) = w.trying_since
        && now.duration_since(since) > bound
    {
        return Err(format!(
            "no message could be received for {}: {}",
            humantime::format_duration(whole_seconds(now.duration_since(since))),
            w.last_error
                .as_deref()
                .unwrap_or("the receive has not answered")
        ));
    }
    // Waiting for a credit is normal while every credit is held by a message in progress. A
    // credit that no held message has, with none coming back for as long, is lost.
    if let Some(since) = w.waiting_since
        && now.duration_since(since) > bound
        && now.duration_since(w.last_return) > bound
        && active < total
    {
        return Err(format!(
            "the poller has waited {} for a credit while only {active} of {total} are held by \
             messages: credits were lost",
            humantime::format_duration(whole_seconds(now.duration_since(since)))
        ));
    }
    Ok(())
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// State shared by the tasks and the settler.
struct Shared<Q> {
    queue: Arc<Q>,
    /// The `[sqs]` section as validated.
    settings: QueueSettings,
    pass: Pass,
    held: Mutex<HashMap<String, Held>>,
    /// One per message held (parked ones excepted); the poller takes them, settling gives them
    /// back ([`Shared::give_back`]).
    credits: Arc<Semaphore>,
    /// How many credits there are.
    total_credits: usize,
    fifo: bool,
    fifo_state: Mutex<FifoState>,
    fifo_ready: Notify,
    acks: mpsc::UnboundedSender<AckRequest>,
    watch: Mutex<PollerWatch>,
    /// Ends the poller: a signal, or a spend cap ([`Settle::hold_back`]).
    stop: CancellationToken,
    /// Set at a spend cap: until when messages handed back stay away (the budget's return).
    held_back_until: Mutex<Option<Instant>>,
    /// Cancelled when the run's time is up (the termination grace after a signal): deletes and
    /// visibility changes still pending give up rather than run past it (see [`bounded`]).
    give_up: CancellationToken,
}

/// `call`, unless the run's time is up first. A message whose delete or visibility change is
/// given up so comes back when its visibility runs out, and the ledger makes the redelivery
/// harmless (`cooldown`).
async fn bounded<T>(
    give_up: &CancellationToken,
    call: impl Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::select! {
        biased;
        answered = call => answered,
        _ = give_up.cancelled() => Err(QueueError(
            "the run's time was up (the termination grace after a signal) before SQS answered"
                .into(),
        )),
    }
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
pub(crate) struct SqsSource<Q: Queue = SqsQueue> {
    shared: Arc<Shared<Q>>,
    rx: mpsc::Receiver<Input>,
    stop: CancellationToken,
    ready: Readiness,
    poller: tokio::task::JoinHandle<()>,
    heartbeat: tokio::task::JoinHandle<()>,
    acker: tokio::task::JoinHandle<()>,
}

/// Builds the SQS client. Unlike Cognito's ResendConfirmationCode, SQS needs IAM credentials:
/// the standard AWS chain provides them. The SDK's own retries are off: every SQS call the
/// consumer and `enqueue` repeat goes through [`crate::retry`] (the policies above); the attempt
/// timeout covers a long poll plus a margin, so a hung poll cannot stall the consumer.
pub(crate) async fn connect(
    region: Option<&str>,
    endpoint: Option<&url::Url>,
    wait_time: Duration,
) -> Client {
    let sdk = crate::aws::sdk_config(crate::aws::SdkOptions {
        region,
        endpoint,
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: wait_time + POLL_MARGIN,
        sdk_retries: false,
        signed: true,
    })
    .await;
    Client::new(&sdk)
}

/// Whether an SQS error may pass on a retry: no answer (a connection or timeout error), a 5xx, or
/// a throttle. What the SDK's standard retry mode would retry, for the calls that do not retry
/// every error.
pub(crate) fn sdk_retryable<E: aws_sdk_sqs::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_sqs::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code == "RequestThrottled"
                || code.contains("InternalError")
                || code.contains("ServiceUnavailable")
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// Checks the queue exists and is reachable before any work starts. Returns a warning to log
/// when it has no redrive policy (invalid messages would then come back forever).
pub(crate) async fn check_queue(
    client: &Client,
    queue_url: &str,
) -> Result<Option<String>, String> {
    let policy = check_policy();
    let attrs = Retry::new(&policy)
        .run(
            |_| {
                client
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                    .send()
            },
            |e, _| {
                if sdk_retryable(e) {
                    Verdict::Retry(Quota::Unknown)
                } else {
                    Verdict::Stop(Quota::Granted)
                }
            },
        )
        .await
        .result
        .map_err(|f| f.into_last().expect("no stop token: an attempt was made"))
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

impl<Q: Queue> SqsSource<Q> {
    /// Starts polling the queue. `stop` ends polling (a signal); `ready` reflects whether
    /// receiving works, and its health check watches the poller.
    pub(crate) fn start(
        queue: Q,
        settings: QueueSettings,
        pass: Pass,
        ready: Readiness,
        stop: CancellationToken,
        give_up: CancellationToken,
    ) -> Self {
        let fifo = settings
            .queue_url
            .as_deref()
            .is_some_and(|url| url.ends_with(".fifo"));
        let total_credits = pass.concurrency + settings.batch_size as usize;
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        let shared = Arc::new(Shared {
            queue: Arc::new(queue),
            settings,
            pass,
            held: Mutex::new(HashMap::new()),
            credits: Arc::new(Semaphore::new(total_credits)),
            total_credits,
            fifo,
            fifo_state: Mutex::new(FifoState::default()),
            fifo_ready: Notify::new(),
            acks: ack_tx,
            watch: Mutex::new(PollerWatch {
                waiting_since: None,
                trying_since: None,
                last_error: None,
                last_return: now,
                stopped: false,
            }),
            stop: stop.clone(),
            held_back_until: Mutex::new(None),
            give_up: give_up.clone(),
        });
        // Weak: the probe outlives the source in the metrics server, and the acker ends only
        // once every `Shared` is gone.
        let watched: Weak<Shared<Q>> = Arc::downgrade(&shared);
        ready.set_health_check(Arc::new(move || match watched.upgrade() {
            Some(shared) => shared.health(),
            None => Ok(()),
        }));
        let (tx, rx) = mpsc::channel(shared.settings.batch_size as usize);
        let poller = tokio::spawn(poll(shared.clone(), tx, ready.clone(), stop.clone()));
        let heartbeat = tokio::spawn(heartbeat(shared.clone(), stop.clone()));
        let acker = tokio::spawn(acker(shared.queue.clone(), ack_rx, give_up));
        Self {
            shared,
            rx,
            stop,
            ready,
            poller,
            heartbeat,
            acker,
        }
    }

    /// After the engine is done: stop polling, return what was received but never started (and,
    /// after a dry run, every message held), and wait for pending deletes; all of it within the
    /// run's time (the `give_up` token given to [`SqsSource::start`]).
    pub(crate) async fn close(self) {
        let Self {
            shared,
            mut rx,
            stop,
            ready,
            poller,
            heartbeat,
            acker,
        } = self;
        stop.cancel();
        ready.clear_health_check();
        rx.close();
        while let Some(input) = rx.recv().await {
            drop(input);
        }
        let _ = poller.await;
        heartbeat.abort();
        // Whatever is still held now was never started (in the channel, a FIFO group's queue)
        // or is a dry run's plan: all of it goes back at once.
        if shared.fifo {
            let mut f = lock(&shared.fifo_state);
            f.ready.clear();
            f.waiting.clear();
        }
        shared.release_all().await;
        // The acker ends when every sender is gone: ours is in `shared`, clones in settle calls.
        drop(shared);
        let _ = acker.await;
    }
}

impl<Q: Queue> Source for SqsSource<Q> {
    fn label(&self) -> &'static str {
        "sqs"
    }

    async fn next(&mut self) -> Option<Input> {
        if !self.shared.fifo {
            return self.rx.recv().await;
        }
        let mut polling = true;
        loop {
            let notified = self.shared.fifo_ready.notified();
            {
                let mut f = lock(&self.shared.fifo_state);
                if let Some(input) = f.ready.pop_front() {
                    return Some(input);
                }
                // Received all there is to receive: done once no group has a message waiting
                // (a busy group's next message becomes ready when its job settles).
                if !polling && f.waiting.is_empty() {
                    return None;
                }
            }
            tokio::select! {
                received = self.rx.recv(), if polling => match received {
                    Some(input) => self.shared.fifo_admit(input),
                    None => polling = false,
                },
                _ = notified => {}
            }
        }
    }

    fn settler(&self) -> Arc<dyn Settle> {
        self.shared.clone()
    }
}

impl<Q: Queue> Settle for Shared<Q> {
    fn hold_back(&self, hold: Duration) {
        if hold.is_zero() {
            // The budget is back for the next run: hand back at once, as at any stop.
            return;
        }
        *lock(&self.held_back_until) = Some(Instant::now() + hold);
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
    ) -> BoxFuture<'a, Result<(), String>> {
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

/// A message body as the engine takes it: a job, or `invalid` naming the message and the problem
/// (the body format is [`body`]'s).
pub(crate) fn input(message_id: String, text: &str) -> Input {
    let origin = Origin::Sqs { message_id };
    match body::decode(text) {
        Ok(request) => Input::Job(Job {
            origin,
            request,
            attributes: None,
        }),
        Err(problem) => Input::Unreadable(Unreadable {
            reason: format!("message {}: {}", origin_id(&origin), problem.reason),
            username: problem.username,
            origin,
        }),
    }
}

impl<Q: Queue> Shared<Q> {
    /// How long a failed job's message stays away (see [`redelivery_delay`]).
    fn redelivery_delay(&self, message_id: &str) -> Duration {
        let count = lock(&self.held)
            .get(message_id)
            .map_or(1, |h| h.receive_count);
        redelivery_delay(self.settings.visibility_timeout, count)
    }

    /// How long a message never started stays away when handed back: no time at all, unless a
    /// spend cap holds messages back ([`Settle::hold_back`]); then until its budget comes back,
    /// within SQS's limit of 12 hours of visibility after a receive (less a minute, for the
    /// calls' own time).
    fn return_delay(&self, message_id: &str) -> Duration {
        let Some(until) = *lock(&self.held_back_until) else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let received = lock(&self.held)
            .get(message_id)
            .map_or(now, |h| h.received_at);
        held_back_delay(until, received, now)
    }

    /// Gives `n` credits back to the poller.
    fn give_back(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.credits.add_permits(n);
        lock(&self.watch).last_return = Instant::now();
    }

    /// Stops holding a message and gives its credit back, in one step (the watchdog compares
    /// the two). `None`: not held (settled already, or never admitted).
    fn unhold(&self, message_id: &str) -> Option<Held> {
        let mut held = lock(&self.held);
        let h = held.remove(message_id)?;
        if !h.parked {
            self.give_back(1);
        }
        Some(h)
    }

    /// A dry run's settled message: keep it invisible until the pass ends, free its credit and
    /// its FIFO group.
    fn park(&self, message_id: &str) {
        let group = {
            let mut held = lock(&self.held);
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
    fn forget(&self, message_id: &str) {
        if let Some(h) = self.unhold(message_id) {
            self.group_done(h.group.as_deref());
        }
    }

    /// Hands every message still held back to the queue (in batches): visible at once, or,
    /// held back by a spend cap, when its budget comes back ([`Shared::return_delay`]).
    async fn release_all(&self) {
        let held_back_until = *lock(&self.held_back_until);
        let now = Instant::now();
        let handles: Vec<(String, String, Duration)> = lock(&self.held)
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
                            let batch: Vec<String> =
                                lock(pending).iter().map(|&i| receipts[i].clone()).collect();
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
                            let mut pending = lock(pending);
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
            let pending = pending.into_inner().unwrap_or_else(|e| e.into_inner());
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
    async fn release(&self, message_id: &str, delay: Duration) {
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
            let mut f = lock(&self.fifo_state);
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
    async fn set_visibility(&self, message_id: &str, receipt_handle: &str, delay: Duration) {
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
        if delay.is_zero() || lock(&self.held_back_until).is_some() {
            metrics::sqs_message("returned");
        }
    }

    /// Deletes a finished job's message (batched by the acker) and waits for it. When the
    /// message was received again meanwhile, the delete is repeated with the newer receipt
    /// handle: SQS may ignore a delete with an outdated one.
    async fn delete(&self, message_id: &str) -> Result<(), String> {
        let mut tried: Option<String> = None;
        let mut result = Ok(());
        for _ in 0..ACK_ATTEMPTS {
            let current = lock(&self.held)
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
                Ok(()) => wait
                    .await
                    .unwrap_or_else(|_| Err("the acker stopped before deleting it".into())),
                Err(_) => Err("the acker is not running".into()),
            };
            tried = Some(receipt_handle);
        }
        if let Some(h) = self.unhold(message_id) {
            self.group_done(h.group.as_deref());
        }
        result
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

    /// The `/healthz` probe (see [`diagnose`]).
    fn health(&self) -> Result<(), String> {
        let active = lock(&self.held).values().filter(|h| !h.parked).count();
        let watch = lock(&self.watch).clone();
        diagnose(
            &watch,
            active,
            self.total_credits,
            Instant::now(),
            stall_bound(self.settings.wait_time),
        )
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

/// What became of a received message.
enum Admitted {
    /// A new message: hand it to the engine.
    New(Input),
    /// A message this process already holds, received again: its job is already here.
    Again,
    /// No id or receipt handle: nothing can be done with it.
    Unusable,
}

/// The poller: receive as many messages as there are credits, decode, hand over. It ends on a
/// signal, when the engine is gone, at the end of a dry run's pass, or after `--max-messages`.
async fn poll<Q: Queue>(
    shared: Arc<Shared<Q>>,
    tx: mpsc::Sender<Input>,
    ready: Readiness,
    stop: CancellationToken,
) {
    poll_until_done(&shared, tx, ready, stop).await;
    let mut w = lock(&shared.watch);
    w.stopped = true;
}

async fn poll_until_done<Q: Queue>(
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
                    let error = lock(&shared.watch).last_error.clone().unwrap_or_default();
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
enum Received {
    /// The receive failed (counted, its error kept for `/healthz` and the retry's log line,
    /// credits given back): retried.
    Failed,
    /// A stop came first: the poller ends.
    Stopped,
}

/// One receive attempt: a credit (waiting for it), then whatever other credits are free up to a
/// batch (and `left`), then ReceiveMessage for that many. On a failure the credits go back and
/// `/readyz` fails until a receive works.
async fn receive_some<Q: Queue>(
    shared: &Arc<Shared<Q>>,
    left: u64,
    ready: &Readiness,
    stop: &CancellationToken,
) -> Result<(Vec<Message>, u32), Received> {
    let settings = &shared.settings;
    // One credit to start with (wait for it), then whatever else is free, up to a batch.
    let waiting_since = Instant::now();
    lock(&shared.watch).waiting_since = Some(waiting_since);
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
        let mut w = lock(&shared.watch);
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
                let mut w = lock(&shared.watch);
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
            lock(&shared.watch).last_error = Some(e.to_string());
            Err(Received::Failed)
        }
    }
}

impl<Q: Queue> Shared<Q> {
    /// Records a received message as held and decodes it. A message already held came back
    /// because its visibility lapsed while its job ran here: the held entry takes the new
    /// receipt handle (the one SQS honours now) and the job already running keeps going.
    fn admit(&self, message: Message) -> Admitted {
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
            let mut held = lock(&self.held);
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

fn origin_id(origin: &Origin) -> &str {
    match origin {
        Origin::Sqs { message_id } => message_id,
        Origin::Csv { .. } | Origin::Pool { .. } => "",
    }
}

/// The heartbeat: renew the visibility of held messages before it runs out.
async fn heartbeat<Q: Queue>(shared: Arc<Shared<Q>>, stop: CancellationToken) {
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
            let receipts: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let failed = match shared.queue.change_visibility_batch(&receipts, vt).await {
                Ok(failed) => failed,
                Err(e) => {
                    tracing::warn!("extending message visibility failed: {e}");
                    (0..chunk.len()).collect()
                }
            };
            let mut held = lock(&shared.held);
            for (i, (id, receipt)) in chunk.iter().enumerate() {
                if failed.contains(&i) {
                    continue;
                }
                // Only the receipt extended counts: a newer one has its own visibility.
                if let Some(h) = held.get_mut(id)
                    && &h.receipt_handle == receipt
                {
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
async fn acker<Q: Queue>(
    queue: Arc<Q>,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
    give_up: CancellationToken,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + ACK_LINGER;
        while batch.len() < 10 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(r)) => batch.push(r),
                _ => break,
            }
        }
        delete_batch(queue.as_ref(), batch, &give_up).await;
    }
}

/// Deletes a batch through the retry executor; each attempt deletes the entries still pending
/// (a partial failure names the ones to repeat).
async fn delete_batch<Q: Queue>(queue: &Q, batch: Vec<AckRequest>, give_up: &CancellationToken) {
    let pending = Mutex::new(batch);
    let policy = ack_policy(Duration::from_millis(200));
    let ran = Retry::new(&policy)
        .until(give_up)
        .run(
            |attempt| {
                let pending = &pending;
                async move {
                    let receipts: Vec<String> = lock(pending)
                        .iter()
                        .map(|r| r.receipt_handle.clone())
                        .collect();
                    let failed = match bounded(give_up, queue.delete_batch(&receipts)).await {
                        Ok(failed) => failed,
                        Err(e) => {
                            tracing::warn!("DeleteMessageBatch failed (attempt {attempt}): {e}");
                            (0..receipts.len()).collect()
                        }
                    };
                    let mut pending = lock(pending);
                    let mut retry = Vec::new();
                    for (i, r) in pending.drain(..).enumerate() {
                        if failed.contains(&i) {
                            retry.push(r);
                        } else {
                            metrics::sqs_message("deleted");
                            let _ = r.done.send(Ok(()));
                        }
                    }
                    if retry.is_empty() {
                        return Ok(());
                    }
                    metrics::sqs_delete_retried(retry.len() as u64);
                    *pending = retry;
                    Err(())
                }
            },
            |_, _| Verdict::Retry(Quota::Unknown),
        )
        .await;
    if ran.result.is_ok() {
        return;
    }
    let batch = pending.into_inner().unwrap_or_else(|e| e.into_inner());
    for r in batch {
        // The job's outcome stands (and the ledger will make the redelivery harmless); the
        // message comes back when its visibility runs out.
        let why = if give_up.is_cancelled() {
            "the run's time was up (the termination grace after a signal) before it was deleted"
                .to_owned()
        } else {
            format!("the message could not be deleted after {ACK_ATTEMPTS} attempts")
        };
        tracing::error!(message_id = r.message_id, "{why}: it will be redelivered");
        metrics::sqs_message("delete_failed");
        let _ = r.done.send(Err(why.clone()));
    }
}
