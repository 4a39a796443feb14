//! The rate controller's tests: against the simulated quota ([`super::sim`]), and unit tests of
//! its rules, on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::sim::*;
use super::*;
const QUOTA: f64 = 50.0;
/// The run every single-run test simulates.
const SEED: u64 = 7;
const JOBS: u64 = 10_000;

async fn unlimited_single(concurrency: usize, latency_ms: u64) {
    let f = simulate(Run {
        replicas: 1,
        concurrency,
        latency: Duration::from_millis(latency_ms),
        ceiling: None,
        jobs: JOBS,
        schedule: flat(QUOTA),
        fleet_budget: None,
        seed: SEED,
    })
    .await;
    let ideal = JOBS as f64 / QUOTA;
    eprintln!(
        "C={concurrency} latency={latency_ms}ms: wall {:.3}x N/Q, quota used {:.1} %, throttled {:.2} % ({})",
        f.wall / ideal,
        100.0 * f.accepted as f64 / (QUOTA * f.wall),
        100.0 * f.throttled_share(),
        f.throttled
    );
    assert_eq!(f.accepted, JOBS);
    assert!(
        f.wall <= 1.05 * ideal,
        "wall {:.1} s vs ideal {ideal} s",
        f.wall
    );
    assert!(f.throttled_share() <= 0.01, "{} throttled", f.throttled);
}

#[tokio::test(start_paused = true)]
async fn finds_the_quota_c16_0ms() {
    unlimited_single(16, 0).await;
}

#[tokio::test(start_paused = true)]
async fn finds_the_quota_c64_0ms() {
    unlimited_single(64, 0).await;
}

#[tokio::test(start_paused = true)]
async fn finds_the_quota_c16_20ms() {
    unlimited_single(16, 20).await;
}

#[tokio::test(start_paused = true)]
async fn finds_the_quota_c64_20ms() {
    unlimited_single(64, 20).await;
}

/// The bench's size (N = 1000, 20 s at the quota), where the first second weighs: a run
/// that starts unlimited empties the full bucket in milliseconds and throttles every call
/// in flight, 1.3-2.3 % of its calls against the real emulator.
#[tokio::test(start_paused = true)]
async fn a_short_run_starts_without_a_burst_of_throttles() {
    for (concurrency, latency_ms) in [(16, 0), (64, 0), (16, 20), (64, 20)] {
        let f = simulate(Run {
            replicas: 1,
            concurrency,
            latency: Duration::from_millis(latency_ms),
            ceiling: None,
            jobs: 1_000,
            schedule: flat(QUOTA),
            fleet_budget: None,
            seed: SEED,
        })
        .await;
        let ideal = 1_000.0 / QUOTA;
        eprintln!(
            "N=1000, C={concurrency}, {latency_ms} ms: wall {:.3}x, throttled {}",
            f.wall / ideal,
            f.throttled
        );
        assert!(f.wall <= 1.05 * ideal, "wall {:.1} s", f.wall);
        assert!(f.throttled_share() <= 0.01, "{} throttled", f.throttled);
    }
}

