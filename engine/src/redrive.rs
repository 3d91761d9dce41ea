//! `ordo dlq replay`: re-drives a pipeline's dead-lettered events after a fix (a new plugin,
//! a repaired table). Each letter is produced again to the pipeline's topic with its original
//! key, so it takes the normal path: ordered with its key's other events, merged, written
//! conditionally, and dead-lettered again if it still fails. Progress is committed in the
//! consumer group `ordo.<pipeline>.dlq-replay`, so a second run re-drives only new letters.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::bus::producer::KafkaPublisher;
use crate::bus::Publisher;
use crate::config::Pipeline;

/// How long a broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Header naming the dead-letter offset an event was re-driven from.
pub const REDRIVEN_HEADER: &str = "ordo-redriven-from";

/// Re-drives every letter of `pipeline`'s dead-letter topic not re-driven yet, up to where
/// the topic ended when the run began. Returns how many; `progress(done, total)` reports.
pub async fn redrive(
    pipeline: &Pipeline,
    brokers: &str,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let dlq = &pipeline.dead_letter_topic;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("ordo.{}.dlq-replay", pipeline.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("Kafka consumer")?;
    let publisher = KafkaPublisher::new(brokers, REQUEST_TIMEOUT).context("Kafka producer")?;

    let partitions = crate::bus::admin::partitions(&consumer, dlq, REQUEST_TIMEOUT)?;
    let mut wanted = TopicPartitionList::new();
    for &p in &partitions {
        wanted.add_partition(dlq, p);
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .context("offsets already re-driven")?;
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    let mut total = 0u64;
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(dlq, p, REQUEST_TIMEOUT)
            .with_context(|| format!("watermarks of partition {p}"))?;
        let from = committed
            .find_partition(dlq, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(low)
            .max(low);
        if from < high {
            assignment.add_partition_offset(dlq, p, Offset::Offset(from))?;
            ends.insert(p, high);
            total += (high - from) as u64;
        }
    }
    if total == 0 {
        return Ok(0);
    }
    consumer.assign(&assignment).context("assign partitions")?;
    let mut done = 0u64;
    while !ends.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("no letter arrived for 30 s before the end")?
            .context("reading the dead-letter topic")?;
        let (partition, offset) = (message.partition(), message.offset());
        let Some(&end) = ends.get(&partition) else {
            continue;
        };
        if offset < end {
            let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
            let from = format!("{dlq}/{partition}/{offset}");
            publisher
                .publish(
                    &pipeline.topic,
                    &key,
                    message.payload().unwrap_or_default(),
                    &[(REDRIVEN_HEADER, &from)],
                )
                .await
                .with_context(|| format!("re-producing {from}"))?;
            let mut position = TopicPartitionList::new();
            position.add_partition_offset(dlq, partition, Offset::Offset(offset + 1))?;
            consumer
                .commit(&position, CommitMode::Sync)
                .with_context(|| format!("committing {from}"))?;
            done += 1;
            if done % 100 == 0 {
                progress(done, total);
            }
        }
        if offset + 1 >= end {
            ends.remove(&partition);
        }
    }
    progress(done, total);
    Ok(done)
}
