//! `plan`: a dry run with a forecast. It reads what `backfill` would read — the same input
//! (a CSV file, stdin, or `--from-pool`), the same settings, the ledger (read-only `peek`), the
//! pool (`DescribeUserPool`, `DescribeUserPoolClient`, `AdminGetUser` or `ListUsers`) — and
//! says what the run would do: jobs by expected outcome, codes by medium, which spend cap stops
//! it and when, how long it takes at the rate, and what its SMS cost.
//!
//! It never calls `ResendConfirmationCode` and records nothing: no ledger run, no claim, no
//! report (a SQLite ledger that does not exist yet is not created). The ledger is opened as the
//! run opens it, with the run's case rule, so an older ledger's keys get the one-time fold a
//! run of this version makes first ([`crate::ledger::fold`]): the only write a plan can make,
//! and one that changes no run's outcome. Each job is judged in the
//! order the engine judges it ([`crate::engine`]'s `guarded`), so the counts are the ones the
//! run's report would show:
//!
//! 1. `invalid`: an unreadable row, no client id, a client id not allowed;
//! 2. `not_found`: the pool has no such user (`AdminGetUser`);
//! 3. `capped`, `cooldown`: the ledger's [`Store::peek`], keyed by the person ([`UserKey`]:
//!    client id + canonical username, folded as the pool compares usernames); before the pool
//!    is read, for a row whose status the run would not read, `known_confirmed` and
//!    `known_missing` (`--recheck-after`);
//! 4. merged: a person an earlier row of this input would already have been sent a code to —
//!    by an alias (`aliases merged`), by another case (`case variants merged`) or by the very
//!    same spelling (`duplicates merged`); the run reports these `cooldown` (or `capped`, at
//!    `--max-sends-per-user`), and sends no second code;
//! 5. `already_confirmed`: the user's status is not `UNCONFIRMED`;
//! 6. the rest `would send`.
//!
//! Without the pool (no `--user-pool-id`), steps 2 and 5 cannot be told, and their rows count as
//! `would send`: the run's `sent`, `already_confirmed` and `not_found` together. Case variants
//! are still merged by the folded key (unless `--case-sensitive-usernames`).
//!
//! Memory: one set of persons (and their spellings) that would be sent a code, as the ledger
//! would hold them, and the engine's bounded cache of pool answers.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::parts::{self, PoolAccess};
use super::{Finished, RunError, done};
use crate::cognito::admin::{AdminError, UserState};
use crate::cognito::profile::DEFAULT_EMAIL_ACCOUNT_PER_DAY;
use crate::config::Settings;
use crate::engine::identity::{Answers, Looked, looks_like_sub};
use crate::engine::rate::RateLimiter;
use crate::engine::resend_policy::{RetryPolicy, pool_call};
use crate::job::{Input, Source, UserKey, UsernameCase, check_username, fold_username};
use crate::ledger::{self, Claim, DaySpend, Medium, Rules, SpendCap, StateSpec, Store};
use crate::shutdown::Shutdown;
use crate::source::csv::CsvSource;
use crate::source::pool::discover;
use forecast::*;
use render::render;

mod forecast;
mod render;

/// The rate a plan forecasts with `--rate 0` (no ceiling: the run finds the quota), in requests
/// per second. AWS's quotas page says which category `ResendConfirmationCode` is counted in only
/// in a table whose operation lists we could not verify, and its text names the four operations
/// of `UserCreation` without it; so the forecast takes the lowest default of Cognito's
/// user-operation categories (25/s: `UserUpdate`, `UserResourceUpdate`, `UserFederation`), and
/// its time is the longest the run should take at the default quota (docs/contract.md, `plan`).
pub(crate) const RESEND_DEFAULT_QUOTA_RPS: f64 = 25.0;

/// What `plan` prints besides the settings: `--json`, and `--sms-price`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    /// JSON instead of text.
    pub(super) json: bool,
    /// USD per SMS message.
    pub(super) sms_price: Option<f64>,
}

