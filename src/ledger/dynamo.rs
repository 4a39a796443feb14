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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};
use futures::future::BoxFuture;

use aws_sdk_dynamodb::types::ReturnValue;

use crate::job::{UserKey, fold_username};

use super::fleet;
use super::fold::{Folded, Hold, Row, merge};
use super::{
    Claim, DayCaps, DayReservation, DaySpend, Finish, Holder, InDoubt, LedgerError, Medium, Millis,
    Page, Rules, RunId, RunLiveness, RunRow, SpendCap, Spent, Stale, Stats, Store, UserRow, decide,
    duration_millis, host_label, plan, refused_by, rfc3339,
};

/// Where DynamoDB is.
#[derive(Debug, Clone, Default)]
pub struct DynamoSettings {
    /// `--region`.
    pub region: Option<String>,
    /// `--dynamodb-endpoint` (local DynamoDB, moto, VPC endpoints).
    pub endpoint: Option<url::Url>,
    /// `--retention`: every recorded outcome sets the user item's [`TTL_ATTR`] to this long
    /// after it, so DynamoDB's TTL deletes users idle for longer.
    pub retention: Option<Duration>,
}

/// The user items' time-to-live attribute (epoch seconds), which `ledger init` and the
/// CloudFormation in deploy/ enable TTL on.
pub const TTL_ATTR: &str = "expires_at";

/// A DynamoDB ledger table.
pub struct DynamoStore {
    client: Client,
    table: String,
    retention: Option<Duration>,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The day item's set of the tokens of reservations not yet settled ([`DayReservation`]).
const HELD: &str = "held";

/// Whether a day item holds reservation `token`, not yet settled.
fn holds(item: &Item, token: &str) -> bool {
    item.get(HELD)
        .and_then(|v| v.as_ss().ok())
        .is_some_and(|set| set.iter().any(|t| t == token))
}

/// The spend counters of a day item.
fn spend_of(day: &str, item: &Item) -> DaySpend {
    let count = |k: &str| u64::try_from(get_n(item, k).unwrap_or(0)).unwrap_or(0);
    DaySpend {
        day: day.to_owned(),
        sends: count("sends"),
        sms: count("sms"),
        email: count("email"),
    }
}

/// The day item's counter of a medium.
fn medium_attr(medium: Medium) -> &'static str {
    match medium {
        Medium::Sms => "sms",
        Medium::Email => "email",
    }
}

fn user_pk(client_id: &str, username: &str) -> String {
    format!("u#{client_id}#{username}")
}

fn run_pk(run: &str) -> String {
    format!("r#{run}")
}

/// The spend counters of a UTC day.
fn day_pk(day: &str) -> String {
    format!("d#{day}")
}

/// The attribute of a user item that counts its codes sent in `wave`.
fn wave_attr(wave: &str) -> String {
    format!("{WAVE_PREFIX}{wave}")
}

/// What every wave attribute's name starts with.
const WAVE_PREFIX: &str = "w#";

/// A user item's codes per wave.
fn waves_of(item: &Item) -> std::collections::BTreeMap<String, i64> {
    item.iter()
        .filter_map(|(k, v)| {
            let wave = k.strip_prefix(WAVE_PREFIX)?;
            Some((wave.to_owned(), v.as_n().ok()?.parse().ok()?))
        })
        .collect()
}

/// The marker item that the users' keys are folded ([`super::fold`]).
const FOLDED_PK: &str = "m#keys";

/// The attributes a user item may have besides `pk` and its `w#<wave>` counts: those the fold's
/// "unchanged since read" condition requires absent when the item was read without them.
const USER_ATTRS: [&str; 12] = [
    "client_id",
    "username",
    "sends",
    "last_sent_at",
    "last_outcome",
    "last_outcome_at",
    "claim_run",
    "claimed_at",
    "claim_token",
    "doubt_run",
    "doubt_at",
    "finish_token",
];

/// A user item as the fold merges it.
fn row_of(item: &Item) -> Row {
    Row {
        sends: get_n(item, "sends").unwrap_or(0),
        last_sent_at: get_n(item, "last_sent_at"),
        last_outcome: get_s(item, "last_outcome"),
        last_outcome_at: get_n(item, "last_outcome_at"),
        claim: get_s(item, "claim_run").map(|run| Hold {
            run,
            claimed_at: get_n(item, "claimed_at").unwrap_or(0),
            token: get_s(item, "claim_token"),
        }),
        doubt: mark_of(item),
        waves: waves_of(item),
    }
}

