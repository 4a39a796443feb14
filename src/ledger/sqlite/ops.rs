//! Each operation of the SQLite store, as the writer thread runs it inside its transaction:
//! the SQL of one [`Store`](crate::ledger::Store) method and nothing else, so the store's
//! front ([`super::SqliteStore`]) and the group commit ([`super::writer`](mod@super::writer)) stay readable.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::job::fold_username;
use crate::ledger::fold::{Folded, Hold, Row, merge};
use crate::ledger::{
    Claim, DayCaps, DaySpend, Finish, Holder, InDoubt, Listing, Medium, Millis, Rules, RunLiveness,
    SpendCap, Spent, Stale, UserRow, decide, host_label, plan, refused_by, rfc3339,
};

use super::schema::FOLDED_MARKER;

pub(super) fn begin_run(
    db: &Connection,
    run: &str,
    command: &str,
    lease: Millis,
    now: Millis,
) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO runs (run, command, host, started_at, heartbeat_at, lease_ms)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![run, command, host_label(), now, lease])?;
    Ok(())
}

pub(super) fn heartbeat(db: &Connection, run: &str, now: Millis) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE runs SET heartbeat_at = ?2, beats = beats + 1 WHERE run = ?1")?
        .execute(params![run, now])?;
    Ok(())
}

/// The census: the unfinished runs with their counters and leases, and the fleet's throttle
/// total after adding `throttles`.
pub(super) fn census(db: &Connection, throttles: u64) -> rusqlite::Result<Listing> {
    // Each run's own lease (`runs.lease_ms`, absent for runs of older builds) judges it.
    let mut stmt =
        db.prepare_cached("SELECT run, beats, lease_ms FROM runs WHERE finished_at IS NULL")?;
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
    let total: i64 = if throttles > 0 {
        db.prepare_cached(
            "INSERT INTO fleet (name, value) VALUES ('throttles', ?1)
             ON CONFLICT (name) DO UPDATE SET value = value + ?1 RETURNING value",
        )?
        .query_row(params![throttles as i64], |r| r.get(0))?
    } else {
        db.prepare_cached("SELECT value FROM fleet WHERE name = 'throttles'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .unwrap_or(0)
    };
    Ok(Listing {
        runs,
        leases,
        throttles: total.max(0) as u64,
    })
}

pub(super) fn end_run(db: &Connection, run: &str, now: Millis) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE runs SET heartbeat_at = ?2, finished_at = ?2 WHERE run = ?1")?
        .execute(params![run, now])?;
    Ok(())
}