/// `plan FILE` (or `-`).
pub(super) async fn csv(
    input: PathBuf,
    out: Output,
    settings: Settings,
    shutdown: Shutdown,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let settings = ready(settings, out).await?;
    let mut source = CsvSource::open(input.clone())
        .await
        .map_err(|e| RunError::Usage(e.to_string()))?;
    super::backfill::check_client_ids(&settings, &source)?;
    let pool = parts::pool_access(&settings).await?;
    let mut planner = Planner::start(&settings, pool.as_ref(), true, &shutdown).await?;
    while let Some(input) = tokio::select! {
        biased;
        _ = shutdown.token.cancelled() => return interrupted(),
        i = source.next() => i,
    } {
        match input {
            Input::Unreadable(_) => planner.invalid(),
            Input::Job(job) => {
                let client = job
                    .request
                    .client_id
                    .clone()
                    .or_else(|| settings.cognito.client_id.clone());
                if !planner
                    .row(client.as_deref(), &job.request.username, None)
                    .await?
                {
                    return interrupted();
                }
            }
        }
    }
    if let Some(failure) = source.take_failure() {
        return Err(RunError::Fatal(anyhow::anyhow!(
            "{failure}; the plan covers the rows before it only"
        )));
    }
    let input = if input.as_os_str() == "-" {
        "stdin".to_owned()
    } else {
        input.display().to_string()
    };
    planner.finish(input, started, out)
}

/// `plan --from-pool`: the pool's UNCONFIRMED users in the creation window, as `backfill
/// --from-pool` would discover them (`ListUsers`, with every attribute for the medium).
pub(super) async fn pool(
    out: Output,
    settings: Settings,
    shutdown: Shutdown,
) -> Result<Finished, RunError> {
    let started = Instant::now();
    let settings = ready(settings, out).await?;
    let Some(client) = settings.cognito.client_id.clone() else {
        return Err(RunError::Usage(
            "plan --from-pool needs --client-id (cognito.client_id)".into(),
        ));
    };
    let Some(pool) = parts::pool_access(&settings).await? else {
        return Err(RunError::Usage(
            "plan --from-pool needs the user pool: --user-pool-id (cognito.user_pool_id)".into(),
        ));
    };
    let mut planner = Planner::start(&settings, Some(&pool), false, &shutdown).await?;
    let mut discovered = discover(
        super::backfill::discovery(&settings, pool.admin.clone(), Vec::new()),
        shutdown.token.child_token(),
    );
    while let Some(user) = tokio::select! {
        biased;
        _ = shutdown.token.cancelled() => return interrupted(),
        u = discovered.users.recv() => u,
    } {
        if check_username(&user.username).is_err() {
            planner.invalid();
            continue;
        }
        let username = user.username.clone();
        if !planner
            .row(Some(&client), &username, Some(Looked::Found(user)))
            .await?
        {
            return interrupted();
        }
    }
    if shutdown.token.is_cancelled() {
        return interrupted();
    }
    if let Some(failure) = discovered.take_failure() {
        return Err(RunError::Fatal(anyhow::anyhow!(
            "{failure}; the plan covers the users listed before it only"
        )));
    }
    planner.finish(format!("the pool {}", pool.profile.pool_id), started, out)
}

/// Checks the plan-only settings and finds the region when the pool will be read.
async fn ready(mut settings: Settings, out: Output) -> Result<Settings, RunError> {
    if let Some(price) = out.sms_price
        && !(price.is_finite() && price >= 0.0)
    {
        return Err(RunError::Usage(format!(
            "--sms-price: {price} is not a price in USD (0 or more)"
        )));
    }
    if settings.cognito.user_pool_id.is_some() {
        settings
            .resolve_region()
            .await
            .map_err(|e| RunError::Usage(e.to_string()))?;
    }
    Ok(settings)
}

/// A signal stopped the plan: nothing is printed (a partial forecast would mislead).
fn interrupted() -> Result<Finished, RunError> {
    Ok(Finished {
        complete: false,
        failed_or_invalid: 0,
    })
}

