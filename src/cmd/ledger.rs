//! `cognito-resend ledger stats|export|init`: what an operator needs to see what was sent to
//! whom and when, without opening SQLite or the DynamoDB console.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::parts::open_ledger;
use super::{Finished, RunError, done};
use crate::config::Settings;
use crate::job::{UserKey, UsernameCase, fold_username};
use crate::ledger::{self, StateSpec, fleet, now_millis};
use crate::report::text::printable;
use crate::source::csv::unneutralise;

/// What `ledger` does: the command's own action, mapped from the parsed command line by the
/// dispatcher, so nothing here depends on how the command line is spelled.
#[derive(Debug, Clone)]
pub enum LedgerAction {
    /// Totals: users, codes sent, cooldowns, claims, sends per wave, users at the cap, today's
    /// spend, recent runs.
    Stats {
        /// JSON instead of text.
        json: bool,
    },
    /// Every user row as JSON Lines on stdout.
    Export,
    /// Create the ledger (the SQLite file, or the DynamoDB table).
    Init,
    /// Erase these users (and those of the `username` column of `from`).
    Forget {
        /// As given on the command line.
        usernames: Vec<String>,
        /// A CSV with a `username` column, or `-`.
        from: Option<PathBuf>,
    },
    /// Delete rows idle for `older_than` (default `--retention`).
    Prune {
        /// `--older-than` (alias `--inactive-for`), unparsed.
        older_than: Option<String>,
        /// Prune even inside the cooldown.
        force: bool,
    },
}

/// Rows per page of `export`.
const PAGE: u32 = 1_000;

