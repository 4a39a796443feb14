//! Folding the users' keys on DynamoDB ([`crate::ledger::fold`]): each row merged into its
//! folded key's item with a conditional `TransactWriteItems`, so a row is merged at most once,
//! whoever folds.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use crate::job::fold_username;
use crate::ledger::LedgerError;
use crate::ledger::fold::{Folded, merge};

use super::DynamoStore;
use super::items::*;

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

    /// [`Store::fold_usernames`](crate::ledger::Store::fold_usernames).
    pub(super) async fn fold_keys(&self) -> Result<Folded, LedgerError> {
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
            .item("folded_at", n(crate::ledger::now_millis()))
            .send()
            .await
            .map_err(|e| self.sdk("PutItem (keys folded)", e))?;
        Ok(folded)
    }
}
