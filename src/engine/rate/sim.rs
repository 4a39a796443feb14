//! A simulated Cognito quota and the runs that call it, on tokio's paused clock: what the rate
//! controller's tests measure it against (test-only). The quota is the emulator's token bucket
//! (`cognito_emulator`'s `state.rs`); a run is workers sharing one [`RateLimiter`], replicas
//! are runs sharing one quota, and a fleet shares a budget through a simulated census.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::*;
/// Cognito's requests-per-second quota as the emulator enforces it (`cognito_emulator` crate, `state.rs`):
/// a bucket of `quota` tokens refilled at `quota` per second, a throttled call takes none, and
/// a quota change starts the bucket full at the new size. `schedule` lists (from, quota).
pub(super) struct Cognito {
    pub(super) start: Instant,
    pub(super) schedule: Vec<(Duration, f64)>,
    pub(super) state: Mutex<Bucket>,
}

pub(super) struct Bucket {
    pub(super) segment: usize,
    pub(super) tokens: f64,
    pub(super) last: Instant,
    /// Accepted calls per 100 ms since the start.
    pub(super) accepted: Vec<u64>,
    pub(super) throttled: u64,
    /// Throttled calls per second since the start.
    pub(super) throttled_at: Vec<u64>,
}

impl Cognito {
    pub(super) fn new(schedule: Vec<(Duration, f64)>) -> Self {
        let start = Instant::now();
        Self {
            start,
            state: Mutex::new(Bucket {
                segment: 0,
                tokens: schedule[0].1,
                last: start,
                accepted: Vec::new(),
                throttled: 0,
                throttled_at: Vec::new(),
            }),
            schedule,
        }
    }

    pub(super) fn call(&self) -> bool {
        let now = Instant::now();
        let since = now.duration_since(self.start);
        let mut b = self.state.lock().unwrap();
        let segment = self
            .schedule
            .iter()
            .rposition(|(from, _)| *from <= since)
            .unwrap();
        let quota = self.schedule[segment].1;
        if segment != b.segment {
            b.segment = segment;
            b.tokens = quota;
        } else {
            let dt = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + dt * quota).min(quota);
        }
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let slot = (since.as_millis() / 100) as usize;
            if b.accepted.len() <= slot {
                b.accepted.resize(slot + 1, 0);
            }
            b.accepted[slot] += 1;
            true
        } else {
            b.throttled += 1;
            let slot = since.as_secs() as usize;
            if b.throttled_at.len() <= slot {
                b.throttled_at.resize(slot + 1, 0);
            }
            b.throttled_at[slot] += 1;
            false
        }
    }
}

/// What a simulated run measured.
#[derive(Debug)]
pub(super) struct Figures {
    pub(super) wall: f64,
    pub(super) accepted: u64,
    pub(super) throttled: u64,
    /// Accepted calls per 100 ms.
    pub(super) slots: Vec<u64>,
    /// When each replica finished its users, seconds after the start.
    pub(super) finished: Vec<f64>,
    /// Throttled calls per second.
    pub(super) throttled_at: Vec<u64>,
}

impl Figures {
    pub(super) fn throttled_share(&self) -> f64 {
        self.throttled as f64 / (self.accepted + self.throttled) as f64
    }
    /// Accepted calls per second between `from` and `to` seconds into the run.
    pub(super) fn rate_between(&self, from: f64, to: f64) -> f64 {
        let (a, b) = ((from * 10.0) as usize, (to * 10.0) as usize);
        let n: u64 = self.slots[a.min(self.slots.len())..b.min(self.slots.len())]
            .iter()
            .sum();
        n as f64 / (to - from)
    }
}

pub(super) struct Run {
    pub(super) replicas: usize,
    pub(super) concurrency: usize,
    pub(super) latency: Duration,
    pub(super) ceiling: Option<f64>,
    pub(super) jobs: u64,
    pub(super) schedule: Vec<(Duration, f64)>,
    /// `--fleet-rate`: the replicas share a ledger (see [`SimFleet`]).
    pub(super) fleet_budget: Option<f64>,
    /// Which run of the same shape: the limiters' spread after a cut and the workers'
    /// jitter draw from it.
    pub(super) seed: u64,
}

/// One simulated worker: takes jobs until none are left; each job calls until accepted,
/// backing off between throttled attempts like the engine (250 ms doubling, jitter 0.5).
pub(super) async fn worker(
    limiter: Arc<RateLimiter>,
    cognito: Arc<Cognito>,
    jobs: Arc<AtomicU64>,
    latency: Duration,
    mut seed: u64,
    fleet: Option<(Arc<SimFleet>, usize)>,
) {
    // Each worker's first call opens its connection.
    let mut setup = CONNECT;
    while jobs
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
    {
        let mut attempts = 0;
        loop {
            limiter.acquire().await;
            tokio::time::sleep(std::mem::take(&mut setup)).await;
            let accepted = cognito.call();
            tokio::time::sleep(latency + LOOPBACK).await;
            if accepted {
                limiter.on_success();
                break;
            }

            if limiter.on_throttle()
                && let Some((fleet, me)) = &fleet
            {
                // The engine tells the ledger at once (`Ledger::note_throttle`).
                fleet.throttles.fetch_add(1, Relaxed);
                fleet.mine[*me].fetch_add(1, Relaxed);
            }
            attempts += 1;
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jitter = 0.5 + (seed >> 11) as f64 / (1u64 << 53) as f64;
            let delay = (0.25 * 2f64.powi(attempts - 1)).min(30.0) * jitter;
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
        }
    }
}

