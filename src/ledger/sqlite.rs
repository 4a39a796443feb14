//! The embedded ledger: one SQLite file (WAL, `synchronous=FULL`).
//!
//! Every operation goes to one writer thread, which takes whatever has queued up, runs it in
//! one `BEGIN IMMEDIATE` transaction and commits once: one fsync for a group of claims and
//! results instead of one each (group commit), which is what lets a durable ledger keep up with
//! thousands of calls a second. Replies are sent only after the commit, so nobody acts on a
//! write that is not on disk. Other processes may open the same file: SQLite's write lock
//! (with a busy timeout) serialises their transactions with ours.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::job::{UserKey, fold_username};

use super::fleet;
use super::fold::{Folded, Hold, Row, merge};
use super::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, Holder, InDoubt, LedgerError, Medium, Millis,
    Page, Rules, RunId, RunLiveness, RunRow, SpendCap, Spent, Stale, Stats, Store, UserRow, decide,
    host_label, plan, refused_by, rfc3339,
};

/// Most operations one transaction takes.
const GROUP_MAX: usize = 512;
/// How long a transaction waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema this build writes (`PRAGMA user_version`). 1: the first. 2: `runs.beats` (the
/// heartbeat counter liveness is judged by) and `users.doubt_run`/`doubt_at` (the in-doubt mark
/// that survives a release). 3: `user_waves`, each user's codes per `--wave` (an older build
/// would send without counting them). 4: `meta`, where the marker that the keys are folded
/// lives (see [`super::fold`]; written only when a run opens the ledger for a case-insensitive
/// pool). An older build keys users by the row's spelling: in a folded ledger it would miss the
/// folded rows (a second code) and add rows of other spellings no fold would ever merge, so it
/// must not open a file this build has opened.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    client_id       TEXT    NOT NULL,
    username        TEXT    NOT NULL,
    sends           INTEGER NOT NULL DEFAULT 0,
    last_sent_at    INTEGER,
    last_outcome    TEXT,
    last_outcome_at INTEGER,
    claim_run       TEXT,
    claimed_at      INTEGER,
    doubt_run       TEXT,
    doubt_at        INTEGER,
    PRIMARY KEY (client_id, username)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS users_claimed ON users (claim_run) WHERE claim_run IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    run          TEXT    PRIMARY KEY,
    command      TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    finished_at  INTEGER,
    beats        INTEGER NOT NULL DEFAULT 0,
    lease_ms     INTEGER
);
CREATE TABLE IF NOT EXISTS user_waves (
    client_id TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    wave      TEXT    NOT NULL,
    sends     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, username, wave)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// From version 1 to 2: files written by earlier builds keep working, rows and all.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE users ADD COLUMN doubt_run TEXT;
ALTER TABLE users ADD COLUMN doubt_at INTEGER;
ALTER TABLE runs ADD COLUMN beats INTEGER NOT NULL DEFAULT 0;
";

/// From version 2 to 3: the codes of each user per wave (sends before it had no wave).
const MIGRATE_2_TO_3: &str = "
CREATE TABLE IF NOT EXISTS user_waves (
    client_id TEXT    NOT NULL,
    username  TEXT    NOT NULL,
    wave      TEXT    NOT NULL,
    sends     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, username, wave)
) WITHOUT ROWID;
";

/// From version 3 to 4: the ledger's markers (`keys` = `folded`: the usernames are folded).
const MIGRATE_3_TO_4: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// The marker in `meta` that the keys are folded: its name, and its value.
const FOLDED_MARKER: (&str, &str) = ("keys", "folded");

/// The spend counters of each UTC day (`--max-sends-per-day` and the per-medium caps), and the
/// fleet's counters (the throttles its runs counted, `--fleet-rate`). Created on open if
/// missing, without a schema version of their own: older builds never read them.
const SPEND_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spend (
    day   TEXT    PRIMARY KEY,
    sends INTEGER NOT NULL DEFAULT 0,
    sms   INTEGER NOT NULL DEFAULT 0,
    email INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// `runs.lease_ms`, each run's `--claim-lease`, by which other runs judge its claims. Added on
/// open to a file that lacks it, without a schema version of its own: an older build still opens
/// the file and writes runs without it, and their claims are judged by the reader's lease, as
/// that build did.
fn add_run_lease(db: &Connection) -> rusqlite::Result<()> {
    let has: bool = db.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('runs') WHERE name = 'lease_ms'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        db.execute_batch("ALTER TABLE runs ADD COLUMN lease_ms INTEGER")?;
    }
    Ok(())
}

/// Creates or upgrades the schema, in one write transaction (another process may be opening
/// the same file at the same moment).
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let txn = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("cannot write it: {e}"))?;
    let version: i64 = txn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read it: {e}"))?;
    match version {
        0 => txn.execute_batch(SCHEMA),
        1 => txn
            .execute_batch(MIGRATE_1_TO_2)
            .and_then(|()| txn.execute_batch(MIGRATE_2_TO_3))
            .and_then(|()| txn.execute_batch(MIGRATE_3_TO_4)),
        2 => txn
            .execute_batch(MIGRATE_2_TO_3)
            .and_then(|()| txn.execute_batch(MIGRATE_3_TO_4)),
        3 => txn.execute_batch(MIGRATE_3_TO_4),
        SCHEMA_VERSION => Ok(()),
        newer => {
            return Err(format!(
                "it was written by a newer cognito-resend (schema {newer}; this one knows up to \
                 {SCHEMA_VERSION})"
            ));
        }
    }
    .and_then(|()| txn.execute_batch(SPEND_SCHEMA))
    .and_then(|()| add_run_lease(&txn))
    .and_then(|()| txn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")))
    .and_then(|()| txn.commit())
    .map_err(|e| format!("cannot write it: {e}"))
}