/// The forecast as it is built, row by row.
struct Planner<'a> {
    settings: &'a Settings,
    pool: Option<&'a PoolAccess>,
    /// Read each row from the pool (CSV rows with `--user-pool-id`); `--from-pool` users come
    /// with their status and attributes.
    reads: Option<Reads>,
    case: UsernameCase,
    stop: CancellationToken,
    allowed: HashSet<String>,
    ledger: LedgerView,
    /// Persons a code would go to, as the ledger keys them.
    persons: HashSet<UserKey>,
    /// Their rows' spellings, as written and folded (client id, spelling): how a merge is told.
    spellings: HashSet<(String, String)>,
    folded: HashSet<(String, String)>,
    rows: u64,
    jobs: Jobs,
    codes: Codes,
    calls: u64,
    run_pool_reads: u64,
    /// Rows whose user the pool does not have, that the run would call for: Cognito's simulated
    /// success under PreventUserExistenceErrors reports them `sent`.
    hidden_missing: u64,
    limits: Vec<Limit>,
    stop_at: Option<Stop>,
}

impl<'a> Planner<'a> {
    /// Opens the ledger read-only and reads today's spend; `read_rows`: CSV rows are read from
    /// the pool when there is one.
    async fn start(
        settings: &'a Settings,
        pool: Option<&'a PoolAccess>,
        read_rows: bool,
        shutdown: &Shutdown,
    ) -> Result<Self, RunError> {
        let case = parts::username_case(settings, pool);
        let ledger = open_ledger(settings, case).await?;
        let effective = parts::effective_limits(settings, ledger.present, pool);
        let day = effective.day();
        let spend = match &ledger.store {
            Some(store) if !day.is_empty() => store
                .day_spend(&ledger::utc_day(ledger.rules.now))
                .await
                .map_err(|e| RunError::Fatal(e.into()))?,
            _ => DaySpend::default(),
        };
        let from_default_account =
            settings.limits.max_email_per_day.is_none() && effective.max_email_per_day.is_some();
        let mut limits = Vec::new();
        for (cap, limit, spent) in [
            (SpendCap::Run, effective.max_sends, None),
            (
                SpendCap::Day,
                effective.max_sends_per_day,
                Some(spend.sends),
            ),
            (SpendCap::SmsDay, effective.max_sms_per_day, Some(spend.sms)),
            (
                SpendCap::EmailDay,
                effective.max_email_per_day,
                Some(spend.email),
            ),
        ] {
            let Some(limit) = limit else { continue };
            let setting = if cap == SpendCap::EmailDay && from_default_account {
                format!(
                    "Cognito's default email account: {DEFAULT_EMAIL_ACCOUNT_PER_DAY} emails a \
                     day (the run's --max-email-per-day)"
                )
            } else {
                cap.setting().to_owned()
            };
            let mut l = Limit {
                setting,
                cap,
                limit,
                spent_today: spent,
                reached_after_codes: None,
            };
            if l.reached(Codes::default()) {
                l.reached_after_codes = Some(0);
            }
            limits.push(l);
        }
        let reads = (read_rows && pool.is_some()).then(|| Reads {
            limiter: RateLimiter::unreported(settings.run.precheck_rate),
            retry: RetryPolicy::new(settings.retry.clone()),
            answers: Answers::default(),
            made: 0,
        });
        Ok(Self {
            settings,
            pool,
            reads,
            case,
            stop: shutdown.token.clone(),
            allowed: settings
                .cognito
                .allowed_client_ids
                .iter()
                .chain(&settings.cognito.client_id)
                .cloned()
                .collect(),
            ledger,
            persons: HashSet::new(),
            spellings: HashSet::new(),
            folded: HashSet::new(),
            rows: 0,
            jobs: Jobs::default(),
            codes: Codes::default(),
            calls: 0,
            run_pool_reads: 0,
            hidden_missing: 0,
            limits,
            stop_at: None,
        })
    }

    /// A row that cannot become a job.
    fn invalid(&mut self) {
        self.rows += 1;
        self.jobs.invalid += 1;
    }

