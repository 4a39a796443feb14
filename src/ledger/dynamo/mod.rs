//! The shared ledger: one DynamoDB table (`--state dynamodb://TABLE`) for replicas on many hosts.
//!
//! Same rules as the SQLite ledger, made atomic with conditional writes instead of a
//! transaction — the pattern of Powertools' idempotency utility:
//!
//! 1. Claim with one `UpdateItem` whose condition is "no claim, and no send within the
//!    cooldown". Most claims end here.
//! 2. If the condition fails, read the item (strongly consistent) to learn why: a recent send
//!    (`cooldown`), or a claim. For a claim, read its run's heartbeat counter: a run that ended,
//!    or one the caller judged dead at that same counter ([`super::Ledger::claim`]), is taken
//!    over with a second conditional write naming the dead run, so two takers cannot both win;
//!    otherwise the claim is held.
//!
//! Every claim writes a fresh random `claim_token`. The SDK retries a write whose answer was
//! lost (a dropped connection, a timeout); when the first try had gone through, the retry fails
//! its condition against our own claim. The read in step 2 then finds our token and knows the
//! claim is ours, instead of taking it for another job's (a duplicate row of this same run is
//! held, by design, and is told apart by its different token).
//!
//! The table has one string partition key, `pk`. User items are `u#<client id>#<username>`
//! (client ids have no `#`, so the split is unambiguous), with a number attribute `w#<wave>` per
//! `--wave` that sent them a code, run items `r#<run id>` (with the run's `lease_ms`, by which
//! other runs judge its claims; an item of an older build has none, and the reader's lease
//! judges it), each UTC day's spend counters `d#<YYYY-MM-DD>`, and `m#keys`, the marker that
//! the usernames are folded ([`super::fold`]; the fold merges with conditional
//! `TransactWriteItems`, see `DynamoStore::fold_one`). Create it with
//! `cognito-resend ledger init --state dynamodb://TABLE` or the CloudFormation in `deploy/`.
//!
//! A day item counts `sends`, `sms` and `email`, and holds in a string set `held` the token of
//! every reservation not yet settled. A reservation is one conditional `UpdateItem` (`ADD sends
//! 1` and its token, only while every cap holds and the token is not there yet); its settlement
//! another (give back, count the medium, or nothing, and take the token out, only while the token
//! is there). So a reservation or a settlement sent again after its answer was lost counts once:
//! the second write fails its condition. The set holds only reservations in flight (and those of
//! a run that died mid-call), since every reservation is settled, whatever its end.
//!
//! The SDK's standard retries stay on here: unlike Cognito's resend, a DynamoDB write is safe to
//! retry (the conditions and tokens make a repeated claim, result, reservation or settlement
//! fail, not double).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use futures::future::BoxFuture;

use aws_sdk_dynamodb::types::ReturnValue;

use crate::job::UserKey;

use super::fold::Folded;
use super::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, Holder, InDoubt, Known, LedgerError, Listing,
    Medium, Millis, Page, Rules, RunId, RunLiveness, SpendCap, Spent, Stale, Stats, Store, UserRow,
    decide, duration_millis, host_label, plan, rfc3339,
};

