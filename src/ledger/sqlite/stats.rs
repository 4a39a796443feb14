//! `ledger stats` on SQLite: the totals people read, in one pass over the file inside the
//! writer's transaction.

use rusqlite::{Connection, params};

use crate::ledger::{Millis, Rules, RunRow, Stats, rfc3339};

pub(super) fn stats(db: &Connection, rules: &Rules) -> rusqlite::Result<Stats> {
    let (users, users_sent, sends, more_than_once, in_cooldown, marks, today): (
        i64,
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
                count(*) FILTER (WHERE doubt_run IS NOT NULL AND claim_run IS NULL),
                count(*) FILTER (WHERE sends > 0 AND last_sent_at >= ?2)
         FROM users",
        params![rules.cooldown_since, rules.day_start()],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
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
        users_sent_today: count(today),
        claims_live: count(claims_live),
        claims_in_doubt: count(claims_in_doubt),
        doubt_marks: count(marks),
        recent_runs,
    })
}