/// The user item of (`client_id`, `username`) holding `row`.
fn item_of(client_id: &str, username: &str, row: &Row) -> Item {
    let mut item = Item::from([
        ("pk".to_owned(), s(user_pk(client_id, username))),
        ("client_id".to_owned(), s(client_id)),
        ("username".to_owned(), s(username)),
    ]);
    let mut put = |k: &str, v: Option<AttributeValue>| {
        if let Some(v) = v {
            item.insert(k.to_owned(), v);
        }
    };
    put("sends", (row.sends != 0).then(|| n(row.sends)));
    put("last_sent_at", row.last_sent_at.map(n));
    put("last_outcome", row.last_outcome.clone().map(s));
    put("last_outcome_at", row.last_outcome_at.map(n));
    if let Some(c) = &row.claim {
        put("claim_run", Some(s(&c.run)));
        put("claimed_at", Some(n(c.claimed_at)));
        put("claim_token", c.token.clone().map(s));
    }
    if let Some(d) = &row.doubt {
        put("doubt_run", Some(s(&d.run)));
        put("doubt_at", Some(n(d.claimed_at)));
    }
    for (wave, count) in &row.waves {
        put(&wave_attr(wave), Some(n(*count)));
    }
    item
}

/// A condition expression, with its attribute names and values.
type Condition = (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
);

/// The condition that `item` is as it was read: it exists, every attribute has the value read,
/// and every user attribute it lacked is still absent. Every write to a user item changes one of
/// these (a claim its token, a result its `finish_token` or `sends`; a new wave's count comes
/// with `sends`).
fn unchanged(item: &Item) -> Condition {
    let mut terms = vec!["attribute_exists(pk)".to_owned()];
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut attrs: Vec<&String> = item.keys().filter(|k| *k != "pk").collect();
    attrs.sort();
    for (i, k) in attrs.into_iter().enumerate() {
        terms.push(format!("#a{i} = :v{i}"));
        names.insert(format!("#a{i}"), k.clone());
        values.insert(format!(":v{i}"), item[k].clone());
    }
    for (i, k) in USER_ATTRS
        .iter()
        .filter(|k| !item.contains_key(**k))
        .enumerate()
    {
        terms.push(format!("attribute_not_exists(#n{i})"));
        names.insert(format!("#n{i}"), (*k).to_owned());
    }
    (terms.join(" AND "), names, values)
}

/// The client id and username of a user item's `pk`.
fn user_of(pk: &str) -> Option<(&str, &str)> {
    pk.strip_prefix("u#")?.split_once('#')
}

/// The fleet item (`--fleet-rate`): one attribute per live run, its census counter, and the
/// fleet's throttle total.
const FLEET_PK: &str = "f#fleet";
/// The fleet item's throttle total (a run id is 32 hex digits, never this).
const FLEET_THROTTLES: &str = "throttles";
/// The fleet item's attribute holding a run's lease in milliseconds: `l#<run id>` (a run id is
/// 32 hex digits, so never this).
const LEASE_PREFIX: &str = "l#";

fn lease_attr(run: &str) -> String {
    format!("{LEASE_PREFIX}{run}")
}