/// Where DynamoDB is.
#[derive(Debug, Clone, Default)]
pub struct DynamoSettings {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--dynamodb-endpoint` (local DynamoDB, moto, VPC endpoints).
    pub endpoint: Option<url::Url>,
    /// `--retention`: every recorded outcome sets the user item's [`TTL_ATTR`] to this long
    /// after it, so DynamoDB's TTL deletes users idle for longer.
    pub retention: Option<Duration>,
}

/// The user items' time-to-live attribute (epoch seconds), which `ledger init` and the
/// CloudFormation in deploy/ enable TTL on.
pub(crate) const TTL_ATTR: &str = "expires_at";

mod census;
mod folding;
mod items;
mod spend;
mod stats;
mod table;

use items::*;

/// A DynamoDB ledger table.
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Option<Duration>,
}

impl DynamoStore {
    /// A client for `table`; checks the table exists.
    pub async fn connect(table: &str, settings: &DynamoSettings) -> Result<Self, LedgerError> {
        let store = Self::client_only(table, settings).await;
        store
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                store.fail(format!(
                    "cannot use the table: {}. Create it with `cognito-resend ledger init \
                     --state dynamodb://{table}`",
                    DisplayErrorContext(&e)
                ))
            })?;
        Ok(store)
    }

    /// A store over a client built elsewhere (tests point one at a local DynamoDB, or at a
    /// proxy that loses answers); no existence check.
    pub fn from_client(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
            retention: None,
        }
    }

    /// Sets `ledger.retention` (see [`DynamoSettings::retention`]).
    pub fn with_retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }

    /// A client without the existence check (for `ledger init`).
    pub async fn client_only(table: &str, settings: &DynamoSettings) -> Self {
        let sdk = crate::aws::sdk_config(crate::aws::SdkOptions {
            region: settings.region.as_deref(),
            profile: settings.profile.as_deref(),
            endpoint: settings.endpoint.as_ref(),
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(5),
            // The one client whose SDK retries stay on: why is in `SdkOptions::sdk_retries`.
            sdk_retries: true,
            signed: true,
        })
        .await;
        Self {
            client: Client::new(&sdk),
            table: table.to_owned(),
            retention: settings.retention,
        }
    }

    fn fail(&self, detail: String) -> LedgerError {
        LedgerError {
            state: self.describe(),
            detail,
        }
    }

    fn sdk<E, R>(&self, what: &str, e: SdkError<E, R>) -> LedgerError
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        self.fail(format!("{what}: {}", DisplayErrorContext(&e)))
    }

    async fn get(&self, pk: String) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.sdk("GetItem", e))?;
        Ok(out.item)
    }

    /// A run's heartbeat counter, whether it ended cleanly, and its lease (`lease_ms`, absent
    /// from items of older builds); `None` if it has no item.
    async fn run_state(&self, run: &str) -> Result<Option<RunLiveness>, LedgerError> {
        let item = self.get(run_pk(run)).await?;
        Ok(item.map(|i| RunLiveness {
            beats: get_n(&i, "beats").unwrap_or(0),
            ended: i.contains_key("finished_at"),
            lease: get_n(&i, "lease_ms"),
        }))
    }

    /// Sets `run`'s time stamps (`:now` in `update`).
    async fn touch_run(
        &self,
        run: &RunId,
        now: Millis,
        update: &str,
        what: &str,
    ) -> Result<(), LedgerError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(&run.0)))
            .update_expression(update)
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .map_err(|e| self.sdk(&format!("UpdateItem ({what})"), e))?;
        Ok(())
    }

    /// A conditional claim write carrying `token`: step 1 (`take_from` none: no claim and no
    /// recent send), or a takeover of `take_from`'s claim, which leaves its mark in the item.
    /// `Ok(Some(item))`, the item as written, if it is ours; `Ok(None)` if the condition failed.
    async fn write_claim(
        &self,
        run: &RunId,
        token: &str,
        client_id: &str,
        username: &str,
        rules: Rules,
        take_from: Option<&InDoubt>,
    ) -> Result<Option<Item>, LedgerError> {
        let mut call = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(user_pk(client_id, username)))
            .return_values(ReturnValue::AllNew)
            .expression_attribute_values(":me", s(&run.0))
            .expression_attribute_values(":tok", s(token))
            .expression_attribute_values(":now", n(rules.now))
            .expression_attribute_values(":c", s(client_id))
            .expression_attribute_values(":u", s(username))
            .expression_attribute_values(":since", n(rules.cooldown_since));
        // The cap in the same condition: a user at it is never claimed, and a send's count is
        // written in the same UpdateItem that ends its claim, so replicas cannot pass it.
        let capped = match rules.max_sends_per_user {
            Some(max) => {
                call = call
                    .expression_attribute_values(":max", n(i64::try_from(max).unwrap_or(i64::MAX)));
                " AND (attribute_not_exists(sends) OR sends < :max)"
            }
            None => "",
        };
        // What is known (`--recheck-after`), in the same condition: a user whose recorded
        // outcome says confirmed or missing, recently, with no in-doubt mark, is not claimed;
        // the read after the failed condition tells [`decide`] why.
        let known = match (rules.recheck_since, take_from) {
            (Some(since), None) => {
                call = call.expression_attribute_values(":recheck", n(since));
                for (name, (outcome, _)) in KNOWN_VALUES.iter().zip(Known::OUTCOMES) {
                    call = call.expression_attribute_values(*name, s(outcome));
                }
                KNOWN_CONDITION
            }
            _ => "",
        };
        call = match take_from {
            None => call
                .update_expression(
                    "SET claim_run = :me, claimed_at = :now, claim_token = :tok, client_id = :c, \
                     username = :u",
                )
                .condition_expression(format!(
                    "attribute_not_exists(claim_run) AND \
                     (attribute_not_exists(last_sent_at) OR last_sent_at < :since){capped}{known}"
                )),
            Some(dead) => call
                .update_expression(
                    "SET claim_run = :me, claimed_at = :now, claim_token = :tok, client_id = :c, \
                     username = :u, doubt_run = :dead, doubt_at = :dead_at",
                )
                .condition_expression(format!(
                    "claim_run = :dead AND \
                     (attribute_not_exists(last_sent_at) OR last_sent_at < :since){capped}"
                ))
                .expression_attribute_values(":dead", s(&dead.run))
                .expression_attribute_values(":dead_at", n(dead.claimed_at)),
        };
        match call.send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk("UpdateItem (claim)", e)),
        }
    }
}

