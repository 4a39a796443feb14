//! The engine in-process, over fakes of [`Resend`] and [`Source`]: no network, no emulator, no
//! process. Time is paused where no ledger is involved, so backoff waits take no real time.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};

use super::*;
use crate::config::RetrySettings;
use crate::job::{AckError, Origin, Reason};
use crate::ledger::{DayCaps, LedgerTiming, SpendCap, StateSpec};
use crate::outcome::Delivery;

/// What a fake answers for one call: given the username, client id and how many calls this
/// user has had before.
type Script = dyn Fn(&str, &str, usize) -> Result<Answer, CallError> + Send + Sync;

/// Every call a fake got: `(username, client id)`.
type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// A scripted Cognito that remembers every call.
struct Fake {
    script: Box<Script>,
    calls: Calls,
}

impl Fake {
    fn new(
        script: impl Fn(&str, &str, usize) -> Result<Answer, CallError> + Send + Sync + 'static,
    ) -> (Self, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fake = Self {
            script: Box::new(script),
            calls: calls.clone(),
        };
        (fake, calls)
    }
}

impl Resend for Fake {
    fn resend(
        &self,
        req: &ResendRequest,
        client_id: &str,
        _medium: Option<&'static str>,
    ) -> impl Future<Output = Result<Answer, CallError>> + Send {
        let before = {
            let mut calls = self.calls.lock().unwrap();
            let before = calls.iter().filter(|(u, _)| *u == req.username).count();
            calls.push((req.username.clone(), client_id.to_owned()));
            before
        };
        let username = req.username.clone();
        let client_id = client_id.to_owned();
        let script = &self.script;
        // The answer (or the panic) comes while the call is being awaited, as a real one would.
        async move {
            tokio::task::yield_now().await;
            script(&username, &client_id, before)
        }
    }
}

fn sent() -> Result<Answer, CallError> {
    Ok(Answer::Sent(Delivery {
        medium: Some("EMAIL".into()),
        destination: Some("a***@e***".into()),
        attribute: Some("email".into()),
    }))
}

/// Every settle the engine made, in order: `None` for a job handed back untouched. And the
/// holds a spend cap asked for ([`Settle::hold_back`]).
#[derive(Default)]
struct Settled(Mutex<Vec<(Origin, Option<Outcome>)>>, Mutex<Vec<Duration>>);

impl Settle for Settled {
    fn settle<'a>(
        &'a self,
        origin: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), AckError>> {
        self.0
            .lock()
            .unwrap()
            .push((origin.clone(), outcome.cloned()));
        Box::pin(async { Ok(()) })
    }

    fn hold_back(&self, hold: Duration) {
        self.1.lock().unwrap().push(hold);
    }
}

/// A source of jobs `(username, client id)`, line numbers from 2.
struct Jobs {
    /// Usernames by position (line - 2).
    names: Vec<String>,
    inputs: VecDeque<Input>,
    settled: Arc<Settled>,
}

impl Jobs {
    fn new<'a>(jobs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let jobs: Vec<_> = jobs.into_iter().collect();
        let names = jobs.iter().map(|(u, _)| (*u).to_owned()).collect();
        let inputs = jobs
            .into_iter()
            .zip(2..)
            .map(|((username, client_id), line)| {
                Input::Job(Job {
                    origin: Origin::Csv { line },
                    request: ResendRequest {
                        username: username.to_owned(),
                        client_id: client_id.map(str::to_owned),
                        ..ResendRequest::default()
                    },
                    attributes: None,
                })
            })
            .collect();
        Self {
            names,
            inputs,
            settled: Arc::default(),
        }
    }

    fn users<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(names.into_iter().map(|u| (u, None)))
    }

    /// Outcome per username, for the jobs that got one.
    fn outcomes(&self) -> HashMap<String, Outcome> {
        let settled = self.settled.0.lock().unwrap();
        settled
            .iter()
            .filter_map(|(origin, outcome)| {
                let Origin::Csv { line } = origin else {
                    return None;
                };
                Some((*line, outcome.clone()?))
            })
            .map(|(line, o)| (self.username_at(line), o))
            .collect()
    }

    fn username_at(&self, line: u64) -> String {
        self.names[(line - 2) as usize].clone()
    }

    fn untouched(&self) -> usize {
        let settled = self.settled.0.lock().unwrap();
        settled.iter().filter(|(_, o)| o.is_none()).count()
    }
}

