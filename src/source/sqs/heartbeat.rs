//! The heartbeat: extends the visibility of the messages this process holds before it runs
//! out (batched ChangeMessageVisibility), up to `--max-extension`.

use super::*;
use crate::sync::Locked;

/// The heartbeat: renew the visibility of held messages before it runs out.
pub(super) async fn heartbeat<Q: Queue>(shared: Arc<Shared<Q>>, stop: CancellationToken) {
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
        let due: Vec<(String, String)> = shared
            .held
            .locked()
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
            let mut held = shared.held.locked();
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