/// What the writer thread is asked to do.
enum Op {
    BeginRun {
        run: String,
        command: String,
        lease: Millis,
        now: Millis,
    },
    Heartbeat {
        run: String,
        now: Millis,
    },
    EndRun {
        run: String,
        now: Millis,
    },
    Claim {
        run: String,
        client_id: String,
        username: String,
        rules: Rules,
        take_over: Option<Stale>,
    },
    Peek {
        client_id: String,
        username: String,
        rules: Rules,
    },
    Finish {
        run: String,
        client_id: String,
        username: String,
        how: Finish,
        wave: Option<String>,
        now: Millis,
    },
    Stats {
        rules: Rules,
    },
    Export {
        after: Option<(String, String)>,
        limit: u32,
    },
    Reserve {
        day: String,
        caps: DayCaps,
        medium: Option<Medium>,
    },
    Settle {
        day: String,
        spent: Spent,
    },
    DaySpend {
        day: String,
    },
    Census {
        throttles: u64,
    },
    FoldUsernames,
    Forget {
        keys: Vec<(String, String)>,
    },
    Prune {
        before: Millis,
    },
}

/// What it answers.
enum Reply {
    Done,
    Claim(Claim),
    Peek(Option<Claim>),
    Stats(Stats),
    Export(Vec<UserRow>),
    Reserved(Option<SpendCap>),
    DaySpend(DaySpend),
    Census(fleet::Listing),
    Folded(Folded),
    Removed(u64),
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, String>>,
}

/// A SQLite ledger file.
pub struct SqliteStore {
    path: PathBuf,
    tx: mpsc::Sender<Request>,
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let fail = |detail: String| LedgerError {
            state: path.display().to_string(),
            detail,
        };
        // The ledger names users: readable by its owner only. SQLite creates the file with
        // 0644 (less the umask) and gives `-wal` and `-shm` the database file's mode, so the
        // file is created 0600 here, before SQLite opens it. An existing file keeps its mode.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(|e| fail(format!("cannot create it: {e}")))?;
        }
        let mut conn = Connection::open(path).map_err(|e| fail(format!("cannot open it: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(e.to_string()))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| fail(format!("cannot write it: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!(
                "SQLite refused WAL mode (got {mode}); is the file on a network filesystem?"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| fail(format!("cannot write it: {e}")))?;
        migrate(&mut conn).map_err(fail)?;
        let (tx, rx) = mpsc::channel();
        let described = path.display().to_string();
        std::thread::Builder::new()
            .name("ledger-sqlite".into())
            .spawn(move || writer(conn, rx, &described))
            .map_err(|e| fail(format!("cannot start its thread: {e}")))?;
        Ok(Self {
            path: path.to_owned(),
            tx,
        })
    }

    async fn ask(&self, op: Op) -> Result<Reply, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let fail = |detail: String| LedgerError {
            state: self.describe(),
            detail,
        };
        self.tx
            .send(Request { op, reply })
            .map_err(|_| fail("its writer thread has stopped".into()))?;
        answer
            .await
            .map_err(|_| fail("its writer thread has stopped".into()))?
            .map_err(fail)
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn begin_run<'a>(
        &'a self,
        run: &'a RunId,
        command: &'a str,
        lease: Duration,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.ask(Op::BeginRun {
                run: run.0.clone(),
                command: command.to_owned(),
                lease: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
                now,
            })
            .await
            .map(drop)
        })
    }

    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.ask(Op::Heartbeat {
                run: run.0.clone(),
                now,
            })
            .await
            .map(drop)
        })
    }

    fn end_run<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.ask(Op::EndRun {
                run: run.0.clone(),
                now,
            })
            .await
            .map(drop)
        })
    }

    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        Box::pin(async move {
            match self
                .ask(Op::Claim {
                    run: run.0.clone(),
                    client_id: client_id.to_owned(),
                    username: username.to_owned(),
                    rules,
                    take_over: take_over.cloned(),
                })
                .await?
            {
                Reply::Claim(c) => Ok(c),
                _ => unreachable!("a claim is answered with a claim"),
            }
        })
    }

    fn peek<'a>(
        &'a self,
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>> {
        Box::pin(async move {
            match self
                .ask(Op::Peek {
                    client_id: client_id.to_owned(),
                    username: username.to_owned(),
                    rules,
                })
                .await?
            {
                Reply::Peek(p) => Ok(p),
                _ => unreachable!("a peek is answered with a peek"),
            }
        })
    }

    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        client_id: &'a str,
        username: &'a str,
        how: Finish,
        wave: Option<&'a str>,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.ask(Op::Finish {
                run: run.0.clone(),
                client_id: client_id.to_owned(),
                username: username.to_owned(),
                how,
                wave: wave.map(str::to_owned),
                now,
            })
            .await
            .map(drop)
        })
    }

    fn stats(&self, rules: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>> {
        Box::pin(async move {
            match self.ask(Op::Stats { rules }).await? {
                Reply::Stats(s) => Ok(s),
                _ => unreachable!("stats are answered with stats"),
            }
        })
    }

    fn export_page(
        &self,
        cursor: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, LedgerError>> {
        Box::pin(async move {
            let after =
                match cursor {
                    Some(c) => Some(serde_json::from_str::<(String, String)>(&c).map_err(|e| {
                        LedgerError {
                            state: self.describe(),
                            detail: format!("bad export cursor: {e}"),
                        }
                    })?),
                    None => None,
                };
            let rows = match self.ask(Op::Export { after, limit }).await? {
                Reply::Export(rows) => rows,
                _ => unreachable!("an export is answered with rows"),
            };
            let next = (rows.len() == limit as usize)
                .then(|| rows.last())
                .flatten()
                .map(|r| serde_json::json!([r.client_id, r.username]).to_string());
            Ok((rows, next))
        })
    }

    fn forget<'a>(&'a self, keys: &'a [UserKey]) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(async move {
            let keys = keys
                .iter()
                .map(|k| (k.client_id.clone(), k.username.clone()))
                .collect();
            match self.ask(Op::Forget { keys }).await? {
                Reply::Removed(n) => Ok(n),
                _ => unreachable!("an erasure is answered with a count"),
            }
        })
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(async move {
            match self.ask(Op::Prune { before }).await? {
                Reply::Removed(n) => Ok(n),
                _ => unreachable!("a prune is answered with a count"),
            }
        })
    }

    // A reservation's token is not written here: the writer answers each request once, in
    // process, after its commit, and nothing sends a reservation or a settlement again, so
    // neither can count twice (unlike a DynamoDB write whose answer was lost).
    fn reserve_send<'a>(
        &'a self,
        r: &'a DayReservation,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> BoxFuture<'a, Result<Option<SpendCap>, LedgerError>> {
        Box::pin(async move {
            match self
                .ask(Op::Reserve {
                    day: r.day.clone(),
                    caps,
                    medium,
                })
                .await?
            {
                Reply::Reserved(r) => Ok(r),
                _ => unreachable!("a reservation is answered with a reservation"),
            }
        })
    }

    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            // Nothing to write: the counters already hold what a kept reservation counts.
            if let Spent::Kept = spent {
                return Ok(());
            }
            self.ask(Op::Settle {
                day: r.day.clone(),
                spent,
            })
            .await
            .map(drop)
        })
    }

    fn day_spend<'a>(&'a self, day: &'a str) -> BoxFuture<'a, Result<DaySpend, LedgerError>> {
        Box::pin(async move {
            match self
                .ask(Op::DaySpend {
                    day: day.to_owned(),
                })
                .await?
            {
                Reply::DaySpend(d) => Ok(d),
                _ => unreachable!("a day's spend is answered with one"),
            }
        })
    }

    fn census<'a>(
        &'a self,
        _run: &'a RunId,
        _lease: Duration,
        _dead: &'a [String],
        throttles: u64,
    ) -> BoxFuture<'a, Result<fleet::Listing, LedgerError>> {
        Box::pin(self.census_rows(throttles))
    }

    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        Box::pin(async move {
            match self.ask(Op::FoldUsernames).await? {
                Reply::Folded(f) => Ok(f),
                _ => unreachable!("a fold is answered with what it folded"),
            }
        })
    }
}

