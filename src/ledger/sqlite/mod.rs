//! The embedded ledger: one SQLite file (WAL, `synchronous=FULL`).
//!
//! Every operation goes to one writer thread, which takes whatever has queued up, runs it in
//! one `BEGIN IMMEDIATE` transaction and commits once: one fsync for a group of claims and
//! results instead of one each (group commit), which is what lets a durable ledger keep up with
//! thousands of calls a second. Replies are sent only after the commit, so nobody acts on a
//! write that is not on disk. Other processes may open the same file: SQLite's write lock
//! (with a busy timeout) serialises their transactions with ours.
//!
//! Layout: [`schema`] (the tables and the migrations of older files), [`writer`](mod@writer) (the thread
//! and its group commit, each operation with its own typed answer), [`ops`] (each operation's
//! SQL), [`stats`] (`ledger stats`); this file is the store's front, turning [`Store`] calls
//! into operations for the writer.

mod ops;
mod schema;
mod stats;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures::future::BoxFuture;
use rusqlite::Connection;

use crate::job::UserKey;

use super::fold::Folded;
use super::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, LedgerError, Listing, Medium, Millis, Page,
    Rules, RunId, SpendCap, Spent, Stale, Stats, Store,
};
use schema::migrate;
use writer::{Task, WriteError, request, writer};

/// How long a transaction waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite ledger file.
pub struct SqliteStore {
    path: PathBuf,
    tx: mpsc::Sender<Box<dyn Task>>,
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
        migrate(&mut conn).map_err(|e| fail(e.to_string()))?;
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

    /// Runs `work` on the writer thread, in its next group, and returns its answer once the
    /// group is committed.
    async fn ask<T, F>(&self, work: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (task, answer) = request(work);
        let fail = |e: WriteError| LedgerError {
            state: self.describe(),
            detail: e.to_string(),
        };
        self.tx.send(task).map_err(|_| fail(WriteError::Stopped))?;
        answer
            .await
            .map_err(|_| fail(WriteError::Stopped))?
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
        let (run, command) = (run.0.clone(), command.to_owned());
        let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Box::pin(self.ask(move |db| ops::begin_run(db, &run, &command, lease, now)))
    }

    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let run = run.0.clone();
        Box::pin(self.ask(move |db| ops::heartbeat(db, &run, now)))
    }

    fn end_run<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let run = run.0.clone();
        Box::pin(self.ask(move |db| ops::end_run(db, &run, now)))
    }

    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        let (run, client_id, username) =
            (run.0.clone(), key.client_id.clone(), key.username.clone());
        let take_over = take_over.cloned();
        Box::pin(
            self.ask(move |db| {
                ops::claim(db, &run, &client_id, &username, rules, take_over.as_ref())
            }),
        )
    }

    fn peek<'a>(
        &'a self,
        key: &'a UserKey,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>> {
        let (client_id, username) = (key.client_id.clone(), key.username.clone());
        Box::pin(self.ask(move |db| ops::peek(db, &client_id, &username, rules)))
    }

    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        how: Finish,
        wave: Option<&'a str>,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let (run, client_id, username) =
            (run.0.clone(), key.client_id.clone(), key.username.clone());
        let wave = wave.map(str::to_owned);
        Box::pin(
            self.ask(move |db| {
                ops::finish(db, &run, &client_id, &username, how, wave.as_deref(), now)
            }),
        )
    }

    fn stats(&self, rules: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>> {
        Box::pin(self.ask(move |db| stats::stats(db, &rules)))
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
            let rows = self.ask(move |db| ops::export(db, after, limit)).await?;
            let next = (rows.len() == limit as usize)
                .then(|| rows.last())
                .flatten()
                .map(|r| serde_json::json!([r.client_id, r.username]).to_string());
            Ok((rows, next))
        })
    }

    fn forget<'a>(&'a self, keys: &'a [UserKey]) -> BoxFuture<'a, Result<u64, LedgerError>> {
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.client_id.clone(), k.username.clone()))
            .collect();
        Box::pin(self.ask(move |db| ops::forget(db, &keys)))
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(self.ask(move |db| ops::prune(db, before)))
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
        let day = r.day.clone();
        Box::pin(self.ask(move |db| ops::reserve(db, &day, caps, medium)))
    }

    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        let day = r.day.clone();
        Box::pin(async move {
            // Nothing to write: the counters already hold what a kept reservation counts.
            if let Spent::Kept = spent {
                return Ok(());
            }
            self.ask(move |db| ops::settle(db, &day, spent)).await
        })
    }

    fn day_spend<'a>(&'a self, day: &'a str) -> BoxFuture<'a, Result<DaySpend, LedgerError>> {
        let day = day.to_owned();
        Box::pin(self.ask(move |db| ops::day_spend(db, &day)))
    }

    /// The unfinished runs and their counters, and the fleet's throttle total after adding
    /// `throttles`: the `runs` table already holds every run's heartbeat counter. Nothing else
    /// to write (the heartbeat bumped this run's counter) and nothing to prune: a run that died
    /// keeps its row, and each run judges it by its counter.
    fn census<'a>(
        &'a self,
        _run: &'a RunId,
        _lease: Duration,
        _dead: &'a [String],
        throttles: u64,
    ) -> BoxFuture<'a, Result<Listing, LedgerError>> {
        Box::pin(self.ask(move |db| ops::census(db, throttles)))
    }

    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        Box::pin(self.ask(ops::fold_keys))
    }
}
