//! The SQS source in-process: a fake queue with SQS's visibility, receipt and FIFO rules, on
//! tokio's paused clock, so lapsed visibilities, re-receipts and long outages take no real time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::outcome::{Outcome, OutcomeKind};

/// One message in the fake queue.
struct FakeMessage {
    id: String,
    body: String,
    group: Option<String>,
    receive_count: u32,
    /// `Some` while in flight.
    invisible_until: Option<Instant>,
    /// The receipt of the latest receive: the only one the fake honours, as SQS may ignore
    /// older ones.
    receipt: Option<String>,
    deleted: bool,
}

#[derive(Default)]
struct FakeState {
    messages: Vec<FakeMessage>,
    next_receipt: u64,
    fail_receives: bool,
    fail_extensions: bool,
    /// How long a receive that took messages takes to answer (the answer on its way).
    answer_delay: Duration,
}

/// An in-memory SQS queue (standard, or FIFO: one message group in flight at a time, in order).
#[derive(Clone)]
struct FakeQueue {
    fifo: bool,
    state: Arc<Mutex<FakeState>>,
    arrived: Arc<Notify>,
}

impl FakeQueue {
    fn new(fifo: bool) -> Self {
        Self {
            fifo,
            state: Arc::default(),
            arrived: Arc::default(),
        }
    }

    fn url(&self) -> String {
        if self.fifo { "fake.fifo" } else { "fake" }.to_owned()
    }

    fn send(&self, body: &str, group: Option<&str>) -> String {
        let mut s = self.state.lock().unwrap();
        let id = format!("m-{}", s.messages.len());
        s.messages.push(FakeMessage {
            id: id.clone(),
            body: body.to_owned(),
            group: group.map(str::to_owned),
            receive_count: 0,
            invisible_until: None,
            receipt: None,
            deleted: false,
        });
        drop(s);
        self.arrived.notify_waiters();
        id
    }

    fn set(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.state.lock().unwrap());
    }

    fn receive_count(&self, id: &str) -> u32 {
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .find(|m| m.id == id)
            .unwrap()
            .receive_count
    }

    fn receive_counts(&self) -> Vec<u32> {
        let s = self.state.lock().unwrap();
        s.messages.iter().map(|m| m.receive_count).collect()
    }

    fn deleted(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .filter(|m| m.deleted)
            .map(|m| m.id.clone())
            .collect()
    }

    /// Messages not deleted and visible now.
    fn visible(&self) -> usize {
        let now = Instant::now();
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .filter(|m| !m.deleted && m.invisible_until.is_none_or(|t| t <= now))
            .count()
    }

    fn by_receipt<'a>(s: &'a mut FakeState, receipt: &str) -> Option<&'a mut FakeMessage> {
        s.messages
            .iter_mut()
            .find(|m| !m.deleted && m.receipt.as_deref() == Some(receipt))
    }

    fn take_visible(&self, max: u32, visibility: Duration) -> Vec<Message> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap();
        let mut blocked: HashSet<String> = HashSet::new();
        let mut taking: HashSet<String> = HashSet::new();
        let mut picked = Vec::new();
        for (i, m) in s.messages.iter().enumerate() {
            if m.deleted || picked.len() as u32 >= max {
                continue;
            }
            let in_flight = m.invisible_until.is_some_and(|t| t > now);
            let group = m.group.clone().filter(|_| self.fifo);
            if let Some(g) = &group {
                if blocked.contains(g) {
                    continue;
                }
                if in_flight && !taking.contains(g) {
                    blocked.insert(g.clone());
                    continue;
                }
            }
            if in_flight {
                continue;
            }
            if let Some(g) = group {
                taking.insert(g);
            }
            picked.push(i);
        }
        let mut out = Vec::new();
        for i in picked {
            s.next_receipt += 1;
            let receipt = format!("r-{}", s.next_receipt);
            let m = &mut s.messages[i];
            m.receive_count += 1;
            m.invisible_until = Some(now + visibility);
            m.receipt = Some(receipt.clone());
            let mut b = Message::builder()
                .message_id(&m.id)
                .receipt_handle(receipt)
                .body(&m.body)
                .attributes(
                    MessageSystemAttributeName::ApproximateReceiveCount,
                    m.receive_count.to_string(),
                );
            if let Some(g) = &m.group {
                b = b.attributes(MessageSystemAttributeName::MessageGroupId, g);
            }
            out.push(b.build());
        }
        out
    }

    /// When the next in-flight message becomes visible again.
    fn next_lapse(&self) -> Option<Instant> {
        let now = Instant::now();
        let s = self.state.lock().unwrap();
        s.messages
            .iter()
            .filter(|m| !m.deleted)
            .filter_map(|m| m.invisible_until)
            .filter(|&t| t > now)
            .min()
    }
}