// (continued) the fleet census: the `runs` table already holds every run's heartbeat counter.
impl SqliteStore {
    /// [`Store::census`]: the unfinished runs and their counters, and the fleet's throttle total
    /// after adding `throttles`. Nothing else to write (the heartbeat bumped this run's counter)
    /// and nothing to prune: a run that died keeps its row, and each run judges it by its
    /// counter.
    async fn census_rows(&self, throttles: u64) -> Result<fleet::Listing, LedgerError> {
        match self.ask(Op::Census { throttles }).await? {
            Reply::Census(listing) => Ok(listing),
            _ => unreachable!("a census is answered with runs"),
        }
    }
}

/// The writer thread: group commit until every sender is gone.
fn writer(mut conn: Connection, rx: mpsc::Receiver<Request>, described: &str) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let txn = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("cannot begin a transaction: {e}");
                for r in group {
                    let _ = r.reply.send(Err(detail.clone()));
                }
                continue;
            }
        };
        let answers: Vec<Result<Reply, String>> = group
            .iter()
            .map(|r| apply(&txn, &r.op).map_err(|e| e.to_string()))
            .collect();
        if let Err(e) = txn.commit() {
            tracing::error!("ledger {described}: commit failed: {e}");
            let detail = format!("commit failed: {e}");
            for r in group {
                let _ = r.reply.send(Err(detail.clone()));
            }
            continue;
        }
        for (r, a) in group.into_iter().zip(answers) {
            let _ = r.reply.send(a);
        }
    }
}