impl Source for Jobs {
    fn label(&self) -> &'static str {
        "csv"
    }

    fn next(&mut self) -> impl Future<Output = Option<Input>> + Send {
        std::future::ready(self.inputs.pop_front())
    }

    fn settler(&self) -> Arc<dyn Settle> {
        self.settled.clone()
    }
}

fn config(concurrency: usize) -> EngineConfig {
    EngineConfig {
        concurrency: NonZeroUsize::new(concurrency).unwrap(),
        rate: None,
        invite_rate: None,
        dry_run: false,
        retry: RetrySettings {
            max_attempts: NonZeroU32::new(3).unwrap(),
            max_elapsed: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
            jitter: 0.0,
        },
        spend: SpendLimits::default(),
        default_client_id: Some("app".into()),
        allowed_client_ids: Vec::new(),
        shutdown_grace: Duration::from_secs(1),
        ledger: None,
        identity: Default::default(),
        default_email_account: false,
        request_defaults: Default::default(),
    }
}

/// Runs the engine to its end (bounded: a hung engine fails the test instead of hanging it).
async fn run_engine(config: EngineConfig, jobs: &mut Jobs, fake: Fake) -> StopCause {
    let recorder = Arc::new(Recorder::new("csv", None, false).unwrap());
    let run = run(config, jobs, fake, recorder, CancellationToken::new());
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the engine ends")
}

/// A SQLite ledger in `dir`, as a run of `backfill` would open it.
async fn ledger(dir: &std::path::Path) -> Ledger {
    let store = crate::ledger::open(
        &StateSpec::Sqlite(dir.join("ledger.db")),
        &crate::ledger::dynamo::DynamoSettings {
            region: None,
            profile: None,
            endpoint: None,
            retention: None,
        },
        // The default, as a run of a pool not known: the keys are folded.
        crate::job::UsernameCase::default(),
    )
    .await
    .unwrap()
    .unwrap();
    Ledger::start(
        store,
        "backfill",
        LedgerTiming {
            cooldown: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
            // Every test here calls again for what is known; the rerun test in `tests/it`
            // covers `--recheck-after`.
            recheck_after: Duration::ZERO,
        },
    )
    .await
    .unwrap()
}

fn reason(o: &Outcome) -> &str {
    o.reason.as_ref().map_or("", Reason::as_str)
}

// ---- Item 7: a job that panics ------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_panicking_job_fails_as_internal_error_and_gives_back_its_permit_and_settle() {
    let (fake, calls) = Fake::new(|user, _, _| {
        if user == "bob" {
            panic!("bug in the call for this job");
        }
        sent()
    });
    // One permit: the jobs after bob run only if his permit came back.
    let mut jobs = Jobs::users(["alice", "bob", "carol", "dave"]);
    let cause = run_engine(config(1), &mut jobs, fake).await;
    assert_eq!(cause, StopCause::EndOfInput);
    let out = jobs.outcomes();
    assert_eq!(out.len(), 4, "every job settled with an outcome: {out:?}");
    let bob = &out["bob"];
    assert_eq!(bob.kind, OutcomeKind::Failed);
    assert_eq!(reason(bob), "internal_error");
    assert!(
        bob.error.as_deref().unwrap().contains("bug in the call"),
        "{bob:?}"
    );
    // The call had started: it may have reached Cognito.
    assert_eq!(bob.in_doubt, Some(DoubtCause::AmbiguousAttempt));
    for user in ["alice", "carol", "dave"] {
        assert_eq!(out[user].kind, OutcomeKind::Sent, "{user}");
    }
    assert_eq!(calls.lock().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_the_call_started_keeps_the_cooldown_on_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, _) = Fake::new(|user, _, _| {
        if user == "bob" {
            panic!("bug after the send");
        }
        sent()
    });
    let mut jobs = Jobs::users(["alice", "bob"]);
    let first = ledger(dir.path()).await;
    let cause = run_engine(
        EngineConfig {
            ledger: Some(first.clone()),
            ..config(2)
        },
        &mut jobs,
        fake,
    )
    .await;
    first.close().await;
    assert_eq!(cause, StopCause::EndOfInput);
    assert_eq!(reason(&jobs.outcomes()["bob"]), "internal_error");

    // A rerun on the same ledger: bob may hold a code, so he is in cooldown, not called again.
    let (fake, calls) = Fake::new(|_, _, _| sent());
    let mut jobs = Jobs::users(["alice", "bob"]);
    let second = ledger(dir.path()).await;
    let cause = run_engine(
        EngineConfig {
            ledger: Some(second.clone()),
            ..config(2)
        },
        &mut jobs,
        fake,
    )
    .await;
    second.close().await;
    assert_eq!(cause, StopCause::EndOfInput);
    let out = jobs.outcomes();
    assert_eq!(out["bob"].kind, OutcomeKind::Cooldown, "{out:?}");
    assert_eq!(out["alice"].kind, OutcomeKind::Cooldown);
    assert!(calls.lock().unwrap().is_empty());
}