/// A call's round trip on loopback besides the emulator's injected latency.
pub(super) const LOOPBACK: Duration = Duration::from_micros(300);
/// Opening a connection, before a worker's first call.
pub(super) const CONNECT: Duration = Duration::from_millis(2);
/// Processes started side by side start this far apart (one `Popen` and a process start).
pub(super) const STAGGER: Duration = Duration::from_millis(10);

/// One simulated process: its limiter and its workers, started `delay` after the run.
#[allow(clippy::too_many_arguments)]
pub(super) async fn replica(
    delay: Duration,
    ceiling: Option<f64>,
    concurrency: usize,
    cognito: Arc<Cognito>,
    jobs: Arc<AtomicU64>,
    latency: Duration,
    seed: u64,
    fleet: Option<(Arc<SimFleet>, usize)>,
) -> Instant {
    tokio::time::sleep(delay).await;
    let limiter = Arc::new(RateLimiter::unreported(ceiling));
    let census = fleet
        .clone()
        .map(|(fleet, me)| tokio::spawn(census(fleet, me, limiter.clone())));

    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            tokio::spawn(worker(
                limiter.clone(),
                cognito.clone(),
                jobs.clone(),
                latency,
                seed + w as u64,
                fleet.clone(),
            ))
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    if let Some(census) = census {
        census.abort();
    }

    if let Some((fleet, _)) = fleet {
        fleet.live.fetch_sub(1, Relaxed);
    }
    Instant::now()
}

/// The ledger as the fleet census sees it (`--fleet-rate`): the live runs, the throttles
/// counted by all and by each.
pub(super) struct SimFleet {
    pub(super) budget: f64,
    pub(super) live: AtomicU64,
    pub(super) throttles: AtomicU64,
    pub(super) mine: Vec<AtomicU64>,
}

/// One run's census loop, as `the ledger's census task` and the engine's share watcher do it:
/// every `CENSUS` the share follows the live runs, and throttles others counted are heard.
pub(super) async fn census(fleet: Arc<SimFleet>, me: usize, limiter: Arc<RateLimiter>) {
    const CENSUS: Duration = Duration::from_millis(500);
    fleet.live.fetch_add(1, Relaxed);
    let mut runs = 1;
    let (mut total_seen, mut mine_seen) = (None::<u64>, 0);
    loop {
        let live = fleet.live.load(Relaxed).max(1) as usize;
        limiter.set_ceiling(fleet.budget / live as f64);
        limiter.fleet_changed(runs, live);
        runs = live;
        let (total, mine) = (fleet.throttles.load(Relaxed), fleet.mine[me].load(Relaxed));
        if crate::ledger::fleet::peer_throttles(total_seen, total, mine - mine_seen) > 0 {
            limiter.on_peer_throttle();
        }
        (total_seen, mine_seen) = (Some(total), mine);
        tokio::time::sleep(CENSUS).await;
    }
}

pub(super) async fn simulate(run: Run) -> Figures {
    // The limiters' spread after a cut draws from here (thread-local: one test's runs).
    fastrand::seed(run.seed);
    let cognito = Arc::new(Cognito::new(run.schedule));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let fleet = run.fleet_budget.map(|budget| {
        Arc::new(SimFleet {
            budget,
            live: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            mine: (0..run.replicas).map(|_| AtomicU64::new(0)).collect(),
        })
    });
    for r in 0..run.replicas {
        tasks.push(tokio::spawn(replica(
            STAGGER * r as u32,
            run.ceiling,
            run.concurrency,
            cognito.clone(),
            // Each process its slice of the users, as in the bench.
            Arc::new(AtomicU64::new(run.jobs / run.replicas as u64)),
            run.latency,
            run.seed * 7919 + (r * 1000) as u64 + 1,
            fleet.clone().map(|f| (f, r)),
        )));
    }
    let mut finished = Vec::new();
    for t in tasks {
        finished.push(t.await.unwrap().duration_since(start).as_secs_f64());
    }
    let wall = start.elapsed().as_secs_f64();
    let b = cognito.state.lock().unwrap();
    Figures {
        wall,
        accepted: b.accepted.iter().sum(),
        throttled: b.throttled,
        slots: b.accepted.clone(),
        finished,
        throttled_at: b.throttled_at.clone(),
    }
}

pub(super) fn flat(quota: f64) -> Vec<(Duration, f64)> {
    vec![(Duration::ZERO, quota)]
}
