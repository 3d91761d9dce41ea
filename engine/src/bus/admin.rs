//! Topic creation at start-up, and the partitions of a topic.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use tracing::info;

use super::BusError;

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates each of `topics` with `partitions` and `replication_factor` unless it exists, in
/// one request.
pub async fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), BusError> {
    let named = topics.join(", ");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "ordo-admin")
        .create()
        .map_err(|e| BusError::Client(e.to_string()))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| BusError::Admin {
            topic: named.clone(),
            reason: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(topic) => info!(topic, partitions, "Topic created."),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Admin {
                    topic,
                    reason: format!("create failed: {code}"),
                })
            }
        }
    }
    Ok(())
}

/// The partition ids of `topic`, as `consumer`'s broker knows them (empty when the topic does
/// not exist).
pub fn partitions<C: rdkafka::consumer::Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, BusError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| BusError::Client(format!("metadata of `{topic}`: {e}")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default())
}
