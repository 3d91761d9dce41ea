//! Topic creation at start-up.

use std::time::Duration;

use rdkafka::admin::{AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use super::context::OrdoContext;
use super::KafkaConfig;
use crate::bus::BusError;

/// The engine's admin client.
type Admin = rdkafka::admin::AdminClient<OrdoContext>;

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
    let admin = kafka.admin()?;
    create(&admin, kafka, topics, partitions, replication_factor, &[])
        .await
        .map(|_| ())
}

/// Creates `topic` with `partitions`, `replication_factor` and the topic configuration
/// `config` unless it exists; when it exists, its configuration is checked against `config`
/// and each difference logged as a warning (an existing topic is never changed).
pub async fn ensure_topic_with(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    config: &[(String, String)],
) -> Result<(), BusError> {
    let admin = kafka.admin()?;
    let created = create(
        &admin,
        kafka,
        &[topic],
        partitions,
        replication_factor,
        config,
    )
    .await?;
    if created.is_empty() && !config.is_empty() {
        for difference in differences(&admin, kafka, topic, config).await? {
            warn!(
                topic,
                "{difference}; Ordo does not change an existing topic's configuration."
            );
        }
    }
    Ok(())
}

/// How many partitions `topic` has on the brokers; `None` when it does not exist. Only reads
/// metadata (never asking the brokers to create the topic), for a topic Ordo does not own.
pub async fn partition_count(kafka: &KafkaConfig, topic: &str) -> Result<Option<i32>, BusError> {
    let admin = kafka.admin()?;
    let name = topic.to_string();
    let metadata = tokio::task::spawn_blocking(move || {
        admin.inner().fetch_metadata(Some(&name), ADMIN_TIMEOUT)
    })
    .await
    .map_err(|e| BusError::Client(e.to_string()))?
    .map_err(|e| BusError::Admin {
        topic: topic.to_string(),
        reason: explained(format!("metadata request failed: {e}"), kafka),
    })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// How `topic`'s configuration, as the brokers describe it, differs from `wanted`: one
/// sentence per property whose value differs or that the brokers do not report.
pub async fn topic_config_differences(
    kafka: &KafkaConfig,
    topic: &str,
    wanted: &[(String, String)],
) -> Result<Vec<String>, BusError> {
    differences(&kafka.admin()?, kafka, topic, wanted).await
}

/// [`topic_config_differences`] with an admin client at hand.
async fn differences(
    admin: &Admin,
    kafka: &KafkaConfig,
    topic: &str,
    wanted: &[(String, String)],
) -> Result<Vec<String>, BusError> {
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let failed = |reason: String| BusError::Admin {
        topic: topic.to_string(),
        reason: explained(format!("describe configs failed: {reason}"), kafka),
    };
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let resource = match described.into_iter().next() {
        Some(Ok(resource)) => resource,
        Some(Err(code)) => return Err(failed(code.to_string())),
        None => return Err(failed("no answer for the topic".into())),
    };
    Ok(wanted
        .iter()
        .filter_map(|(name, value)| match resource.get(name).and_then(|e| e.value.as_deref()) {
            Some(actual) if actual == value => None,
            Some(actual) => Some(format!(
                "topic_config `{name}` is {value:?} in the pipelines file but {actual:?} on the topic"
            )),
            None => Some(format!(
                "topic_config `{name}` cannot be checked: the brokers do not report it for the topic"
            )),
        })
        .collect())
}

/// Creates those of `topics` that do not exist, each with `config`; returns those created.
async fn create(
    admin: &Admin,
    kafka: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
    replication_factor: i32,
    config: &[(String, String)],
) -> Result<Vec<String>, BusError> {
    let named = topics.join(", ");
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            config.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)),
                |topic, (name, value)| topic.set(name, value),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| BusError::Admin {
            topic: named.clone(),
            reason: explained(e.to_string(), kafka),
        })?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => {
                info!(topic, partitions, config = ?config, "Topic created.");
                created.push(topic);
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(BusError::Admin {
                    topic,
                    reason: explained(format!("create failed: {code}"), kafka),
                })
            }
        }
    }
    Ok(created)
}

/// `reason`, and why the brokers last refused a connection when they did: a request to a
/// broker whose TLS certificate or SASL password is wrong only times out.
fn explained(reason: String, kafka: &KafkaConfig) -> String {
    match kafka.context().refusal() {
        Some(refused) => format!("{reason}; the brokers refused the connection: {refused}"),
        None => reason,
    }
}