impl Queue for FakeQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            if self.state.lock().unwrap().fail_receives {
                return Err(QueueError(
                    "injected: AWS.SimpleQueueService.Unavailable".into(),
                ));
            }
            let got = self.take_visible(max, visibility);
            if !got.is_empty() {
                let delay = self.state.lock().unwrap().answer_delay;
                tokio::time::sleep(delay).await;
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Ok(got);
            }
            let until = self.next_lapse().map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let mut s = self.state.lock().unwrap();
        let m = Self::by_receipt(&mut s, receipt_handle)
            .ok_or_else(|| QueueError("ReceiptHandleIsInvalid".into()))?;
        m.invisible_until = Some(Instant::now() + visibility);
        drop(s);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        visibility: Duration,
    ) -> Result<HashSet<usize>, QueueError> {
        let mut s = self.state.lock().unwrap();
        if s.fail_extensions && !visibility.is_zero() {
            return Err(QueueError("injected: extensions fail".into()));
        }
        let mut failed = HashSet::new();
        for (i, r) in receipt_handles.iter().enumerate() {
            match Self::by_receipt(&mut s, r) {
                Some(m) => m.invisible_until = Some(Instant::now() + visibility),
                None => {
                    failed.insert(i);
                }
            }
        }
        drop(s);
        self.arrived.notify_waiters();
        Ok(failed)
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<HashSet<usize>, QueueError> {
        let mut s = self.state.lock().unwrap();
        let mut failed = HashSet::new();
        for (i, r) in receipt_handles.iter().enumerate() {
            match Self::by_receipt(&mut s, r) {
                Some(m) => m.deleted = true,
                None => {
                    failed.insert(i);
                }
            }
        }
        Ok(failed)
    }
}

/// A consumer's settings: its `[sqs]` section and what it takes from the run.
struct Given {
    sqs: QueueSettings,
    pass: Pass,
}

fn settings(queue: &FakeQueue, concurrency: usize, batch_size: u32) -> Given {
    Given {
        sqs: QueueSettings {
            queue_url: Some(queue.url()),
            endpoint: None,
            batch_size,
            wait_time: Duration::from_secs(2),
            visibility_timeout: Duration::from_secs(4),
            max_extension: Duration::from_secs(3600),
            max_messages: None,
            shutdown_grace: Duration::from_secs(30),
        },
        pass: Pass {
            concurrency,
            one_pass: false,
        },
    }
}

/// Starts a source on the fake queue.
fn start(queue: &FakeQueue, given: Given, ready: &Readiness) -> SqsSource<FakeQueue> {
    SqsSource::start(
        queue.clone(),
        given.sqs,
        given.pass,
        ready.clone(),
        CancellationToken::new(),
        CancellationToken::new(),
    )
}

fn job(username: &str) -> String {
    format!("{{\"username\": \"{username}\"}}")
}

fn id_of(input: &Input) -> String {
    match input.origin() {
        Origin::Sqs { message_id } => message_id.clone(),
        other => panic!("not an SQS origin: {other:?}"),
    }
}

/// The next input, like the engine asks for it; `None` when nothing comes within `limit` (of
/// the paused clock).
async fn next_within(source: &mut SqsSource<FakeQueue>, limit: Duration) -> Option<Input> {
    tokio::time::timeout(limit, source.next())
        .await
        .ok()
        .flatten()
}

async fn settle(source: &SqsSource<FakeQueue>, input: &Input, kind: OutcomeKind) {
    source
        .settler()
        .settle(input.origin(), Some(&Outcome::new(kind, 1)))
        .await
        .expect("settled");
}