fn apply(db: &Connection, op: &Op) -> rusqlite::Result<Reply> {
    match op {
        Op::BeginRun {
            run,
            command,
            lease,
            now,
        } => {
            db.prepare_cached(
                "INSERT INTO runs (run, command, host, started_at, heartbeat_at, lease_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            )?
            .execute(params![run, command, host_label(), now, lease])?;
            Ok(Reply::Done)
        }
        Op::Heartbeat { run, now } => {
            db.prepare_cached(
                "UPDATE runs SET heartbeat_at = ?2, beats = beats + 1 WHERE run = ?1",
            )?
            .execute(params![run, now])?;
            Ok(Reply::Done)
        }
        Op::Census { throttles } => {
            // Each run's own lease (`runs.lease_ms`, absent for runs of older builds) judges it.
            let mut stmt = db.prepare_cached(
                "SELECT run, beats, lease_ms FROM runs WHERE finished_at IS NULL",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?))
                })?
                .collect::<rusqlite::Result<Vec<(String, i64, Option<i64>)>>>()?;
            let mut runs = Vec::with_capacity(rows.len());
            let mut leases = std::collections::HashMap::new();
            for (run, beats, lease_ms) in rows {
                if let Some(ms) = lease_ms.filter(|ms| *ms > 0) {
                    leases.insert(run.clone(), Duration::from_millis(ms as u64));
                }
                runs.push((run, beats));
            }
            // A write only when there is something to add: most censuses stay reads.
            let total: i64 = if *throttles > 0 {
                db.prepare_cached(
                    "INSERT INTO fleet (name, value) VALUES ('throttles', ?1)
                     ON CONFLICT (name) DO UPDATE SET value = value + ?1 RETURNING value",
                )?
                .query_row(params![*throttles as i64], |r| r.get(0))?
            } else {
                db.prepare_cached("SELECT value FROM fleet WHERE name = 'throttles'")?
                    .query_row([], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0)
            };
            Ok(Reply::Census(fleet::Listing {
                runs,
                leases,
                throttles: total.max(0) as u64,
            }))
        }
        Op::EndRun { run, now } => {
            db.prepare_cached(
                "UPDATE runs SET heartbeat_at = ?2, finished_at = ?2 WHERE run = ?1",
            )?
            .execute(params![run, now])?;
            Ok(Reply::Done)
        }
        Op::Claim {
            run,
            client_id,
            username,
            rules,
            take_over,
        } => {
            type Row = (
                Option<Millis>,
                Option<String>,
                Option<Millis>,
                Option<String>,
                Option<Millis>,
                i64,
            );
            let row: Option<Row> = db
                .prepare_cached(
                    "SELECT last_sent_at, claim_run, claimed_at, doubt_run, doubt_at, sends
                     FROM users WHERE client_id = ?1 AND username = ?2",
                )?
                .query_row(params![client_id, username], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?;
            let (last_sent, claim_run, claimed_at, doubt_run, doubt_at, sends) =
                row.unwrap_or_default();
            let holder = match claim_run.as_deref() {
                Some(h) => Some(Holder::of(h, claimed_at.unwrap_or(0), run_state(db, h)?)),
                None => None,
            };
            let mark = doubt_run.map(|run| InDoubt {
                run,
                claimed_at: doubt_at.unwrap_or(0),
            });
            let decision = decide(
                run,
                last_sent,
                sends,
                holder,
                mark,
                take_over.as_ref(),
                *rules,
            );
            if let Claim::Granted { in_doubt } = &decision {
                // A takeover leaves the mark (the dead run) in the row until a result is
                // recorded, so a release before the call does not forget the doubt.
                let (doubt_run, doubt_at) = match in_doubt {
                    Some(d) => (Some(d.run.as_str()), Some(d.claimed_at)),
                    None => (None, None),
                };
                db.prepare_cached(
                    "INSERT INTO users (client_id, username, claim_run, claimed_at, doubt_run,
                                        doubt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (client_id, username)
                     DO UPDATE SET claim_run = excluded.claim_run, claimed_at = excluded.claimed_at,
                        doubt_run = excluded.doubt_run, doubt_at = excluded.doubt_at",
                )?
                .execute(params![
                    client_id, username, run, rules.now, doubt_run, doubt_at
                ])?;
            }
            Ok(Reply::Claim(decision))
        }
        Op::Peek {
            client_id,
            username,
            rules,
        } => {
            let row: Option<(Option<Millis>, i64)> = db
                .prepare_cached(
                    "SELECT last_sent_at, sends FROM users WHERE client_id = ?1 AND username = ?2",
                )?
                .query_row(params![client_id, username], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (last_sent, sends) = row.unwrap_or_default();
            Ok(Reply::Peek(plan(last_sent, sends, *rules)))
        }
        Op::Finish {
            run,
            client_id,
            username,
            how,
            wave,
            now,
        } => {
            // In the same transaction as the send's count: a wave's count never disagrees.
            if let (Finish::Sent, Some(wave)) = (how, wave) {
                db.prepare_cached(
                    "INSERT INTO user_waves (client_id, username, wave, sends)
                     VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (client_id, username, wave) DO UPDATE SET sends = sends + 1",
                )?
                .execute(params![client_id, username, wave])?;
            }
            match how {
                Finish::Sent => db
                    .prepare_cached(
                        "INSERT INTO users (client_id, username, sends, last_sent_at, last_outcome,
                                        last_outcome_at)
                     VALUES (?1, ?2, 1, ?4, 'sent', ?4)
                     ON CONFLICT (client_id, username) DO UPDATE SET
                        sends = sends + 1, last_sent_at = ?4, last_outcome = 'sent',
                        last_outcome_at = ?4,
                        doubt_at = iif(claim_run = ?3, NULL, doubt_at),
                        doubt_run = iif(claim_run = ?3, NULL, doubt_run),
                        claimed_at = iif(claim_run = ?3, NULL, claimed_at),
                        claim_run = iif(claim_run = ?3, NULL, claim_run)",
                    )?
                    .execute(params![client_id, username, run, now])?,
                Finish::MaybeSent(outcome) => db
                    .prepare_cached(
                        "INSERT INTO users (client_id, username, last_sent_at, last_outcome,
                                        last_outcome_at)
                     VALUES (?1, ?2, ?4, ?5, ?4)
                     ON CONFLICT (client_id, username) DO UPDATE SET
                        last_sent_at = ?4, last_outcome = ?5, last_outcome_at = ?4,
                        doubt_at = iif(claim_run = ?3, NULL, doubt_at),
                        doubt_run = iif(claim_run = ?3, NULL, doubt_run),
                        claimed_at = iif(claim_run = ?3, NULL, claimed_at),
                        claim_run = iif(claim_run = ?3, NULL, claim_run)",
                    )?
                    .execute(params![client_id, username, run, now, outcome])?,
                Finish::NotSent(outcome) => db
                    .prepare_cached(
                        "UPDATE users SET last_outcome = ?4, last_outcome_at = ?5,
                        doubt_at = iif(claim_run = ?3, NULL, doubt_at),
                        doubt_run = iif(claim_run = ?3, NULL, doubt_run),
                        claimed_at = iif(claim_run = ?3, NULL, claimed_at),
                        claim_run = iif(claim_run = ?3, NULL, claim_run)
                     WHERE client_id = ?1 AND username = ?2",
                    )?
                    .execute(params![client_id, username, run, outcome, now])?,
                Finish::Release => {
                    // A row that exists only for this claim goes with it; an in-doubt mark stays.
                    db.prepare_cached(
                        "DELETE FROM users WHERE client_id = ?1 AND username = ?2
                         AND claim_run = ?3 AND sends = 0 AND last_outcome IS NULL
                         AND doubt_run IS NULL",
                    )?
                    .execute(params![client_id, username, run])?;
                    db.prepare_cached(
                        "UPDATE users SET claim_run = NULL, claimed_at = NULL
                         WHERE client_id = ?1 AND username = ?2 AND claim_run = ?3",
                    )?
                    .execute(params![client_id, username, run])?
                }
            };
            Ok(Reply::Done)
        }
        Op::Stats { rules } => stats(db, rules).map(Reply::Stats),
        // Read and write in the writer's one transaction (and under SQLite's write lock, which
        // other processes on the file wait for): no two reservations see the same count.
        Op::Reserve { day, caps, medium } => {
            let spend = day_spend(db, day)?;
            let refused = refused_by(&spend, *caps, *medium);
            if refused.is_none() {
                let (sms, email) = match medium {
                    Some(Medium::Sms) => (1, 0),
                    Some(Medium::Email) => (0, 1),
                    None => (0, 0),
                };
                db.prepare_cached(
                    "INSERT INTO spend (day, sends, sms, email) VALUES (?1, 1, ?2, ?3)
                     ON CONFLICT (day) DO UPDATE SET sends = sends + 1, sms = sms + ?2,
                     email = email + ?3",
                )?
                .execute(params![day, sms, email])?;
            }
            Ok(Reply::Reserved(refused))
        }
        Op::Settle { day, spent } => {
            let sql = match spent {
                Spent::Nothing => "UPDATE spend SET sends = max(sends - 1, 0) WHERE day = ?1",
                Spent::Code(Medium::Sms) => "UPDATE spend SET sms = sms + 1 WHERE day = ?1",
                Spent::Code(Medium::Email) => "UPDATE spend SET email = email + 1 WHERE day = ?1",
                Spent::NothingOf(Medium::Sms) => {
                    "UPDATE spend SET sends = max(sends - 1, 0), sms = max(sms - 1, 0) WHERE day = ?1"
                }
                Spent::NothingOf(Medium::Email) => {
                    "UPDATE spend SET sends = max(sends - 1, 0), email = max(email - 1, 0)
                     WHERE day = ?1"
                }
                Spent::Moved {
                    reserved: Medium::Sms,
                    sent: Medium::Email,
                } => "UPDATE spend SET sms = max(sms - 1, 0), email = email + 1 WHERE day = ?1",
                Spent::Moved {
                    reserved: Medium::Email,
                    sent: Medium::Sms,
                } => "UPDATE spend SET email = max(email - 1, 0), sms = sms + 1 WHERE day = ?1",
                // Reserved and sent by the same medium: the reservation already counted it.
                Spent::Moved { .. } | Spent::Kept => return Ok(Reply::Done),
            };
            db.prepare_cached(sql)?.execute(params![day])?;
            Ok(Reply::Done)
        }
        Op::DaySpend { day } => day_spend(db, day).map(Reply::DaySpend),
        // In the writer's transaction (BEGIN IMMEDIATE: other processes on the file wait, and
        // the first to fold writes the marker the others then find), inside a savepoint so that
        // a failure leaves nothing half merged while the group's other operations commit.
        Op::FoldUsernames => {
            db.execute_batch("SAVEPOINT fold")?;
            match fold_usernames(db) {
                Ok(folded) => {
                    db.execute_batch("RELEASE fold")?;
                    Ok(Reply::Folded(folded))
                }
                Err(e) => {
                    let _ = db.execute_batch("ROLLBACK TO fold; RELEASE fold");
                    Err(e)
                }
            }
        }
        // Both inside the writer's transaction; a retry after a failure deletes the rest.
        Op::Forget { keys } => {
            let txn = db;
            let mut removed = 0;
            for (client_id, username) in keys {
                removed += txn.execute(
                    "DELETE FROM users WHERE client_id = ?1 AND username = ?2",
                    params![client_id, username],
                )? as u64;
                txn.execute(
                    "DELETE FROM user_waves WHERE client_id = ?1 AND username = ?2",
                    params![client_id, username],
                )?;
            }
            Ok(Reply::Removed(removed))
        }
        Op::Prune { before } => {
            let txn = db;
            // The latest thing written to a row; a row with a claim is never pruned.
            let idle = "claim_run IS NOT NULL
                OR COALESCE(last_sent_at, 0) >= ?1 OR COALESCE(last_outcome_at, 0) >= ?1
                OR COALESCE(claimed_at, 0) >= ?1 OR COALESCE(doubt_at, 0) >= ?1";
            txn.execute(
                &format!(
                    "DELETE FROM user_waves WHERE (client_id, username) IN
                     (SELECT client_id, username FROM users WHERE NOT ({idle}))"
                ),
                params![before],
            )?;
            let removed = txn.execute(
                &format!("DELETE FROM users WHERE NOT ({idle})"),
                params![before],
            )? as u64;
            Ok(Reply::Removed(removed))
        }
        Op::Export { after, limit } => {
            let (c, u) = after.clone().unwrap_or_default();
            let mut stmt = db.prepare_cached(
                "SELECT client_id, username, sends, last_sent_at, last_outcome, last_outcome_at,
                        claim_run
                 FROM users WHERE (client_id, username) > (?1, ?2)
                 ORDER BY client_id, username LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![c, u, limit], |r| {
                    Ok(UserRow {
                        client_id: r.get(0)?,
                        username: r.get(1)?,
                        sends: r.get(2)?,
                        last_sent_at: r.get::<_, Option<Millis>>(3)?.map(rfc3339),
                        last_outcome: r.get(4)?,
                        last_outcome_at: r.get::<_, Option<Millis>>(5)?.map(rfc3339),
                        claimed_by: r.get(6)?,
                        waves: Default::default(),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut rows = rows;
            let mut waves = db.prepare_cached(
                "SELECT wave, sends FROM user_waves WHERE client_id = ?1 AND username = ?2",
            )?;
            for row in &mut rows {
                row.waves = waves
                    .query_map(params![row.client_id, row.username], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(Reply::Export(rows))
        }
    }
}

/// [`Store::fold_usernames`] inside the caller's transaction: nothing if the marker is there;
/// else merges each row whose username is not folded (by Rust's [`fold_username`], not
/// SQLite's ASCII-only `lower()`) into its folded key's row, with its waves, and writes the
/// marker.
fn fold_usernames(db: &Connection) -> rusqlite::Result<Folded> {
    let (marker, folded_value) = FOLDED_MARKER;
    let done: Option<String> = db
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row(params![marker], |r| r.get(0))
        .optional()?;
    if done.as_deref() == Some(folded_value) {
        return Ok(Folded::default());
    }
    // Every key, once: the fold needs Rust's lower-case mapping, so the scan cannot be a query.
    let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    {
        let mut stmt = db.prepare("SELECT client_id, username FROM users")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (client_id, username): (String, String) = (r.get(0)?, r.get(1)?);
            let key = fold_username(&username);
            if key != username {
                groups.entry((client_id, key)).or_default().push(username);
            }
        }
    }
    let mut folded = Folded::default();
    for ((client_id, key), spellings) in groups {
        let mut merged = read_row(db, &client_id, &key)?.unwrap_or_default();
        // In a fixed order (the keys' order), so the merge does not depend on the scan's.
        for username in &spellings {
            if let Some(row) = read_row(db, &client_id, username)? {
                merged = merge(merged, row);
            }
            db.prepare_cached("DELETE FROM users WHERE client_id = ?1 AND username = ?2")?
                .execute(params![client_id, username])?;
            db.prepare_cached("DELETE FROM user_waves WHERE client_id = ?1 AND username = ?2")?
                .execute(params![client_id, username])?;
        }
        write_row(db, &client_id, &key, &merged)?;
        folded.rows += spellings.len() as u64;
        folded.users += 1;
    }
    db.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![marker, folded_value])?;
    Ok(folded)
}

/// A user's row and its waves, as the fold merges them.
fn read_row(db: &Connection, client_id: &str, username: &str) -> rusqlite::Result<Option<Row>> {
    let row = db
        .prepare_cached(
            "SELECT sends, last_sent_at, last_outcome, last_outcome_at, claim_run, claimed_at,
                    doubt_run, doubt_at
             FROM users WHERE client_id = ?1 AND username = ?2",
        )?
        .query_row(params![client_id, username], |r| {
            Ok(Row {
                sends: r.get(0)?,
                last_sent_at: r.get(1)?,
                last_outcome: r.get(2)?,
                last_outcome_at: r.get(3)?,
                claim: r
                    .get::<_, Option<String>>(4)?
                    .map(|run| {
                        Ok::<_, rusqlite::Error>(Hold {
                            run,
                            claimed_at: r.get::<_, Option<Millis>>(5)?.unwrap_or(0),
                            token: None,
                        })
                    })
                    .transpose()?,
                doubt: r
                    .get::<_, Option<String>>(6)?
                    .map(|run| {
                        Ok::<_, rusqlite::Error>(InDoubt {
                            run,
                            claimed_at: r.get::<_, Option<Millis>>(7)?.unwrap_or(0),
                        })
                    })
                    .transpose()?,
                waves: BTreeMap::new(),
            })
        })
        .optional()?;
    let Some(mut row) = row else {
        return Ok(None);
    };
    row.waves = db
        .prepare_cached(
            "SELECT wave, sends FROM user_waves WHERE client_id = ?1 AND username = ?2",
        )?
        .query_map(params![client_id, username], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(row))
}

/// Writes a user's row and its waves as `row` has them (replacing what was there).
fn write_row(db: &Connection, client_id: &str, username: &str, row: &Row) -> rusqlite::Result<()> {
    let claim = row.claim.as_ref();
    let doubt = row.doubt.as_ref();
    db.prepare_cached(
        "INSERT OR REPLACE INTO users (client_id, username, sends, last_sent_at, last_outcome,
                                       last_outcome_at, claim_run, claimed_at, doubt_run, doubt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        client_id,
        username,
        row.sends,
        row.last_sent_at,
        row.last_outcome,
        row.last_outcome_at,
        claim.map(|c| &c.run),
        claim.map(|c| c.claimed_at),
        doubt.map(|d| &d.run),
        doubt.map(|d| d.claimed_at),
    ])?;
    db.prepare_cached("DELETE FROM user_waves WHERE client_id = ?1 AND username = ?2")?
        .execute(params![client_id, username])?;
    for (wave, sends) in &row.waves {
        db.prepare_cached(
            "INSERT INTO user_waves (client_id, username, wave, sends) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![client_id, username, wave, sends])?;
    }
    Ok(())
}

/// The spend counters of `day` (zeros if it has no row).
fn day_spend(db: &Connection, day: &str) -> rusqlite::Result<DaySpend> {
    let row: Option<(i64, i64, i64)> = db
        .prepare_cached("SELECT sends, sms, email FROM spend WHERE day = ?1")?
        .query_row(params![day], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let (sends, sms, email) = row.unwrap_or_default();
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(DaySpend {
        day: day.to_owned(),
        sends: count(sends),
        sms: count(sms),
        email: count(email),
    })
}

/// A run's heartbeat counter, whether it ended cleanly, and its lease; `None` if it has no row.
fn run_state(db: &Connection, run: &str) -> rusqlite::Result<Option<RunLiveness>> {
    db.prepare_cached("SELECT beats, finished_at IS NOT NULL, lease_ms FROM runs WHERE run = ?1")?
        .query_row(params![run], |r| {
            Ok(RunLiveness {
                beats: r.get(0)?,
                ended: r.get(1)?,
                lease: r.get(2)?,
            })
        })
        .optional()
}

fn stats(db: &Connection, rules: &Rules) -> rusqlite::Result<Stats> {
    let (users, users_sent, sends, more_than_once, in_cooldown, marks): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = db.query_row(
        "SELECT count(*), count(*) FILTER (WHERE sends > 0), coalesce(sum(sends), 0),
                count(*) FILTER (WHERE sends > 1),
                count(*) FILTER (WHERE last_sent_at >= ?1),
                count(*) FILTER (WHERE doubt_run IS NOT NULL AND claim_run IS NULL)
         FROM users",
        params![rules.cooldown_since],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    let (claims_live, claims_in_doubt): (i64, i64) = db
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE alive), count(*) FILTER (WHERE NOT alive)
             FROM (SELECT coalesce(runs.finished_at IS NULL AND runs.heartbeat_at >= ?1, 0)
                          AS alive
                   FROM users LEFT JOIN runs ON runs.run = users.claim_run
                   WHERE users.claim_run IS NOT NULL)",
        )?
        .query_row(params![rules.alive_since], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut stmt = db.prepare(
        "SELECT run, command, host, started_at, heartbeat_at, finished_at FROM runs
         ORDER BY started_at DESC LIMIT 10",
    )?;
    let recent_runs = stmt
        .query_map([], |r| {
            Ok(RunRow {
                run: r.get(0)?,
                command: r.get(1)?,
                host: r.get(2)?,
                started_at: rfc3339(r.get(3)?),
                heartbeat_at: rfc3339(r.get(4)?),
                finished_at: r.get::<_, Option<Millis>>(5)?.map(rfc3339),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let fleet_runs: i64 = db
        .prepare_cached(
            "SELECT count(*) FROM runs WHERE finished_at IS NULL AND heartbeat_at >= ?1",
        )?
        .query_row(params![rules.alive_since], |r| r.get(0))?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    let sends_per_wave = db
        .prepare_cached("SELECT wave, sum(sends) FROM user_waves GROUP BY wave")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, count(r.get(1)?))))?
        .collect::<rusqlite::Result<_>>()?;
    let users_capped = match rules.max_sends_per_user {
        Some(max) => Some(count(
            db.prepare_cached("SELECT count(*) FROM users WHERE sends >= ?1")?
                .query_row(params![i64::try_from(max).unwrap_or(i64::MAX)], |r| {
                    r.get(0)
                })?,
        )),
        None => None,
    };
    Ok(Stats {
        sends_per_wave,
        users_capped,
        fleet_runs: count(fleet_runs),
        users: count(users),
        users_sent: count(users_sent),
        sends: count(sends),
        users_sent_more_than_once: count(more_than_once),
        in_cooldown: count(in_cooldown),
        claims_live: count(claims_live),
        claims_in_doubt: count(claims_in_doubt),
        doubt_marks: count(marks),
        recent_runs,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::InDoubt;

    fn rules(now: Millis) -> Rules {
        Rules {
            now,
            cooldown_since: now - 1_000,
            alive_since: now - 100,
            max_sends_per_user: None,
        }
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
            .claim(&me, "c", "alice", rules(10_000), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Granted { in_doubt: None });
        // The same run asking again while the call is out: held, not granted twice.
        let again = db
            .claim(&me, "c", "alice", rules(10_001), None)
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
        db.finish(&me, "c", "alice", Finish::Sent, None, 10_002)
            .await
            .unwrap();
        let c = db
            .claim(&me, "c", "alice", rules(10_500), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Cooldown { last_sent: 10_002 });
        assert_eq!(
            db.peek("c", "alice", rules(10_500)).await.unwrap(),
            Some(Claim::Cooldown { last_sent: 10_002 })
        );
        // Another client id is another key.
        let other = db
            .claim(&me, "d", "alice", rules(10_500), None)
            .await
            .unwrap();
        assert_eq!(other, Claim::Granted { in_doubt: None });
        // Past the cooldown: granted again.
        let later = db
            .claim(&me, "c", "alice", rules(11_100), None)
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
        db.claim(&dead, "c", "bob", rules(10_000), None)
            .await
            .unwrap();
        let me = RunId::new();
        db.begin_run(&me, "test", Duration::from_secs(30), 10_050)
            .await
            .unwrap();
        // Its heartbeat is fresh: held.
        let held = db
            .claim(&me, "c", "bob", rules(10_050), None)
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
        let moved = db.claim(&me, "c", "bob", rules(10_070), Some(&stale)).await;
        assert!(matches!(moved.unwrap(), Claim::Held { beats: 1, .. }));
        // Judged standing still at the counter it has: in doubt, and ours now.
        let stale = Stale {
            run: dead.0.clone(),
            beats: 1,
        };
        let taken = db
            .claim(&me, "c", "bob", rules(10_200), Some(&stale))
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
        db.claim(&first, "c", "carol", rules(10_000), None)
            .await
            .unwrap();
        db.end_run(&first, 10_010).await.unwrap();
        let me = RunId::new();
        let c = db
            .claim(&me, "c", "carol", rules(10_020), None)
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
        db.claim(&dead, "c", "fay", rules(10_000), None)
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
            .claim(&second, "c", "fay", rules(10_010), None)
            .await
            .unwrap();
        assert_eq!(c, doubt);
        db.finish(&second, "c", "fay", Finish::Release, None, 10_011)
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
            .claim(&third, "c", "fay", rules(10_020), None)
            .await
            .unwrap();
        assert_eq!(c, doubt);
        // A definite answer recorded: the mark goes.
        db.finish(&third, "c", "fay", Finish::NotSent("failed"), None, 10_021)
            .await
            .unwrap();
        let c = db
            .claim(&third, "c", "fay", rules(10_022), None)
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
            .claim(&me, "c", "old", rules(10_100), None)
            .await
            .unwrap();
        assert_eq!(c, Claim::Cooldown { last_sent: 10_000 });
        // The old run's claim: held at counter 0, taken over once judged standing still.
        let c = db
            .claim(&me, "c", "held", rules(10_100), None)
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
        let c = db.claim(&me, "c", "old", capped, None).await.unwrap();
        assert_eq!(c, Claim::Capped { sends: 2 });
        assert_eq!(
            db.peek("c", "old", capped).await.unwrap(),
            Some(Claim::Capped { sends: 2 })
        );
        db.claim(&me, "c", "new", capped, None).await.unwrap();
        db.finish(&me, "c", "new", Finish::Sent, Some("day-3"), 10_001)
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
            let key = fold_username(spelling);
            let c = store
                .claim(&me, "c", &key, rules(10_000), None)
                .await
                .unwrap();
            assert_eq!(c, Claim::Cooldown { last_sent: 9500 }, "{spelling}");
            let capped = Rules {
                max_sends_per_user: Some(6),
                ..rules(20_000)
            };
            assert_eq!(
                store.peek("c", &key, capped).await.unwrap(),
                Some(Claim::Capped { sends: 6 }),
                "{spelling}"
            );
        }
        // Past the cooldown: the kept claim of a run that ended is taken over, in doubt.
        let c = store
            .claim(&me, "c", &fold_username("ALICE"), rules(20_000), None)
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
        let no_cooldown = Rules {
            cooldown_since: Millis::MAX,
            max_sends_per_user: Some(3),
            ..rules(10_000)
        };
        let mut sent = 0;
        for round in 0..20 {
            let (x, y) = tokio::join!(
                a.claim(&ra, "c", "zoe", no_cooldown, None),
                b.claim(&rb, "c", "zoe", no_cooldown, None)
            );
            for (store, run, claim) in [(&a, &ra, x.unwrap()), (&b, &rb, y.unwrap())] {
                match claim {
                    Claim::Granted { .. } => {
                        sent += 1;
                        store
                            .finish(run, "c", "zoe", Finish::Sent, Some("w"), 10_000 + round)
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
        db.claim(&me, "c", "dan", rules(10_000), None)
            .await
            .unwrap();
        db.finish(&me, "c", "dan", Finish::Release, None, 10_001)
            .await
            .unwrap();
        db.claim(&me, "c", "erin", rules(10_000), None)
            .await
            .unwrap();
        db.finish(&me, "c", "erin", Finish::NotSent("failed"), None, 10_001)
            .await
            .unwrap();
        for user in ["dan", "erin"] {
            let c = db.claim(&me, "c", user, rules(10_002), None).await.unwrap();
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
            let user = format!("user{i}");
            let (x, y) = tokio::join!(
                a.claim(&ra, "c", &user, rules(10_010), None),
                b.claim(&rb, "c", &user, rules(10_010), None)
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
            db.claim(&me, "c", &u, rules(10_000), None).await.unwrap();
            db.finish(&me, "c", &u, Finish::Sent, None, 10_000)
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
}