/// Ten processes started side by side without a ledger, 100 users each (N = 1000, the
/// bench's uncoordinated case), over `RUNS` runs of the same shape: one run says little,
/// since which process a throttle episode hits is chance, and the processes finish seconds
/// apart by luck alone. Measured here (30 runs, this build): 89 % of the quota used on
/// average (77-97 %), 4.3 % throttled (3.7-5.7 %), the first and last process finishing
/// 8.4 s apart. (With a temporary change that put the ten job pools behind *one* limiter,
/// they finished within a second of each other and used 96 %: the gap is what independent
/// limiters cannot know about each other; see docs/benchmarks.md.) A real regression moves
/// the average: without `MIN_CALLS`, 84.9 %.
#[tokio::test(start_paused = true)]
async fn ten_replicas_starting_together_share_the_quota() {
    const RUNS: u64 = 20;
    let (mut used_sum, mut throttled_sum, mut spread_sum) = (0.0, 0.0, 0.0);
    let (mut used_min, mut throttled_max) = (f64::MAX, 0.0f64);
    let mut runs = Vec::new();
    for seed in 1..=RUNS {
        let f = simulate(Run {
            replicas: 10,
            concurrency: 16,
            latency: Duration::from_millis(20),
            ceiling: None,
            jobs: 1_000,
            schedule: flat(QUOTA),
            fleet_budget: None,
            seed,
        })
        .await;
        let used = f.accepted as f64 / (QUOTA * f.wall + QUOTA);
        let throttled = f.throttled_share();
        let first = f.finished.iter().copied().fold(f64::MAX, f64::min);
        let last = f.finished.iter().copied().fold(0.0, f64::max);
        runs.push(format!("{:.0}/{:.1}", 100.0 * used, 100.0 * throttled));
        (used_sum, throttled_sum, spread_sum) = (
            used_sum + used,
            throttled_sum + throttled,
            spread_sum + last - first,
        );
        (used_min, throttled_max) = (used_min.min(used), throttled_max.max(throttled));
    }
    let n = RUNS as f64;
    let (used, throttled) = (used_sum / n, throttled_sum / n);
    eprintln!("10 replicas, N=1000, used/throttled %: {}", runs.join(" "));
    eprintln!(
        "10 replicas, N=1000: quota used {:.1} % (worst {:.1}), throttled {:.2} % (worst {:.2}), finishing spread {:.1} s",
        100.0 * used,
        100.0 * used_min,
        100.0 * throttled,
        100.0 * throttled_max,
        spread_sum / n
    );
    assert!(used >= 0.87, "{used}");
    assert!(used_min >= 0.75, "{used_min}");
    assert!(throttled <= 0.05, "{throttled}");
    assert!(throttled_max <= 0.065, "{throttled_max}");
}

#[tokio::test(start_paused = true)]
async fn follows_a_quota_that_drops_and_returns() {
    // 50/s for 60 s, 20/s for 20 s, then 50/s again.
    let schedule = vec![
        (Duration::ZERO, 50.0),
        (Duration::from_secs(60), 20.0),
        (Duration::from_secs(80), 50.0),
    ];
    let f = simulate(Run {
        replicas: 1,
        concurrency: 16,
        latency: Duration::from_millis(20),
        ceiling: None,
        jobs: 50 * 60 + 20 * 20 + 50 * 40,
        schedule,
        fleet_budget: None,
        seed: SEED,
    })
    .await;
    let per_second: Vec<String> = (80..92)
        .map(|t| format!("{:.0}", f.rate_between(t as f64, t as f64 + 1.0)))
        .collect();
    eprintln!("after return, per second: {}", per_second.join(" "));
    let back = f.rate_between(90.0, 100.0);
    eprintln!(
        "drop: throttled {:.2} % ({}), during the drop {:.1}/s, 0-10 s after return {:.1}/s, 10-20 s after {:.1}/s, wall {:.1}",
        100.0 * f.throttled_share(),
        f.throttled,
        f.rate_between(62.0, 80.0),
        f.rate_between(80.0, 90.0),
        back,
        f.wall
    );
    assert!(f.throttled_share() <= 0.03);
    let peak = (80..90)
        .map(|t| f.rate_between(t as f64, t as f64 + 1.0))
        .fold(0.0, f64::max);
    assert!(
        peak >= 0.9 * 50.0,
        "within 10 s of the return, at most {peak}/s"
    );
    assert!(back >= 0.9 * 50.0, "{back}/s over the 10 s after that");
}

#[tokio::test(start_paused = true)]
async fn ten_replicas_share_one_quota() {
    let f = simulate(Run {
        replicas: 10,
        concurrency: 16,
        latency: Duration::from_millis(20),
        ceiling: None,
        jobs: JOBS,
        schedule: flat(QUOTA),
        fleet_budget: None,
        seed: SEED,
    })
    .await;
    let used = f.accepted as f64 / (QUOTA * f.wall);
    eprintln!(
        "10 replicas: wall {:.3}x, quota used {:.1} %, throttled {:.2} %",
        f.wall / (JOBS as f64 / QUOTA),
        100.0 * used,
        100.0 * f.throttled_share()
    );
    assert!(used >= 0.9);
    assert!(f.throttled_share() <= 0.05);
}

