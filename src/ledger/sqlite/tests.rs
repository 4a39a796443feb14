//! The SQLite store's own tests: claims, takeovers, migrations of older files, the fold,
//! spend counters and export, against real files in a temporary directory.

use std::sync::Arc;

use super::*;
use std::path::Path;

use rusqlite::OptionalExtension;

use super::schema::SCHEMA_VERSION;
use crate::ledger::{InDoubt, Known};

/// The key of `username` under `client_id`, as given.
fn key(client_id: &str, username: &str) -> UserKey {
    UserKey {
        client_id: client_id.into(),
        username: username.into(),
    }
}

fn rules(now: Millis) -> Rules {
    Rules {
        now,
        cooldown_since: now - 1_000,
        alive_since: now - 100,
        max_sends_per_user: None,
        recheck_since: Some(now - 5_000),
    }
}

#[tokio::test]
async fn a_recorded_confirmed_or_missing_user_is_known_until_the_recheck_window_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    for (name, outcome) in [("ann", "already_confirmed"), ("ned", "not_found")] {
        let c = db
            .claim(&me, &key("c", name), rules(10_000), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Granted { in_doubt: None });
        db.finish(&me, &key("c", name), Finish::NotSent(outcome), None, 10_001)
            .await
            .unwrap();
    }
    let known = |known, at| Claim::Known { known, at };
    let ann = db
        .claim(&me, &key("c", "ann"), rules(12_000), None)
        .await
        .unwrap();
    assert_eq!(ann, known(Known::Confirmed, 10_001));
    assert_eq!(
        db.peek(&key("c", "ned"), rules(12_000)).await.unwrap(),
        Some(known(Known::Missing, 10_001))
    );
    // Known, the claim wrote nothing: the row is as the finish left it.
    let ned = db
        .claim(&me, &key("c", "ned"), rules(12_000), None)
        .await
        .unwrap();
    assert_eq!(ned, known(Known::Missing, 10_001));
    // Past the window, or with none: claimed and called again.
    let later = db
        .claim(&me, &key("c", "ann"), rules(15_002), None)
        .await
        .unwrap();
    assert_eq!(later, Claim::Granted { in_doubt: None });
    let fresh = Rules {
        recheck_since: None,
        ..rules(12_000)
    };
    let ned = db.claim(&me, &key("c", "ned"), fresh, None).await.unwrap();
    assert_eq!(ned, Claim::Granted { in_doubt: None });
    // Another client id is another key.
    let other = db
        .claim(&me, &key("d", "ann"), rules(12_000), None)
        .await
        .unwrap();
    assert_eq!(other, Claim::Granted { in_doubt: None });
}

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("ledger.db")).expect("open")
}

#[tokio::test]
async fn claim_send_then_cooldown_until_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    let c = db
        .claim(&me, &key("c", "alice"), rules(10_000), None)
        .await
        .unwrap();
    assert_eq!(c, Claim::Granted { in_doubt: None });
    // The same run asking again while the call is out: held, not granted twice.
    let again = db
        .claim(&me, &key("c", "alice"), rules(10_001), None)
        .await
        .unwrap();
    assert_eq!(
        again,
        Claim::Held {
            run: me.0.clone(),
            beats: 0,
            lease: Some(Duration::from_secs(30)),
        }
    );
    db.finish(&me, &key("c", "alice"), Finish::Sent, None, 10_002)
        .await
        .unwrap();
    let c = db
        .claim(&me, &key("c", "alice"), rules(10_500), None)
        .await
        .unwrap();
    assert_eq!(c, Claim::Cooldown { last_sent: 10_002 });
    assert_eq!(
        db.peek(&key("c", "alice"), rules(10_500)).await.unwrap(),
        Some(Claim::Cooldown { last_sent: 10_002 })
    );
    // Another client id is another key.
    let other = db
        .claim(&me, &key("d", "alice"), rules(10_500), None)
        .await
        .unwrap();
    assert_eq!(other, Claim::Granted { in_doubt: None });
    // Past the cooldown: granted again.
    let later = db
        .claim(&me, &key("c", "alice"), rules(11_100), None)
        .await
        .unwrap();
    assert_eq!(later, Claim::Granted { in_doubt: None });
}