/// Runs a `ledger` subcommand.
pub(super) async fn run(action: LedgerAction, settings: &Settings) -> Result<Finished, RunError> {
    let spec = &settings.ledger.path;
    if *spec == StateSpec::None {
        return Err(RunError::Usage(
            "ledger.path (--state) is `none`: there is no ledger to show".into(),
        ));
    }
    if let (LedgerAction::Init, StateSpec::Dynamo { table }) = (&action, spec) {
        let store = ledger::dynamo::DynamoStore::client_only(
            table,
            &ledger::dynamo::DynamoSettings {
                region: settings.cognito.region.clone(),
                profile: settings.cognito.profile.clone(),
                endpoint: settings.ledger.dynamodb_endpoint.clone(),
                retention: None,
            },
        )
        .await;
        store
            .create_table()
            .await
            .map_err(|e| RunError::Fatal(e.into()))?;
        println!("created {spec}");
        return done();
    }
    if let (
        LedgerAction::Stats { .. }
        | LedgerAction::Export
        | LedgerAction::Forget { .. }
        | LedgerAction::Prune { .. },
        StateSpec::Sqlite(path),
    ) = (&action, spec)
        && !path.exists()
    {
        return Err(RunError::Usage(format!(
            "ledger.path (--state): {} does not exist (no run has used it yet)",
            path.display()
        )));
    }
    // Sensitive: the keys as they are. Folding is a run's business, once it knows its pool: a
    // case-sensitive pool's ledger must never be folded, and this command does not know.
    let store = open_ledger(settings, UsernameCase::Sensitive)
        .await?
        .ok_or_else(|| RunError::Usage("no ledger".into()))?;
    match action {
        LedgerAction::Init => println!("ready: {spec}"),
        LedgerAction::Forget { usernames, from } => {
            let keys = forget_keys(settings, usernames, from.as_deref())?;
            let removed = store
                .forget(&keys)
                .await
                .map_err(|e| RunError::Fatal(e.into()))?;
            // Counts only: the usernames are what is being erased.
            println!(
                "forgot {removed} user row(s) ({} key(s) looked up) in {spec}",
                keys.len()
            );
        }
        LedgerAction::Prune { older_than, force } => {
            let idle = match (older_than, settings.ledger.retention) {
                (Some(text), _) => crate::config::parse_duration(&text)
                    .map_err(|e| RunError::Usage(format!("--older-than: {e}")))?,
                (None, Some(keep)) => keep,
                (None, None) => {
                    return Err(RunError::Usage(
                        "ledger prune: give --older-than DURATION (or set ledger.retention, \
                         --retention)"
                            .into(),
                    ));
                }
            };
            if idle < settings.ledger.cooldown && !force {
                return Err(RunError::Usage(format!(
                    "ledger prune --older-than {}: shorter than --cooldown {}, so users still in \
                     their cooldown would be forgotten and could get a second code; give a longer \
                     duration, or --force",
                    humantime::format_duration(idle),
                    humantime::format_duration(settings.ledger.cooldown)
                )));
            }
            let millis = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
            let removed = store
                .prune(now_millis().saturating_sub(millis))
                .await
                .map_err(|e| RunError::Fatal(e.into()))?;
            println!(
                "pruned {removed} user row(s) idle for longer than {} from {spec}",
                humantime::format_duration(idle)
            );
        }
        LedgerAction::Stats { json } => {
            let now = now_millis();
            let rules =
                settings
                    .ledger
                    .timing()
                    .rules(now, settings.ledger.max_sends_per_user, false);
            let stats = store
                .stats(rules)
                .await
                .map_err(|e| RunError::Fatal(e.into()))?;
            let today = store
                .day_spend(&ledger::utc_day(now))
                .await
                .map_err(|e| RunError::Fatal(e.into()))?;
            let caps = settings.limits.day();
            if json {
                let mut value =
                    serde_json::to_value(&stats).map_err(|e| RunError::Fatal(e.into()))?;
                value["today"] = serde_json::json!({
                    "day": today.day,
                    "sends": today.sends,
                    "sms": today.sms,
                    "email": today.email,
                    "max_sends_per_day": caps.sends,
                    "max_sms_per_day": caps.sms,
                    "max_email_per_day": caps.email,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).map_err(|e| RunError::Fatal(e.into()))?
                );
            } else {
                println!(
                    "ledger {spec}\n  users: {}\n  users sent a code: {}\n  codes sent: {}\n  \
                     users sent more than once: {}\n  in cooldown ({}): {}\n  claims held by \
                     live runs: {}\n  claims in doubt (left by runs that died): {}\n  in-doubt \
                     marks (taken over, released before the call): {}\n  (live or dead by this \
                     host's clock and --claim-lease; runs themselves judge by heartbeat counters)",
                    stats.users,
                    stats.users_sent,
                    stats.sends,
                    stats.users_sent_more_than_once,
                    humantime::format_duration(settings.ledger.cooldown),
                    stats.in_cooldown,
                    stats.claims_live,
                    stats.claims_in_doubt,
                    stats.doubt_marks,
                );
                if let (Some(n), Some(max)) =
                    (stats.users_capped, settings.ledger.max_sends_per_user)
                {
                    println!("  users at --max-sends-per-user {max} (never sent again): {n}");
                }
                if !stats.sends_per_wave.is_empty() {
                    println!("  codes sent per wave (--wave):");
                    for (wave, n) in &stats.sends_per_wave {
                        println!("    {}: {n}", printable(wave));
                    }
                }
                let of = |n: u64, cap: Option<u64>| match cap {
                    Some(c) => format!("{n} of {c}"),
                    None => format!("{n} (no cap)"),
                };
                println!(
                    "  today ({} UTC): users sent a code {} (by their last send)",
                    today.day, stats.users_sent_today
                );
                // The day's spend counters are kept by runs with a day cap only: said so, not
                // shown as zeros that look like nothing was sent.
                if today.sends > 0 || !caps.is_empty() {
                    println!(
                        "  today's spend counters (runs with a --max-*-per-day cap): sends \
                         reserved {} (sent, possibly sent or in flight); confirmed by medium: \
                         sms {}, email {}",
                        of(today.sends, caps.sends),
                        of(today.sms, caps.sms),
                        of(today.email, caps.email),
                    );
                } else {
                    println!(
                        "  today's spend counters: none kept (only runs with a --max-*-per-day \
                         cap count them)"
                    );
                }
                let fleet = match settings.run.fleet_rate {
                    Some(budget) => format!(
                        "; --fleet-rate {budget}/s gives each {:.2}/s",
                        fleet::Share::of(budget, stats.fleet_runs as usize).rate
                    ),
                    None => String::new(),
                };
                println!(
                    "  live runs sharing the fleet budget: {}{fleet}",
                    stats.fleet_runs
                );
                if !stats.recent_runs.is_empty() {
                    println!("  recent runs:");
                    for r in &stats.recent_runs {
                        let end = match &r.finished_at {
                            Some(f) => format!("ended {f}"),
                            None => format!("no clean end (last heartbeat {})", r.heartbeat_at),
                        };
                        // Written by whoever could write the ledger: shown escaped.
                        let line = format!(
                            "    {} {} on {}: started {}, {end}",
                            r.run, r.command, r.host, r.started_at
                        );
                        println!("{}", printable(&line));
                    }
                }
            }
        }
        LedgerAction::Export => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut cursor = None;
            loop {
                let (rows, next) = store
                    .export_page(cursor, PAGE)
                    .await
                    .map_err(|e| RunError::Fatal(e.into()))?;
                for row in rows {
                    let written = serde_json::to_writer(&mut out, &row)
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"));
                    match written {
                        Ok(()) => {}
                        // The reader has all it wants (`| head`): a quiet end, not an error.
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return done(),
                        Err(e) => return Err(RunError::Fatal(e.into())),
                    }
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            match out.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(RunError::Fatal(e.into()));
                }
                _ => {}
            }
        }
    }
    done()
}