/// Ten replicas with `--rate 0` sharing a fleet budget (`--fleet-rate`) through a ledger
/// (see [`census`]), against one quota, with the bench's users (20 seconds of the quota):
/// the fleet budget's targets.
async fn fleet_of_ten(budget: f64, quota: f64) -> (f64, f64) {
    let jobs = (quota * 20.0) as u64;
    let f = simulate(Run {
        replicas: 10,
        concurrency: 16,
        latency: Duration::from_millis(20),
        ceiling: None,
        jobs,
        schedule: flat(quota),
        fleet_budget: Some(budget),
        seed: SEED,
    })
    .await;
    let used = f.accepted as f64 / (quota * f.wall);
    eprintln!(
        "10 replicas, fleet budget {budget}, quota {quota}: quota used {:.1} %, throttled {:.2} % {:?} {:?}",
        100.0 * used,
        100.0 * f.throttled_share(),
        f.throttled_at,
        (0..f.wall.ceil() as usize)
            .map(|t| f.rate_between(t as f64, t as f64 + 1.0) as u64)
            .collect::<Vec<_>>()
    );
    assert_eq!(f.accepted, jobs);
    (used, f.throttled_share())
}

#[tokio::test(start_paused = true)]
async fn a_fleet_budget_equal_to_the_quota_is_used_without_throttles() {
    let (used, throttled) = fleet_of_ten(50.0, 50.0).await;
    assert!(used >= 0.95, "{used}");
    assert!(throttled <= 0.01, "{throttled}");
}

/// Budget 50 over a quota of 30: the shares add up to more than the quota, so the replicas
/// find it by throttles, and hear of each other's through the ledger. Without hearing them
/// (each cutting on its own throttles only) this measures 94.6 % used and 3.85 % throttled;
/// without the rates scaling as runs start and leave, 88.0 % and 2.8 % (both measured
/// before the fleet started from half its budget); with both, 100 % and 2.0 % (of the quota
/// over the wall time, without the bucket's first second). The targets: >= 90 %, <= 3 %.
#[tokio::test(start_paused = true)]
async fn a_fleet_budget_above_the_quota_settles_under_the_quota() {
    let (used, throttled) = fleet_of_ten(50.0, 30.0).await;
    assert!(used >= 0.90, "{used}");
    assert!(throttled <= 0.03, "{throttled}");
}

/// `n` successes, one every `gap`.
async fn succeed(limiter: &RateLimiter, n: u32, gap: Duration) {
    for _ in 0..n {
        tokio::time::advance(gap).await;
        limiter.on_success();
    }
}

#[tokio::test(start_paused = true)]
async fn a_peers_throttle_cuts_like_this_runs_own_unless_it_just_had_one() {
    let limiter = RateLimiter::new(Some(100.0));
    succeed(&limiter, 30, Duration::from_millis(30)).await;
    limiter.on_peer_throttle();
    assert_eq!(limiter.current(), Some(27.0), "0.9 of the 30/s accepted");
    // This run's own throttle of the same episode, heard after the peer's: an echo.
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(!limiter.on_throttle(), "an echo is not counted");
    assert_eq!(limiter.current(), Some(27.0));
    // The other way round: its own first, the peer's heard a census later.
    tokio::time::advance(Duration::from_secs(5)).await;
    succeed(&limiter, 20, Duration::from_millis(50)).await;
    assert!(limiter.on_throttle(), "a new episode is counted");
    let after_own = limiter.current().unwrap();
    assert!(after_own < 27.0, "{after_own}");
    tokio::time::advance(Duration::from_millis(700)).await;
    limiter.on_peer_throttle();
    assert_eq!(
        limiter.current(),
        Some(after_own),
        "the same episode, heard late"
    );
}