#[tokio::test]
async fn a_claim_of_a_dead_run_is_taken_over_as_in_doubt() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let dead = RunId::new();
    db.begin_run(&dead, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    db.claim(&dead, &key("c", "bob"), rules(10_000), None)
        .await
        .unwrap();
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_050)
        .await
        .unwrap();
    // Its heartbeat is fresh: held.
    let held = db
        .claim(&me, &key("c", "bob"), rules(10_050), None)
        .await
        .unwrap();
    assert_eq!(
        held,
        Claim::Held {
            run: dead.0.clone(),
            beats: 0,
            lease: Some(Duration::from_secs(30)),
        }
    );
    // A counter judged standing still, but it moved since: still held.
    db.heartbeat(&dead, 10_060).await.unwrap();
    let stale = Stale {
        run: dead.0.clone(),
        beats: 0,
    };
    let moved = db
        .claim(&me, &key("c", "bob"), rules(10_070), Some(&stale))
        .await;
    assert!(matches!(moved.unwrap(), Claim::Held { beats: 1, .. }));
    // Judged standing still at the counter it has: in doubt, and ours now.
    let stale = Stale {
        run: dead.0.clone(),
        beats: 1,
    };
    let taken = db
        .claim(&me, &key("c", "bob"), rules(10_200), Some(&stale))
        .await
        .unwrap();
    assert_eq!(
        taken,
        Claim::Granted {
            in_doubt: Some(InDoubt {
                run: dead.0.clone(),
                claimed_at: 10_000
            })
        }
    );
    let s = db.stats(rules(10_200)).await.unwrap();
    assert_eq!((s.claims_live, s.claims_in_doubt), (0, 1), "{s:?}");
}

#[tokio::test]
async fn a_run_that_ended_leaves_its_claims_in_doubt_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let first = RunId::new();
    db.begin_run(&first, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    db.claim(&first, &key("c", "carol"), rules(10_000), None)
        .await
        .unwrap();
    db.end_run(&first, 10_010).await.unwrap();
    let me = RunId::new();
    let c = db
        .claim(&me, &key("c", "carol"), rules(10_020), None)
        .await
        .unwrap();
    assert!(matches!(c, Claim::Granted { in_doubt: Some(_) }), "{c:?}");
}

#[tokio::test]
async fn a_released_takeover_keeps_its_in_doubt_mark_until_a_result_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let dead = RunId::new();
    db.begin_run(&dead, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    db.claim(&dead, &key("c", "fay"), rules(10_000), None)
        .await
        .unwrap();
    db.end_run(&dead, 10_001).await.unwrap();
    let doubt = Claim::Granted {
        in_doubt: Some(InDoubt {
            run: dead.0.clone(),
            claimed_at: 10_000,
        }),
    };
    // A second run takes the claim over, then is stopped before its call (SIGTERM).
    let second = RunId::new();
    db.begin_run(&second, "test", Duration::from_secs(30), 10_010)
        .await
        .unwrap();
    let c = db
        .claim(&second, &key("c", "fay"), rules(10_010), None)
        .await
        .unwrap();
    assert_eq!(c, doubt);
    db.finish(&second, &key("c", "fay"), Finish::Release, None, 10_011)
        .await
        .unwrap();
    let s = db.stats(rules(10_012)).await.unwrap();
    assert_eq!((s.claims_in_doubt, s.doubt_marks), (0, 1), "{s:?}");
    // The third run is told the user is in doubt, the dead run named.
    let third = RunId::new();
    db.begin_run(&third, "test", Duration::from_secs(30), 10_020)
        .await
        .unwrap();
    let c = db
        .claim(&third, &key("c", "fay"), rules(10_020), None)
        .await
        .unwrap();
    assert_eq!(c, doubt);
    // A definite answer recorded: the mark goes.
    db.finish(
        &third,
        &key("c", "fay"),
        Finish::NotSent("failed"),
        None,
        10_021,
    )
    .await
    .unwrap();
    let c = db
        .claim(&third, &key("c", "fay"), rules(10_022), None)
        .await
        .unwrap();
    assert_eq!(c, Claim::Granted { in_doubt: None });
    let s = db.stats(rules(10_023)).await.unwrap();
    assert_eq!(s.doubt_marks, 0, "{s:?}");
}

