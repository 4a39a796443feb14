//! The table's item layout: keys, attribute names and the helpers that read and write items,
//! which every file of the DynamoDB store speaks (see the store's module doc for the layout).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::ledger::fold::{Hold, Row};
use crate::ledger::{DaySpend, InDoubt, Medium};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(item: &Item, k: &str) -> Option<i64> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The day item's set of the tokens of reservations not yet settled ([`DayReservation`](crate::ledger::DayReservation)).
pub(super) const HELD: &str = "held";

/// Whether a day item holds reservation `token`, not yet settled.
pub(super) fn holds(item: &Item, token: &str) -> bool {
    item.get(HELD)
        .and_then(|v| v.as_ss().ok())
        .is_some_and(|set| set.iter().any(|t| t == token))
}

/// The spend counters of a day item.
pub(super) fn spend_of(day: &str, item: &Item) -> DaySpend {
    let count = |k: &str| u64::try_from(get_n(item, k).unwrap_or(0)).unwrap_or(0);
    DaySpend {
        day: day.to_owned(),
        sends: count("sends"),
        sms: count("sms"),
        email: count("email"),
    }
}

/// The day item's counter of a medium.
pub(super) fn medium_attr(medium: Medium) -> &'static str {
    match medium {
        Medium::Sms => "sms",
        Medium::Email => "email",
    }
}

pub(super) fn user_pk(client_id: &str, username: &str) -> String {
    format!("u#{client_id}#{username}")
}

pub(super) fn run_pk(run: &str) -> String {
    format!("r#{run}")
}

/// The spend counters of a UTC day.
pub(super) fn day_pk(day: &str) -> String {
    format!("d#{day}")
}

/// The attribute of a user item that counts its codes sent in `wave`.
pub(super) fn wave_attr(wave: &str) -> String {
    format!("{WAVE_PREFIX}{wave}")
}

/// What every wave attribute's name starts with.
pub(super) const WAVE_PREFIX: &str = "w#";

/// A user item's codes per wave.
pub(super) fn waves_of(item: &Item) -> std::collections::BTreeMap<String, i64> {
    item.iter()
        .filter_map(|(k, v)| {
            let wave = k.strip_prefix(WAVE_PREFIX)?;
            Some((wave.to_owned(), v.as_n().ok()?.parse().ok()?))
        })
        .collect()
}

/// The marker item that the users' keys are folded ([`crate::ledger::fold`]).
pub(super) const FOLDED_PK: &str = "m#keys";

/// The attributes a user item may have besides `pk` and its `w#<wave>` counts: those the fold's
/// "unchanged since read" condition requires absent when the item was read without them.
pub(super) const USER_ATTRS: [&str; 12] = [
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
pub(super) fn row_of(item: &Item) -> Row {
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
pub(super) fn item_of(client_id: &str, username: &str, row: &Row) -> Item {
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
pub(super) type Condition = (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
);

/// The condition that `item` is as it was read: it exists, every attribute has the value read,
/// and every user attribute it lacked is still absent. Every write to a user item changes one of
/// these (a claim its token, a result its `finish_token` or `sends`; a new wave's count comes
/// with `sends`).
pub(super) fn unchanged(item: &Item) -> Condition {
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
pub(super) fn user_of(pk: &str) -> Option<(&str, &str)> {
    pk.strip_prefix("u#")?.split_once('#')
}

/// The fleet item (`--fleet-rate`): one attribute per live run, its census counter, and the
/// fleet's throttle total.
pub(super) const FLEET_PK: &str = "f#fleet";
/// The fleet item's throttle total (a run id is 32 hex digits, never this).
pub(super) const FLEET_THROTTLES: &str = "throttles";
/// The fleet item's attribute holding a run's lease in milliseconds: `l#<run id>` (a run id is
/// 32 hex digits, so never this).
pub(super) const LEASE_PREFIX: &str = "l#";

pub(super) fn lease_attr(run: &str) -> String {
    format!("{LEASE_PREFIX}{run}")
}

/// Most dead runs one census removes (the rest go at the next, a beat later).
pub(super) const PRUNE_MAX: usize = 25;

pub(super) fn mark_of(item: &Item) -> Option<InDoubt> {
    get_s(item, "doubt_run").map(|run| InDoubt {
        run,
        claimed_at: get_n(item, "doubt_at").unwrap_or(0),
    })
}