    /// One job: its client id (its own or `--client-id`), the username as the row spells it,
    /// and, for a discovered user, what `ListUsers` said. `Ok(false)`: a signal stopped the
    /// plan.
    async fn row(
        &mut self,
        client: Option<&str>,
        spelling: &str,
        known: Option<Looked>,
    ) -> Result<bool, RunError> {
        self.rows += 1;
        let Some(client) = client.filter(|c| self.allowed.contains(*c)) else {
            self.jobs.invalid += 1;
            return Ok(true);
        };
        // The run reads the pool for a row only when that can change who it is for (see
        // `engine::identity`); a discovered user's name is already canonical.
        let run_reads = match (self.pool, &known) {
            (Some(p), None) => {
                self.settings.run.precheck || p.profile.has_aliases() || looks_like_sub(spelling)
            }
            (Some(p), Some(_)) => self.settings.run.precheck || p.profile.has_aliases(),
            (None, _) => false,
        };
        if run_reads {
            self.run_pool_reads += 1;
        }
        // A run that reads no status for the row asks the ledger what it knows first
        // (`--recheck-after`): a user known confirmed or missing gets no call, and no read.
        let status_read = run_reads || known.is_some();
        // What that one read found, kept for the cap and cooldown below (the same key: a row
        // whose status the run does not read is named as the run names it).
        let mut peeked = None;
        if !status_read && let Some(store) = &self.ledger.store {
            let key = UserKey::new(client, spelling, self.case);
            match store.peek(&key, self.ledger.rules).await {
                Ok(Some(Claim::Known { known, .. })) => {
                    match known {
                        ledger::Known::Confirmed => self.jobs.known_confirmed += 1,
                        ledger::Known::Missing => self.jobs.known_missing += 1,
                    }
                    return Ok(true);
                }
                Ok(found) => peeked = Some((key, found)),
                Err(e) => return Err(RunError::Fatal(e.into())),
            }
        }
        let looked = match known {
            Some(looked) => Some(looked),
            None => match self.read(spelling).await? {
                None => None,
                Some(Read::Answer(looked)) => Some(looked),
                Some(Read::Failed) => {
                    self.jobs.pool_read_failed += 1;
                    self.reserve();
                    self.calls += 1;
                    return Ok(true);
                }
                Some(Read::Stopped) => return Ok(false),
            },
        };
        let user = match looked {
            Some(Looked::Missing) => {
                self.jobs.not_found += 1;
                // Without its own read, the run calls and Cognito answers (past the claim).
                if !run_reads {
                    self.reserve();
                    self.calls += 1;
                    if self
                        .pool
                        .and_then(|p| p.profile.client(client))
                        .is_some_and(|c| c.prevents_user_existence_errors)
                    {
                        self.hidden_missing += 1;
                    }
                }
                return Ok(true);
            }
            Some(Looked::Found(user)) => Some(user),
            None => None,
        };
        let canonical = user.as_ref().map_or(spelling, |u| u.username.as_str());
        let key = UserKey::new(client, canonical, self.case);
        if self.ledger.present && self.persons.contains(&key) {
            let exact = (client.to_owned(), spelling.to_owned());
            if self.spellings.contains(&exact) {
                self.jobs.duplicates_merged += 1;
            } else if self
                .folded
                .contains(&(client.to_owned(), fold_username(spelling)))
            {
                self.jobs.case_variants_merged += 1;
            } else {
                self.jobs.aliases_merged += 1;
            }
            self.remember(client, spelling);
            return Ok(true);
        }
        if let Some(store) = &self.ledger.store {
            // What is known was asked above, for the rows whose status the run does not read.
            let rules = Rules {
                recheck_since: None,
                ..self.ledger.rules
            };
            let found = match peeked {
                Some((asked, found)) if asked == key => Ok(found),
                _ => store.peek(&key, rules).await,
            };
            match found {
                Ok(Some(Claim::Capped { .. })) => {
                    self.jobs.capped += 1;
                    return Ok(true);
                }
                Ok(Some(_)) => {
                    self.jobs.cooldown += 1;
                    return Ok(true);
                }
                Ok(None) => {}
                Err(e) => return Err(RunError::Fatal(e.into())),
            }
        }
        self.reserve();
        // An invited user (FORCE_CHANGE_PASSWORD) is a send when the run invites: `--status`
        // lists them, or `--action invite`.
        let invites = self.settings.cognito.action == Some(crate::job::Action::Invite)
            || self
                .settings
                .discover
                .status
                .contains(&"FORCE_CHANGE_PASSWORD");
        if let Some(u) = &user
            && u.status != "UNCONFIRMED"
            && !(invites && u.status == "FORCE_CHANGE_PASSWORD")
        {
            self.jobs.already_confirmed += 1;
            if !self.settings.run.precheck {
                self.calls += 1;
            }
            return Ok(true);
        }
        self.jobs.would_send += 1;
        self.calls += 1;
        match self
            .pool
            .zip(user.as_ref())
            .and_then(|(p, u)| p.profile.medium_for(&u.attributes))
        {
            Some(Medium::Sms) => self.codes.sms += 1,
            Some(Medium::Email) => self.codes.email += 1,
            None => self.codes.unknown += 1,
        }
        let codes = self.codes;
        for l in &mut self.limits {
            if l.reached_after_codes.is_none() && l.reached(codes) {
                l.reached_after_codes = Some(codes.total());
            }
        }
        if self.ledger.present {
            self.persons.insert(key);
            self.remember(client, spelling);
        }
        Ok(true)
    }

