//! One budget for the fleet (`--fleet-rate R`): every live run sharing the ledger takes
//! `R / live runs`, recomputed as runs come and go, with no central process.
//!
//! Each run already beats a heartbeat counter into the ledger every `lease / 6`. With each beat
//! it also takes the *census*: the runs the store lists as running, each with a counter that
//! moves while the run lives ([`super::Store::census`]). A listed run is live for this run until
//! this run has seen its counter standing still for a full lease on its own monotonic clock —
//! the same rule that decides when a claim is in doubt, so no two hosts' clocks are compared.
//! A run that ends cleanly leaves the list at once; one that dies is counted until its counter
//! has stood still for a lease, so its share comes back within one lease (and a beat). A run
//! first seen is counted until proven dead: a share errs low, never high.
//!
//! What a census costs: on SQLite, one `SELECT` of the unfinished rows of the `runs` table; on
//! DynamoDB, one `UpdateItem` of a single fleet item holding every live run's counter, which
//! bumps this run's counter and returns the item (`ReturnValues`), never a `Scan` of the user
//! items. Runs this run judged dead are removed from the fleet item in the same write, so the
//! item stays the size of the fleet.
//!
//! The share is a ceiling: the rate controller ([`crate::engine::rate`]) still settles under
//! the quota it measures inside it.
//!
//! **Throttles are shared too.** When the budget is above the spare quota, the shares add up to
//! more than Cognito accepts, and each run finds the quota by its own throttles, as replicas that
//! do not talk to each other do: a throttle lands on the runs whose calls met the empty bucket,
//! those cut their rate, the others keep probing upward, and the account sees throttles every
//! second or two (5-6 % of calls with ten runs). So each run also counts the throttles its
//! controller acted on (not the echoes) in the ledger with its census — a counter in the fleet
//! row, added to in the same write — and takes the census at once after one, instead of at the
//! next second. A run that hears of throttles it did not count itself treats them as its own:
//! the whole fleet cuts at the same episode and probes again together, like one controller, and
//! the share of throttled calls falls to what one process inflicts. Only counts cross the ledger,
//! never a time: a replica's wrong clock cannot make a stale throttle look new.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::store::Store;
use super::types::{LedgerError, RunId};

/// This run's share of the fleet budget, as last computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// The fleet budget, calls per second (`--fleet-rate`).
    pub budget: f64,
    /// Live runs sharing it, this one included.
    pub runs: usize,
    /// This run's ceiling: `budget / runs`.
    pub rate: f64,
    /// Throttles the other runs counted, as far as this run has heard (a running total): each
    /// rise is a throttle episode this run's controller may not have seen.
    pub peer_throttles: u64,
}

impl Share {
    /// `budget` split between `runs` live runs (at least this one).
    pub fn of(budget: f64, runs: usize) -> Self {
        let runs = runs.max(1);
        Self {
            budget,
            runs,
            rate: budget / runs as f64,
            peer_throttles: 0,
        }
    }
}

/// The throttles counted by other runs between two censuses: the fleet's total grew by the
/// others' and this run's own (`mine`, added by this census). The first census only learns the
/// total (throttles before this run started are not news).
pub(crate) fn peer_throttles(last_total: Option<u64>, total: u64, mine: u64) -> u64 {
    last_total.map_or(0, |last| total.saturating_sub(last).saturating_sub(mine))
}

/// What one census found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counted {
    /// Live runs, this one included.
    pub live: usize,
    /// Listed runs whose counter this run has seen standing still for a full lease: dead.
    pub dead: Vec<String>,
}

/// The runs this run has seen in the census, with their counters and since when (monotonic).
#[derive(Debug)]
pub(crate) struct Census {
    lease: Duration,
    seen: HashMap<String, (i64, Instant)>,
}

impl Census {
    /// A census that judges a run dead once its counter stood still for `lease`.
    pub(crate) fn new(lease: Duration) -> Self {
        Self {
            lease,
            seen: HashMap::new(),
        }
    }

