//! `enqueue`: CSV rows to SQS messages, 10 per SendMessageBatch, so many `consume` replicas can
//! share a large backfill.
//!
//! It reuses the CSV source (same header rules, same `invalid` rows with line numbers) and the
//! message body format `consume` decodes. Partial batch failures are retried entry by entry,
//! through the one retry executor ([`crate::retry`]; the SQS client's SDK retries are off);
//! an entry SQS rejects as the sender's fault is not retried. For FIFO queues every message gets
//! a MessageGroupId (one per username unless `--fifo-group-id`) and a MessageDeduplicationId
//! derived from its body, so a retried batch cannot enqueue a job twice.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::parts::{push_final, start_metrics};
use super::{Finished, RunError};
use crate::config::Settings;
use crate::job::{Input, Source};
use crate::retry::{Backoff, Budget, Policy, Quota, Retry, Verdict};
use crate::shutdown::Shutdown;
use crate::source::csv::CsvSource;
use crate::source::sqs::{body, check_queue, connect};
use crate::sync::Locked;
use crate::telemetry::BarSlot;
use crate::telemetry::metrics;
use crate::telemetry::server::Readiness;

/// Batches in flight at once on a standard queue. A FIFO queue gets one at a time: batches in
/// flight together may land in any order, and a group's order is the order SQS receives them.
const PARALLEL_BATCHES: usize = 4;
/// Attempts for one entry.
const ATTEMPTS: u32 = 5;

#[derive(Default)]
struct Counts {
    enqueued: AtomicU64,
    invalid: AtomicU64,
    failed: AtomicU64,
}

/// One message to send: its body and where it came from.
struct Pending {
    line: String,
    body: String,
    group: Option<String>,
}

/// Runs `enqueue`.
pub(super) async fn run(
    input: PathBuf,
    fifo_group_id: Option<String>,
    settings: Settings,
    shutdown: Shutdown,
    _bar: BarSlot,
) -> Result<Finished, RunError> {
    let mut source = CsvSource::open(input)
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?;
    send_all(&mut source, fifo_group_id, "enqueue", &settings, &shutdown).await
}

/// Sends every job of `source` to `--queue-url` (`enqueue`, and `discover --to-queue`).
pub(super) async fn send_all<S: Source>(
    source: &mut S,
    fifo_group_id: Option<String>,
    command: &str,
    settings: &Settings,
    shutdown: &Shutdown,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let queue_url = settings.sqs.queue_url.clone().ok_or_else(|| {
        RunError::Usage(format!(
            "{command} needs a queue: --queue-url (sqs.queue_url)"
        ))
    })?;
    let fifo = queue_url.ends_with(".fifo");
    let stop_server = tokio_util::sync::CancellationToken::new();
    let _server = start_metrics(settings, Readiness::default(), stop_server.clone(), false).await?;
    metrics::register_sqs();
    let client = connect(
        settings.cognito.region.as_deref(),
        settings.cognito.profile.as_deref(),
        settings.sqs.endpoint.as_ref(),
        settings.sqs.wait_time,
    )
    .await;
    check_queue(&client, &queue_url)
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?;

    let counts = Arc::new(Counts::default());
    let progress = tokio::spawn(log_progress(counts.clone()));
    // Rows, in batches of ten, until the file ends or a signal stops reading.
    let group_id = fifo_group_id.as_deref();
    let batches = futures::stream::unfold(
        (&mut *source, counts.clone(), shutdown.token.clone()),
        |(source, counts, stop)| async move {
            let mut batch = Vec::with_capacity(10);
            while batch.len() < 10 {
                let next = tokio::select! {
                    biased;
                    _ = stop.cancelled() => None,
                    i = source.next() => i,
                };
                match next {
                    None => break,
                    Some(Input::Unreadable(u)) => {
                        counts.invalid.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(source = %u.origin, reason = u.reason, "invalid input");
                    }
                    Some(Input::Job(job)) => {
                        let body = body::encode(&job.request);
                        let group = fifo.then(|| match group_id {
                            Some(g) => g.to_owned(),
                            None => short_hash(&job.request.username),
                        });
                        batch.push(Pending {
                            line: job.origin.to_string(),
                            body,
                            group,
                        });
                    }
                }
            }
            (!batch.is_empty()).then_some((batch, (source, counts, stop)))
        },
    );
    batches
        .map(|batch| send_batch(&client, &queue_url, batch, &counts))
        .buffer_unordered(if fifo { 1 } else { PARALLEL_BATCHES })
        .collect::<Vec<()>>()
        .await;
    progress.abort();
    push_final(settings, command, None).await;
    stop_server.cancel();

    let (enqueued, invalid, failed) = (
        counts.enqueued.load(Ordering::Relaxed),
        counts.invalid.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    let wall = started.elapsed().as_secs_f64();
    if settings.log.verbosity >= 0 {
        eprintln!(
            "{command}: {} rows in {wall:.1}s ({:.1} rows/s)\n  enqueued={enqueued} invalid={invalid} failed={failed}",
            enqueued + invalid + failed,
            (enqueued + invalid + failed) as f64 / wall.max(0.001)
        );
    }
    if let Some(failure) = source.take_failure() {
        return Err(RunError::Fatal(anyhow::anyhow!(failure)));
    }
    Ok(Finished {
        complete: !shutdown.token.is_cancelled(),
        failed_or_invalid: invalid + failed,
    })
}

/// How a batch is retried: [`ATTEMPTS`] attempts, 200 ms then doubling, jittered. Every error of
/// the whole call is retried (a FIFO message carries a deduplication id, and a standard queue's
/// consumers tolerate a duplicate through the ledger); entries SQS rejects as the sender's fault
/// are dropped from the batch, not retried.
fn batch_policy() -> Policy {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2), 2.0, 0.2)
        .expect("a valid constant backoff");
    Policy::new(backoff, Budget::attempts(ATTEMPTS))
}

