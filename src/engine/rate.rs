//! The shared client-side rate limit: a controller that finds Cognito's spare quota.
//!
//! Cognito's quota for ResendConfirmationCode is per account and region and shared with live
//! sign-ups, so the aim is to use the spare quota without keeping the account throttled. The
//! quota is modelled as what the emulator enforces and what AWS documents: a token bucket that
//! refills at `Q` per second and holds about one second of calls.
//!
//! **Slow start.** `--rate 0` does not start unlimited: against a full bucket, an unlimited
//! start lets one second of quota through in a few milliseconds, then throttles every call in
//! flight, and with ten processes starting side by side each would set its rate from that
//! scramble. It starts at `START_RATE` (10/s) and, until the first throttle, adds
//! `SLOW_START_GAIN` per success, doubling every half second while the run uses its rate (like
//! TCP's slow start: paced, so the bucket drains gradually and the first throttle finds only the
//! few calls in flight). Below the quota the bucket stays full and overflows; that costs about
//! 30 calls of quota at 50/s, well under the second of burst the full bucket gives back.
//!
//! **The first throttle.** The bucket was full when the rate passed the quota and is empty now,
//! so from any moment `s` the server accepted at most `Q x (BUCKET_SECS + now - s)`. The
//! *drained estimate*, the largest `accepted since s / (1 s + now - s)` over the last 10 s (in
//! 100 ms slots), is a lower bound on `Q`, exact at the moment the bucket was last full; the
//! one-second window instead would count what the bucket held. Ten processes starting together
//! each measure their own part of what the bucket let through, so their rates add up to the
//! quota.
//!
//! **Measure, don't guess.** A throttle means the server's bucket was empty at that moment. So
//! between two throttles the calls Cognito accepted are exactly `Q x span` (within one call),
//! unless the bucket filled up in between: the *two-throttle estimate* `accepted / span`. The
//! *window estimate* — successes over the last `WINDOW` (1 s) — errs the other way (it also counts
//! what the bucket held a window ago). On a later throttle the controller takes the lower of the
//! two and sets the rate to `BACKOFF` (0.9) of it, never raising it. Throttles within `ECHO_SPAN`
//! (250 ms) of the counted one are calls that were already in flight: they stop probing but do
//! not lower the rate again.
//!
//! **Enough calls.** Both estimates count this run's successes, and a run with nine peers on the
//! same quota makes five calls a second: a span of 0.3 s between two throttles (others' probes
//! keep the bucket empty) may hold no success of its own, and `0 / 0.3 s` once cut such runs to
//! the floor of 0.5/s, where they stayed for seconds while the others finished (the bench's
//! uncoordinated processes then finished ten seconds apart). So the two-throttle estimate counts
//! only over spans holding `MIN_CALLS` (10) successes, and the window grows (up to `WINDOW_MAX`,
//! 5 s) until it holds as many.
//!
//! **Why 0.9 costs nothing.** Dropping below `Q` lets the server's bucket refill; probing above
//! `Q` later spends it. Between two throttles the bucket goes from empty to empty, so the calls
//! accepted over a cycle are `Q x cycle` whatever the shape in between: the margin only sets how
//! long a cycle lasts, hence how rarely the account sees a throttle (a few calls per cycle).
//!
//! **Probe.** After a throttle the rate grows to `estimate x (0.5 % x t + 0.4 % x t^3)` above
//! where it was set, `t` seconds after it (CUBIC-like: flat near the known quota, then
//! faster). It crosses the 10 % margin in under 3 s; it takes a rate that fell to 40 % of the
//! quota (50 -> 20 -> 50) back above 90 % in about 6 s, and lets the last processes of an
//! uncoordinated fleet take the quota the finished ones left within a few seconds. Cycles last
//! 3-4 seconds at a steady quota, a few throttled calls each: well under 1 % of calls. Every
//! throttle (echoes too) restarts the probe: throttles returning stop it.
//!
//! **Quiet.** After `QUIET_SECS` (3 s) and `QUIET_CALLS` (30) successes without a throttle the
//! rate also grows exponentially, by `scale x (2^t - 1)` `t` seconds after that: room the cubic
//! has not found by then is room someone left (an uncoordinated peer that finished its share of
//! the users, live traffic that ebbed), and a cubic sized on this run's small part of the quota
//! takes many seconds to fill it. Measured in the simulation: after the quota drops to 20/s and
//! returns to 50/s, the first 10 s back average 49/s with it, 41/s without. For ten
//! uncoordinated processes that finish unevenly it was meant to let the last ones take the room
//! the others left, but over 20 simulated runs it changes their average by less than a point
//! (88.7 % used with it, 89.0 % without; see "Fairness" for why). The count of
//! calls is what tells a quiet quota from luck: a run with nine peers makes five calls a second,
//! and a throttle episode that the others' probes caused may simply not have hit one of its
//! few calls; with the time alone, such runs grew exponentially right into the next episode (in
//! the bench, 5.7 % throttled instead of 3.8-4.9 %).
//!
//! **Spread.** A counted throttle puts this run's next call a random part of an interval later
//! than its new rate would. Processes sharing the quota without talking are throttled in the same
//! moment and would otherwise all make their next call one interval later, together: a burst
//! into the bucket they just emptied, answered by a second round of throttles.
//!
//! **Fairness.** The probe's pace never drops below the quota measured at the first throttle
//! of the slow start. Processes that started together measured roughly the same there (within
//! a factor of two: 4.2-7.8/s each for ten on 50/s), so they probe at a similar absolute pace
//! whatever their current rates, and each throttle (a cut of 10 % of a process's own rate)
//! narrows the gap between them instead of keeping it (AIMD rather than MIMD). That pull is
//! weak over a short run: each process is hit by four or five throttle episodes in 20 s, and
//! which process an episode hits is chance, so ten uncoordinated processes with equal work
//! finish about 8 s apart, and the last ones run alone under a quota the others left. Nothing
//! a process sees on its own tells its fair share apart from a smaller quota (ten processes
//! each measuring `Q / 10` look exactly like ten quotas of `Q / 10`); the variants measured
//! (deeper cuts for throttles under the last estimate, probe pace anchored to the first
//! estimate, every throttle counted, a linear probe, quiet growth after a fixed time) all
//! left the spread at 8-10 s (docs/benchmarks.md). Runs that share a ledger act as one
//! controller instead (below).
//!
//! **Idle.** A consumer waits for messages for hours, or a month. The probe's clock counts only
//! the time the run makes calls: a gap of more than `IDLE_GAP` (5 s) between two successes is
//! taken out of it, so a run comes back at the rate it had settled at and probes on from there
//! (with the idle time in, the cubic term made the rate after a quiet night 10^19 per second, and
//! the first calls went out at full concurrency into a throttle). The history of successes keeps
//! its last `HISTORY_SLOTS` slots whatever the gap: a success after a month allocates nothing
//! (it once made a slot per 100 ms of the idle time, 7 MB a day).
//!
//! **Schedule.** Callers take numbered tickets; ticket `n` is due at `anchor + (n - anchor) /
//! rate`, with a tenth of a second of burst when idle. A rate change re-anchors the schedule at
//! the ticket due now, so calls queued at the old rate move to the new spacing in order, and
//! waiters are woken to re-read their slot when the rate drops (or rises by `RISE_NOTIFY` (2 %)).
//! The lock is held for a few arithmetic operations only.
//!
//! With `--rate R` the rate starts at `R` and never exceeds it; with `--rate 0` it slow-starts
//! at 10/s and has no ceiling. With `--fleet-rate` the ceiling is this run's
//! share of the fleet budget and moves as runs come and go ([`RateLimiter::set_ceiling`]): the
//! controller works under it as under `--rate`, and a `--rate 0` run keeps slow-starting
//! under it until its first throttle (the first shares, before the census has counted every
//! run, are too large). In a fleet the runs act as one controller
//! ([`RateLimiter::fleet_changed`], [`RateLimiter::on_peer_throttle`]): the slow start is the
//! fleet's (each run's start rate is its part of `START_RATE`), a throttle any run counted cuts
//! every run (heard through the ledger within a census, see [`crate::ledger::fleet`]), and a run
//! that leaves gives its part of the found quota to the others. Replicas that do not talk to
//! each other each estimate their own share the same way; the simulated figures are in the
//! tests below, the bench's in docs/benchmarks.md.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::telemetry::metrics;