/// The values naming [`Known::OUTCOMES`] in [`KNOWN_CONDITION`], in that order.
const KNOWN_VALUES: [&str; Known::OUTCOMES.len()] = [":known0", ":known1", ":known2"];

/// A claim's condition for `--recheck-after`: the user is not known confirmed or missing since
/// `:recheck` (or is left in doubt, which a call settles). See [`decide`].
const KNOWN_CONDITION: &str = " AND (attribute_exists(doubt_run) OR attribute_not_exists(last_outcome_at) \
     OR last_outcome_at < :recheck OR NOT (last_outcome IN (:known0, :known1, :known2)))";

impl Store for DynamoStore {
    fn describe(&self) -> String {
        format!("dynamodb://{}", self.table)
    }

    fn begin_run<'a>(
        &'a self,
        run: &'a RunId,
        command: &'a str,
        lease: Duration,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(run_pk(&run.0)))
                .item("run", s(&run.0))
                .item("command", s(command))
                .item("host", s(host_label()))
                .item("started_at", n(now))
                .item("heartbeat_at", n(now))
                .item(
                    "lease_ms",
                    n(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
                )
                .send()
                .await
                .map_err(|e| self.sdk("PutItem (run)", e))?;
            Ok(())
        })
    }

    fn heartbeat<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(run_pk(&run.0)))
                .update_expression("SET heartbeat_at = :now ADD beats :one")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":one", n(1))
                .send()
                .await
                .map_err(|e| self.sdk("UpdateItem (heartbeat)", e))?;
            Ok(())
        })
    }

    fn end_run<'a>(
        &'a self,
        run: &'a RunId,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            self.touch_run(
                run,
                now,
                "SET heartbeat_at = :now, finished_at = :now",
                "end of run",
            )
            .await?;
            // Leave the fleet at once, so the others' shares grow at their next census. Best
            // effort: if this fails (or a census of this run still in flight puts the entry
            // back), they prune this run after a lease of standing still.
            let left = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(FLEET_PK))
                .update_expression("REMOVE #me, #mylease")
                .condition_expression("attribute_exists(#me)")
                .expression_attribute_names("#me", &run.0)
                .expression_attribute_names("#mylease", lease_attr(&run.0))
                .send()
                .await;
            if let Err(e) = left
                && !e
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                tracing::debug!("leaving the fleet item: {}", DisplayErrorContext(&e));
            }
            Ok(())
        })
    }

    fn claim<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        Box::pin(async move {
            let (client_id, username) = (key.client_id.as_str(), key.username.as_str());
            let token = RunId::new().0;
            // Each round either decides or saw the item change under it; a few rounds settle.
            for _ in 0..8 {
                if let Some(item) = self
                    .write_claim(run, &token, client_id, username, rules, None)
                    .await?
                {
                    return Ok(Claim::Granted {
                        in_doubt: mark_of(&item),
                    });
                }
                let Some(item) = self.get(user_pk(client_id, username)).await? else {
                    continue;
                };
                if get_s(&item, "claim_token").as_deref() == Some(token.as_str()) {
                    // Our own write, whose answer was lost: the claim is ours.
                    return Ok(Claim::Granted {
                        in_doubt: mark_of(&item),
                    });
                }
                let last_sent = get_n(&item, "last_sent_at");
                let holder_run = get_s(&item, "claim_run");
                let state = match holder_run.as_deref() {
                    Some(h) if h != run.0 => self.run_state(h).await?,
                    _ => None,
                };
                let holder = holder_run
                    .as_deref()
                    .map(|h| Holder::of(h, get_n(&item, "claimed_at").unwrap_or(0), state));
                let taking_over = holder.is_some();
                let sends = get_n(&item, "sends").unwrap_or(0);
                let last_outcome = get_s(&item, "last_outcome");
                let last = last_outcome.as_deref().zip(get_n(&item, "last_outcome_at"));
                match decide(
                    &run.0,
                    last_sent,
                    sends,
                    holder,
                    mark_of(&item),
                    last,
                    take_over,
                    rules,
                ) {
                    Claim::Granted {
                        in_doubt: Some(dead),
                    } if taking_over => {
                        if self
                            .write_claim(run, &token, client_id, username, rules, Some(&dead))
                            .await?
                            .is_some()
                        {
                            return Ok(Claim::Granted {
                                in_doubt: Some(dead),
                            });
                        }
                    }
                    Claim::Granted { .. } => continue, // freed meanwhile
                    decided => return Ok(decided),
                }
            }
            Err(self.fail("the claim kept changing under contention; giving up on this job".into()))
        })
    }

    fn peek<'a>(
        &'a self,
        key: &'a UserKey,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>> {
        Box::pin(async move {
            let (client_id, username) = (key.client_id.as_str(), key.username.as_str());
            let item = self.get(user_pk(client_id, username)).await?;
            let item = item.unwrap_or_default();
            let last_outcome = get_s(&item, "last_outcome");
            Ok(plan(
                get_n(&item, "last_sent_at"),
                get_n(&item, "sends").unwrap_or(0),
                last_outcome.as_deref().zip(get_n(&item, "last_outcome_at")),
                rules,
            ))
        })
    }

    fn finish<'a>(
        &'a self,
        run: &'a RunId,
        key: &'a UserKey,
        how: Finish,
        wave: Option<&'a str>,
        now: Millis,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            let (client_id, username) = (key.client_id.as_str(), key.username.as_str());
            let pk = user_pk(client_id, username);
            // A send's wave is counted in the same write as the send (`ADD #w :one`).
            let (add_wave, wave_name) = match wave {
                Some(w) => (", #w :one", Some(wave_attr(w))),
                None => ("", None),
            };
            // Like a claim, a result carries a token, so a retried write whose first try went
            // through is not mistaken for a takeover (and a send counted twice).
            let token = RunId::new().0;
            // `--retention`: each recorded outcome pushes the item's expiry out again.
            let ttl = match self.retention {
                Some(_) => ", #ttl = :exp",
                None => "",
            };
            let base = || {
                let call = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(pk.clone()))
                    .expression_attribute_values(":me", s(&run.0))
                    .expression_attribute_values(":ft", s(&token));
                match self.retention {
                    Some(keep) => call
                        .expression_attribute_names("#ttl", TTL_ATTR)
                        .expression_attribute_values(
                            ":exp",
                            n((now + duration_millis(keep)) / 1000),
                        ),
                    None => call,
                }
            };
            let mine = "claim_run = :me";
            let call = match how {
                Finish::Sent => base()
                    .update_expression(format!(
                        "SET last_sent_at = :now, last_outcome = :o, last_outcome_at = :now, \
                         finish_token = :ft{ttl} ADD sends :one{add_wave} \
                         REMOVE claim_run, claimed_at, claim_token, doubt_run, doubt_at"
                    ))
                    .set_expression_attribute_names({
                        let mut names: HashMap<String, String> = HashMap::new();
                        if let Some(w) = wave_name.clone() {
                            names.insert("#w".to_owned(), w);
                        }
                        if self.retention.is_some() {
                            names.insert("#ttl".to_owned(), TTL_ATTR.to_owned());
                        }
                        (!names.is_empty()).then_some(names)
                    })
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":o", s("sent"))
                    .expression_attribute_values(":one", n(1)),
                Finish::MaybeSent(outcome) => base()
                    .update_expression(format!(
                        "SET last_sent_at = :now, last_outcome = :o, last_outcome_at = :now, \
                         finish_token = :ft{ttl} \
                         REMOVE claim_run, claimed_at, claim_token, doubt_run, doubt_at"
                    ))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":o", s(outcome)),
                Finish::NotSent(outcome) => base()
                    .update_expression(format!(
                        "SET last_outcome = :o, last_outcome_at = :now, finish_token = :ft{ttl} \
                         REMOVE claim_run, claimed_at, claim_token, doubt_run, doubt_at"
                    ))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":o", s(outcome)),
                // The in-doubt mark stays until a result is recorded.
                Finish::Release => base().update_expression(format!(
                    "SET finish_token = :ft{ttl} REMOVE claim_run, claimed_at, claim_token"
                )),
            };
            match call.condition_expression(mine).send().await {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    let item = self.get(pk.clone()).await?;
                    if item.is_some_and(|i| {
                        get_s(&i, "finish_token").as_deref() == Some(token.as_str())
                    }) {
                        return Ok(()); // our own write; its answer was lost
                    }
                    // Another run took the claim over, believing us dead. A send, or a
                    // possible one, still counts: record it (and its cooldown) without touching
                    // their claim.
                    let record = match how {
                        Finish::Sent => Some((
                            format!(
                                "SET last_sent_at = :now, last_outcome = :o, \
                                 last_outcome_at = :now ADD sends :one{add_wave}"
                            ),
                            "sent",
                        )),
                        Finish::MaybeSent(outcome) => Some((
                            "SET last_sent_at = :now, last_outcome = :o, last_outcome_at = :now"
                                .to_owned(),
                            outcome,
                        )),
                        Finish::NotSent(_) | Finish::Release => None,
                    };
                    if let Some((update, outcome)) = record {
                        let mut call = self
                            .client
                            .update_item()
                            .table_name(&self.table)
                            .key("pk", s(pk.clone()))
                            .update_expression(update)
                            .expression_attribute_values(":now", n(now))
                            .expression_attribute_values(":o", s(outcome));
                        if how == Finish::Sent {
                            call = call
                                .expression_attribute_values(":one", n(1))
                                .set_expression_attribute_names(
                                    wave_name.map(|w| HashMap::from([("#w".to_owned(), w)])),
                                );
                        }
                        call.send()
                            .await
                            .map_err(|e| self.sdk("UpdateItem (send)", e))?;
                    }
                    tracing::warn!(
                        "ledger: another run took over a claim of this run (was this run's \
                         heartbeat late by more than the claim lease?)"
                    );
                    Ok(())
                }
                Err(e) => Err(self.sdk("UpdateItem (finish)", e)),
            }
        })
    }

    fn stats(&self, rules: Rules) -> BoxFuture<'_, Result<Stats, LedgerError>> {
        Box::pin(self.stats_of(rules))
    }

    fn forget<'a>(&'a self, keys: &'a [UserKey]) -> BoxFuture<'a, Result<u64, LedgerError>> {
        Box::pin(async move {
            let mut removed = 0;
            for key in keys {
                let out = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", s(user_pk(&key.client_id, &key.username)))
                    .return_values(ReturnValue::AllOld)
                    .send()
                    .await
                    .map_err(|e| self.sdk("DeleteItem (forget)", e))?;
                if out.attributes.is_some_and(|a| !a.is_empty()) {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn prune(&self, before: Millis) -> BoxFuture<'_, Result<u64, LedgerError>> {
        Box::pin(async move {
            // Written since `before`, or claimed: kept. The same test again as the delete's
            // condition, so a row written between the scan and the delete stays.
            let idle = "attribute_not_exists(claim_run) \
                AND (attribute_not_exists(last_sent_at) OR last_sent_at < :before) \
                AND (attribute_not_exists(last_outcome_at) OR last_outcome_at < :before) \
                AND (attribute_not_exists(doubt_at) OR doubt_at < :before)";
            let mut removed = 0;
            let mut start = None;
            loop {
                let page = self
                    .client
                    .scan()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .filter_expression(format!("begins_with(pk, :u) AND {idle}"))
                    .expression_attribute_values(":u", s("u#"))
                    .expression_attribute_values(":before", n(before))
                    .projection_expression("pk")
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| self.sdk("Scan (prune)", e))?;
                for item in page.items() {
                    let Some(pk) = get_s(item, "pk") else {
                        continue;
                    };
                    let gone = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(pk))
                        .condition_expression(format!("attribute_exists(pk) AND {idle}"))
                        .expression_attribute_values(":before", n(before))
                        .send()
                        .await;
                    match gone {
                        Ok(_) => removed += 1,
                        Err(e)
                            if e.as_service_error()
                                .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                        Err(e) => return Err(self.sdk("DeleteItem (prune)", e)),
                    }
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    return Ok(removed);
                }
            }
        })
    }

    fn export_page(
        &self,
        cursor: Option<String>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Page, LedgerError>> {
        Box::pin(async move {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .limit(i32::try_from(limit).unwrap_or(i32::MAX))
                .filter_expression("begins_with(pk, :u)")
                .expression_attribute_values(":u", s("u#"))
                .set_exclusive_start_key(cursor.map(|c| HashMap::from([("pk".to_owned(), s(c))])))
                .send()
                .await
                .map_err(|e| self.sdk("Scan", e))?;
            let rows = out
                .items()
                .iter()
                .map(|i| UserRow {
                    client_id: get_s(i, "client_id").unwrap_or_default(),
                    username: get_s(i, "username").unwrap_or_default(),
                    sends: get_n(i, "sends").unwrap_or(0),
                    last_sent_at: get_n(i, "last_sent_at").map(rfc3339),
                    last_outcome: get_s(i, "last_outcome"),
                    last_outcome_at: get_n(i, "last_outcome_at").map(rfc3339),
                    claimed_by: get_s(i, "claim_run"),
                    waves: waves_of(i),
                })
                .collect();
            let next = out.last_evaluated_key.as_ref().and_then(|k| get_s(k, "pk"));
            Ok((rows, next))
        })
    }

    fn reserve_send<'a>(
        &'a self,
        r: &'a DayReservation,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> BoxFuture<'a, Result<Option<SpendCap>, LedgerError>> {
        Box::pin(self.reserve(r, caps, medium))
    }

    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(self.settle(r, spent))
    }

    fn day_spend<'a>(&'a self, day: &'a str) -> BoxFuture<'a, Result<DaySpend, LedgerError>> {
        Box::pin(async move {
            let item = self.get(day_pk(day)).await?.unwrap_or_default();
            Ok(spend_of(day, &item))
        })
    }

    fn census<'a>(
        &'a self,
        run: &'a RunId,
        lease: Duration,
        dead: &'a [String],
        throttles: u64,
    ) -> BoxFuture<'a, Result<Listing, LedgerError>> {
        Box::pin(self.take_census(run, lease, dead, throttles))
    }

    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        Box::pin(self.fold_keys())
    }
}