#[tokio::test(start_paused = true)]
async fn a_fleet_starts_as_one_process_and_a_run_that_leaves_frees_its_part() {
    // A slow start in a fleet of 4: a quarter of the start rate, scaled as runs are counted.
    let limiter = RateLimiter::new(None);
    limiter.set_ceiling(5.0);
    limiter.fleet_changed(1, 4);
    assert_eq!(limiter.current(), Some(START_RATE / 4.0));
    limiter.fleet_changed(4, 2);
    assert_eq!(limiter.current(), Some(START_RATE / 2.0));
    // A budget of 50 over 2 runs: half of the share, more than the fleet's start rate.
    limiter.set_ceiling(25.0);
    limiter.fleet_changed(2, 2);
    limiter.fleet_changed(2, 1);
    limiter.fleet_changed(1, 2);
    assert_eq!(limiter.current(), Some(12.5));
    // After a throttle: runs joining leave the rate alone, a run leaving gives its part.
    succeed(&limiter, 20, Duration::from_millis(50)).await;
    limiter.set_ceiling(100.0);
    limiter.on_throttle();
    let settled = limiter.current().unwrap();
    limiter.fleet_changed(2, 4);
    assert_eq!(
        limiter.current(),
        Some(settled),
        "a run counted late is inside the quota"
    );
    limiter.fleet_changed(4, 2);
    assert_eq!(limiter.current(), Some(settled * 2.0));
    limiter.set_ceiling(settled);
    limiter.fleet_changed(2, 1);
    assert_eq!(limiter.current(), Some(settled), "never above the ceiling");
}

/// A run at 5/s (one of ten on the quota) throttled twice 300 ms apart, with no success of
/// its own in between: the span says nothing (it once said `0 / 0.3 s` and cut the run to
/// the floor of 0.5/s), so the window of the last ten successes decides.
#[tokio::test(start_paused = true)]
async fn a_short_span_without_successes_does_not_cut_a_slow_run_to_the_floor() {
    let limiter = RateLimiter::new(Some(100.0));
    succeed(&limiter, 40, Duration::from_millis(200)).await;
    assert!(limiter.on_throttle());
    let first = limiter.current().unwrap();
    assert!(
        (4.4..=5.5).contains(&first),
        "about 0.9 of the 5/s accepted: {first}"
    );
    tokio::time::advance(Duration::from_millis(300)).await;
    assert!(limiter.on_throttle(), "past the echo span: counted");
    let second = limiter.current().unwrap();
    assert!(
        second >= 0.85 * first,
        "a second cut from the window, not from an empty span: {first} -> {second}"
    );
}

/// Without a throttle for `QUIET_SECS`, a run grows exponentially only once it has made
/// `QUIET_CALLS` calls since: a run with nine peers that a throttle episode happened to miss
/// keeps its cubic, a run alone whose quota ebbed takes the room.
#[tokio::test(start_paused = true)]
async fn quiet_growth_waits_for_enough_calls_without_a_throttle() {
    let rate_after = |calls_per_second: u32| async move {
        let limiter = RateLimiter::new(Some(1_000.0));
        let gap = Duration::from_secs(1) / calls_per_second;
        succeed(&limiter, 2 * calls_per_second, gap).await;
        limiter.on_throttle();
        let set = limiter.current().unwrap();
        // 4.5 s without a throttle.
        succeed(&limiter, 9 * calls_per_second / 2, gap).await;
        limiter.current().unwrap() / set
    };
    // 5/s: 22 calls in 4.5 s, under `QUIET_CALLS`: the cubic alone (+37 % of the estimate).
    let slow = rate_after(5).await;
    // 50/s: 225 calls: the quiet growth (1.5 s of doubling on top of the cubic).
    let busy = rate_after(50).await;
    assert!(slow < 1.6, "a slow run kept its cubic: x{slow:.2}");
    assert!(busy > 2.0, "a busy run grew exponentially: x{busy:.2}");
}