#[tokio::test]
async fn a_version_1_file_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (client_id TEXT NOT NULL, username TEXT NOT NULL,
                sends INTEGER NOT NULL DEFAULT 0, last_sent_at INTEGER, last_outcome TEXT,
                last_outcome_at INTEGER, claim_run TEXT, claimed_at INTEGER,
                PRIMARY KEY (client_id, username)) WITHOUT ROWID;
             CREATE TABLE runs (run TEXT PRIMARY KEY, command TEXT NOT NULL,
                host TEXT NOT NULL, started_at INTEGER NOT NULL,
                heartbeat_at INTEGER NOT NULL, finished_at INTEGER);
             INSERT INTO users (client_id, username, sends, last_sent_at, last_outcome)
                VALUES ('c', 'old', 1, 10000, 'sent');
             INSERT INTO runs VALUES ('r1', 'backfill', 'h', 1, 1, NULL);
             INSERT INTO users (client_id, username, claim_run, claimed_at)
                VALUES ('c', 'held', 'r1', 5);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let db = SqliteStore::open(&path).expect("migrates");
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_100)
        .await
        .unwrap();
    let c = db
        .claim(&me, &key("c", "old"), rules(10_100), None)
        .await
        .unwrap();
    assert_eq!(c, Claim::Cooldown { last_sent: 10_000 });
    // The old run's claim: held at counter 0, taken over once judged standing still.
    let c = db
        .claim(&me, &key("c", "held"), rules(10_100), None)
        .await
        .unwrap();
    assert_eq!(
        c,
        // A run of the old file recorded no lease: judged by the reader's.
        Claim::Held {
            run: "r1".into(),
            beats: 0,
            lease: None,
        }
    );
    drop(db);
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // Opening it again is a no-op.
    SqliteStore::open(&path).expect("reopens");
}

#[tokio::test]
async fn a_version_2_file_is_migrated_and_counts_sends_per_wave_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (client_id TEXT NOT NULL, username TEXT NOT NULL,
                sends INTEGER NOT NULL DEFAULT 0, last_sent_at INTEGER, last_outcome TEXT,
                last_outcome_at INTEGER, claim_run TEXT, claimed_at INTEGER,
                doubt_run TEXT, doubt_at INTEGER,
                PRIMARY KEY (client_id, username)) WITHOUT ROWID;
             CREATE TABLE runs (run TEXT PRIMARY KEY, command TEXT NOT NULL,
                host TEXT NOT NULL, started_at INTEGER NOT NULL,
                heartbeat_at INTEGER NOT NULL, finished_at INTEGER,
                beats INTEGER NOT NULL DEFAULT 0);
             INSERT INTO users (client_id, username, sends, last_sent_at, last_outcome)
                VALUES ('c', 'old', 2, 1000, 'sent');
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let db = SqliteStore::open(&path).expect("migrates");
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    let capped = Rules {
        max_sends_per_user: Some(2),
        ..rules(10_000)
    };
    // The codes sent before the upgrade count toward the cap.
    let c = db.claim(&me, &key("c", "old"), capped, None).await.unwrap();
    assert_eq!(c, Claim::Capped { sends: 2 });
    assert_eq!(
        db.peek(&key("c", "old"), capped).await.unwrap(),
        Some(Claim::Capped { sends: 2 })
    );
    db.claim(&me, &key("c", "new"), capped, None).await.unwrap();
    db.finish(&me, &key("c", "new"), Finish::Sent, Some("day-3"), 10_001)
        .await
        .unwrap();
    let s = db.stats(capped).await.unwrap();
    assert_eq!(s.sends, 3);
    assert_eq!(s.sends_per_wave, [("day-3".to_owned(), 1)].into());
    assert_eq!(s.users_capped, Some(1));
    let (rows, _) = db.export_page(None, 10).await.unwrap();
    let new = rows.iter().find(|r| r.username == "new").unwrap();
    assert_eq!(new.waves, [("day-3".to_owned(), 1)].into());
    assert!(
        rows.iter()
            .find(|r| r.username == "old")
            .unwrap()
            .waves
            .is_empty()
    );
    drop(db);
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