/// Never limit below this many calls per second: the slowest a limited run goes.
const MIN_RATE: f64 = 0.5;
/// After a throttle, the rate is set to this share of the quota estimate.
const BACKOFF: f64 = 0.9;
/// The fallback measurement window (see the module doc)...
const WINDOW: Duration = Duration::from_secs(1);
/// ... lengthened, up to `WINDOW_MAX`, until it holds this many successes; the two-throttle
/// estimate needs as many in its span. Fewer are noise: a run at 5/s accepts one call in a
/// fifth of a second, and a span of 0.3 s holding none is not a quota of zero.
const MIN_CALLS: u64 = 10;
const WINDOW_MAX: Duration = Duration::from_secs(5);
/// Throttles closer than this to the last counted one are echoes of the same episode.
const ECHO_SPAN: Duration = Duration::from_millis(250);
/// A throttle a peer in the fleet counted reaches this run through the ledger up to a census
/// period (1 s) and a census after it happened: one heard this soon after this run's own counted
/// throttle is most likely the same episode.
const PEER_ECHO_SPAN: Duration = Duration::from_millis(1500);
/// Beyond this span since the previous counted throttle, the two-throttle estimate is not
/// trusted (the server's bucket may have filled up and wasted tokens) and the window is used.
const SPAN_MAX: Duration = Duration::from_secs(30);
/// A window estimate this many times the span estimate means the span under-measured.
const SPAN_DOUBT: f64 = 1.5;
/// Probe: linear share of the estimate per second since the last throttle.
const PROBE_LINEAR: f64 = 0.005;
/// Probe: cubic share of the estimate per second cubed since the last throttle.
const PROBE_CUBIC: f64 = 0.004;
/// Probe: after this many seconds without a throttle the rate also grows exponentially...
const QUIET_SECS: f64 = 3.0;
/// ... and this many calls were accepted since, ...
const QUIET_CALLS: u64 = 30;
/// ... doubling every this many seconds.
const QUIET_DOUBLING_SECS: f64 = 1.0;
/// Waiters are woken to re-read their slot when the rate rises by this share.
const RISE_NOTIFY: f64 = 0.02;
/// `--rate 0` starts here, not unlimited: the first second would otherwise empty the server's
/// bucket in a few milliseconds and throttle every call in flight.
const START_RATE: f64 = 10.0;
/// Slow start: each success before the first throttle adds this much to the rate, so a run that
/// uses its rate doubles it every `ln 2 / SLOW_START_GAIN` (0.5 s).
const SLOW_START_GAIN: f64 = std::f64::consts::LN_2 / 0.5;
/// How long the server's bucket lets calls through from full, in seconds of quota (the
/// emulator's, and AWS's token buckets: about one second).
const BUCKET_SECS: f64 = 1.0;
/// The history of successes kept for the first-throttle estimate: this many slots...
const HISTORY_SLOTS: usize = 100;
/// ... of this length.
const SLOT: Duration = Duration::from_millis(100);
/// A gap between two successes longer than this is idle time (an empty queue, a paused run),
/// which the probe's clock does not count (see the module doc, "Idle").
const IDLE_GAP: Duration = WINDOW_MAX;

