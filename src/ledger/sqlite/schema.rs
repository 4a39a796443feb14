//! The SQLite ledger's schema and its migrations: what a file of each version holds, and how
//! an older file is brought up to this build's (in one write transaction, since another process
//! may open the same file at the same moment).

use rusqlite::{Connection, TransactionBehavior};

/// The schema this build writes (`PRAGMA user_version`). 1: the first. 2: `runs.beats` (the
/// heartbeat counter liveness is judged by) and `users.doubt_run`/`doubt_at` (the in-doubt mark
/// that survives a release). 3: `user_waves`, each user's codes per `--wave` (an older build
/// would send without counting them). 4: `meta`, where the marker that the keys are folded
/// lives (see [`crate::ledger::fold`]; written only when a run opens the ledger for a case-insensitive
/// pool). An older build keys users by the row's spelling: in a folded ledger it would miss the
/// folded rows (a second code) and add rows of other spellings no fold would ever merge, so it
/// must not open a file this build has opened.
pub(super) const SCHEMA_VERSION: i64 = 4;

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
pub(super) const FOLDED_MARKER: (&str, &str) = ("keys", "folded");

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

/// Why a file could not be brought up to this build's schema.
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    /// Its version could not be read.
    #[error("cannot read it: {0}")]
    Read(rusqlite::Error),
    /// The schema could not be written.
    #[error("cannot write it: {0}")]
    Write(rusqlite::Error),
    /// A newer build wrote it: this one must not touch it.
    #[error(
        "it was written by a newer cognito-resend (schema {found}; this one knows up to \
         {SCHEMA_VERSION})"
    )]
    Newer {
        /// Its `user_version`.
        found: i64,
    },
}

/// Creates or upgrades the schema, in one write transaction (another process may be opening
/// the same file at the same moment).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let txn = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(MigrateError::Write)?;
    let version: i64 = txn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(MigrateError::Read)?;
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
        found => return Err(MigrateError::Newer { found }),
    }
    .and_then(|()| txn.execute_batch(SPEND_SCHEMA))
    .and_then(|()| add_run_lease(&txn))
    .and_then(|()| txn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")))
    .and_then(|()| txn.commit())
    .map_err(MigrateError::Write)
}