    /// Counts the live runs among `listed` (run, counter) as read now; `me` always counts. A run
    /// with a lease in `leases` is dead once its counter stood still for that lease (its heartbeat
    /// period is a sixth of it), one without for this run's own.
    pub(crate) fn count(
        &mut self,
        me: &str,
        listed: &[(String, i64)],
        leases: &HashMap<String, Duration>,
    ) -> Counted {
        let now = Instant::now();
        // Runs no longer listed (ended, or pruned) are forgotten: the map stays the fleet's size.
        self.seen
            .retain(|run, _| listed.iter().any(|(listed, _)| listed == run));
        let mut live = 1;
        let mut dead = Vec::new();
        for (run, beats) in listed {
            if run == me {
                continue;
            }
            match self.seen.get(run) {
                Some(&(b, since)) if b == *beats => {
                    let lease = leases.get(run).copied().unwrap_or(self.lease);
                    if now.duration_since(since) >= lease {
                        dead.push(run.clone());
                    } else {
                        live += 1;
                    }
                }
                _ => {
                    self.seen.insert(run.clone(), (*beats, now));
                    live += 1;
                }
            }
        }
        Counted { live, dead }
    }
}

/// How often a run in a fleet (`--fleet-rate`) takes the census at most. Half a second: a
/// throttle one run counted reaches the others within it (the bench's fleet above the quota
/// measured 3.5 % of calls throttled with a census every second, 2.4 % with this). On DynamoDB,
/// two small writes a second per run to the fleet item.
pub(crate) const CENSUS_EVERY: Duration = Duration::from_millis(500);

/// What the run handle tells its census task.
enum Told {
    /// This run's controller acted on a throttle: count it, and take a census now.
    Throttled,
    /// The run is ending: stop (answered once no census is in flight, so none can put the run
    /// back into the fleet after its end is recorded).
    Stop(oneshot::Sender<()>),
}

/// The run handle's side of the census task ([`super::Ledger`] holds it): the channel that
/// feeds the task, and the watch it publishes this run's share through.
pub(crate) struct FleetCensus {
    told: mpsc::UnboundedSender<Told>,
    /// Cancelled once the task has ended (returned, or dropped with its runtime): a stop told
    /// to a task that was ending anyway waits on this, not on an answer that may never come.
    ended: CancellationToken,
    /// Kept by the handle so the share stays readable (and the watch open) as long as the run's
    /// handle lives, whatever the task does.
    share: watch::Sender<Share>,
}

impl FleetCensus {
    /// Takes the first census (a run that cannot does not start: the error is the caller's to
    /// act on), then starts the task that takes one every `every`, and at once after a
    /// throttle, until `stop` is cancelled or [`FleetCensus::stop`] is called.
    pub(crate) async fn start(
        store: Arc<dyn Store>,
        run: RunId,
        lease: Duration,
        every: Duration,
        budget: f64,
        stop: CancellationToken,
    ) -> Result<Self, LedgerError> {
        // No run yet: the first census always publishes (and logs) a share.
        let share = watch::Sender::new(Share {
            budget,
            runs: 0,
            rate: budget,
            peer_throttles: 0,
        });
        let ended = CancellationToken::new();
        let mut task = Task {
            _ended: ended.clone().drop_guard(),
            store,
            census: Census::new(lease),
            run,
            lease,
            dead: Vec::new(),
            share: share.clone(),
            failing: false,
            unreported: 0,
            throttles_seen: None,
        };
        task.take().await?;
        let (told, heard) = mpsc::unbounded_channel();
        tokio::spawn(task.run(every, heard, stop));
        Ok(Self { told, ended, share })
    }

    /// This run's share, as the task last published it.
    pub(crate) fn share(&self) -> watch::Receiver<Share> {
        self.share.subscribe()
    }

    /// This run's controller acted on a throttle.
    pub(crate) fn note_throttle(&self) {
        let _ = self.told.send(Told::Throttled);
    }