/// Waits (on the paused clock, bounded) until `done` holds.
async fn wait_for(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Why a held message's visibility lapses.
#[derive(Clone, Copy, Debug)]
enum Lapse {
    ExtensionsFail,
    PastMaxExtension,
}

/// Item 6: with two credits (concurrency 1 plus a batch of 1), a consumer whose held messages
/// come back while their jobs still run must go on receiving, and run one job per message.
async fn received_again_while_held(lapse: Lapse) {
    let queue = FakeQueue::new(false);
    let mut s = settings(&queue, 1, 1);
    if let Lapse::PastMaxExtension = lapse {
        s.sqs.max_extension = s.sqs.visibility_timeout;
    }
    let ready = Readiness::default();
    let mut source = start(&queue, s, &ready);
    let mut handed_out = Vec::new();
    for round in 0..3 {
        let id = queue.send(&job(&format!("user-{round}")), None);
        let input = next_within(&mut source, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("round {round}: message {id} never handed out"));
        assert_eq!(id_of(&input), id);
        handed_out.push(id.clone());
        // The job runs long; its message's visibility lapses and SQS delivers it again.
        if let Lapse::ExtensionsFail = lapse {
            queue.set(|s| s.fail_extensions = true);
        }
        wait_for(
            &format!("round {round}: {id} received again (a free credit to receive it with)"),
            Duration::from_secs(120),
            || queue.receive_count(&id) >= 2,
        )
        .await;
        queue.set(|s| s.fail_extensions = false);
        // The engine asks for more work meanwhile, and settles whatever it is given (with a
        // ledger, a second job for the same user would end `cooldown` and delete it).
        settle(&source, &input, OutcomeKind::Sent).await;
        while let Some(extra) = next_within(&mut source, Duration::from_secs(10)).await {
            handed_out.push(id_of(&extra));
            settle(&source, &extra, OutcomeKind::Cooldown).await;
        }
    }
    let last = queue.send(&job("user-last"), None);
    let input = next_within(&mut source, Duration::from_secs(60))
        .await
        .expect("a new message is received after the re-receipts: no credit was lost");
    assert_eq!(id_of(&input), last);
    settle(&source, &input, OutcomeKind::Sent).await;
    assert_eq!(
        handed_out,
        ["m-0", "m-1", "m-2"],
        "one job per message, however often it came back"
    );
    assert_eq!(
        queue.deleted().len(),
        4,
        "every message deleted, with its newest receipt"
    );
    assert!(ready.health().is_ok());
    source.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_received_again_after_failed_extensions_keeps_one_job_and_its_credit() {
    received_again_while_held(Lapse::ExtensionsFail).await;
}

#[tokio::test(start_paused = true)]
async fn a_message_received_again_past_max_extension_keeps_one_job_and_its_credit() {
    received_again_while_held(Lapse::PastMaxExtension).await;
}

#[tokio::test(start_paused = true)]
async fn a_fifo_message_received_again_while_held_does_not_block_its_group() {
    let queue = FakeQueue::new(true);
    let first = queue.send(&job("fifo-user"), Some("g"));
    let second = queue.send(&job("fifo-user"), Some("g"));
    // A batch of one: the group's messages arrive one receive at a time.
    let mut source = start(&queue, settings(&queue, 2, 1), &Readiness::default());
    let input = next_within(&mut source, Duration::from_secs(60))
        .await
        .expect("the group's first message");
    assert_eq!(id_of(&input), first);
    queue.set(|s| s.fail_extensions = true);
    wait_for(
        "the first message received again",
        Duration::from_secs(120),
        || queue.receive_count(&first) >= 2,
    )
    .await;
    queue.set(|s| s.fail_extensions = false);
    settle(&source, &input, OutcomeKind::Sent).await;
    let mut handed_out = vec![first.clone()];
    let mut third = None;
    while let Some(next) = next_within(&mut source, Duration::from_secs(60)).await {
        let id = id_of(&next);
        handed_out.push(id.clone());
        settle(&source, &next, OutcomeKind::Sent).await;
        if id == second {
            third = Some(queue.send(&job("fifo-user"), Some("g")));
        }
        if Some(&id) == third.as_ref() || handed_out.len() > 5 {
            break;
        }
    }
    let third = third.expect("the group's second message was handed out");
    assert_eq!(
        handed_out,
        [first.clone(), second.clone(), third.clone()],
        "the group in order, one job per message, and it goes on"
    );
    assert_eq!(queue.deleted(), [first, second, third]);
    source.close().await;
}

#[tokio::test(start_paused = true)]
async fn healthz_fails_when_receiving_has_not_worked_for_a_few_long_polls() {
    let queue = FakeQueue::new(false);
    queue.set(|s| s.fail_receives = true);
    let s = settings(&queue, 2, 2);
    let bound = stall_bound(s.sqs.wait_time);
    let ready = Readiness::default();
    let source = start(&queue, s, &ready);
    tokio::time::sleep(bound / 2).await;
    assert!(
        ready.health().is_ok(),
        "a short outage is not a stuck poller"
    );
    tokio::time::sleep(bound).await;
    let reason = ready
        .health()
        .expect_err("stuck for longer than the bound")
        .to_string();
    assert!(
        reason.contains("no message could be received") && reason.contains("Unavailable"),
        "{reason}"
    );
    queue.set(|s| s.fail_receives = false);
    wait_for("healthy again", Duration::from_secs(120), || {
        ready.health().is_ok()
    })
    .await;
    source.close().await;
    assert!(ready.health().is_ok(), "a closed source asks nothing");
}

#[tokio::test]
async fn the_watchdog_tells_a_busy_poller_from_one_that_lost_its_credits() {
    let now = Instant::now();
    let bound = Duration::from_secs(120);
    let long_ago = now - bound * 2;
    let waiting = PollerWatch {
        waiting_since: Some(long_ago),
        trying_since: None,
        last_error: None,
        last_return: long_ago,
        stopped: false,
    };
    assert_eq!(
        diagnose(&waiting, 26, 26, now, bound),
        Ok(()),
        "every credit with a message in progress: busy, not stuck"
    );
    let lost = diagnose(&waiting, 3, 26, now, bound)
        .expect_err("credits lost")
        .to_string();
    assert!(lost.contains("only 3 of 26"), "{lost}");
    let returning = PollerWatch {
        last_return: now,
        ..waiting.clone()
    };
    assert_eq!(
        diagnose(&returning, 3, 26, now, bound),
        Ok(()),
        "a credit just came back: the poller is about to receive"
    );
    let stopped = PollerWatch {
        stopped: true,
        ..waiting
    };
    assert_eq!(diagnose(&stopped, 0, 26, now, bound), Ok(()));
}

/// Item 12, in-process: a dry run holds what it receives until a long poll comes back empty,
/// then releases everything at once; each message was received exactly once.
#[tokio::test(start_paused = true)]
async fn a_dry_run_is_one_pass_and_releases_every_message_once() {
    let queue = FakeQueue::new(false);
    for i in 0..25 {
        queue.send(&job(&format!("dry-{i}")), None);
    }
    let mut s = settings(&queue, 4, 10);
    s.pass.one_pass = true;
    let mut source = start(&queue, s, &Readiness::default());
    let mut planned = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(120), source.next())
            .await
            .expect("the pass ends by itself once a long poll comes back empty");
        let Some(input) = next else { break };
        settle(&source, &input, OutcomeKind::DryRun).await;
        planned += 1;
    }
    assert_eq!(planned, 25);
    assert_eq!(queue.visible(), 0, "held until the pass ends");
    source.close().await;
    assert_eq!(queue.visible(), 25, "released together at the end");
    assert!(queue.deleted().is_empty());
    assert_eq!(
        queue.receive_counts(),
        vec![1; 25],
        "each received exactly once"
    );
}