/// The limiter shared by every task of a run.
#[derive(Debug)]
pub struct RateLimiter {
    /// Whether this is the resend limiter, whose rate the gauge shows.
    reported: bool,
    state: Mutex<State>,
    /// Wakes sleeping callers when their slot moved (rate lowered, or raised a lot).
    changed: Notify,
}

#[derive(Debug)]
struct State {
    /// The ceiling (`--rate`, or this run's share of `--fleet-rate`, which changes as runs come
    /// and go); `None`: `--rate 0`, no ceiling.
    ceiling: Option<f64>,
    /// Current rate; `None` = unlimited (never, today: `--rate 0` starts at `START_RATE`).
    rate: Option<f64>,
    /// Slow start: no throttle yet and no ceiling; each success raises the rate.
    slow_start: bool,
    /// Successes per `SLOT`, the newest last, since `history_from` (at most `HISTORY_SLOTS`,
    /// whatever the time since the last success).
    history: VecDeque<u64>,
    history_from: Instant,
    /// The last success (or the start): a longer gap than `IDLE_GAP` to the next is idle time.
    last_success: Instant,
    /// The schedule: ticket `n` is due at `anchor + (n - anchor_ticket) / rate`.
    anchor: Instant,
    anchor_ticket: f64,
    /// Tickets handed out so far.
    issued: u64,
    /// Successes since the start.
    accepted: u64,
    /// The last counted throttle: when, and `accepted` then.
    last_throttle: Option<(Instant, u64)>,
    /// Probing: since when, from which rate, scaled by which estimate.
    probe_from: Instant,
    probe_base: f64,
    probe_scale: f64,
    /// `accepted` when the probe restarted.
    probe_accepted: u64,
    /// Since when the probe grows exponentially (see `QUIET_SECS`).
    quiet_from: Option<Instant>,
    /// Spreads the next call after a cut (see `throttled`).
    rng: fastrand::Rng,
    /// The quota measured at the first throttle of a slow start: the probe's pace never drops
    /// below it (see the module doc, "Fairness").
    reference: f64,
    /// The rate when waiters were last woken.
    notified_rate: f64,
}

