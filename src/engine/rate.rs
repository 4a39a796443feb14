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

use crate::sync::Locked;
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
pub(crate) struct RateLimiter {
    /// Whether this is the resend limiter, whose rate the gauge shows.
    /// The gauge's `action` label, when it is shown.
    reported: Option<&'static str>,
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
    pub(crate) fn new(rate: Option<f64>) -> Self {
        Self::of(crate::job::Action::Confirm, rate)
    }

    /// The limiter of `action`'s calls (each draws on a quota category of its own), shown by
    /// the `cognito_resend_rate_limit_per_second{action}` gauge.
    pub(crate) fn of(action: crate::job::Action, rate: Option<f64>) -> Self {
        metrics::rate_limit(action.as_str(), rate.unwrap_or(START_RATE));
        Self::build(rate, Some(action.as_str()))
    }

    /// A limiter for another API (ListUsers, AdminGetUser), not shown by the gauge.
    pub(crate) fn unreported(rate: Option<f64>) -> Self {
        Self::build(rate, None)
    }

    fn build(rate: Option<f64>, reported: Option<&'static str>) -> Self {
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
    #[cfg(test)]
    pub(crate) fn current(&self) -> Option<f64> {
        self.lock().rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers, consistent after every statement: a panic elsewhere
        // cannot leave it half-updated.
        self.state.locked()
    }

    /// Waits for permission to make one call.
    pub(crate) async fn acquire(&self) {
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
    pub(crate) fn on_success(&self) {
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
        if let Some(action) = self.reported {
            metrics::rate_limit(action, new);
        }
    }

    /// Changes the ceiling from now on (`--fleet-rate`: this run's share, as runs come and go).
    /// A rate above the new ceiling drops to it at once. Below it, a run that has not been
    /// throttled yet moves to the new ceiling (as `--rate R` starts at `R`); one that has keeps
    /// the rate it settled at and lets its probe (now capped by the new ceiling) raise it,
    /// since the quota it measured still holds.
    pub(crate) fn set_ceiling(&self, ceiling: f64) {
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
        if let Some(action) = self.reported {
            metrics::rate_limit(action, new);
        }
    }

    /// A call was throttled: settle just under the rate Cognito accepted, and restart probing.
    /// Returns whether the throttle was counted (false: an echo of the last one, which only
    /// restarts the probe).
    pub(crate) fn on_throttle(&self) -> bool {
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
    pub(crate) fn fleet_changed(&self, from: usize, to: usize) {
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
        if let Some(action) = self.reported {
            metrics::rate_limit(action, new);
        }
    }

    /// `--fleet-rate`: another run sharing the ledger counted a throttle this run did not (see
    /// [`crate::ledger::fleet`]). The server's bucket was empty then, so this run settles under
    /// what it was accepted, as if the throttle were its own: the fleet cuts together. Unless
    /// this run counted one of its own just before, most likely in the same episode.
    pub(crate) fn on_peer_throttle(&self) {
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
        if let Some(action) = self.reported {
            metrics::rate_limit(action, new);
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
mod sim;
#[cfg(test)]
mod tests;