#[tokio::test(start_paused = true)]
async fn max_messages_ends_the_source_after_that_many() {
    let queue = FakeQueue::new(false);
    for i in 0..25 {
        queue.send(&job(&format!("max-{i}")), None);
    }
    let mut s = settings(&queue, 4, 10);
    s.sqs.max_messages = Some(7);
    let mut source = start(&queue, s, &Readiness::default());
    let mut done = 0;
    while let Some(input) = tokio::time::timeout(Duration::from_secs(120), source.next())
        .await
        .expect("the source ends after --max-messages")
    {
        settle(&source, &input, OutcomeKind::Sent).await;
        done += 1;
    }
    source.close().await;
    assert_eq!(done, 7);
    assert_eq!(queue.deleted().len(), 7);
    assert_eq!(queue.visible(), 18, "the rest untouched");
}

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

#[tokio::test(start_paused = true)]
async fn a_fifo_dry_run_plans_every_group_in_order_in_one_pass() {
    let queue = FakeQueue::new(true);
    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    for i in 0..3 {
        for group in ["g", "h"] {
            let id = queue.send(&job(&format!("{group}-{i}")), Some(group));
            expected.entry(group).or_default().push(id);
        }
    }
    let mut s = settings(&queue, 2, 10);
    s.pass.one_pass = true;
    let mut source = start(&queue, s, &Readiness::default());
    let mut planned: HashMap<&str, Vec<String>> = HashMap::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(120), source.next())
            .await
            .expect("the pass ends by itself");
        let Some(input) = next else { break };
        let Input::Job(job) = &input else {
            panic!("readable")
        };
        let group = if job.request.username.starts_with('g') {
            "g"
        } else {
            "h"
        };
        planned.entry(group).or_default().push(id_of(&input));
        settle(&source, &input, OutcomeKind::DryRun).await;
    }
    assert_eq!(planned, expected, "every group planned, in order");
    source.close().await;
    assert_eq!(queue.visible(), 6, "released together at the end");
    assert_eq!(queue.receive_counts(), vec![1; 6]);
}

