//! The events the function takes: an SQS event (from an event source mapping) or an EventBridge
//! scheduled event, told apart by their shape and read with AWS's own event types
//! (`aws_lambda_events`). An SQS record's body is a job in the same format, with the same
//! checks, as a message `consume` receives ([`sqs::input`]).

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde_json::Value;

use crate::job::Input;
use crate::source::sqs;

/// What an invocation was asked to do.
#[derive(Debug)]
pub(crate) enum Event {
    /// Run these records (in the event's order); answer which must come back.
    Sqs {
        /// The records' jobs.
        inputs: Vec<Input>,
        /// Where each record can be reached, for holding it back ([`Receipt`]).
        receipts: Vec<Receipt>,
    },
    /// Run `backfill --from-pool` for the time the invocation has.
    Scheduled {
        /// The event's id, for the logs.
        id: String,
        /// Flags for this backfill (`detail.args`), over the function's environment: what a
        /// CronJob's `args` are to its environment (a reminder wave's `--wave`, `--older-than`,
        /// ...). Empty: the environment alone.
        args: Vec<String>,
    },
}

/// An SQS record's message as a queue call names it: what holding it back at a spend cap
/// (ChangeMessageVisibility) needs. A record without a receipt handle or a queue ARN has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// The record's `messageId`.
    pub(crate) message_id: String,
    /// The queue, by its ARN (`eventSourceARN`).
    pub(crate) queue_arn: String,
    /// The record's `receiptHandle`.
    pub(crate) receipt_handle: String,
}

/// A queue's name and owner account, from its ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
pub(crate) fn queue_of(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("sqs"), Some(_region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (!account.is_empty() && !name.is_empty()).then_some((name, account))
}

/// Why an event cannot be run: the invocation fails (and, for SQS, the whole batch comes back).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unsupported(String);

/// Reads an invocation's payload.
pub(crate) fn decode(payload: Value) -> Result<Event, Unsupported> {
    if payload.get("Records").is_some() {
        let event: SqsEvent = serde_json::from_value(payload)
            .map_err(|e| Unsupported(format!("an event with Records, but not SQS's: {e}")))?;
        let mut inputs = Vec::with_capacity(event.records.len());
        let mut receipts = Vec::new();
        for record in event.records {
            if record.event_source.as_deref() != Some("aws:sqs") {
                return Err(Unsupported(format!(
                    "a record from {:?}: this function takes SQS records and scheduled events",
                    record.event_source.unwrap_or_default()
                )));
            }
            // SQS always sends a message id; without one a record could be neither run nor
            // named as a failure.
            let Some(id) = record.message_id else {
                return Err(Unsupported("an SQS record without a messageId".into()));
            };
            if let (Some(queue_arn), Some(receipt_handle)) =
                (record.event_source_arn, record.receipt_handle)
            {
                receipts.push(Receipt {
                    message_id: id.clone(),
                    queue_arn,
                    receipt_handle,
                });
            }
            inputs.push(sqs::input(id, record.body.as_deref().unwrap_or_default()));
        }
        return Ok(Event::Sqs { inputs, receipts });
    }
    if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
        let event: CloudWatchEvent = serde_json::from_value(payload)
            .map_err(|e| Unsupported(format!("a scheduled event that does not read: {e}")))?;
        return Ok(Event::Scheduled {
            id: event.id.unwrap_or_default(),
            args: scheduled_args(&event.detail)?,
        });
    }
    Err(Unsupported(
        "neither an SQS event nor an EventBridge scheduled event".into(),
    ))
}

/// A scheduled event's `detail`: nothing (EventBridge's own `{}`), or `{"args": [...]}`, the
/// flags of this backfill (a rule's constant `Input`, docs/lambda.md). Anything else is refused
/// rather than ignored: a misspelt key would otherwise run a wave with the wrong settings.
fn scheduled_args(detail: &Option<Value>) -> Result<Vec<String>, Unsupported> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Detail {
        #[serde(default)]
        args: Vec<String>,
    }
    match detail {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(d) => serde_json::from_value::<Detail>(d.clone())
            .map(|d| d.args)
            .map_err(|e| {
                Unsupported(format!(
                    "a scheduled event's detail is {{}} or {{\"args\": [flags...]}}: {e}"
                ))
            }),
    }
}

/// The answer to an SQS event: the records that must come back (the event source mapping,
/// with `ReportBatchItemFailures`, deletes every other one).
pub(crate) fn batch_response(returned: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = returned
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, body: &str) -> Value {
        serde_json::json!({
            "messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"
        })
    }

    #[test]
    fn sqs_records_become_jobs_or_invalid_inputs_in_order() {
        let payload = serde_json::json!({"Records": [
            record("m1", r#"{"username":"alice"}"#),
            record("m2", "{}"),
        ]});
        let Event::Sqs { inputs, receipts } = decode(payload).unwrap() else {
            panic!("an SQS event")
        };
        assert_eq!(receipts.len(), 2);
        assert_eq!(
            queue_of(&receipts[0].queue_arn),
            Some(("q", "123456789012")),
            "{receipts:?}"
        );
        assert_eq!(queue_of("arn:aws:sns:us-east-1:1:t"), None);
        assert!(matches!(&inputs[0], Input::Job(j) if j.request.username == "alice"));
        assert!(
            matches!(&inputs[1], Input::Unreadable(u) if u.reason.contains("m2") && u.reason.contains("username"))
        );
    }

    #[test]
    fn a_scheduled_event_is_a_backfill_and_anything_else_is_refused() {
        let payload = serde_json::json!({
            "version": "0", "id": "e-1", "detail-type": "Scheduled Event",
            "source": "aws.events", "account": "123456789012", "time": "2026-11-29T02:00:00Z",
            "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/r"],
            "detail": {}
        });
        assert!(
            matches!(decode(payload.clone()).unwrap(), Event::Scheduled { id, args } if id == "e-1" && args.is_empty())
        );
        let mut wave = payload.clone();
        wave["detail"] = serde_json::json!({"args": ["--wave", "day-3", "--older-than", "3d"]});
        assert!(
            matches!(decode(wave).unwrap(), Event::Scheduled { args, .. } if args == ["--wave", "day-3", "--older-than", "3d"])
        );
        let mut misspelt = payload;
        misspelt["detail"] = serde_json::json!({"arg": ["--wave", "day-3"]});
        let e = decode(misspelt).unwrap_err().to_string();
        assert!(e.contains("args"), "{e}");
        let sns = serde_json::json!({"Records": [{"EventSource": "aws:sns", "Sns": {}}]});
        assert!(decode(sns).is_err());
        assert!(decode(serde_json::json!({"hello": "world"})).is_err());
    }

    #[test]
    fn the_answer_names_the_returned_records() {
        let answer = serde_json::to_value(batch_response(vec!["m2".into(), "m5".into()])).unwrap();
        assert_eq!(
            answer,
            serde_json::json!({"batchItemFailures": [
                {"itemIdentifier": "m2"}, {"itemIdentifier": "m5"}
            ]})
        );
    }
}
