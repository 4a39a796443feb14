//! `ledger init` on DynamoDB: creating the table (one string key, `pk`; on-demand billing; the
//! time-to-live attribute when a retention is set), apart from the store's everyday work.

use std::time::Duration;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

use crate::ledger::LedgerError;

use super::{DynamoStore, TTL_ATTR};

impl DynamoStore {
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
}