/// A file as version 3 wrote it, the keys as the rows spelled them: three spellings of
/// one person of client `c` (sends, sends per wave, outcomes, two in-doubt marks, two claims
/// of runs that ended), two spellings of a name whose capital Rust folds and SQLite's
/// `lower()` does not, a lower-case user, and another client's `Alice`.
fn version_3_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE users (client_id TEXT NOT NULL, username TEXT NOT NULL,
            sends INTEGER NOT NULL DEFAULT 0, last_sent_at INTEGER, last_outcome TEXT,
            last_outcome_at INTEGER, claim_run TEXT, claimed_at INTEGER,
            doubt_run TEXT, doubt_at INTEGER,
            PRIMARY KEY (client_id, username)) WITHOUT ROWID;
         CREATE INDEX users_claimed ON users (claim_run) WHERE claim_run IS NOT NULL;
         CREATE TABLE runs (run TEXT PRIMARY KEY, command TEXT NOT NULL,
            host TEXT NOT NULL, started_at INTEGER NOT NULL,
            heartbeat_at INTEGER NOT NULL, finished_at INTEGER,
            beats INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE user_waves (client_id TEXT NOT NULL, username TEXT NOT NULL,
            wave TEXT NOT NULL, sends INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (client_id, username, wave)) WITHOUT ROWID;
         INSERT INTO runs VALUES ('gone', 'backfill', 'h', 1, 9700, 9900, 3);
         INSERT INTO runs VALUES ('older', 'backfill', 'h', 1, 6000, 6100, 1);
         INSERT INTO users VALUES ('c', 'Alice', 2, 9000, 'sent', 9000, NULL, NULL,
            'dead1', 5000);
         INSERT INTO users VALUES ('c', 'alice', 1, 9500, 'failed', 9800, 'gone', 9700,
            NULL, NULL);
         INSERT INTO users VALUES ('c', 'ALICE', 3, 8000, 'sent', 8000, 'older', 6000,
            'dead0', 4000);
         INSERT INTO users VALUES ('c', 'ÉMILE', 1, 7000, 'sent', 7000, NULL, NULL,
            NULL, NULL);
         INSERT INTO users VALUES ('c', 'émile', 1, 7500, 'sent', 7500, NULL, NULL,
            NULL, NULL);
         INSERT INTO users VALUES ('c', 'carol', 1, 9100, 'sent', 9100, NULL, NULL,
            NULL, NULL);
         INSERT INTO users VALUES ('d', 'Alice', 1, 9200, 'sent', 9200, NULL, NULL,
            NULL, NULL);
         INSERT INTO user_waves VALUES ('c', 'Alice', 'w1', 1), ('c', 'Alice', 'w2', 1),
            ('c', 'alice', 'w2', 1), ('c', 'ALICE', 'w1', 2), ('c', 'carol', 'w1', 1),
            ('d', 'Alice', 'w1', 1);
         PRAGMA user_version = 3;",
    )
    .unwrap();
}

type UserLine = (
    String,
    String,
    i64,
    Option<Millis>,
    Option<String>,
    Option<Millis>,
    Option<String>,
    Option<Millis>,
    Option<String>,
    Option<Millis>,
);

type WaveLine = (String, String, String, i64);

/// Every user row and wave count of the file, in key order.
fn contents(path: &Path) -> (Vec<UserLine>, Vec<WaveLine>) {
    let conn = Connection::open(path).unwrap();
    let users = conn
        .prepare("SELECT * FROM users ORDER BY client_id, username")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let waves = conn
        .prepare("SELECT * FROM user_waves ORDER BY client_id, username, wave")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    (users, waves)
}

fn line(
    client_id: &str,
    username: &str,
    sends: i64,
    sent: Millis,
    outcome: (&str, Millis),
    claim: Option<(&str, Millis)>,
    doubt: Option<(&str, Millis)>,
) -> UserLine {
    (
        client_id.into(),
        username.into(),
        sends,
        Some(sent),
        Some(outcome.0.into()),
        Some(outcome.1),
        claim.map(|c| c.0.into()),
        claim.map(|c| c.1),
        doubt.map(|d| d.0.into()),
        doubt.map(|d| d.1),
    )
}

fn wave(client_id: &str, username: &str, wave: &str, n: i64) -> WaveLine {
    (client_id.into(), username.into(), wave.into(), n)
}

async fn open_as(path: &Path, case: crate::job::UsernameCase) -> Arc<dyn Store> {
    crate::ledger::open(
        &crate::ledger::StateSpec::Sqlite(path.to_owned()),
        &crate::ledger::dynamo::DynamoSettings::default(),
        case,
    )
    .await
    .expect("opens")
    .expect("a store")
}