/// Most dead runs one census removes (the rest go at the next, a beat later).
const PRUNE_MAX: usize = 25;

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

    /// Creates the table (on-demand billing) and waits until it is active.
    pub async fn create_table(&self) -> Result<(), LedgerError> {
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.fail(e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| self.fail(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| self.fail(format!("cannot create it: {}", DisplayErrorContext(&e))))?;
        for _ in 0..120 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.fail(DisplayErrorContext(&e).to_string()))?;
            if d.table().and_then(|t| t.table_status()).map(|s| s.as_str()) == Some("ACTIVE") {
                // Items carry the attribute only with `--retention`; enabling it costs nothing.
                self.client
                    .update_time_to_live()
                    .table_name(&self.table)
                    .time_to_live_specification(
                        TimeToLiveSpecification::builder()
                            .attribute_name(TTL_ATTR)
                            .enabled(true)
                            .build()
                            .map_err(|e| self.fail(e.to_string()))?,
                    )
                    .send()
                    .await
                    .map_err(|e| {
                        self.fail(format!(
                            "cannot enable TTL on {TTL_ATTR}: {}",
                            DisplayErrorContext(&e)
                        ))
                    })?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(self.fail("the table did not become ACTIVE within a minute".into()))
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
        call = match take_from {
            None => call
                .update_expression(
                    "SET claim_run = :me, claimed_at = :now, claim_token = :tok, client_id = :c, \
                     username = :u",
                )
                .condition_expression(format!(
                    "attribute_not_exists(claim_run) AND \
                     (attribute_not_exists(last_sent_at) OR last_sent_at < :since){capped}"
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

// (continued) folding the users' keys ([`super::fold`]).
impl DynamoStore {
    /// Merges the item of (`client_id`, `username`) into the item of its folded key `key`, in
    /// one `TransactWriteItems`: the merged item is put on condition that the folded item is as
    /// read (or still absent), and the old item deleted on condition that it is as read. A
    /// condition that fails (another replica folding, a claim or a result written meanwhile, or
    /// the SDK's retry of a transaction whose answer was lost after it went through) makes it
    /// read both again; an old item gone means it was merged already. So a row is merged at most
    /// once, whoever folds. True if this call merged it.
    async fn fold_one(
        &self,
        client_id: &str,
        username: &str,
        key: &str,
    ) -> Result<bool, LedgerError> {
        let from_pk = user_pk(client_id, username);
        let to_pk = user_pk(client_id, key);
        for _ in 0..16 {
            let Some(from) = self.get(from_pk.clone()).await? else {
                return Ok(false);
            };
            let to = self.get(to_pk.clone()).await?;
            let merged = merge(to.as_ref().map(row_of).unwrap_or_default(), row_of(&from));
            let mut item = item_of(client_id, key, &merged);
            // A result's token stays with the item it was written to: a run whose answer was
            // lost still recognises its write there.
            if let Some(ft) = to.as_ref().and_then(|t| t.get("finish_token")) {
                item.insert("finish_token".to_owned(), ft.clone());
            }
            let (cond, names, values) = match &to {
                Some(t) => unchanged(t),
                None => (
                    "attribute_not_exists(pk)".to_owned(),
                    HashMap::new(),
                    HashMap::new(),
                ),
            };
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(cond)
                .set_expression_attribute_names((!names.is_empty()).then_some(names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values))
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            let (cond, names, values) = unchanged(&from);
            let delete = Delete::builder()
                .table_name(&self.table)
                .key("pk", s(from_pk.clone()))
                .condition_expression(cond)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values))
                .build()
                .map_err(|e| self.fail(e.to_string()))?;
            let sent = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(true),
                Err(e)
                    if e.as_service_error().is_some_and(|e| {
                        e.is_transaction_canceled_exception()
                            || e.is_transaction_in_progress_exception()
                    }) =>
                {
                    tracing::debug!(
                        "folding a user's key: {}; reading it again",
                        DisplayErrorContext(&e)
                    );
                }
                Err(e) => return Err(self.sdk("TransactWriteItems (fold a key)", e)),
            }
        }
        Err(self.fail(
            "folding a user's key: the items kept changing under contention; giving up".into(),
        ))
    }

    /// The user items whose username is not folded, by their folded key (client id, key).
    async fn unfolded(&self) -> Result<BTreeMap<(String, String), Vec<String>>, LedgerError> {
        let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :u)")
                .expression_attribute_values(":u", s("u#"))
                .projection_expression("pk")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.sdk("Scan (fold keys)", e))?;
            for item in out.items() {
                let pk = get_s(item, "pk").unwrap_or_default();
                let Some((client_id, username)) = user_of(&pk) else {
                    continue;
                };
                let key = fold_username(username);
                if key != username {
                    groups
                        .entry((client_id.to_owned(), key))
                        .or_default()
                        .push(username.to_owned());
                }
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        for spellings in groups.values_mut() {
            spellings.sort();
        }
        Ok(groups)
    }
}

fn mark_of(item: &Item) -> Option<InDoubt> {
    get_s(item, "doubt_run").map(|run| InDoubt {
        run,
        claimed_at: get_n(item, "doubt_at").unwrap_or(0),
    })
}

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
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
        take_over: Option<&'a Stale>,
    ) -> BoxFuture<'a, Result<Claim, LedgerError>> {
        Box::pin(async move {
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
                match decide(
                    &run.0,
                    last_sent,
                    sends,
                    holder,
                    mark_of(&item),
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
        client_id: &'a str,
        username: &'a str,
        rules: Rules,
    ) -> BoxFuture<'a, Result<Option<Claim>, LedgerError>> {
        Box::pin(async move {
            let item = self.get(user_pk(client_id, username)).await?;
            let item = item.unwrap_or_default();
            Ok(plan(
                get_n(&item, "last_sent_at"),
                get_n(&item, "sends").unwrap_or(0),
                rules,
            ))
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
        Box::pin(async move {
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
                        *stats.sends_per_wave.entry(wave).or_default() +=
                            u64::try_from(n).unwrap_or(0);
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
        })
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
        Box::pin(async move {
            // One conditional write: the count grows only while every cap holds, so replicas
            // on many hosts can never reserve past a cap together. A medium known ahead is
            // counted in the same write, and only its own cap concerns it (see `refused_by`).
            // The reservation's token joins the day's `held` set in the same write, and the
            // write requires it absent: sent again after its answer was lost, it fails instead
            // of reserving twice, and the read below finds the token.
            let mut condition = vec![format!(
                "(attribute_not_exists({HELD}) OR NOT contains({HELD}, :tok))"
            )];
            let mut call = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(day_pk(&r.day)))
                .update_expression(match medium {
                    Some(Medium::Sms) => format!("ADD sends :one, sms :one, {HELD} :toks"),
                    Some(Medium::Email) => format!("ADD sends :one, email :one, {HELD} :toks"),
                    None => format!("ADD sends :one, {HELD} :toks"),
                })
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":tok", s(&r.token))
                .expression_attribute_values(":toks", AttributeValue::Ss(vec![r.token.clone()]));
            let (sms_cap, email_cap) = match medium {
                Some(Medium::Sms) => (caps.sms, None),
                Some(Medium::Email) => (None, caps.email),
                None => (caps.sms, caps.email),
            };
            for (attr, cap) in [
                ("sends", caps.sends),
                ("sms", sms_cap),
                ("email", email_cap),
            ] {
                if let Some(cap) = cap {
                    condition.push(format!(
                        "(attribute_not_exists({attr}) OR {attr} < :{attr})"
                    ));
                    call = call.expression_attribute_values(
                        format!(":{attr}"),
                        n(i64::try_from(cap).unwrap_or(i64::MAX)),
                    );
                }
            }
            let call = call.condition_expression(condition.join(" AND "));
            // A refusal reads the day to learn why: our own token there (our write went
            // through, its answer was lost), or the cap reached. If neither (a reservation was
            // given back in between), the write is tried again, a few times.
            for _ in 0..4 {
                match call.clone().send().await {
                    Ok(_) => return Ok(None),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        let item = self.get(day_pk(&r.day)).await?.unwrap_or_default();
                        if holds(&item, &r.token) {
                            return Ok(None);
                        }
                        if let Some(cap) = refused_by(&spend_of(&r.day, &item), caps, medium) {
                            return Ok(Some(cap));
                        }
                    }
                    Err(e) => return Err(self.sdk("UpdateItem (reserve)", e)),
                }
            }
            Ok(Some(SpendCap::Day))
        })
    }

    fn settle_send<'a>(
        &'a self,
        r: &'a DayReservation,
        spent: Spent,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(async move {
            // Every settlement takes the token out of `held` in the same write, on condition
            // that it is there: sent again after its answer was lost, the write fails its
            // condition and changes nothing, so a reservation is given back (or its medium
            // counted) once. The counters never go below zero: a token held means its
            // reservation is in them.
            let changes = match spent {
                Spent::Kept => String::new(),
                Spent::Moved { reserved, sent } if reserved == sent => String::new(),
                Spent::Nothing => "ADD sends :minus ".to_owned(),
                Spent::Code(medium) => format!("ADD {} :one ", medium_attr(medium)),
                Spent::NothingOf(medium) => {
                    format!("ADD sends :minus, {} :minus ", medium_attr(medium))
                }
                Spent::Moved { reserved, sent } => format!(
                    "ADD {} :minus, {} :one ",
                    medium_attr(reserved),
                    medium_attr(sent)
                ),
            };
            let mut call = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(day_pk(&r.day)))
                .update_expression(format!("{changes}DELETE {HELD} :toks"))
                .condition_expression(format!("contains({HELD}, :tok)"))
                .expression_attribute_values(":tok", s(&r.token))
                .expression_attribute_values(":toks", AttributeValue::Ss(vec![r.token.clone()]));
            if changes.contains(":minus") {
                call = call.expression_attribute_values(":minus", n(-1));
            }
            if changes.contains(":one") {
                call = call.expression_attribute_values(":one", n(1));
            }
            match call.send().await {
                Ok(_) => Ok(()),
                // Settled already (our own write, whose answer was lost).
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(self.sdk("UpdateItem (settle a reservation)", e)),
            }
        })
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
    ) -> BoxFuture<'a, Result<fleet::Listing, LedgerError>> {
        Box::pin(async move {
            // One write to the one fleet item: bump this run's counter and the fleet's throttle
            // total, note this run's lease (`l#<run>`: others judge it by it), drop the dead, and
            // read the whole item back. Never a Scan.
            let mut update = "SET #mylease = :lease ADD #me :one, #throttles :throttles".to_owned();
            let mut call = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(FLEET_PK))
                .expression_attribute_names("#me", &run.0)
                .expression_attribute_names("#mylease", lease_attr(&run.0))
                .expression_attribute_names("#throttles", FLEET_THROTTLES)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":lease", n(duration_millis(lease)))
                .expression_attribute_values(":throttles", n(throttles as i64))
                .return_values(ReturnValue::AllNew);
            let dead: Vec<&String> = dead
                .iter()
                .filter(|d| **d != run.0)
                .take(PRUNE_MAX)
                .collect();
            for (i, d) in dead.iter().enumerate() {
                update.push_str(if i == 0 { " REMOVE " } else { ", " });
                update.push_str(&format!("#d{i}, #l{i}"));
                call = call
                    .expression_attribute_names(format!("#d{i}"), d.as_str())
                    .expression_attribute_names(format!("#l{i}"), lease_attr(d));
            }
            let out = call
                .update_expression(update)
                .send()
                .await
                .map_err(|e| self.sdk("UpdateItem (fleet)", e))?;
            let mut listing = fleet::Listing::default();
            for (k, v) in out.attributes.unwrap_or_default() {
                let Some(count) = v.as_n().ok().and_then(|n| n.parse::<i64>().ok()) else {
                    continue;
                };
                match k.as_str() {
                    "pk" => {}
                    FLEET_THROTTLES => listing.throttles = count.max(0) as u64,
                    _ => match k.strip_prefix(LEASE_PREFIX) {
                        Some(run) if count > 0 => {
                            listing
                                .leases
                                .insert(run.to_owned(), Duration::from_millis(count as u64));
                        }
                        Some(_) => {}
                        None => listing.runs.push((k, count)),
                    },
                }
            }
            Ok(listing)
        })
    }

    fn fold_usernames(&self) -> BoxFuture<'_, Result<Folded, LedgerError>> {
        Box::pin(async move {
            // The cheap path of every open after the first: one read.
            if self.get(FOLDED_PK.to_owned()).await?.is_some() {
                return Ok(Folded::default());
            }
            let mut folded = Folded::default();
            for ((client_id, key), spellings) in self.unfolded().await? {
                let mut merged = false;
                for username in &spellings {
                    if self.fold_one(&client_id, username, &key).await? {
                        folded.rows += 1;
                        merged = true;
                    }
                }
                folded.users += u64::from(merged);
            }
            // Written last: a fold cut short is done again (and finds what is left) by the next.
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(FOLDED_PK))
                .item("folded_at", n(super::now_millis()))
                .send()
                .await
                .map_err(|e| self.sdk("PutItem (keys folded)", e))?;
            Ok(folded)
        })
    }
}