/// Ten runs cut in the same moment must not all make their next call one interval later.
#[tokio::test(start_paused = true)]
async fn the_next_call_after_a_cut_is_spread_over_an_interval() {
    let mut waits = Vec::new();
    for _ in 0..20 {
        let limiter = RateLimiter::new(Some(10.0));
        limiter.acquire().await;
        limiter.on_throttle();
        // The window is empty: the floor.
        let interval = 1.0 / limiter.current().unwrap();
        let before = Instant::now();
        limiter.acquire().await;
        let waited = before.elapsed().as_secs_f64() / interval;
        assert!((0.0..=2.0).contains(&waited), "{waited} intervals");
        waits.push(waited);
    }
    let (lo, hi) = waits
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
    assert!(
        hi - lo > 0.3,
        "the next calls are spread: {lo:.2}..{hi:.2} intervals"
    );
}

#[tokio::test(start_paused = true)]
async fn throttles_in_flight_count_once_and_the_rate_never_goes_up_on_a_throttle() {
    let limiter = RateLimiter::new(Some(100.0));
    // 30 successes in the last second: the window says 30/s.
    succeed(&limiter, 30, Duration::from_millis(30)).await;
    limiter.on_throttle();
    assert_eq!(limiter.current(), Some(27.0), "0.9 of the 30/s accepted");
    // Calls that were in flight: the same episode, not three more cuts.
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(10)).await;
        limiter.on_throttle();
    }
    assert_eq!(limiter.current(), Some(27.0));
    // A second throttle after 20 accepted in 0.5 s: the two-throttle estimate, 40/s, is
    // above the current rate, which stays.
    succeed(&limiter, 20, Duration::from_millis(25)).await;
    limiter.on_throttle();
    let r = limiter.current().unwrap();
    assert!(
        (27.0..27.2).contains(&r),
        "a throttle never raises the rate: {r}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_ceiling_changed_at_run_time_is_followed_both_ways() {
    // A fleet share: 40/s, then 20/s (a second run joined), then 40/s again (it left).
    let limiter = Arc::new(RateLimiter::unreported(Some(40.0)));
    let cognito = Arc::new(Cognito::new(flat(QUOTA)));
    let jobs = Arc::new(AtomicU64::new(u64::MAX));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(worker(
                limiter.clone(),
                cognito.clone(),
                jobs.clone(),
                Duration::from_millis(20),
                w + 1,
                None,
            ))
        })
        .collect();
    let accepted = || cognito.state.lock().unwrap().accepted.iter().sum::<u64>();
    let mut rates = Vec::new();
    for ceiling in [40.0, 20.0, 40.0] {
        limiter.set_ceiling(ceiling);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = accepted();
        tokio::time::sleep(Duration::from_secs(10)).await;
        rates.push((accepted() - before) as f64 / 10.0);
    }
    for w in workers {
        w.abort();
    }
    eprintln!("ceilings 40, 20, 40: {rates:?}/s");
    assert_eq!(cognito.state.lock().unwrap().throttled, 0);
    for (got, want) in rates.iter().zip([40.0, 20.0, 40.0]) {
        assert!(
            (got - want).abs() <= 0.02 * want,
            "{got}/s under a ceiling of {want}"
        );
    }
}

/// A caller who finds the limiter idle (the first call, or after a pause longer than a
/// burst) goes at once: the schedule must not put it behind. It once did, by a burst's
/// worth (a tenth of a second), which halved the throughput of a backfill at 20 ms latency.
#[tokio::test(start_paused = true)]
async fn an_idle_caller_is_never_delayed() {
    for rate in [10.0, 1_000.0, 5_000.0] {
        let limiter = RateLimiter::unreported(Some(rate));
        for _ in 0..5 {
            let before = Instant::now();
            limiter.acquire().await;
            assert_eq!(before.elapsed(), Duration::ZERO, "rate {rate}: waited");
            // Longer than a burst's worth of tickets (a tenth of a second of the rate): the
            // limiter is idle again.
            tokio::time::sleep(Duration::from_millis(200)).await;
            limiter.on_success();
        }
    }
}

const MONTH: Duration = Duration::from_secs(30 * 24 * 3600);