/// The ledger keys `ledger forget` erases: each username (from the command line and the
/// `username` column of `from`) under every client id the settings name, as written and — unless
/// the pool is known case-sensitive — folded, since a case-insensitive run keys it folded.
fn forget_keys(
    settings: &Settings,
    usernames: Vec<String>,
    from: Option<&Path>,
) -> Result<Vec<UserKey>, RunError> {
    let mut clients: Vec<&str> = settings
        .cognito
        .client_id
        .iter()
        .map(String::as_str)
        .collect();
    clients.extend(
        settings
            .cognito
            .allowed_client_ids
            .iter()
            .map(String::as_str),
    );
    if clients.is_empty() {
        return Err(RunError::Usage(
            "ledger forget: the ledger keys users by app client: give --client-id (and \
             --allow-client-id for more)"
                .into(),
        ));
    }
    let mut names = usernames;
    if let Some(path) = from {
        names.extend(usernames_of(path)?);
    }
    if names.is_empty() {
        return Err(RunError::Usage(
            "ledger forget: name the users (USERNAME... or --from FILE)".into(),
        ));
    }
    let mut keys = std::collections::BTreeSet::new();
    for name in &names {
        for client in &clients {
            keys.insert((client.to_string(), name.clone()));
            if !settings.cognito.case_sensitive_usernames {
                keys.insert((client.to_string(), fold_username(name)));
            }
        }
    }
    Ok(keys
        .into_iter()
        .map(|(client_id, username)| UserKey {
            client_id,
            username,
        })
        .collect())
}

/// The `username` column of a CSV (`-`: standard input), cells read as `backfill` reads them.
fn usernames_of(path: &Path) -> Result<Vec<String>, RunError> {
    let input: Box<dyn std::io::Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| {
            RunError::Usage(format!("ledger forget --from {}: {e}", path.display()))
        })?)
    };
    let bad =
        |e: csv::Error| RunError::Usage(format!("ledger forget --from {}: {e}", path.display()));
    let mut reader = csv::Reader::from_reader(input);
    let column = reader
        .headers()
        .map_err(bad)?
        .iter()
        .position(|h| {
            h.trim_start_matches('\u{feff}')
                .trim()
                .eq_ignore_ascii_case("username")
        })
        .ok_or_else(|| {
            RunError::Usage(format!(
                "ledger forget --from {}: no `username` column in the header",
                path.display()
            ))
        })?;
    let mut names = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        if let Some(cell) = record.get(column).map(str::trim).filter(|c| !c.is_empty()) {
            names.push(unneutralise(cell).to_owned());
        }
    }
    Ok(names)
}