    fn remember(&mut self, client: &str, spelling: &str) {
        self.folded
            .insert((client.to_owned(), fold_username(spelling)));
        self.spellings
            .insert((client.to_owned(), spelling.to_owned()));
    }

    /// A job past its claim reserves a send: once a cap is reached, the first such job stops
    /// the run (the engine's `reserve`).
    fn reserve(&mut self) {
        if self.stop_at.is_some() {
            return;
        }
        if let Some(l) = self.limits.iter().find(|l| l.reached_after_codes.is_some()) {
            self.stop_at = Some(Stop {
                setting: l.setting.clone(),
                after_codes: self.codes.total(),
                after_sms: self.codes.sms,
                after_calls: self.calls,
                after_rows: self.rows - 1,
                after_seconds: 0.0,
                after_lookups: self.run_pool_reads,
            });
        }
    }

    /// `AdminGetUser` for a CSV row, when the plan reads the pool (`None`: it does not).
    async fn read(&mut self, spelling: &str) -> Result<Option<Read>, RunError> {
        let (Some(reads), Some(pool)) = (&mut self.reads, self.pool) else {
            return Ok(None);
        };
        let cached = self.case.key(spelling);
        if let Some(looked) = reads.answers.get(&cached) {
            return Ok(Some(Read::Answer(looked)));
        }
        reads.made += 1;
        let answer = pool_call(
            &reads.retry,
            &reads.limiter,
            &self.stop,
            "AdminGetUser",
            || pool.admin.user_state(spelling),
        )
        .await;
        let looked = match answer {
            None => return Ok(Some(Read::Stopped)),
            Some(Ok(UserState::Found(user))) => Looked::Found(user),
            Some(Ok(UserState::Missing)) => Looked::Missing,
            Some(Err(AdminError::Denied(detail))) => {
                return Err(RunError::Usage(format!(
                    "AdminGetUser on {} was refused (IAM: cognito-idp:AdminGetUser on the \
                     pool): {detail}",
                    pool.admin.pool_id()
                )));
            }
            Some(Err(e)) => {
                tracing::warn!("AdminGetUser failed for a row: {e}");
                return Ok(Some(Read::Failed));
            }
        };
        reads.answers.put(cached, looked.clone());
        Ok(Some(Read::Answer(looked)))
    }

