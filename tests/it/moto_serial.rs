//! The local SQS is trustworthy: `scripts/moto_server.py` lets one request at a time into moto,
//! and its long polling neither blocks other clients nor takes messages for a client that left.
//!
//! Why it matters: moto 5.2.5's SQS backend is not safe under concurrent requests. Behind its
//! threaded server, two concurrent DeleteMessage calls could each rebuild the queue's message
//! list from the same snapshot, so one undid the other and a deleted message was delivered
//! again 30 s later. The SQS tests would then blame `consume` for a duplicate it did not cause.
//!
//! Proof, not timing: the launcher counts the requests inside moto at once
//! (`/_launcher/stats`). Under many concurrent clients that maximum must be 1, and the same
//! load with the lock turned off (`--no-serialize`) must show more than 1, or the probe could
//! not see concurrency at all.

use crate::support;

use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use support::moto::{self, Moto};

/// Concurrent clients in the load: well above the SDK's and the server's natural parallelism.
const CLIENTS: usize = 32;
/// Messages per client: each is sent, received and deleted one by one (3 requests).
const PER_CLIENT: usize = 5;

/// Every client sends, receives and deletes its own messages, one request at a time, all
/// clients at once. Returns (requests made, messages each client got back, failed requests):
/// without the lock moto may fail some (that unsafety is why the lock exists), so failures are
/// counted, not fatal; the serialized test asserts there are none.
async fn concurrent_load(sqs: &Client, url: &str) -> (u64, Vec<usize>, usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (sqs, url) = (sqs.clone(), url.to_owned());
        tasks.spawn(async move {
            let mut failed = 0;
            let bodies: Vec<String> = (0..PER_CLIENT).map(|i| format!("c{c}-{i}")).collect();
            for body in &bodies {
                let sent = sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(body)
                    .send()
                    .await;
                failed += usize::from(sent.is_err());
            }
            // Any client's messages: receiving is competitive, so count what this one got.
            let mut got = 0;
            for _ in 0..PER_CLIENT {
                let out = match sqs
                    .receive_message()
                    .queue_url(&url)
                    .visibility_timeout(600)
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(_) => {
                        failed += 1;
                        continue;
                    }
                };
                for m in out.messages.unwrap_or_default() {
                    let deleted = sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(m.receipt_handle.expect("a receipt handle"))
                        .send()
                        .await;
                    failed += usize::from(deleted.is_err());
                    got += 1;
                }
            }
            (got, failed)
        });
    }
    let results: Vec<(usize, usize)> = tasks.join_all().await;
    let got: Vec<usize> = results.iter().map(|r| r.0).collect();
    let failed = results.iter().map(|r| r.1).sum();
    let requests = (CLIENTS * PER_CLIENT * 2 + got.iter().sum::<usize>()) as u64;
    (requests, got, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_serves_one_request_at_a_time_under_concurrent_clients() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "serial", &[]).await;

    let (requests, _, failed) = concurrent_load(&sqs, &url).await;
    assert_eq!(failed, 0, "serialized, moto fails no request");
    let stats = moto.stats().await;
    assert!(
        stats.requests >= requests,
        "the probe saw every request: {stats:?}, sent at least {requests}"
    );
    assert_eq!(stats.max_concurrency, 1, "one request at a time: {stats:?}");
    assert_eq!(stats.in_flight, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_concurrency_when_the_lock_is_off() {
    let moto = Moto::start_with(&["--no-serialize"]).await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "unsafe", &[]).await;

    concurrent_load(&sqs, &url).await;
    let stats = moto.stats().await;
    assert!(
        stats.max_concurrency > 1,
        "without the lock, concurrent clients overlap inside moto: {stats:?}"
    );
}