impl RateLimiter {
    /// The resend limiter: ceiling `rate` calls per second (`None` = no ceiling), shown by the
    /// `cognito_resend_rate_limit_per_second` gauge.
    pub fn new(rate: Option<f64>) -> Self {
        metrics::rate_limit(rate.unwrap_or(START_RATE));
        Self::build(rate, true)
    }

    /// A limiter for another API (ListUsers, AdminGetUser), not shown by the gauge.
    pub fn unreported(rate: Option<f64>) -> Self {
        Self::build(rate, false)
    }

    fn build(rate: Option<f64>, reported: bool) -> Self {
        let now = Instant::now();
        Self {
            reported,
            state: Mutex::new(State {
                ceiling: rate,
                rate: Some(rate.unwrap_or(START_RATE)),
                slow_start: rate.is_none(),
                history: VecDeque::with_capacity(HISTORY_SLOTS),
                history_from: now,
                last_success: now,
                anchor: now,
                // The first `burst` tickets are due at once.
                anchor_ticket: burst(rate.unwrap_or(START_RATE)) - 1.0,
                issued: 0,
                accepted: 0,
                last_throttle: None,
                probe_from: now,
                probe_base: rate.unwrap_or(START_RATE),
                probe_scale: rate.unwrap_or(START_RATE),
                probe_accepted: 0,
                quiet_from: None,
                rng: fastrand::Rng::with_seed(fastrand::u64(..)),
                reference: 0.0,
                notified_rate: rate.unwrap_or(START_RATE),
            }),
            changed: Notify::new(),
        }
    }