    /// Prints the forecast.
    fn finish(self, input: String, started: Instant, out: Output) -> Result<Finished, RunError> {
        let settings = self.settings;
        let rate = match (settings.run.fleet_rate, settings.run.rate) {
            (Some(budget), _) => Rate {
                per_second: budget,
                from: "--fleet-rate",
            },
            (None, Some(r)) => Rate {
                per_second: r,
                from: "--rate",
            },
            (None, None) => Rate {
                per_second: RESEND_DEFAULT_QUOTA_RPS,
                from: "quota",
            },
        };
        let seconds = |calls: u64, reads: u64| {
            let calls = calls as f64 / rate.per_second;
            let reads = settings.run.precheck_rate.map_or(0.0, |r| reads as f64 / r);
            calls.max(reads)
        };
        let stop = self.stop_at.clone().map(|s| Stop {
            after_seconds: seconds(s.after_calls, s.after_lookups),
            ..s
        });
        let wall_seconds = match &stop {
            Some(s) => s.after_seconds,
            None => seconds(self.calls, self.run_pool_reads),
        };
        let sms_cost = out.sms_price.map(|price| SmsCost {
            price_usd: price,
            total_usd: price * self.codes.sms as f64,
            until_stop_usd: price * stop.as_ref().map_or(self.codes.sms, |s| s.after_sms) as f64,
        });
        let mut notes = Vec::new();
        if self.pool.is_none() {
            notes.push(
                "no --user-pool-id: the pool is not read, so `would send` also holds the rows \
                 Cognito will answer already confirmed or not found, and the medium of every \
                 code is unknown"
                    .to_owned(),
            );
        }
        if !self.ledger.present {
            notes.push(
                "--state none: no ledger, so no cooldown; a person named twice gets two codes"
                    .to_owned(),
            );
        } else if self.ledger.store.is_none() {
            notes.push(format!(
                "the ledger {} does not exist yet: nobody is in cooldown (the run creates it)",
                self.ledger.describe
            ));
        }
        if self.hidden_missing > 0 {
            notes.push(format!(
                "{} not_found jobs name a client with PreventUserExistenceErrors: Cognito \
                 answers them with a simulated success, so the run reports them sent",
                self.hidden_missing
            ));
        }
        if self.jobs.pool_read_failed > 0 {
            notes.push(format!(
                "{} rows could not be read from the pool (AdminGetUser failed after its \
                 retries; see the log): their outcome is not forecast",
                self.jobs.pool_read_failed
            ));
        }
        if settings.ledger.max_sends_per_user.is_some() {
            notes.push(
                "merged rows are the run's cooldown, or capped when the code before them \
                 reaches --max-sends-per-user"
                    .to_owned(),
            );
        }
        let forecast = Forecast {
            input,
            rows: self.rows,
            pool: self.pool.map(|p| p.profile.pool_id.clone()),
            plan_pool_reads: self.reads.as_ref().map_or(0, |r| r.made),
            ledger: self.ledger.describe.clone(),
            jobs: self.jobs,
            codes: self.codes,
            calls: self.calls,
            run_pool_reads: self.run_pool_reads,
            rate,
            wall_seconds,
            limits: self.limits,
            stop,
            sms_cost,
            notes,
        };
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            "plan done: nothing was sent"
        );
        let text = if out.json {
            let mut s = serde_json::to_string_pretty(&forecast)
                .map_err(|e| RunError::Fatal(anyhow::anyhow!("the forecast as JSON: {e}")))?;
            s.push('\n');
            s
        } else {
            render(&forecast)
        };
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        lock.write_all(text.as_bytes())
            .and_then(|()| lock.flush())
            .map_err(|e| RunError::Fatal(anyhow::anyhow!("writing to stdout: {e}")))?;
        done()
    }
}

/// The ledger `--state` names, read-only: opened with the run's case rule, or, for a SQLite
/// file that does not exist yet, not opened at all (a plan creates nothing).
async fn open_ledger(settings: &Settings, case: UsernameCase) -> Result<LedgerView, RunError> {
    let now = ledger::now_millis();
    let rules = settings
        .ledger
        .timing()
        .rules(now, settings.ledger.max_sends_per_user, false);
    let describe = settings.ledger.path.to_string();
    let (store, present) = match &settings.ledger.path {
        StateSpec::None => (None, false),
        StateSpec::Sqlite(path) if !path.exists() => (None, true),
        _ => (parts::open_ledger(settings, case).await?, true),
    };
    Ok(LedgerView {
        store,
        present,
        describe,
        rules,
    })
}