/// A claim: the user's row and its holder's run row read, [`decide`]d, and the claim written
/// if granted, in one step.
pub(super) fn claim(
    db: &Connection,
    run: &str,
    client_id: &str,
    username: &str,
    rules: Rules,
    take_over: Option<&Stale>,
) -> rusqlite::Result<Claim> {
    type Row = (
        Option<Millis>,
        Option<String>,
        Option<Millis>,
        Option<String>,
        Option<Millis>,
        i64,
        Option<String>,
        Option<Millis>,
    );
    let row: Option<Row> = db
        .prepare_cached(
            "SELECT last_sent_at, claim_run, claimed_at, doubt_run, doubt_at, sends,
                    last_outcome, last_outcome_at
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
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .optional()?;
    let (last_sent, claim_run, claimed_at, doubt_run, doubt_at, sends, last_outcome, outcome_at) =
        row.unwrap_or_default();
    let holder = match claim_run.as_deref() {
        Some(h) => Some(Holder::of(h, claimed_at.unwrap_or(0), run_state(db, h)?)),
        None => None,
    };
    let mark = doubt_run.map(|run| InDoubt {
        run,
        claimed_at: doubt_at.unwrap_or(0),
    });
    let last = last_outcome.as_deref().zip(outcome_at);
    let decision = decide(run, last_sent, sends, holder, mark, last, take_over, rules);
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
    Ok(decision)
}

pub(super) fn peek(
    db: &Connection,
    client_id: &str,
    username: &str,
    rules: Rules,
) -> rusqlite::Result<Option<Claim>> {
    type Row = (Option<Millis>, i64, Option<String>, Option<Millis>);
    let row: Option<Row> = db
        .prepare_cached(
            "SELECT last_sent_at, sends, last_outcome, last_outcome_at
             FROM users WHERE client_id = ?1 AND username = ?2",
        )?
        .query_row(params![client_id, username], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (last_sent, sends, last_outcome, outcome_at) = row.unwrap_or_default();
    Ok(plan(
        last_sent,
        sends,
        last_outcome.as_deref().zip(outcome_at),
        rules,
    ))
}

pub(super) fn finish(
    db: &Connection,
    run: &str,
    client_id: &str,
    username: &str,
    how: Finish,
    wave: Option<&str>,
    now: Millis,
) -> rusqlite::Result<()> {
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
    Ok(())
}

/// Read and write in the writer's one transaction (and under SQLite's write lock, which
/// other processes on the file wait for): no two reservations see the same count.
pub(super) fn reserve(
    db: &Connection,
    day: &str,
    caps: DayCaps,
    medium: Option<Medium>,
) -> rusqlite::Result<Option<SpendCap>> {
    let spend = day_spend(db, day)?;
    let refused = refused_by(&spend, caps, medium);
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
    Ok(refused)
}

pub(super) fn settle(db: &Connection, day: &str, spent: Spent) -> rusqlite::Result<()> {
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
        Spent::Moved { .. } | Spent::Kept => return Ok(()),
    };
    db.prepare_cached(sql)?.execute(params![day])?;
    Ok(())
}

/// In the writer's transaction (BEGIN IMMEDIATE: other processes on the file wait, and the
/// first to fold writes the marker the others then find), inside a savepoint so that a
/// failure leaves nothing half merged while the group's other operations commit.
pub(super) fn fold_keys(db: &Connection) -> rusqlite::Result<Folded> {
    db.execute_batch("SAVEPOINT fold")?;
    match fold_usernames(db) {
        Ok(folded) => {
            db.execute_batch("RELEASE fold")?;
            Ok(folded)
        }
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK TO fold; RELEASE fold");
            Err(e)
        }
    }
}

/// Both inside the writer's transaction; a retry after a failure deletes the rest.
pub(super) fn forget(db: &Connection, keys: &[(String, String)]) -> rusqlite::Result<u64> {
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
    Ok(removed)
}

pub(super) fn prune(db: &Connection, before: Millis) -> rusqlite::Result<u64> {
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
    Ok(removed)
}

pub(super) fn export(
    db: &Connection,
    after: Option<(String, String)>,
    limit: u32,
) -> rusqlite::Result<Vec<UserRow>> {
    let (c, u) = after.unwrap_or_default();
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
    Ok(rows)
}

/// [`Store::fold_usernames`](crate::ledger::Store::fold_usernames) inside the caller's transaction: nothing if the marker is there;
/// else merges each row whose username is not folded (by Rust's [`fold_username`], not
/// SQLite's ASCII-only `lower()`) into its folded key's row, with its waves, and writes the
/// marker.
pub(super) fn fold_usernames(db: &Connection) -> rusqlite::Result<Folded> {
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
pub(super) fn read_row(
    db: &Connection,
    client_id: &str,
    username: &str,
) -> rusqlite::Result<Option<Row>> {
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
pub(super) fn write_row(
    db: &Connection,
    client_id: &str,
    username: &str,
    row: &Row,
) -> rusqlite::Result<()> {
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
pub(super) fn day_spend(db: &Connection, day: &str) -> rusqlite::Result<DaySpend> {
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
pub(super) fn run_state(db: &Connection, run: &str) -> rusqlite::Result<Option<RunLiveness>> {
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
