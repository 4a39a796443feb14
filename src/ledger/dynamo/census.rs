//! The fleet census on DynamoDB: one `UpdateItem` of the one fleet item per census, never a
//! `Scan` ([`crate::ledger::fleet`]).

use std::time::Duration;

use aws_sdk_dynamodb::types::ReturnValue;

use crate::ledger::{LedgerError, Listing, RunId, duration_millis};

use super::DynamoStore;
use super::items::*;

impl DynamoStore {
    /// [`Store::census`](crate::ledger::Store::census).
    pub(super) async fn take_census(
        &self,
        run: &RunId,
        lease: Duration,
        dead: &[String],
        throttles: u64,
    ) -> Result<Listing, LedgerError> {
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
        let mut listing = Listing::default();
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
    }
}
