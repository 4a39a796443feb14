//! The spend caps on DynamoDB: a day item's counters, each reservation and settlement one
//! conditional `UpdateItem` carrying its token (see the store's module doc).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::ledger::{DayCaps, DayReservation, LedgerError, Medium, SpendCap, Spent, refused_by};

use super::DynamoStore;
use super::items::*;

impl DynamoStore {
    /// [`Store::reserve_send`](crate::ledger::Store::reserve_send).
    pub(super) async fn reserve(
        &self,
        r: &DayReservation,
        caps: DayCaps,
        medium: Option<Medium>,
    ) -> Result<Option<SpendCap>, LedgerError> {
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
    }

    /// [`Store::settle_send`](crate::ledger::Store::settle_send).
    pub(super) async fn settle(&self, r: &DayReservation, spent: Spent) -> Result<(), LedgerError> {
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
    }
}
