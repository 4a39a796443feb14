//! The acker: batches DeleteMessageBatch calls for finished jobs and retries the entries a
//! partial failure names.

use super::*;
use crate::sync::Locked;

/// A delete for the acker, with who to tell when it is done.
pub(super) struct AckRequest {
    pub(super) message_id: String,
    pub(super) receipt_handle: String,
    /// `Ok` once deleted; `Err` when the delete failed for good.
    pub(super) done: oneshot::Sender<Result<(), AckError>>,
}

/// The acker: DeleteMessageBatch in tens, retrying the entries a partial failure names.
pub(super) async fn acker<Q: Queue>(
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
pub(super) async fn delete_batch<Q: Queue>(
    queue: &Q,
    batch: Vec<AckRequest>,
    give_up: &CancellationToken,
) {
    let pending = Mutex::new(batch);
    let policy = ack_policy(Duration::from_millis(200));
    let ran = Retry::new(&policy)
        .until(give_up)
        .run(
            |attempt| {
                let pending = &pending;
                async move {
                    let receipts: Vec<String> = pending
                        .locked()
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
                    let mut pending = pending.locked();
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
    let batch = pending.unlocked();
    for r in batch {
        // The job's outcome stands (and the ledger will make the redelivery harmless); the
        // message comes back when its visibility runs out.
        let why = if give_up.is_cancelled() {
            AckError::TimeUp
        } else {
            AckError::Failed {
                attempts: ACK_ATTEMPTS,
            }
        };
        tracing::error!(message_id = r.message_id, "{why}: it will be redelivered");
        metrics::sqs_message("delete_failed");
        let _ = r.done.send(Err(why.clone()));
    }
}