    /// The current rate, `None` when unlimited.
    pub fn current(&self) -> Option<f64> {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, consistent after every statement: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for permission to make one call.
    pub async fn acquire(&self) {
        let ticket = {
            let mut s = self.lock();
            let now = Instant::now();
            let Some(rate) = s.rate else { return };
            s.issue(now, rate)
        };
        loop {
            // Registered before reading the schedule, so a change in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let due = {
                let s = self.lock();
                let Some(rate) = s.rate else { return };
                s.due(ticket, rate)
            };
            let Some(due) = due.filter(|d| *d > Instant::now()) else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = notified => {}
            }
        }
    }

    /// Cognito answered a call without throttling it: count it, and probe upward.
    pub fn on_success(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        s.accepted += 1;
        s.record(now);
        s.skip_idle(now);
        let Some(rate) = s.rate else { return };
        let new = if s.slow_start {
            rate + SLOW_START_GAIN
        } else {
            let tau = now.duration_since(s.probe_from).as_secs_f64();
            let cubic =
                s.probe_base + s.probe_scale * (PROBE_LINEAR * tau + PROBE_CUBIC * tau.powi(3));
            // Quiet for long: the quota has room (peers finished, live traffic ebbed).
            if s.quiet_from.is_none()
                && tau >= QUIET_SECS
                && s.accepted - s.probe_accepted >= QUIET_CALLS
            {
                s.quiet_from = Some(now);
                tracing::debug!(rate, "no throttle for a while: growing faster");
            }
            let quiet = s.quiet_from.map_or(0.0, |from| {
                let t = now.duration_since(from).as_secs_f64();
                s.probe_base + s.probe_scale * ((t / QUIET_DOUBLING_SECS).exp2() - 1.0)
            });
            cubic.max(quiet)
        };
        let new = s.ceiling.map_or(new, |c| new.min(c));
        if new <= rate {
            return;
        }
        s.set_rate(now, new);
        let wake = new >= s.notified_rate * (1.0 + RISE_NOTIFY);
        if wake {
            s.notified_rate = new;
        }
        drop(s);
        if wake {
            self.changed.notify_waiters();
        }
        if self.reported {
            metrics::rate_limit(new);
        }
    }

    /// Changes the ceiling from now on (`--fleet-rate`: this run's share, as runs come and go).
    /// A rate above the new ceiling drops to it at once. Below it, a run that has not been
    /// throttled yet moves to the new ceiling (as `--rate R` starts at `R`); one that has keeps
    /// the rate it settled at and lets its probe (now capped by the new ceiling) raise it,
    /// since the quota it measured still holds.
    pub fn set_ceiling(&self, ceiling: f64) {
        let now = Instant::now();
        let mut s = self.lock();
        s.ceiling = Some(ceiling);
        let new = match s.rate {
            // `--rate 0` under a fleet budget, not throttled yet: the slow start goes on under
            // the share (the first shares, before every run is counted, are too large).
            Some(r) if s.slow_start && r <= ceiling => return,
            _ if s.slow_start => ceiling,
            Some(r) if r <= ceiling && s.last_throttle.is_some() => return,
            Some(r) if r == ceiling => return,
            _ => ceiling,
        };
        s.set_rate(now, new);
        s.notified_rate = new;
        drop(s);
        self.changed.notify_waiters();
        if self.reported {
            metrics::rate_limit(new);
        }
    }

    /// A call was throttled: settle just under the rate Cognito accepted, and restart probing.
    /// Returns whether the throttle was counted (false: an echo of the last one, which only
    /// restarts the probe).
    pub fn on_throttle(&self) -> bool {
        self.throttled(Instant::now())
    }

    /// `--fleet-rate`: the runs sharing the budget went from `from` to `to` (a run starting in a
    /// fleet of `n` calls this with `1, n`).
    ///
    /// In a slow start the rate is this run's part of the fleet's start: the fleet as a whole
    /// starts at `START_RATE` or half its budget, whichever is more, and doubles every half
    /// second, as one process would, instead of ten processes starting at ten times that and
    /// emptying the server's bucket in their first second. So the rate scales by `from / to`
    /// both ways (runs that start together see each other over the first census or two), and
    /// never below half the ceiling.
    ///
    /// After a throttle the rate is this run's part of the quota the fleet found, and a run that
    /// left frees its part: the rate (and the probe's base) scale up by `from / to`, so the
    /// fleet's total stays just under the quota instead of leaving the freed part unused until
    /// the probes find it. Not down: a run counted late is already inside the quota this run
    /// measured, and a real newcomer finds its part by a throttle that the whole fleet then acts
    /// on. Always under the ceiling ([`Self::set_ceiling`]).
    pub fn fleet_changed(&self, from: usize, to: usize) {
        if from == 0 || to == 0 || from == to {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        let Some(rate) = s.rate else { return };
        if s.last_throttle.is_none() && !s.slow_start {
            // `--rate R` / the share itself: the ceiling decides.
            return;
        }
        if !s.slow_start && to > from {
            return;
        }
        let factor = from as f64 / to as f64;
        let mut new = (rate * factor).max(MIN_RATE);
        if let Some(c) = s.ceiling {
            if s.slow_start {
                // The fleet starts at half its budget if that is more than `START_RATE`: the
                // operator's budget is their estimate of the spare quota, and a fleet whose
                // budget is the quota would otherwise spend a second of it ramping up.
                new = new.max(c / 2.0);
            }
            new = new.min(c);
        }
        if !s.slow_start {
            s.probe_base = (s.probe_base * factor).max(MIN_RATE);
            s.probe_scale *= factor;

            s.reference *= factor;
        }
        tracing::debug!(from, to, rate, new, "the fleet changed");
        s.set_rate(now, new);
        s.notified_rate = new;
        drop(s);
        self.changed.notify_waiters();
        if self.reported {
            metrics::rate_limit(new);
        }
    }

    /// `--fleet-rate`: another run sharing the ledger counted a throttle this run did not (see
    /// [`crate::ledger::fleet`]). The server's bucket was empty then, so this run settles under
    /// what it was accepted, as if the throttle were its own: the fleet cuts together. Unless
    /// this run counted one of its own just before, most likely in the same episode.
    pub fn on_peer_throttle(&self) {
        let now = Instant::now();
        let recent = self
            .lock()
            .last_throttle
            .is_some_and(|(at, _)| now.duration_since(at) < PEER_ECHO_SPAN);
        if !recent {
            self.throttled(now);
        }
    }

    fn throttled(&self, now: Instant) -> bool {
        let mut s = self.lock();
        let current = s.rate;
        let mut estimate = s.window_estimate(now);
        if s.slow_start {
            // The first throttle of `--rate 0`: the server's bucket, full some time ago, is
            // empty now; the one-second window would count what it held.
            estimate = s.drained_estimate(now);
            s.reference = estimate;
            s.slow_start = false;
        }
        let window_estimate = estimate;
        if let Some((at, accepted_then)) = s.last_throttle {
            let span = now.duration_since(at);
            if span < ECHO_SPAN {
                // An echo of the last counted throttle: calls already in flight then.
                s.probe_from = now;
                s.probe_base = current.unwrap_or(0.0);
                s.probe_accepted = s.accepted;
                s.quiet_from = None;
                return false;
            }
            let accepted = s.accepted - accepted_then;
            if span <= SPAN_MAX && accepted >= MIN_CALLS {
                estimate = estimate.min(accepted as f64 / span.as_secs_f64());
            }
        }
        let estimate = estimate.max(MIN_RATE);
        let mut new = (estimate * BACKOFF).max(MIN_RATE);
        if let Some(r) = current {
            new = new.min(r);
        }
        if let Some(c) = s.ceiling {
            new = new.min(c);
        }
        s.last_throttle = Some((now, s.accepted));
        s.probe_from = now;
        s.probe_base = new;
        s.probe_accepted = s.accepted;
        s.quiet_from = None;
        // Far more accepted over the last second than over the span: the quota rose or the
        // bucket overflowed during the span, so the span under-measures; probe at the pace of
        // the window instead, to find the quota again quickly.
        s.probe_scale = if window_estimate > SPAN_DOUBT * estimate {
            window_estimate
        } else {
            estimate
        }
        .max(s.reference);
        s.set_rate(now, new);
        // Runs that share the quota without talking are throttled in the same moment and would
        // each put their next call one interval after it, together: a burst into the bucket
        // they just emptied. A random part of an interval more spreads them.
        let spread = s.rng.f64();
        s.anchor_ticket -= spread;
        s.notified_rate = new;
        drop(s);
        self.changed.notify_waiters();
        tracing::debug!(
            rate = new,
            estimate,
            "throttled: settling under the accepted rate"
        );
        if self.reported {
            metrics::rate_limit(new);
        }
        true
    }
}