/// Issue 21, item 3: a job that panics holding a `--max-sends` reservation settles it. Before,
/// the reservation was dropped with the job's future and never settled: the run then waited
/// forever for a settlement nobody would make (here it never ended).
#[tokio::test(start_paused = true)]
async fn a_panicking_job_settles_its_spend_reservation_so_a_max_sends_run_ends() {
    let (fake, calls) = Fake::new(|user, _, _| {
        if user == "alice" {
            panic!("bug in the call for this job");
        }
        sent()
    });
    let mut jobs = Jobs::users(["alice", "bob", "carol", "dave", "erin"]);
    let cause = run_engine(
        EngineConfig {
            spend: SpendLimits {
                run: Some(2),
                ..SpendLimits::default()
            },
            ..config(2)
        },
        &mut jobs,
        fake,
    )
    .await;
    // The panic came after the call started: the code may have gone out, so the reservation is
    // kept and counts toward the cap, with bob's code.
    assert_eq!(cause, StopCause::SpendCapped(SpendCap::Run));
    let out = jobs.outcomes();
    assert_eq!(reason(&out["alice"]), "internal_error");
    assert_eq!(out["alice"].in_doubt, Some(DoubtCause::AmbiguousAttempt));
    assert_eq!(out["bob"].kind, OutcomeKind::Sent);
    assert_eq!(out.len(), 2, "nobody else was called: {out:?}");
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert!(
        jobs.untouched() >= 1,
        "a job refused its reservation is handed back"
    );
}

// ---- Item 4: ambiguous attempts -----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn jobs_after_an_ambiguous_attempt_are_in_doubt_and_only_they() {
    let (fake, _) = Fake::new(|user, _, before| match (user, before) {
        // Timed out after the request was written, then sent on the retry: maybe two codes.
        ("alice", 0) => Err(CallError::Ambiguous("attempt timed out".into())),
        // Refused before Cognito saw it, then sent: one code.
        ("bob", 0) => Err(CallError::Transient("connection refused".into())),
        // 500 after 500 until the budget is spent: maybe one code.
        ("carol", _) => Err(CallError::Ambiguous("InternalErrorException".into())),
        // Refused every time: certainly no code.
        ("dave", _) => Err(CallError::Transient("connection refused".into())),
        // An ambiguous attempt, then "already confirmed": nobody got a code from us.
        ("erin", 0) => Err(CallError::Ambiguous("connection dropped".into())),
        ("erin", _) => Ok(Answer::AlreadyConfirmed),
        _ => sent(),
    });
    let mut jobs = Jobs::users(["alice", "bob", "carol", "dave", "erin"]);
    let cause = run_engine(config(4), &mut jobs, fake).await;
    assert_eq!(cause, StopCause::EndOfInput);
    let out = jobs.outcomes();
    let doubt = |u: &str| out[u].in_doubt;
    assert_eq!(out["alice"].kind, OutcomeKind::Sent);
    assert_eq!(doubt("alice"), Some(DoubtCause::AmbiguousAttempt));
    assert_eq!(out["bob"].kind, OutcomeKind::Sent);
    assert_eq!(doubt("bob"), None);
    assert_eq!(reason(&out["carol"]), "retries_exhausted");
    assert_eq!(doubt("carol"), Some(DoubtCause::AmbiguousAttempt));
    assert_eq!(reason(&out["dave"]), "retries_exhausted");
    assert_eq!(doubt("dave"), None);
    assert_eq!(out["erin"].kind, OutcomeKind::AlreadyConfirmed);
    assert_eq!(doubt("erin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failed_after_an_ambiguous_attempt_keeps_the_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, _) = Fake::new(|user, _, _| match user {
        "carol" => Err(CallError::Ambiguous("InternalErrorException".into())),
        _ => Err(CallError::Transient("connection refused".into())),
    });
    let first = ledger(dir.path()).await;
    let mut jobs = Jobs::users(["carol", "dave"]);
    let config_with = |l: &Ledger| EngineConfig {
        ledger: Some(l.clone()),
        retry: RetrySettings {
            max_attempts: NonZeroU32::new(2).unwrap(),
            max_elapsed: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
            multiplier: 1.0,
            jitter: 0.0,
        },
        ..config(2)
    };
    run_engine(config_with(&first), &mut jobs, fake).await;
    first.close().await;
    let out = jobs.outcomes();
    assert_eq!(out["carol"].kind, OutcomeKind::Failed);
    assert_eq!(out["dave"].kind, OutcomeKind::Failed);

    let (fake, calls) = Fake::new(|_, _, _| sent());
    let second = ledger(dir.path()).await;
    let mut jobs = Jobs::users(["carol", "dave"]);
    run_engine(config_with(&second), &mut jobs, fake).await;
    second.close().await;
    let out = jobs.outcomes();
    assert_eq!(
        out["carol"].kind,
        OutcomeKind::Cooldown,
        "maybe sent: not again"
    );
    assert_eq!(
        out["dave"].kind,
        OutcomeKind::Sent,
        "never sent: free to send"
    );
    let called: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(u, _)| u.clone())
        .collect();
    assert_eq!(called, ["dave"]);
}

