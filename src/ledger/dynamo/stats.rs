//! `ledger stats` on DynamoDB: one paginated `Scan` of the table, read into the totals people
//! read (the only scan this store makes; claims, results and the census never scan).

use std::collections::HashMap;

use crate::ledger::{LedgerError, Rules, RunRow, Stats, rfc3339};

use super::DynamoStore;
use super::items::*;

impl DynamoStore {
    /// [`Store::stats`](crate::ledger::Store::stats).
    pub(super) async fn stats_of(&self, rules: Rules) -> Result<Stats, LedgerError> {
        let mut stats = Stats {
            users_capped: rules.max_sends_per_user.map(|_| 0),
            ..Stats::default()
        };
        let mut runs: HashMap<String, RunRow> = HashMap::new();
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut claims: Vec<String> = Vec::new();
        let mut fleet: Vec<String> = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk("Scan", e))?;
            for item in out.items() {
                let pk = get_s(item, "pk").unwrap_or_default();
                if pk.starts_with("d#") {
                    continue;
                }
                if pk == FLEET_PK {
                    fleet.extend(
                        item.keys()
                            .filter(|k| *k != "pk" && *k != FLEET_THROTTLES)
                            .cloned(),
                    );
                    continue;
                }
                if let Some(run) = pk.strip_prefix("r#") {
                    let beat = get_n(item, "heartbeat_at").unwrap_or(0);
                    let finished = get_n(item, "finished_at");
                    alive.insert(
                        run.to_owned(),
                        finished.is_none() && beat >= rules.alive_since,
                    );
                    runs.insert(
                        run.to_owned(),
                        RunRow {
                            run: run.to_owned(),
                            command: get_s(item, "command").unwrap_or_default(),
                            host: get_s(item, "host").unwrap_or_default(),
                            started_at: rfc3339(get_n(item, "started_at").unwrap_or(0)),
                            heartbeat_at: rfc3339(beat),
                            finished_at: finished.map(rfc3339),
                        },
                    );
                    continue;
                }
                if !pk.starts_with("u#") {
                    continue; // the marker that the keys are folded
                }
                stats.users += 1;
                let sends = get_n(item, "sends").unwrap_or(0);
                for (wave, n) in waves_of(item) {
                    *stats.sends_per_wave.entry(wave).or_default() += u64::try_from(n).unwrap_or(0);
                }
                if let Some(max) = rules.max_sends_per_user
                    && u64::try_from(sends).is_ok_and(|s| s >= max)
                {
                    *stats.users_capped.get_or_insert(0) += 1;
                }
                if sends > 0 {
                    stats.users_sent += 1;
                    stats.sends += sends as u64;
                }
                if sends > 1 {
                    stats.users_sent_more_than_once += 1;
                }
                if get_n(item, "last_sent_at").is_some_and(|t| t >= rules.cooldown_since) {
                    stats.in_cooldown += 1;
                }
                if sends > 0 && get_n(item, "last_sent_at").is_some_and(|t| t >= rules.day_start())
                {
                    stats.users_sent_today += 1;
                }
                match get_s(item, "claim_run") {
                    Some(run) => claims.push(run),
                    None if item.contains_key("doubt_run") => stats.doubt_marks += 1,
                    None => {}
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        stats.fleet_runs = fleet
            .iter()
            .filter(|r| alive.get(*r).copied().unwrap_or(false))
            .count() as u64;
        for run in claims {
            if alive.get(&run).copied().unwrap_or(false) {
                stats.claims_live += 1;
            } else {
                stats.claims_in_doubt += 1;
            }
        }
        let mut recent: Vec<RunRow> = runs.into_values().collect();
        recent.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        recent.truncate(10);
        stats.recent_runs = recent;
        Ok(stats)
    }
}