/// The schedule's depth: a tenth of a second of calls, at least one.
fn burst(rate: f64) -> f64 {
    (rate / 10.0).max(1.0)
}

impl State {
    /// Counts one success in the history of `SLOT`s. The slots older than `HISTORY_SLOTS` are
    /// dropped before the new one is made, so a success after a long idle time (a month: 26
    /// million slots) neither allocates nor keeps more than `HISTORY_SLOTS`.
    fn record(&mut self, now: Instant) {
        let mut slot = now.duration_since(self.history_from).as_nanos() / SLOT.as_nanos();
        let keep = HISTORY_SLOTS as u128;
        if slot >= keep {
            // The window moves forward to end at the new slot: what falls out of it goes.
            let shift = slot + 1 - keep;
            let dropped = shift.min(self.history.len() as u128) as usize;
            self.history.drain(..dropped);
            // The exact shift, in whole slots: `history_from` stays on the slot grid.
            let by = SLOT.as_nanos() * shift;
            self.history_from +=
                Duration::new((by / 1_000_000_000) as u64, (by % 1_000_000_000) as u32);
            slot -= shift;
        }
        // Now below `HISTORY_SLOTS`.
        let slot = slot as usize;
        if slot >= self.history.len() {
            self.history.resize(slot + 1, 0);
        }
        if let Some(last) = self.history.back_mut() {
            *last += 1;
        }
    }