/// A consumer whose queue stays empty for a month: its first success afterwards must not
/// allocate a slot per 100 ms of the idle time (26 million of them, 200 MB), nor keep them.
#[tokio::test(start_paused = true)]
async fn the_history_stays_bounded_over_a_month_of_idleness() {
    for ceiling in [None, Some(100.0)] {
        let limiter = RateLimiter::unreported(ceiling);
        succeed(&limiter, 50, Duration::from_millis(20)).await;
        for _ in 0..3 {
            tokio::time::advance(MONTH).await;
            limiter.on_success();
            let s = limiter.lock();
            assert!(
                s.history.len() <= HISTORY_SLOTS,
                "{} slots kept",
                s.history.len()
            );
            assert!(
                s.history.capacity() <= 2 * HISTORY_SLOTS,
                "{} slots allocated after a month idle",
                s.history.capacity()
            );
            assert_eq!(
                s.history.iter().sum::<u64>(),
                1,
                "only the success after the idle month is recent"
            );
        }
    }
}

/// Phase one of a run: `jobs` calls by 16 workers against a fresh quota of `QUOTA`; returns
/// (accepted, throttled).
async fn busy(limiter: &Arc<RateLimiter>, jobs: u64) -> (u64, u64) {
    let cognito = Arc::new(Cognito::new(flat(QUOTA)));
    let left = Arc::new(AtomicU64::new(jobs));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            tokio::spawn(worker(
                limiter.clone(),
                cognito.clone(),
                left.clone(),
                Duration::from_millis(20),
                w + 1,
                None,
            ))
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let b = cognito.state.lock().unwrap();
    (b.accepted.iter().sum(), b.throttled)
}

/// After a month without calls, the controller goes on from the rate it had settled at: the
/// idle time is not probing time. (The probe once counted it: a `--rate 0` consumer came
/// back from a month, or a quiet night, at a rate of 10^19 per second or more, and its first
/// calls went out at full concurrency into a throttle.)
#[tokio::test(start_paused = true)]
async fn after_a_month_idle_the_controller_resumes_where_it_settled() {
    fastrand::seed(SEED);
    let limiter = Arc::new(RateLimiter::unreported(None));
    let (accepted, _) = busy(&limiter, 1_500).await;
    assert_eq!(accepted, 1_500);
    let settled = limiter.current().unwrap();
    tokio::time::advance(MONTH).await;
    // The first call answered after the month.
    limiter.acquire().await;
    limiter.on_success();
    let back = limiter.current().unwrap();
    assert!(
        (settled..=1.1 * settled).contains(&back),
        "settled at {settled}/s, {back}/s after a month idle"
    );
    let (accepted, throttled) = busy(&limiter, 500).await;
    let rate = limiter.current().unwrap();
    eprintln!(
        "settled at {settled:.1}/s; after a month idle {back:.1}/s; 500 calls: {throttled} \
         throttled, then {rate:.1}/s"
    );
    assert_eq!(accepted, 500);
    assert!(
        throttled as f64 <= 0.03 * accepted as f64,
        "{throttled} throttled coming back"
    );
    // And it still limits: callers are paced at the rate.
    let before = Instant::now();
    for _ in 0..(2.0 * rate) as usize {
        limiter.acquire().await;
    }
    assert!(
        before.elapsed() >= Duration::from_secs(1),
        "{:?} for two seconds' worth of calls at {rate}/s",
        before.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn never_below_the_floor() {
    let limiter = RateLimiter::new(Some(1.0));
    for _ in 0..10 {
        limiter.on_throttle();
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert_eq!(limiter.current(), Some(MIN_RATE));
}

#[tokio::test(start_paused = true)]
async fn a_ceiling_below_the_quota_is_held_without_throttles() {
    let f = simulate(Run {
        replicas: 1,
        concurrency: 64,
        latency: Duration::from_millis(20),
        ceiling: Some(40.0),
        jobs: 4_000,
        schedule: flat(QUOTA),
        fleet_budget: None,
        seed: SEED,
    })
    .await;
    let achieved = f.accepted as f64 / f.wall;
    eprintln!("ceiling 40: {achieved:.2}/s, throttled {}", f.throttled);
    assert_eq!(f.throttled, 0);
    assert!((achieved - 40.0).abs() <= 0.8, "{achieved}/s");
}
