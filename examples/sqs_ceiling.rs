//! The queue's own ceiling, for the consume benchmark (scripts/bench-consume.sh): how fast a
//! loop that only receives and deletes — with the same AWS SDK, no Cognito, no engine — empties
//! a queue. Also creates the benchmark queue and counts what is left.
//!
//! ```text
//! sqs_ceiling ENDPOINT create NAME        prints the queue URL
//! sqs_ceiling ENDPOINT count URL          prints "visible in_flight"
//! sqs_ceiling ENDPOINT drain URL [LOOPS]  receives 10 and deletes 10 until empty; prints msgs/s
//! ```

use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, command, target, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: sqs_ceiling ENDPOINT create NAME | count URL | drain URL [LOOPS]");
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await;
    let client = Client::new(&config);
    match command.as_str() {
        "create" => {
            let out = client.create_queue().queue_name(target).send().await?;
            println!("{}", out.queue_url().unwrap_or_default());
        }
        "count" => {
            let (visible, in_flight) = count(&client, target).await?;
            println!("{visible} {in_flight}");
        }
        "drain" => {
            let loops: usize = rest.first().map_or(Ok(2), |s| s.parse())?;
            let started = Instant::now();
            let tasks: Vec<_> = (0..loops)
                .map(|_| tokio::spawn(drain(client.clone(), target.clone())))
                .collect();
            let mut total = 0u64;
            for t in tasks {
                total += t.await??;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{total} messages in {secs:.2} s: {:.0} messages/s (receive 10 + delete 10, {loops} loops)",
                total as f64 / secs
            );
        }
        other => anyhow::bail!("unknown command {other}"),
    }
    Ok(())
}

async fn count(client: &Client, url: &str) -> anyhow::Result<(u64, u64)> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attrs = out.attributes().cloned().unwrap_or_default();
    let get = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0u64);
    Ok((
        get(&QueueAttributeName::ApproximateNumberOfMessages),
        get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    ))
}

async fn drain(client: Client, url: String) -> anyhow::Result<u64> {
    let mut done = 0u64;
    let mut empty = 0;
    while empty < 2 {
        let out = client
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .send()
            .await?;
        let messages = out.messages();
        if messages.is_empty() {
            empty += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        empty = 0;
        let entries: Vec<_> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        let n = entries.len() as u64;
        client
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await?;
        done += n;
    }
    Ok(done)
}