    /// Takes a gap since the last success longer than `IDLE_GAP` out of the probe's clocks: the
    /// probe raises the rate by the time the run spent using it, and an idle run learns nothing
    /// about the quota (left in, a night without calls made the cubic term a rate of 10^19/s).
    fn skip_idle(&mut self, now: Instant) {
        let last = std::mem::replace(&mut self.last_success, now);
        if now.duration_since(last) <= IDLE_GAP {
            return;
        }
        // The part of the gap each clock had counted: from the last success, or from when the
        // clock started, if later (a throttle in the gap restarted the probe).
        let skip = move |clock: Instant| clock + now.duration_since(clock.max(last));
        self.probe_from = skip(self.probe_from);
        if let Some(quiet) = self.quiet_from {
            self.quiet_from = Some(skip(quiet));
        }
    }

    /// The quota, from the successes since the server's bucket was last full: the bucket holds
    /// `BUCKET_SECS` of quota and is empty now, so from any moment `s` on the server accepted at
    /// most `Q x (BUCKET_SECS + now - s)`. The largest `accepted / (BUCKET_SECS + now - s)` over
    /// the history is therefore a lower bound on `Q`, exact at the moment the bucket was last
    /// full (when this run's rate passed the quota, in a slow start).
    fn drained_estimate(&self, now: Instant) -> f64 {
        let mut best = 0.0f64;
        let mut accepted = 0u64;
        for (i, n) in self.history.iter().enumerate().rev() {
            accepted += n;
            let from = self.history_from + SLOT * i as u32;
            let span = now.saturating_duration_since(from).as_secs_f64();
            best = best.max(accepted as f64 / (BUCKET_SECS + span));
        }
        best
    }

    /// Hands out the next ticket; an idle schedule lets at most `burst` calls through at once.
    fn issue(&mut self, now: Instant, rate: f64) -> u64 {
        let n = self.issued;
        self.issued += 1;
        let since = now.duration_since(self.anchor).as_secs_f64();
        // The ticket that is due now; a schedule further behind than the burst is caught up.
        let due_now = self.anchor_ticket + since * rate;
        let floor = due_now - burst(rate);
        if (n as f64) < floor + 1.0 {
            // Idle for longer than a burst: this ticket is due now, and a burst's worth after
            // it. (The schedule must never put an idle caller behind: ticket `n` is due at
            // `anchor + (n - anchor_ticket) / rate`.)
            self.anchor = now;
            self.anchor_ticket = n as f64 + burst(rate) - 1.0;
        }
        n
    }

    fn due(&self, ticket: u64, rate: f64) -> Option<Instant> {
        let offset = (ticket as f64 - self.anchor_ticket) / rate;
        (offset > 0.0).then(|| self.anchor + Duration::from_secs_f64(offset))
    }

    /// Changes the rate from now on; tickets not yet due keep their order.
    fn set_rate(&mut self, now: Instant, new: f64) {
        match self.rate {
            Some(old) => {
                let since = now.duration_since(self.anchor).as_secs_f64();
                self.anchor_ticket += since * old;
            }
            None => self.anchor_ticket = self.issued as f64,
        }
        self.anchor = now;
        self.rate = Some(new);
    }

    /// Successes per second over the last `WINDOW`, or longer (up to `WINDOW_MAX`) until it
    /// holds `MIN_CALLS`.
    fn window_estimate(&self, now: Instant) -> f64 {
        let mut accepted = 0u64;
        let mut span = 0.0;
        for (i, n) in self.history.iter().enumerate().rev() {
            accepted += n;
            let from = self.history_from + SLOT * i as u32;
            span = now.saturating_duration_since(from).as_secs_f64();
            if span >= WINDOW_MAX.as_secs_f64()
                || (span >= WINDOW.as_secs_f64() && accepted >= MIN_CALLS)
            {
                break;
            }
        }
        if span <= 0.0 {
            return 0.0;
        }
        accepted as f64 / span.max(WINDOW.as_secs_f64())
    }
}