    /// Stops the task, and returns once no census is in flight (at once if it has stopped).
    pub(crate) async fn stop(&self) {
        let (ack, acked) = oneshot::channel();
        if self.told.send(Told::Stop(ack)).is_err() {
            return;
        }
        // Answered; or the task was ending as the stop was told (the run's stop token), and a
        // message sent while its channel closes may stay unread: then its end says it.
        tokio::select! {
            _ = acked => {}
            _ = self.ended.cancelled() => {}
        }
    }
}

/// The census task: owns everything a census needs from one to the next, so nothing of it is
/// shared.
struct Task {
    /// Cancels [`FleetCensus::ended`] when the task ends, however it ends.
    _ended: tokio_util::sync::DropGuard,
    store: Arc<dyn Store>,
    run: RunId,
    lease: Duration,
    /// The runs seen in the census, with their counters.
    census: Census,
    /// Runs judged dead at the last census, removed from the store at the next.
    dead: Vec<String>,
    share: watch::Sender<Share>,
    /// Whether the last census failed (logged once per failing stretch).
    failing: bool,
    /// Throttles this run's controller counted that the fleet has not been told of yet.
    unreported: u64,
    /// The fleet's throttle total at the last census (`None` before the first).
    throttles_seen: Option<u64>,
}

impl Task {
    /// The census loop: a census every `every` (half a second, or the heartbeat period if
    /// shorter), and at once after a throttle this run counted, apart from the heartbeat so that
    /// a slow census never delays a beat (which could fence this run). Often, because a share is
    /// only right once every run has seen the others, and a throttle only helps the fleet once
    /// the others hear of it: a run that joins or ends changes everyone's share within a second,
    /// not a heartbeat period (5 s by default), during which the fleet would ask for more (or
    /// use less) than its budget. One cheap read and upsert (SQLite) or one write to the fleet
    /// item (DynamoDB) each.
    async fn run(
        mut self,
        every: Duration,
        mut told: mpsc::UnboundedReceiver<Told>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                // (With every handle gone the channel is closed and this branch sleeps: the
                // census goes on as long as the heartbeat does.)
                Some(heard) = told.recv() => {
                    if let Told::Stop(ack) = heard {
                        let _ = ack.send(());
                        return;
                    }
                    self.unreported += 1;
                    // Throttles told meanwhile go with the same census.
                    loop {
                        match told.try_recv() {
                            Ok(Told::Throttled) => self.unreported += 1,
                            Ok(Told::Stop(ack)) => {
                                let _ = ack.send(());
                                return;
                            }
                            Err(_) => break,
                        }
                    }
                    // The next tick is a full period after this census, not sooner.
                    tick.reset();
                }
            }
            if stop.is_cancelled() {
                return;
            }
            // What the census takes out (runs to prune, throttles to tell) is put back if it
            // fails or is abandoned at the time limit, to go with the next one: dropping the
            // census's future must not drop them with it.
            let dead = std::mem::take(&mut self.dead);
            let mine = std::mem::take(&mut self.unreported);
            let failed = match tokio::time::timeout(every, self.census(&dead, mine)).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("a census took longer than {every:?}"),
            };
            self.put_back(dead, mine);
            if !std::mem::replace(&mut self.failing, true) {
                tracing::warn!("{failed}: the fleet census failed; keeping the last share");
            }
        }
    }

    /// Takes the census (the first one: unbounded; the task bounds the others) and publishes
    /// this run's share.
    async fn take(&mut self) -> Result<(), LedgerError> {
        let dead = std::mem::take(&mut self.dead);
        let mine = std::mem::take(&mut self.unreported);
        let result = self.census(&dead, mine).await;
        if result.is_err() {
            self.put_back(dead, mine);
        }
        result
    }

    /// Runs judged dead and throttles not told, of a census that failed or was abandoned: pruned,
    /// and told, at the next census instead. (A census whose answer was lost after its write
    /// may count these twice: one extra cut, never a missed one.)
    fn put_back(&mut self, dead: Vec<String>, mine: u64) {
        self.dead = dead;
        self.unreported += mine;
    }

    /// One census: forgets `dead`, tells the store `mine` (this run's throttles since the last
    /// census), and publishes this run's share if it changed (logged, and shown by the
    /// `cognito_resend_fleet_runs` gauge).
    async fn census(&mut self, dead: &[String], mine: u64) -> Result<(), LedgerError> {
        let listing = self.store.census(&self.run, self.lease, dead, mine).await?;
        let heard = peer_throttles(self.throttles_seen, listing.throttles, mine);
        self.throttles_seen = Some(listing.throttles);
        if std::mem::take(&mut self.failing) {
            tracing::info!("the fleet census works again");
        }
        let counted = self
            .census
            .count(&self.run.0, &listing.runs, &listing.leases);
        self.dead = counted.dead;
        let budget = self.share.borrow().budget;
        let share = Share::of(budget, counted.live);
        crate::telemetry::metrics::fleet_runs(share.runs);
        self.share.send_if_modified(|old| {
            if heard > 0 {
                old.peer_throttles += heard;
                tracing::debug!(heard, "peers in the fleet were throttled");
            }
            if old.runs == share.runs && old.rate == share.rate {
                return heard > 0;
            }
            tracing::info!(
                runs = share.runs,
                budget,
                share = share.rate,
                "fleet budget: {} live run(s) share {budget}/s; this run takes {:.2}/s",
                share.runs,
                share.rate
            );
            *old = Share {
                peer_throttles: old.peer_throttles,
                ..share
            };
            true
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::UserKey;
    use crate::ledger::{Claim, Finish, Listing, Millis, Page, Rules, Stale, Stats};
    use futures::future::BoxFuture;

    const LEASE: Duration = Duration::from_secs(30);
    const BEAT: Duration = Duration::from_secs(5);

    /// A fleet as the store lists it: each run's counter, bumped every beat while it lives.
    struct Fleet {
        runs: Vec<(String, i64, bool)>,
    }

    impl Fleet {
        fn new(names: &[&str]) -> Self {
            Self {
                runs: names.iter().map(|n| (n.to_string(), 0, true)).collect(),
            }
        }
        fn beat(&mut self) {
            for (_, beats, alive) in &mut self.runs {
                if *alive {
                    *beats += 1;
                }
            }
        }
        fn listed(&self) -> Vec<(String, i64)> {
            self.runs.iter().map(|(r, b, _)| (r.clone(), *b)).collect()
        }
        fn join(&mut self, name: &str) {
            self.runs.push((name.to_owned(), 0, true));
        }
        /// A clean end: the store no longer lists it.
        fn end(&mut self, name: &str) {
            self.runs.retain(|(r, _, _)| r != name);
        }
        /// `kill -9`: still listed, its counter stops.
        fn kill(&mut self, name: &str) {
            for (r, _, alive) in &mut self.runs {
                if r == name {
                    *alive = false;
                }
            }
        }
    }

    /// One beat of time: the fleet beats, then `me` takes the census.
    async fn beat(fleet: &mut Fleet, census: &mut Census) -> Counted {
        tokio::time::advance(BEAT).await;
        fleet.beat();
        census.count("me", &fleet.listed(), &HashMap::new())
    }

    #[test]
    fn throttles_heard_are_the_rise_of_the_total_less_this_runs_own() {
        assert_eq!(
            peer_throttles(None, 40, 1),
            0,
            "the first census only learns the total"
        );
        assert_eq!(peer_throttles(Some(40), 40, 0), 0);
        assert_eq!(peer_throttles(Some(40), 41, 1), 0, "only this run's own");
        assert_eq!(peer_throttles(Some(40), 43, 1), 2);
        assert_eq!(
            peer_throttles(Some(40), 39, 0),
            0,
            "a reset store is not news"
        );
    }

    #[test]
    fn the_share_is_the_budget_over_the_live_runs() {
        assert_eq!(Share::of(50.0, 4).rate, 12.5);
        assert_eq!(Share::of(50.0, 1).rate, 50.0);
        assert_eq!(Share::of(50.0, 0).runs, 1, "this run always counts");
    }

    #[tokio::test(start_paused = true)]
    async fn runs_joining_and_leaving_change_the_share_at_the_next_census() {
        let mut fleet = Fleet::new(&["me", "a"]);
        let mut census = Census::new(LEASE);
        assert_eq!(census.count("me", &fleet.listed(), &HashMap::new()).live, 2);
        fleet.join("b");
        fleet.join("c");
        assert_eq!(beat(&mut fleet, &mut census).await.live, 4, "joined");
        for _ in 0..20 {
            let c = beat(&mut fleet, &mut census).await;
            assert_eq!((c.live, c.dead.len()), (4, 0), "live runs stay counted");
        }
        fleet.end("a");
        assert_eq!(beat(&mut fleet, &mut census).await.live, 3, "ended cleanly");
        fleet.end("b");
        fleet.end("c");
        let c = beat(&mut fleet, &mut census).await;
        assert_eq!(c.live, 1, "alone: the whole budget");
        assert_eq!(Share::of(50.0, c.live).rate, 50.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_dies_gives_its_share_back_within_one_lease_and_not_before() {
        let mut fleet = Fleet::new(&["me", "a", "b"]);
        let mut census = Census::new(LEASE);
        for _ in 0..3 {
            assert_eq!(beat(&mut fleet, &mut census).await.live, 3);
        }
        fleet.kill("b");
        let died = Instant::now();
        let back = loop {
            let c = beat(&mut fleet, &mut census).await;
            if c.live == 2 {
                assert_eq!(c.dead, vec!["b".to_owned()], "to be pruned from the store");
                break died.elapsed();
            }
            assert_eq!(c.live, 3);
            assert!(died.elapsed() <= 2 * LEASE, "never given back");
        };
        // Its counter last moved one beat before it died was noticed: back within a lease
        // and a beat, and not before a full lease of standing still.
        assert!(back >= LEASE - BEAT, "judged dead too early: {back:?}");
        assert!(back <= LEASE + BEAT, "{back:?}");
        // Pruned from the store, it is forgotten; a run seen for the first time counts at once.
        fleet.end("b");
        fleet.join("d");
        assert_eq!(beat(&mut fleet, &mut census).await.live, 3);
    }

    /// Issue 21, item 7, for the fleet: a run with a short lease does not drop a live run whose
    /// own lease (and heartbeat period) is longer, which would hand the dropped run's share out
    /// twice; it judges each run by the lease that run recorded.
    #[tokio::test(start_paused = true)]
    async fn a_run_is_judged_dead_by_its_own_lease_not_the_readers() {
        let fleet = Fleet::new(&["me", "slow"]);
        // `slow` beats every 5 s (a 30 s lease); this reader's lease is 2 s.
        let mut census = Census::new(Duration::from_secs(2));
        let leases = HashMap::from([("slow".to_owned(), LEASE)]);
        let mut fleet = fleet;
        for _ in 0..30 {
            // The reader takes a census every 300 ms; `slow` beats every 5 s.
            for _ in 0..16 {
                tokio::time::advance(Duration::from_millis(300)).await;
                let c = census.count("me", &fleet.listed(), &leases);
                assert_eq!((c.live, c.dead.len()), (2, 0), "a live run was dropped");
            }
            fleet.beat();
        }
        // Dead by its own lease, not before.
        fleet.kill("slow");
        let died = Instant::now();
        while census.count("me", &fleet.listed(), &leases).live == 2 {
            tokio::time::advance(Duration::from_millis(300)).await;
        }
        assert!(died.elapsed() >= LEASE - BEAT, "{:?}", died.elapsed());
        // Without its lease recorded (an older build), the reader's own lease judges.
        let mut census = Census::new(Duration::from_secs(2));
        let mut fleet = Fleet::new(&["me", "old"]);
        census.count("me", &fleet.listed(), &HashMap::new());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(census.count("me", &fleet.listed(), &HashMap::new()).live, 1);
        fleet.beat();
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_first_seen_standing_still_counts_until_it_stood_still_a_lease() {
        // A run that died before this one started: listed, never moving.
        let mut fleet = Fleet::new(&["me", "ghost"]);
        fleet.kill("ghost");
        let mut census = Census::new(LEASE);
        assert_eq!(
            census.count("me", &fleet.listed(), &HashMap::new()).live,
            2,
            "errs low"
        );
        let started = Instant::now();
        while census.count("me", &fleet.listed(), &HashMap::new()).live == 2 {
            tokio::time::advance(BEAT).await;
            fleet.beat();
        }
        assert_eq!(started.elapsed(), LEASE);
    }

    /// A store whose census can hang (until the task gives up on it) and that records the
    /// throttles each answered census was told.
    #[derive(Default)]
    struct Hanging {
        hang_next: std::sync::atomic::AtomicBool,
        told: std::sync::Mutex<Vec<u64>>,
    }

    impl Store for Hanging {
        fn describe(&self) -> String {
            "hanging".into()
        }
        fn census<'a>(
            &'a self,
            run: &'a RunId,
            _lease: Duration,
            _dead: &'a [String],
            throttles: u64,
        ) -> BoxFuture<'a, Result<Listing, LedgerError>> {
            Box::pin(async move {
                if self
                    .hang_next
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
                {
                    std::future::pending::<()>().await;
                }
                let mut told = self.told.lock().unwrap();
                told.push(throttles);
                Ok(Listing {
                    runs: vec![(run.0.clone(), told.len() as i64)],
                    leases: HashMap::new(),
                    throttles: told.iter().sum(),
                })
            })
        }
        fn begin_run<'a>(
            &'a self,
            _: &'a RunId,
            _: &'a str,
            _: Duration,
            _: Millis,
        ) -> BoxFuture<'a, Result<(), LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn heartbeat<'a>(
            &'a self,
            _: &'a RunId,
            _: Millis,
        ) -> BoxFuture<'a, Result<(), LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn end_run<'a>(
            &'a self,
            _: &'a RunId,
            _: Millis,
        ) -> BoxFuture<'a, Result<(), LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn claim<'a>(
            &'a self,
            _: &'a RunId,
            _: &'a UserKey,
            _: Rules,
            _: Option<&'a Stale>,
        ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn peek<'a>(
            &'a self,
            _: &'a UserKey,
            _: Rules,
        ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn finish<'a>(
            &'a self,
            _: &'a RunId,
            _: &'a UserKey,
            _: Finish,
            _: Option<&'a str>,
            _: Millis,
        ) -> BoxFuture<'a, Result<(), LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn stats(&self, _: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>> {
            unimplemented!("not used by the census")
        }
        fn export_page(
            &self,
            _: Option<String>,
            _: u32,
        ) -> BoxFuture<'_, Result<Page, LedgerError>> {
            unimplemented!("not used by the census")
        }
    }

    /// Throttles this run counted are told to the fleet even when the census that was to tell
    /// them took too long and was abandoned: they go with the next one, not nowhere.
    #[tokio::test(start_paused = true)]
    async fn throttles_of_an_abandoned_census_go_with_the_next_one() {
        let store = Arc::new(Hanging::default());
        let every = Duration::from_millis(500);
        let stop = CancellationToken::new();
        let fleet = FleetCensus::start(store.clone(), RunId::new(), LEASE, every, 10.0, stop)
            .await
            .unwrap();
        store
            .hang_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        fleet.note_throttle();
        fleet.note_throttle();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if store.told.lock().unwrap().len() >= 2 {
                break;
            }
        }
        let told = store.told.lock().unwrap().clone();
        assert_eq!(
            told.iter().sum::<u64>(),
            2,
            "the fleet was told {told:?}: the abandoned census's throttles were lost"
        );
        fleet.stop().await;
    }
}