/// A stop that comes while a receive's answer is on its way (SQS has already made its messages
/// invisible) hands those messages back at once, rather than leaving them away for a visibility
/// timeout (and a consumer that stops for a spend cap or a signal with messages it never ran).
#[tokio::test(start_paused = true)]
async fn a_stop_while_an_answer_is_on_its_way_hands_its_messages_back_at_once() {
    let queue = FakeQueue::new(false);
    for i in 0..3 {
        queue.send(&job(&format!("user{i}")), None);
    }
    queue.set(|s| s.answer_delay = Duration::from_millis(500));
    let stop = CancellationToken::new();
    let source = {
        let given = settings(&queue, 4, 10);
        SqsSource::start(
            queue.clone(),
            given.sqs,
            given.pass,
            Readiness::default(),
            stop.clone(),
            CancellationToken::new(),
        )
    };
    wait_for(
        "the receive took the messages",
        Duration::from_secs(5),
        || queue.visible() == 0,
    )
    .await;
    stop.cancel();
    source.close().await;
    assert_eq!(
        queue.visible(),
        3,
        "every message is visible again without waiting out its visibility timeout"
    );
    assert_eq!(queue.receive_counts(), [1, 1, 1]);
}

/// Issue 21, item 1: at a per-day spend cap the engine tells the source how long the budget is
/// spent. The message whose job was refused, the messages received and not started, and those
/// still in flight to the consumer all stay invisible until then (within SQS's 12 hours after
/// their receive), not visible at once to be received again and counted toward the DLQ; and
/// nothing more is received.
#[tokio::test(start_paused = true)]
async fn a_spend_cap_holds_back_every_message_not_started_and_stops_receiving() {
    let queue = FakeQueue::new(false);
    for i in 0..6 {
        queue.send(&job(&format!("capped-{i}")), None);
    }
    // One receive takes all six (a batch of 10).
    let mut source = start(&queue, settings(&queue, 2, 10), &Readiness::default());
    let first = next_within(&mut source, Duration::from_secs(60))
        .await
        .expect("a first message");
    let second = next_within(&mut source, Duration::from_secs(60))
        .await
        .expect("a second message");
    settle(&source, &first, OutcomeKind::Sent).await;
    // The second job's reservation is refused: the day's cap is spent for five more hours.
    let hold = Duration::from_secs(5 * 3600);
    let capped_at = Instant::now();
    source.settler().hold_back(hold);
    source
        .settler()
        .settle(second.origin(), None)
        .await
        .expect("handed back");
    // The poller stops: a message sent a while after the cap (once a long poll in flight at
    // that moment has had its answer) is never received.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let late = queue.send(&job("capped-late"), None);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        queue.receive_count(&late),
        0,
        "nothing received after the cap"
    );
    source.close().await;
    assert_eq!(queue.deleted(), [id_of(&first)]);
    // Everything else is invisible for the hold, not back at once.
    assert_eq!(queue.visible(), 1, "only the late message is visible");
    tokio::time::sleep_until(capped_at + hold - Duration::from_secs(60)).await;
    assert_eq!(
        queue.visible(),
        1,
        "still held back just before the budget is back"
    );
    tokio::time::sleep_until(capped_at + hold + Duration::from_secs(60)).await;
    assert_eq!(queue.visible(), 6, "back once the day turned");
    assert!(
        queue.receive_counts().iter().all(|&n| n <= 1),
        "each received once at most: {:?}",
        queue.receive_counts()
    );

    // A hold longer than SQS allows is cut to 12 hours after the receive, less a minute.
    assert_eq!(
        held_back_delay(
            Instant::now() + Duration::from_secs(20 * 3600),
            Instant::now() - Duration::from_secs(3600),
            Instant::now()
        ),
        MAX_VISIBILITY - Duration::from_secs(3600 + 60)
    );
}