/// The retry executor waits for the limiter before each attempt and reports each answer to it.
impl crate::retry::Pace for RateLimiter {
    fn acquire(&self) -> impl Future<Output = ()> + Send {
        RateLimiter::acquire(self)
    }
    fn on_success(&self) {
        RateLimiter::on_success(self);
    }
    fn on_throttle(&self) {
        RateLimiter::on_throttle(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    /// Cognito's requests-per-second quota as the emulator enforces it (`cognito_emulator` crate, `state.rs`):
    /// a bucket of `quota` tokens refilled at `quota` per second, a throttled call takes none, and
    /// a quota change starts the bucket full at the new size. `schedule` lists (from, quota).
    struct Cognito {
        start: Instant,
        schedule: Vec<(Duration, f64)>,
        state: Mutex<Bucket>,
    }

    struct Bucket {
        segment: usize,
        tokens: f64,
        last: Instant,
        /// Accepted calls per 100 ms since the start.
        accepted: Vec<u64>,
        throttled: u64,
        /// Throttled calls per second since the start.
        throttled_at: Vec<u64>,
    }

    impl Cognito {
        fn new(schedule: Vec<(Duration, f64)>) -> Self {
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

        fn call(&self) -> bool {
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
    struct Figures {
        wall: f64,
        accepted: u64,
        throttled: u64,
        /// Accepted calls per 100 ms.
        slots: Vec<u64>,
        /// When each replica finished its users, seconds after the start.
        finished: Vec<f64>,
        /// Throttled calls per second.
        throttled_at: Vec<u64>,
    }

    impl Figures {
        fn throttled_share(&self) -> f64 {
            self.throttled as f64 / (self.accepted + self.throttled) as f64
        }
        /// Accepted calls per second between `from` and `to` seconds into the run.
        fn rate_between(&self, from: f64, to: f64) -> f64 {
            let (a, b) = ((from * 10.0) as usize, (to * 10.0) as usize);
            let n: u64 = self.slots[a.min(self.slots.len())..b.min(self.slots.len())]
                .iter()
                .sum();
            n as f64 / (to - from)
        }
    }

    struct Run {
        replicas: usize,
        concurrency: usize,
        latency: Duration,
        ceiling: Option<f64>,
        jobs: u64,
        schedule: Vec<(Duration, f64)>,
        /// `--fleet-rate`: the replicas share a ledger (see [`SimFleet`]).
        fleet_budget: Option<f64>,
        /// Which run of the same shape: the limiters' spread after a cut and the workers'
        /// jitter draw from it.
        seed: u64,
    }

    /// One simulated worker: takes jobs until none are left; each job calls until accepted,
    /// backing off between throttled attempts like the engine (250 ms doubling, jitter 0.5).
    async fn worker(
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
    const LOOPBACK: Duration = Duration::from_micros(300);
    /// Opening a connection, before a worker's first call.
    const CONNECT: Duration = Duration::from_millis(2);
    /// Processes started side by side start this far apart (one `Popen` and a process start).
    const STAGGER: Duration = Duration::from_millis(10);

    /// One simulated process: its limiter and its workers, started `delay` after the run.
    #[allow(clippy::too_many_arguments)]
    async fn replica(
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
    struct SimFleet {
        budget: f64,
        live: AtomicU64,
        throttles: AtomicU64,
        mine: Vec<AtomicU64>,
    }

    /// One run's census loop, as `Ledger::count_the_fleet` and the engine's share watcher do it:
    /// every `CENSUS` the share follows the live runs, and throttles others counted are heard.
    async fn census(fleet: Arc<SimFleet>, me: usize, limiter: Arc<RateLimiter>) {
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

    async fn simulate(run: Run) -> Figures {
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

    fn flat(quota: f64) -> Vec<(Duration, f64)> {
        vec![(Duration::ZERO, quota)]
    }

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
}