// ---- Item 8: allowed client ids, per-client early stops, storms ---------------------------------

fn not_authorized() -> Result<Answer, CallError> {
    Err(CallError::Misconfigured {
        kind: Misconfiguration::NotAuthorized,
        detail: "NotAuthorizedException: Unable to verify secret hash".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn jobs_naming_a_foreign_client_are_invalid_never_called_and_do_not_stop_the_run() {
    // Cognito would refuse the foreign client: three of those in a row used to stop the run.
    let (fake, calls) = Fake::new(|_, client, _| match client {
        "app" | "second" => sent(),
        _ => not_authorized(),
    });
    let mut jobs = Jobs::new([
        ("f1", Some("foreign")),
        ("f2", Some("foreign")),
        ("f3", Some("foreign")),
        ("f4", Some("foreign")),
        ("a1", None),
        ("a2", Some("app")),
        ("s1", Some("second")),
    ]);
    let cause = run_engine(
        EngineConfig {
            allowed_client_ids: vec!["second".into()],
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(cause, StopCause::EndOfInput);
    let out = jobs.outcomes();
    for u in ["f1", "f2", "f3", "f4"] {
        assert_eq!(out[u].kind, OutcomeKind::Invalid, "{u}");
        assert!(reason(&out[u]).contains("client id not allowed"), "{u}");
    }
    for u in ["a1", "a2", "s1"] {
        assert_eq!(out[u].kind, OutcomeKind::Sent, "{u}");
    }
    let clients: Vec<String> = calls
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c)| c.clone())
        .collect();
    assert!(!clients.iter().any(|c| c == "foreign"), "{clients:?}");
}

#[tokio::test(start_paused = true)]
async fn a_broken_second_client_stops_the_run_naming_it_though_the_first_one_works() {
    let (fake, _) = Fake::new(|_, client, _| match client {
        "app" => sent(),
        _ => not_authorized(),
    });
    // Alternating: each of the second client's errors is followed by a success of the first.
    let names: Vec<String> = (0..20).map(|i| format!("user{i}")).collect();
    let mut jobs = Jobs::new(
        names
            .iter()
            .enumerate()
            .map(|(i, u)| (u.as_str(), (i % 2 == 1).then_some("second"))),
    );
    let cause = run_engine(
        EngineConfig {
            allowed_client_ids: vec!["second".into()],
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    let StopCause::Misconfigured(stop) = cause else {
        panic!("expected an early stop, got {cause:?}");
    };
    assert_eq!(stop.client_id, "second");
    assert_eq!(stop.kind, Misconfiguration::NotAuthorized);
    assert_eq!(stop.in_a_row, 3);
    assert!(stop.to_string().contains("second"));
}

fn delivery_failure() -> Result<Answer, CallError> {
    Err(CallError::Broken {
        reason: Reason::CodeDeliveryFailure,
        kind: Misconfiguration::DeliveryBroken,
        detail: "CodeDeliveryFailureException: Email address is not verified".into(),
    })
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_delivery_failures_stops_early_with_delivery_broken() {
    let (fake, calls) = Fake::new(|_, _, _| delivery_failure());
    let names: Vec<String> = (0..50).map(|i| format!("user{i}")).collect();
    let mut jobs = Jobs::users(names.iter().map(String::as_str));
    let cause = run_engine(config(1), &mut jobs, fake).await;
    let StopCause::Misconfigured(stop) = cause else {
        panic!("expected an early stop, got {cause:?}");
    };
    assert_eq!(stop.kind, Misconfiguration::DeliveryBroken);
    assert_eq!(stop.kind.reason(), "delivery_broken");
    assert_eq!(stop.in_a_row, crate::cognito::classify::STORM);
    assert_eq!(calls.lock().unwrap().len(), STORM_USIZE);
    let out = jobs.outcomes();
    assert_eq!(out.len(), STORM_USIZE, "only the storm's jobs failed");
    assert!(out.values().all(|o| reason(o) == "code_delivery_failure"));
    assert!(
        jobs.untouched() <= 1,
        "the rest were never read or handed back"
    );
}

const STORM_USIZE: usize = crate::cognito::classify::STORM as usize;

#[tokio::test(start_paused = true)]
async fn trigger_failures_broken_up_by_successes_do_not_stop_the_run() {
    // Nine trigger failures, a success, nine more, ...: single users' trouble, not a storm.
    let (fake, _) = Fake::new(|user, _, _| {
        let i: usize = user.trim_start_matches("user").parse().unwrap();
        if i % STORM_USIZE == STORM_USIZE - 1 {
            sent()
        } else {
            Err(CallError::Broken {
                reason: Reason::LambdaError,
                kind: Misconfiguration::TriggerBroken,
                detail: "InvalidLambdaResponseException: bad".into(),
            })
        }
    });
    let names: Vec<String> = (0..5 * STORM_USIZE).map(|i| format!("user{i}")).collect();
    let mut jobs = Jobs::users(names.iter().map(String::as_str));
    let cause = run_engine(config(1), &mut jobs, fake).await;
    assert_eq!(cause, StopCause::EndOfInput);
    assert_eq!(jobs.outcomes().len(), names.len());

    // And ten in a row do stop it, as trigger_broken.
    let (fake, _) = Fake::new(|_, _, _| {
        Err(CallError::Broken {
            reason: Reason::LambdaError,
            kind: Misconfiguration::TriggerBroken,
            detail: "UserLambdaValidationException: no".into(),
        })
    });
    let mut jobs = Jobs::users(names.iter().map(String::as_str));
    let cause = run_engine(config(1), &mut jobs, fake).await;
    assert!(
        matches!(&cause, StopCause::Misconfigured(m) if m.kind.reason() == "trigger_broken"),
        "{cause:?}"
    );
}

// ---- Spend caps (--max-sends, --max-sends-per-day) ---------------------------------------

fn sent_by(medium: &str) -> Result<Answer, CallError> {
    Ok(Answer::Sent(Delivery {
        medium: Some(medium.into()),
        destination: None,
        attribute: None,
    }))
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

#[tokio::test(start_paused = true)]
async fn max_sends_stops_the_run_after_that_many_codes_and_leaves_the_rest_untouched() {
    // Every third user is not found: a call that sends nothing gives its reservation back.
    let (fake, calls) = Fake::new(|user, _, _| {
        if user.ends_with('0') || user.ends_with('3') || user.ends_with('6') {
            Ok(Answer::NotFound)
        } else {
            sent()
        }
    });
    let users = names("u", 30);
    let mut jobs = Jobs::users(users.iter().map(String::as_str));
    let cause = run_engine(
        EngineConfig {
            spend: SpendLimits {
                run: Some(5),
                ..SpendLimits::default()
            },
            ..config(3)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(cause, StopCause::SpendCapped(SpendCap::Run));
    let out = jobs.outcomes();
    let sent = out.values().filter(|o| o.kind == OutcomeKind::Sent).count();
    assert_eq!(sent, 5, "{out:?}");
    assert!(
        out.values().any(|o| o.kind == OutcomeKind::NotFound),
        "not-found answers gave their reservations back: {out:?}"
    );
    // Every call made has its outcome; the jobs not attempted were handed back untouched.
    assert_eq!(calls.lock().unwrap().len(), out.len());
    assert!(jobs.untouched() >= 1);
    assert_eq!(
        out.len() + jobs.untouched(),
        jobs.settled.0.lock().unwrap().len()
    );
    assert!(out.len() < 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_never_reserves_and_a_day_cap_holds_across_runs_on_one_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let caps = SpendLimits {
        day: DayCaps {
            sends: Some(4),
            ..DayCaps::default()
        },
        ..SpendLimits::default()
    };
    let users = names("d", 10);
    // A dry run plans every user and reserves nothing.
    let (fake, calls) = Fake::new(|_, _, _| sent());
    let mut jobs = Jobs::users(users.iter().map(String::as_str));
    let l = ledger(dir.path()).await;
    let cause = run_engine(
        EngineConfig {
            ledger: Some(l.clone()),
            dry_run: true,
            spend: caps,
            ..config(4)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(cause, StopCause::EndOfInput);
    assert_eq!(jobs.outcomes().len(), 10);
    assert!(calls.lock().unwrap().is_empty());
    assert_eq!(l.today_spend().await.unwrap().sends, 0);
    l.close().await;

    // Two runs: the first sends 3 of the day's 4, the second only 1 more.
    for (n, expect_sent, expect_cause) in [
        (3, 3, StopCause::EndOfInput),
        (10, 1, StopCause::SpendCapped(SpendCap::Day)),
    ] {
        let (fake, _) = Fake::new(|_, _, _| sent_by("SMS"));
        let batch = names(&format!("r{n}-"), n);
        let mut jobs = Jobs::users(batch.iter().map(String::as_str));
        let l = ledger(dir.path()).await;
        let cause = run_engine(
            EngineConfig {
                ledger: Some(l.clone()),
                spend: caps,
                ..config(2)
            },
            &mut jobs,
            fake,
        )
        .await;
        l.close().await;
        assert_eq!(cause, expect_cause);
        let out = jobs.outcomes();
        assert_eq!(
            out.values().filter(|o| o.kind == OutcomeKind::Sent).count(),
            expect_sent
        );
        assert_eq!(out.len(), expect_sent, "no other outcome: {out:?}");
        assert_eq!(
            jobs.untouched() + out.len(),
            jobs.settled.0.lock().unwrap().len()
        );
    }
    let l = ledger(dir.path()).await;
    let today = l.today_spend().await.unwrap();
    assert_eq!((today.sends, today.sms), (4, 4));
    l.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medium_cap_overshoots_by_at_most_the_calls_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let concurrency = 4;
    let cap = 3;
    // Every answer is an SMS, and every call takes a while: all permits are in flight together.
    let (fake, _) = Fake::new(|_, _, _| {
        std::thread::sleep(Duration::from_millis(20));
        sent_by("SMS")
    });
    let users = names("m", 40);
    let mut jobs = Jobs::users(users.iter().map(String::as_str));
    let l = ledger(dir.path()).await;
    let cause = run_engine(
        EngineConfig {
            ledger: Some(l.clone()),
            spend: SpendLimits {
                day: DayCaps {
                    sms: Some(cap),
                    email: Some(100),
                    ..DayCaps::default()
                },
                ..SpendLimits::default()
            },
            ..config(concurrency)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(cause, StopCause::SpendCapped(SpendCap::SmsDay));
    let sms = jobs
        .outcomes()
        .values()
        .filter(|o| o.kind == OutcomeKind::Sent)
        .count() as u64;
    // The bound: a reservation is granted only while fewer than `cap` SMS are confirmed, so
    // past the cap go only calls already in flight when it was reached (at most
    // concurrency - 1 besides the one that reached it).
    assert!(
        (cap..cap + concurrency as u64).contains(&sms),
        "sms sent: {sms}"
    );
    assert_eq!(l.today_spend().await.unwrap().sms, sms);
    assert!(jobs.untouched() >= 1);
    l.close().await;
}

// ---- Cognito unreachable (a wrong endpoint, region, proxy or network) -----------------------

/// The `retry.*` defaults: ten attempts over up to ten minutes, so a job outlives a few seconds
/// of connection failures.
fn default_retry() -> RetrySettings {
    RetrySettings {
        max_attempts: NonZeroU32::new(10).unwrap(),
        max_elapsed: Duration::from_secs(600),
        initial_backoff: Duration::from_millis(250),
        max_backoff: Duration::from_secs(30),
        multiplier: 2.0,
        jitter: 0.5,
    }
}

const NOWHERE: &str = "http://127.0.0.1:9 (region us-east-1): connection refused: io error";

fn refused() -> Result<Answer, CallError> {
    Err(CallError::Unreachable(NOWHERE.into()))
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_never_reached_stops_the_run_after_a_few_seconds_naming_it() {
    let (fake, calls) = Fake::new(|_, _, _| refused());
    let names = names("user", 500);
    let mut jobs = Jobs::users(names.iter().map(String::as_str));
    let cause = run_engine(
        EngineConfig {
            retry: default_retry(),
            ..config(16)
        },
        &mut jobs,
        fake,
    )
    .await;
    let StopCause::Misconfigured(stop) = cause else {
        panic!("expected an early stop, got {cause:?}");
    };
    assert_eq!(stop.kind, Misconfiguration::Unreachable);
    let said = stop.to_string();
    assert!(said.contains(NOWHERE), "{said}");
    assert!(
        said.contains("no call of this run was ever answered"),
        "{said}"
    );
    // A few seconds of attempts at the rate limit's start (10/s), not ten per user.
    let calls = calls.lock().unwrap().len();
    assert!(calls < 100, "{calls} calls before the stop");
    // The jobs in flight end `interrupted` (a queue takes them back at once); the others were
    // handed back untouched or never read.
    let out = jobs.outcomes();
    assert!(!out.is_empty() && out.len() <= 16, "{}", out.len());
    assert!(
        out.values()
            .all(|o| o.kind == OutcomeKind::Failed && reason(o) == "interrupted"),
        "{out:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_lost_after_answers_are_retried_and_never_stop_the_run() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let down = Arc::new(AtomicBool::new(false));
    let (fake, _) = Fake::new({
        let down = down.clone();
        move |_, _, _| if down.load(SeqCst) { refused() } else { sent() }
    });
    // Up for a second, then 20 s of refused connections (four times what stops a run never
    // answered), then up again.
    let outage = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        down.store(true, SeqCst);
        tokio::time::sleep(Duration::from_secs(20)).await;
        down.store(false, SeqCst);
    });
    let names = names("user", 300);
    let mut jobs = Jobs::users(names.iter().map(String::as_str));
    let cause = run_engine(
        EngineConfig {
            retry: default_retry(),
            ..config(8)
        },
        &mut jobs,
        fake,
    )
    .await;
    outage.await.unwrap();
    assert_eq!(cause, StopCause::EndOfInput);
    let out = jobs.outcomes();
    assert_eq!(out.len(), 300);
    assert!(out.values().all(|o| o.kind == OutcomeKind::Sent), "{out:?}");
    assert!(out.values().any(|o| o.attempts > 1), "the outage was felt");
}

// ---- A spend cap holds the jobs handed back until the budget allows (issue 21, item 1) -------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_cap_asks_the_source_to_hold_back_its_jobs_until_the_day_turns() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, _) = Fake::new(|_, _, _| sent());
    let users = names("h", 6);
    let mut jobs = Jobs::users(users.iter().map(String::as_str));
    let l = ledger(dir.path()).await;
    let cause = run_engine(
        EngineConfig {
            ledger: Some(l.clone()),
            spend: SpendLimits {
                day: DayCaps {
                    sends: Some(1),
                    ..DayCaps::default()
                },
                ..SpendLimits::default()
            },
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    l.close().await;
    assert_eq!(cause, StopCause::SpendCapped(SpendCap::Day));
    let holds = jobs.settled.1.lock().unwrap().clone();
    assert_eq!(holds.len(), 1, "told once: {holds:?}");
    // Until the next UTC midnight (and a minute past it, for clocks a little behind).
    let until_midnight = crate::ledger::until_next_day(crate::ledger::now_millis());
    assert!(
        holds[0] > until_midnight && holds[0] <= until_midnight + Duration::from_secs(120),
        "{holds:?} vs {until_midnight:?}"
    );
    assert!(jobs.untouched() >= 1);

    // `--max-sends` is this run's: the next run has its own budget, so nothing is held back.
    let (fake, _) = Fake::new(|_, _, _| sent());
    let mut jobs = Jobs::users(users.iter().map(String::as_str));
    let cause = run_engine(
        EngineConfig {
            spend: SpendLimits {
                run: Some(1),
                ..SpendLimits::default()
            },
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(cause, StopCause::SpendCapped(SpendCap::Run));
    assert_eq!(*jobs.settled.1.lock().unwrap(), [Duration::ZERO]);
}

// ---- A failed acknowledgement keeps the in-doubt mark (issue 21, item 4) ------------------------

/// A source whose acknowledgements all fail (a queue whose deletes fail for good).
struct Unacknowledged {
    inputs: VecDeque<Input>,
}

struct FailingAcks;

impl Settle for FailingAcks {
    fn settle<'a>(
        &'a self,
        _: &'a Origin,
        outcome: Option<&'a Outcome>,
    ) -> BoxFuture<'a, Result<(), AckError>> {
        let result = match outcome {
            Some(_) => Err(AckError::Failed { attempts: 4 }),
            None => Ok(()),
        };
        Box::pin(async move { result })
    }
}

impl Source for Unacknowledged {
    fn label(&self) -> &'static str {
        "sqs"
    }

    fn next(&mut self) -> impl Future<Output = Option<Input>> + Send {
        std::future::ready(self.inputs.pop_front())
    }

    fn settler(&self) -> Arc<dyn Settle> {
        Arc::new(FailingAcks)
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_acknowledgement_keeps_the_jobs_in_doubt_mark() {
    // A 500 (Cognito may have sent), then a code: the user may hold two. The delete fails.
    let (fake, _) = Fake::new(|_, _, before| match before {
        0 => Err(CallError::Ambiguous(
            "InternalErrorException (HTTP 500)".into(),
        )),
        _ => sent(),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.jsonl");
    let recorder = Arc::new(
        Recorder::new(
            "sqs",
            Some((&path, crate::outcome::report_writer::IfExists::Refuse)),
            false,
        )
        .unwrap(),
    );
    let mut source = Unacknowledged {
        inputs: VecDeque::from([Input::Job(Job {
            origin: Origin::Sqs {
                message_id: "m-1".into(),
            },
            request: ResendRequest {
                username: "alice".into(),
                ..ResendRequest::default()
            },
            attributes: None,
        })]),
    };
    let cause = run(
        config(1),
        &mut source,
        fake,
        recorder.clone(),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(cause, StopCause::EndOfInput);
    recorder.finish(None);
    let tally = recorder.tally();
    assert_eq!(tally.count(OutcomeKind::Failed), 1);
    assert_eq!(tally.in_doubt(), 1, "the report's \"in doubt\" counts her");
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().trim()).unwrap();
    assert_eq!(line["reason"], "ack_failed", "{line}");
    assert_eq!(line["in_doubt"], true, "{line}");
    assert_eq!(line["in_doubt_cause"], "ambiguous_attempt", "{line}");
}

// ---- A job's own metadata cannot stop the run (issue 21, item 5) --------------------------------

fn with_metadata(username: &str, metadata: &[(&str, &str)], line: u64) -> Input {
    Input::Job(Job {
        origin: Origin::Csv { line },
        request: ResendRequest {
            username: username.into(),
            client_metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..ResendRequest::default()
        },
        attributes: None,
    })
}

fn trigger_fails_on_broken_template(user: &str) -> Result<Answer, CallError> {
    if user.starts_with("bad") {
        Err(CallError::Broken {
            reason: Reason::LambdaError,
            kind: Misconfiguration::TriggerBroken,
            detail: "UserLambdaValidationException: CustomMessage failed with error no such \
                     template."
                .into(),
        })
    } else {
        sent()
    }
}

#[tokio::test(start_paused = true)]
async fn trigger_failures_of_jobs_with_their_own_metadata_do_not_stop_the_run() {
    let (fake, calls) = Fake::new(|user, _, _| trigger_fails_on_broken_template(user));
    // Twenty jobs whose own metadata breaks the trigger, then five plain ones; the run's own
    // `--client-metadata` goes under every job.
    let mut inputs: Vec<Input> = (0..2 * STORM_USIZE)
        .map(|i| {
            with_metadata(
                &format!("bad{i}"),
                &[("template", "missing"), ("wave", "day-1")],
                i as u64 + 2,
            )
        })
        .collect();
    inputs.extend((0..5).map(|i| with_metadata(&format!("good{i}"), &[], 100 + i)));
    let mut jobs = Jobs {
        names: Vec::new(),
        inputs: inputs.into(),
        settled: Arc::default(),
    };
    let mut defaults = RequestDefaults::default();
    defaults
        .client_metadata
        .insert("wave".into(), "day-1".into());
    let cause = run_engine(
        EngineConfig {
            request_defaults: defaults.clone(),
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert_eq!(
        cause,
        StopCause::EndOfInput,
        "a queue writer cannot stop the run"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2 * STORM_USIZE + 5, "every job was tried");
    assert_eq!(jobs.settled.0.lock().unwrap().len(), 2 * STORM_USIZE + 5);

    // The same failures with nothing but the run's own metadata are a broken trigger: stopped.
    let (fake, _) = Fake::new(|user, _, _| trigger_fails_on_broken_template(user));
    let mut inputs: Vec<Input> = (0..2 * STORM_USIZE)
        .map(|i| with_metadata(&format!("bad{i}"), &[("wave", "day-1")], i as u64 + 2))
        .collect();
    inputs.extend((0..5).map(|i| with_metadata(&format!("good{i}"), &[], 100 + i)));
    let mut jobs = Jobs {
        names: Vec::new(),
        inputs: inputs.into(),
        settled: Arc::default(),
    };
    let cause = run_engine(
        EngineConfig {
            request_defaults: defaults,
            ..config(1)
        },
        &mut jobs,
        fake,
    )
    .await;
    assert!(
        matches!(&cause, StopCause::Misconfigured(m) if m.kind == Misconfiguration::TriggerBroken),
        "{cause:?}"
    );
}
