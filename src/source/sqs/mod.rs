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
use crate::job::{AckError, Input, Job, Origin, Reason, Settle, Source, Unreadable};
use crate::outcome::{Outcome, OutcomeKind};
use crate::retry::{Backoff, Budget, Policy, Quota, Retry, Verdict};
use crate::telemetry::metrics;
use crate::telemetry::server::Readiness;

mod acker;
pub(crate) mod body;
mod heartbeat;
mod poller;
mod queue;
mod settle;
#[cfg(test)]
mod tests;

use crate::sync::Locked;
use acker::{AckRequest, acker};
use heartbeat::heartbeat;
#[cfg(test)]
use poller::diagnose;
use poller::{PollerWatch, poll};
pub(crate) use queue::{Queue, QueueError, SqsQueue, check_queue, connect};
#[cfg(test)]
use settle::redelivery_delay;
// The Lambda function's batch source decides and delays like the consumer does.
#[cfg(any(feature = "lambda", test))]
pub(crate) use settle::held_back_delay;
#[cfg(feature = "lambda")]
pub(crate) use settle::{Disposition, disposition};

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
            Some(shared) => Ok(shared.health()?),
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
            let mut f = shared.fifo_state.locked();
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
                let mut f = self.shared.fifo_state.locked();
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

fn origin_id(origin: &Origin) -> &str {
    match origin {
        Origin::Sqs { message_id } => message_id,
        Origin::Csv { .. } | Origin::Pool { .. } => "",
    }
}

/// A duration cut to whole seconds, as the log lines and `/healthz` show them.
fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