#[tokio::test]
async fn a_version_3_file_opened_for_a_case_insensitive_pool_merges_each_persons_rows_once() {
    use crate::job::{UsernameCase, fold_username};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    version_3_file(&path);
    let before = contents(&path);

    // A case-sensitive pool's run: the schema moves to 4, the keys stay as they are.
    drop(open_as(&path, UsernameCase::Sensitive).await);
    assert_eq!(
        contents(&path),
        before,
        "never folded in a case-sensitive run"
    );
    let marker = |p: &Path| -> Option<String> {
        Connection::open(p)
            .unwrap()
            .query_row("SELECT value FROM meta WHERE name = 'keys'", [], |r| {
                r.get(0)
            })
            .optional()
            .unwrap()
    };
    assert_eq!(marker(&path), None);

    // The first fold: Alice and ALICE into c/alice, ÉMILE into c/émile, d's Alice into
    // d/alice.
    let db = SqliteStore::open(&path).unwrap();
    let folded = db.fold_usernames().await.unwrap();
    assert_eq!(folded, Folded { rows: 4, users: 3 });
    drop(db);
    let want_users = vec![
        // Sends 2+1+3; the latest send (alice's 9500); the latest outcome (alice's failed at
        // 9800); the newer claim (alice's, of `gone`), `older`'s claim not turned into a mark
        // since there is one; of the marks dead1@5000 and dead0@4000, the earlier.
        line(
            "c",
            "alice",
            6,
            9500,
            ("failed", 9800),
            Some(("gone", 9700)),
            Some(("dead0", 4000)),
        ),
        line("c", "carol", 1, 9100, ("sent", 9100), None, None),
        line("c", "émile", 2, 7500, ("sent", 7500), None, None),
        // Another client's Alice is another person: folded on its own, values as they were.
        line("d", "alice", 1, 9200, ("sent", 9200), None, None),
    ];
    let want_waves = vec![
        wave("c", "alice", "w1", 3),
        wave("c", "alice", "w2", 2),
        wave("c", "carol", "w1", 1),
        wave("d", "alice", "w1", 1),
    ];
    let after = contents(&path);
    assert_eq!(after, (want_users, want_waves));
    assert_eq!(marker(&path).as_deref(), Some("folded"));

    // Opened again (for either kind of pool): nothing changes.
    let store = open_as(&path, UsernameCase::Insensitive).await;
    assert_eq!(store.fold_usernames().await.unwrap(), Folded::default());
    drop(store);
    drop(open_as(&path, UsernameCase::Sensitive).await);
    assert_eq!(contents(&path), after, "idempotent");

    // A claim of any spelling's folded key finds the merged row's cooldown, and its cap.
    let store = open_as(&path, UsernameCase::Insensitive).await;
    let me = RunId::new();
    store
        .begin_run(&me, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    for spelling in ["Alice", "alice", "ALICE", "aLiCe"] {
        let folded = key("c", &fold_username(spelling));
        let c = store
            .claim(&me, &folded, rules(10_000), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Cooldown { last_sent: 9500 }, "{spelling}");
        let capped = Rules {
            max_sends_per_user: Some(6),
            ..rules(20_000)
        };
        assert_eq!(
            store.peek(&folded, capped).await.unwrap(),
            Some(Claim::Capped { sends: 6 }),
            "{spelling}"
        );
    }
    // Past the cooldown: the kept claim of a run that ended is taken over, in doubt.
    let c = store
        .claim(&me, &key("c", &fold_username("ALICE")), rules(20_000), None)
        .await
        .unwrap();
    assert_eq!(
        c,
        Claim::Granted {
            in_doubt: Some(InDoubt {
                run: "gone".into(),
                claimed_at: 9700
            })
        }
    );
    let s = store.stats(rules(20_000)).await.unwrap();
    assert_eq!((s.users, s.sends), (4, 10), "{s:?}");
    assert_eq!(
        s.sends_per_wave,
        [("w1".to_owned(), 5), ("w2".to_owned(), 2)].into()
    );
}

#[tokio::test]
async fn two_stores_folding_one_file_at_once_merge_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    version_3_file(&path);
    let (a, b) = (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    );
    let (x, y) = tokio::join!(a.fold_usernames(), b.fold_usernames());
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!((x.rows + y.rows, x.users + y.users), (4, 3), "{x:?} {y:?}");
    let s = a.stats(rules(20_000)).await.unwrap();
    assert_eq!((s.users, s.sends), (4, 10), "{s:?}");
}

