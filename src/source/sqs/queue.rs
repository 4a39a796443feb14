//! The SQS calls the consumer makes, behind the [`Queue`] trait so the consumer's logic is tested
//! against a fake queue on paused time; [`SqsQueue`] is the AWS SDK's adapter, and [`connect`] /
//! [`check_queue`] build and check it.

use super::*;

/// A queue call that failed, rendered with its whole error chain.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct QueueError(pub String);

/// The SQS calls the consumer makes. [`SqsQueue`] is the real one; tests use a fake.
pub(crate) trait Queue: Send + Sync + 'static {
    /// ReceiveMessage: at most `max` messages, long-polling `wait`, invisible for `visibility`,
    /// with the ApproximateReceiveCount and MessageGroupId attributes.
    fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Message>, QueueError>> + Send;

    /// ChangeMessageVisibility of one message.
    fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// ChangeMessageVisibilityBatch (at most 10): the indexes of the entries that failed.
    fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        visibility: Duration,
    ) -> impl Future<Output = Result<HashSet<usize>, QueueError>> + Send;

    /// DeleteMessageBatch (at most 10): the indexes of the entries that failed.
    fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> impl Future<Output = Result<HashSet<usize>, QueueError>> + Send;
}

/// The real queue: one queue URL through the AWS SDK.
#[derive(Debug, Clone)]
pub(crate) struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url`, through `client` (see [`connect`]).
    pub(crate) fn new(client: Client, url: String) -> Self {
        Self { client, url }
    }
}

/// Seconds for SQS: whole seconds, under its 12-hour ceiling.
pub(super) fn visibility_seconds(d: Duration) -> i32 {
    d.as_secs().min(MAX_VISIBILITY.as_secs() - 1) as i32
}

pub(super) fn sdk_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

impl Queue for SqsQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait.as_secs() as i32)
            .visibility_timeout(visibility_seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(visibility_seconds(visibility))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&e))
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        visibility: Duration,
    ) -> Result<HashSet<usize>, QueueError> {
        let entries: Vec<_> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(visibility_seconds(visibility))
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse().ok())
            .collect())
    }

    async fn delete_batch(&self, receipt_handles: &[String]) -> Result<HashSet<usize>, QueueError> {
        let entries: Vec<_> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_error(&e))?;
        for f in out.failed() {
            tracing::debug!(
                code = f.code(),
                message = f.message(),
                "a delete in the batch failed"
            );
        }
        Ok(out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse().ok())
            .collect())
    }
}

/// Builds the SQS client. Unlike Cognito's ResendConfirmationCode, SQS needs IAM credentials:
/// the standard AWS chain provides them. The SDK's own retries are off: every SQS call the
/// consumer and `enqueue` repeat goes through [`crate::retry`] (the policies above); the attempt
/// timeout covers a long poll plus a margin, so a hung poll cannot stall the consumer.
pub(crate) async fn connect(
    region: Option<&str>,
    profile: Option<&str>,
    endpoint: Option<&url::Url>,
    wait_time: Duration,
) -> Client {
    let sdk = crate::aws::sdk_config(crate::aws::SdkOptions {
        region,
        profile,
        endpoint,
        connect_timeout: Duration::from_secs(3),
        attempt_timeout: wait_time + POLL_MARGIN,
        sdk_retries: false,
        signed: true,
    })
    .await;
    Client::new(&sdk)
}

/// Whether an SQS error may pass on a retry: no answer (a connection or timeout error), a 5xx, or
/// a throttle. What the SDK's standard retry mode would retry, for the calls that do not retry
/// every error.
pub(crate) fn sdk_retryable<E: aws_sdk_sqs::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_sqs::error::SdkError<E, R>,
) -> bool {
    use aws_sdk_sqs::error::SdkError;
    match e {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code == "RequestThrottled"
                || code.contains("InternalError")
                || code.contains("ServiceUnavailable")
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    }
}

/// A queue that cannot be used: a usage error, before any work starts.
#[derive(Debug, thiserror::Error)]
#[error("sqs.queue_url (--queue-url): cannot use {queue_url}: {detail}")]
pub(crate) struct UnusableQueue {
    queue_url: String,
    /// The SDK's error, with its context.
    detail: String,
}

/// Checks the queue exists and is reachable before any work starts. Returns a warning to log
/// when it has no redrive policy (invalid messages would then come back forever).
pub(crate) async fn check_queue(
    client: &Client,
    queue_url: &str,
) -> Result<Option<String>, UnusableQueue> {
    let policy = check_policy();
    let attrs = Retry::new(&policy)
        .run(
            |_| {
                client
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
                    .send()
            },
            |e, _| {
                if sdk_retryable(e) {
                    Verdict::Retry(Quota::Unknown)
                } else {
                    Verdict::Stop(Quota::Granted)
                }
            },
        )
        .await
        .result
        .map_err(|f| f.into_last().expect("no stop token: an attempt was made"))
        .map_err(|e| UnusableQueue {
            queue_url: queue_url.to_owned(),
            detail: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
        })?;
    let has_redrive = attrs
        .attributes()
        .is_some_and(|a| a.contains_key(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy));
    Ok((!has_redrive).then(|| {
        format!(
            "{queue_url} has no redrive policy: invalid and failing messages will come back \
             forever; give it a dead-letter queue (maxReceiveCount)"
        )
    }))
}
