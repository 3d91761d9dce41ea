//! Topic creation at start-up.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use tracing::info;

use super::KafkaConfig;
use crate::bus::BusError;

/// How long one admin request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates each of `topics` with `partitions` and `replication_factor` unless it exists, in
/// one request.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
    replication_factor: i32,
) -> Result<(), BusError> {
    let named = topics.join(", ");
    let admin = kafka.admin()?;
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