#[tokio::test]
async fn two_stores_on_one_file_never_send_a_user_past_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (ra, rb) = (RunId::new(), RunId::new());
    a.begin_run(&ra, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    b.begin_run(&rb, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    // No cooldown: only the cap stops a third code.
    let zoe = key("c", "zoe");
    let no_cooldown = Rules {
        cooldown_since: Millis::MAX,
        max_sends_per_user: Some(3),
        ..rules(10_000)
    };
    let mut sent = 0;
    for round in 0..20 {
        let (x, y) = tokio::join!(
            a.claim(&ra, &zoe, no_cooldown, None),
            b.claim(&rb, &zoe, no_cooldown, None)
        );
        for (store, run, claim) in [(&a, &ra, x.unwrap()), (&b, &rb, y.unwrap())] {
            match claim {
                Claim::Granted { .. } => {
                    sent += 1;
                    store
                        .finish(
                            run,
                            &key("c", "zoe"),
                            Finish::Sent,
                            Some("w"),
                            10_000 + round,
                        )
                        .await
                        .unwrap();
                }
                Claim::Held { .. } => {}
                Claim::Capped { sends } => assert_eq!(sends, 3),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(sent, 3);
    let s = a.stats(no_cooldown).await.unwrap();
    assert_eq!((s.sends, s.users_capped), (3, Some(1)));
    assert_eq!(s.sends_per_wave, [("w".to_owned(), 3)].into());
}

#[tokio::test]
async fn release_and_not_sent_free_the_user_without_a_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let me = RunId::new();
    db.begin_run(&me, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    db.claim(&me, &key("c", "dan"), rules(10_000), None)
        .await
        .unwrap();
    db.finish(&me, &key("c", "dan"), Finish::Release, None, 10_001)
        .await
        .unwrap();
    db.claim(&me, &key("c", "erin"), rules(10_000), None)
        .await
        .unwrap();
    db.finish(
        &me,
        &key("c", "erin"),
        Finish::NotSent("failed"),
        None,
        10_001,
    )
    .await
    .unwrap();
    for user in ["dan", "erin"] {
        let c = db
            .claim(&me, &key("c", user), rules(10_002), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Granted { in_doubt: None }, "{user}");
    }
    let (rows, next) = db.export_page(None, 10).await.unwrap();
    assert!(next.is_none());
    let erin = rows.iter().find(|r| r.username == "erin").unwrap();
    assert_eq!(erin.last_outcome.as_deref(), Some("failed"));
    assert_eq!(erin.sends, 0);
}

#[tokio::test]
async fn reservations_stop_at_the_day_cap_and_what_was_not_sent_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let caps = DayCaps {
        sends: Some(3),
        ..DayCaps::default()
    };
    for _ in 0..3 {
        assert_eq!(
            db.reserve_send(&DayReservation::new("2030-01-01"), caps, None)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        db.reserve_send(&DayReservation::new("2030-01-01"), caps, None)
            .await
            .unwrap(),
        Some(SpendCap::Day)
    );
    // Another day has its own budget.
    assert_eq!(
        db.reserve_send(&DayReservation::new("2030-01-02"), caps, None)
            .await
            .unwrap(),
        None
    );
    // A reservation given back (nothing sent) can be taken again, once.
    db.settle_send(&DayReservation::new("2030-01-01"), Spent::Nothing)
        .await
        .unwrap();
    assert_eq!(
        db.reserve_send(&DayReservation::new("2030-01-01"), caps, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.reserve_send(&DayReservation::new("2030-01-01"), caps, None)
            .await
            .unwrap(),
        Some(SpendCap::Day)
    );
    db.settle_send(&DayReservation::new("2030-01-01"), Spent::Code(Medium::Sms))
        .await
        .unwrap();
    let day = db.day_spend("2030-01-01").await.unwrap();
    assert_eq!((day.sends, day.sms, day.email), (3, 1, 0));
}

#[tokio::test]
async fn a_medium_cap_refuses_once_that_many_codes_went_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let caps = DayCaps {
        sms: Some(2),
        email: Some(5),
        ..DayCaps::default()
    };
    let day = "2030-01-01";
    // Two SMS codes in flight and a third reservation: all granted while none is confirmed.
    for _ in 0..3 {
        assert_eq!(
            db.reserve_send(&DayReservation::new(day), caps, None)
                .await
                .unwrap(),
            None
        );
    }
    db.settle_send(&DayReservation::new(day), Spent::Code(Medium::Sms))
        .await
        .unwrap();
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, None)
            .await
            .unwrap(),
        None
    );
    db.settle_send(&DayReservation::new(day), Spent::Code(Medium::Sms))
        .await
        .unwrap();
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, None)
            .await
            .unwrap(),
        Some(SpendCap::SmsDay)
    );
    assert_eq!(db.day_spend("2030-01-09").await.unwrap().sends, 0);
}