/// Sends one batch, retrying the entries that failed for reasons not the sender's. Each attempt
/// sends the entries still pending.
async fn send_batch(client: &Client, queue_url: &str, batch: Vec<Pending>, counts: &Counts) {
    let pending = Mutex::new(batch);
    let policy = batch_policy();
    let ran = Retry::new(&policy)
        .run(
            |attempt| {
                let pending = &pending;
                async move {
                    let entries: Vec<_> = pending
                        .locked()
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| {
                            SendMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .message_body(&p.body)
                                .set_message_group_id(p.group.clone())
                                .set_message_deduplication_id(
                                    p.group.as_ref().map(|_| short_hash(&p.body)),
                                )
                                .build()
                                .ok()
                        })
                        .collect();
                    let sent = client
                        .send_message_batch()
                        .queue_url(queue_url)
                        .set_entries(Some(entries))
                        .send()
                        .await;
                    let out = match sent {
                        Ok(out) => out,
                        Err(e) => {
                            tracing::warn!(
                                "SendMessageBatch failed (attempt {attempt}): {}",
                                aws_sdk_sqs::error::DisplayErrorContext(&e)
                            );
                            return Err(());
                        }
                    };
                    let failed: std::collections::HashMap<usize, (bool, String)> = out
                        .failed()
                        .iter()
                        .filter_map(|f| {
                            let detail = format!("{}: {}", f.code(), f.message().unwrap_or(""));
                            f.id().parse().ok().map(|i| (i, (f.sender_fault(), detail)))
                        })
                        .collect();
                    let mut pending = pending.locked();
                    let mut retry = Vec::new();
                    for (i, p) in pending.drain(..).enumerate() {
                        match failed.get(&i) {
                            None => {
                                counts.enqueued.fetch_add(1, Ordering::Relaxed);
                                metrics::sqs_message("enqueued");
                            }
                            Some((true, detail)) => {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(
                                    source = p.line,
                                    "SQS rejected the message: {detail}"
                                );
                            }
                            Some((false, _)) => retry.push(p),
                        }
                    }
                    *pending = retry;
                    if pending.is_empty() { Ok(()) } else { Err(()) }
                }
            },
            |_, _| Verdict::Retry(Quota::Unknown),
        )
        .await;
    if ran.result.is_ok() {
        return;
    }
    for p in pending.unlocked() {
        counts.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            source = p.line,
            "could not enqueue after {ATTEMPTS} attempts"
        );
    }
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

async fn log_progress(counts: Arc<Counts>) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    loop {
        tick.tick().await;
        tracing::info!(
            "progress: {} enqueued, {} invalid, {} failed",
            counts.enqueued.load(Ordering::Relaxed),
            counts.invalid.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed)
        );
    }
}