/// The failure: concurrent DeleteMessage calls put messages back. Every message is
/// received (with a visibility timeout far beyond the test) and then deleted by 32 concurrent
/// deleters; none may remain, visible or in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_all_stick() {
    const MESSAGES: usize = 500;
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "deletes", &[]).await;
    let bodies: Vec<String> = (0..MESSAGES).map(|i| format!("m{i}")).collect();
    moto::send_bodies(&sqs, &url, &bodies, None).await;

    let mut handles = Vec::new();
    while handles.len() < MESSAGES {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .expect("ReceiveMessage");
        let got = out.messages.unwrap_or_default();
        assert!(!got.is_empty(), "all {MESSAGES} are visible until received");
        handles.extend(got.into_iter().map(|m| m.receipt_handle.expect("a handle")));
    }
    assert_eq!(moto::queue_counts(&sqs, &url).await, (0, MESSAGES as u64));

    let handles = std::sync::Arc::new(std::sync::Mutex::new(handles));
    let mut deleters = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (sqs, url, handles) = (sqs.clone(), url.clone(), handles.clone());
        deleters.spawn(async move {
            loop {
                let Some(handle) = handles.lock().expect("not poisoned").pop() else {
                    return;
                };
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("DeleteMessage");
            }
        });
    }
    deleters.join_all().await;

    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (0, 0),
        "every delete stuck"
    );
    assert_eq!(moto.stats().await.max_concurrency, 1);
}

/// A long poll on an empty queue waits outside the lock: other clients are served meanwhile,
/// and a message sent during the wait ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_blocks_no_one_and_wakes_on_a_send() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(&sqs, "longpoll", &[]).await;

    let poll = {
        let (sqs, url) = (sqs.clone(), url.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .wait_time_seconds(20)
                .send()
                .await
                .expect("ReceiveMessage");
            (started.elapsed(), out.messages.unwrap_or_default())
        })
    };
    wait_for_long_poll(&moto).await;

    // Served while the poll waits (a single-threaded server would hold these for 20 s).
    let started = Instant::now();
    for _ in 0..5 {
        moto::queue_counts(&sqs, &url).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "other requests were served during the poll: {:?}",
        started.elapsed()
    );
    moto::send_bodies(&sqs, &url, &["wake".to_owned()], None).await;

    let (waited, got) = tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect("the poll ended")
        .expect("the poll task");
    assert_eq!(got.len(), 1, "the poll got the message sent during it");
    assert_eq!(got[0].body.as_deref(), Some("wake"));
    assert!(
        waited < Duration::from_secs(15),
        "woken by the send, not by its 20 s wait: {waited:?}"
    );
    assert_eq!(moto.stats().await.max_concurrency, 1);
}

/// A consumer that gives up its poll (it is shutting down) closes the connection; the launcher
/// notices, so a message sent next is not received for it and left invisible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_long_poll_takes_no_message() {
    let moto = Moto::start().await;
    let sqs = moto::sqs_client(&moto.endpoint).await;
    let url = moto::create_queue(
        &sqs,
        "abandoned",
        &[(QueueAttributeName::VisibilityTimeout, "600")],
    )
    .await;

    let poll = {
        let (sqs, url) = (sqs.clone(), url.clone());
        tokio::spawn(async move {
            sqs.receive_message()
                .queue_url(&url)
                .wait_time_seconds(20)
                .send()
                .await
        })
    };
    wait_for_long_poll(&moto).await;
    poll.abort(); // drops the request: the SDK closes its connection
    let _ = poll.await;

    moto::send_bodies(&sqs, &url, &["keep me".to_owned()], None).await;
    // The abandoned poll wakes on that send; give it its chance to (wrongly) take the message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        moto::queue_counts(&sqs, &url).await,
        (1, 0),
        "the message stayed visible"
    );
    assert_eq!(moto::drain_bodies(&sqs, &url).await, ["keep me"]);
}

/// Waits (bounded) until a long poll is waiting in the launcher, so what follows happens
/// during it.
async fn wait_for_long_poll(moto: &Moto) {
    support::eventually(
        "the long poll to arrive",
        Duration::from_secs(10),
        Duration::from_millis(20),
        async || moto.stats().await.long_polls > 0,
    )
    .await
}
