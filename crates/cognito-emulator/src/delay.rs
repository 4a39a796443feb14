//! Precise injected latency.
//!
//! tokio's timer wheel has a 1 ms resolution and rounds deadlines up, and under load its wake-ups
//! come later still: `sleep(20ms)` answers after 21–22 ms on a busy 2-core machine. A benchmark
//! against the emulator would then measure the emulator's timer, not the client. So one thread
//! keeps the pending deadlines in a heap and wakes each at its instant, with the precision of the
//! OS timer (tens of microseconds).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Instant;

use tokio::sync::oneshot;

/// A handle to the timer thread; the thread ends when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct PreciseDelay {
    tx: Option<mpsc::Sender<Entry>>,
}

#[derive(Debug)]
struct Entry {
    deadline: Instant,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: the earliest deadline is the heap's top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.deadline.cmp(&self.deadline)
    }
}

impl PreciseDelay {
    /// Starts the timer thread. If it cannot be started, delays fall back to tokio's timer.
    pub(crate) fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Entry>();
        let started = std::thread::Builder::new()
            .name("emulator-latency".into())
            .spawn(move || run(&rx));
        Self {
            tx: started.ok().map(|_| tx),
        }
    }

    /// Waits until `deadline`.
    pub(crate) async fn until(&self, deadline: Instant) {
        if let Some(tx) = &self.tx {
            let (wake, woken) = oneshot::channel();
            if tx.send(Entry { deadline, wake }).is_ok() && woken.await.is_ok() {
                return;
            }
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

fn run(rx: &mpsc::Receiver<Entry>) {
    let mut heap = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|e: &Entry| e.deadline <= now) {
            if let Some(e) = heap.pop() {
                // The request may have gone away (connection closed): nothing to wake.
                let _ = e.wake.send(());
            }
        }
        let next = match heap.peek() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(e) => rx.recv_timeout(e.deadline.saturating_duration_since(now)),
        };
        match next {
            Ok(e) => heap.push(e),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) if heap.is_empty() => return,
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(e) = heap.peek() {
                    std::thread::sleep(e.deadline.saturating_duration_since(Instant::now()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_in_deadline_order_and_not_early() {
        let delay = std::sync::Arc::new(PreciseDelay::start());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [30u64, 10, 20] {
            let d = delay.clone();
            tasks.push(tokio::spawn(async move {
                d.until(start + Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            }));
        }
        for t in tasks {
            let (ms, took) = t.await.unwrap();
            assert!(
                took >= Duration::from_millis(ms),
                "{ms} ms woke after {took:?}"
            );
        }
    }
}