#[tokio::test]
async fn a_medium_known_ahead_is_reserved_exactly_and_settles_back_or_moves() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let caps = DayCaps {
        sms: Some(2),
        email: Some(1),
        ..DayCaps::default()
    };
    let day = "2030-01-01";
    let sms = Some(Medium::Sms);
    // Two SMS reservations in flight, none answered yet: the third is refused already.
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, sms)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, sms)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, sms)
            .await
            .unwrap(),
        Some(SpendCap::SmsDay)
    );
    // The SMS cap does not concern an email code.
    let email = Some(Medium::Email);
    assert_eq!(
        db.reserve_send(&DayReservation::new(day), caps, email)
            .await
            .unwrap(),
        None
    );
    // One SMS sent nothing: both counts come back, and an SMS fits again.
    db.settle_send(&DayReservation::new(day), Spent::NothingOf(Medium::Sms))
        .await
        .unwrap();
    let spend = db.day_spend(day).await.unwrap();
    assert_eq!((spend.sends, spend.sms, spend.email), (2, 1, 1));
    // An SMS reservation Cognito sent by email moves its count.
    db.settle_send(
        &DayReservation::new(day),
        Spent::Moved {
            reserved: Medium::Sms,
            sent: Medium::Email,
        },
    )
    .await
    .unwrap();
    let spend = db.day_spend(day).await.unwrap();
    assert_eq!((spend.sends, spend.sms, spend.email), (2, 0, 2));
}

#[tokio::test]
async fn two_stores_on_one_file_never_grant_past_the_cap_together() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir).await;
    let b = store(&dir).await;
    let caps = DayCaps {
        sends: Some(150),
        ..DayCaps::default()
    };
    let mut granted = 0;
    for _ in 0..100 {
        let (ra, rb) = (
            DayReservation::new("2030-01-01"),
            DayReservation::new("2030-01-01"),
        );
        let (x, y) = tokio::join!(
            a.reserve_send(&ra, caps, None),
            b.reserve_send(&rb, caps, None)
        );
        granted += [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|r| r.is_none())
            .count();
    }
    assert_eq!(granted, 150);
    assert_eq!(a.day_spend("2030-01-01").await.unwrap().sends, 150);
}

#[tokio::test]
async fn two_stores_on_one_file_never_both_get_a_claim() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (ra, rb) = (RunId::new(), RunId::new());
    a.begin_run(&ra, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    b.begin_run(&rb, "test", Duration::from_secs(30), 10_000)
        .await
        .unwrap();
    let mut granted = 0;
    for i in 0..200 {
        let user = key("c", &format!("user{i}"));
        let (x, y) = tokio::join!(
            a.claim(&ra, &user, rules(10_010), None),
            b.claim(&rb, &user, rules(10_010), None)
        );
        let grants = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|c| matches!(c, Claim::Granted { .. }))
            .count();
        assert_eq!(grants, 1, "{user}");
        granted += grants;
    }
    assert_eq!(granted, 200);
}

#[tokio::test]
async fn export_pages_through_every_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(&dir).await;
    let me = RunId::new();
    for i in 0..25 {
        let u = format!("u{i:02}");
        db.claim(&me, &key("c", &u), rules(10_000), None)
            .await
            .unwrap();
        db.finish(&me, &key("c", &u), Finish::Sent, None, 10_000)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (rows, next) = db.export_page(cursor, 10).await.unwrap();
        seen.extend(rows.into_iter().map(|r| r.username));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("u{i:02}")).collect();
    assert_eq!(seen, want);
}

#[test]
fn an_unwritable_path_names_the_file() {
    let err = SqliteStore::open(Path::new("/nonexistent-dir/x/ledger.db"))
        .err()
        .expect("cannot open");
    let text = err.to_string();
    assert!(text.contains("/nonexistent-dir/x/ledger.db"), "{text}");
    assert!(text.contains("cannot create it"), "{text}");
}
