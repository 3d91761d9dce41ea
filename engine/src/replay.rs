//! `ordo replay`: re-applies a pipeline's events from an offset or a point in time, through
//! the same plugin and conditional writes as the consumer, up to where the topic ended when
//! the replay started. Safe beside live traffic: a replayed event older than the record is
//! skipped, so a replay can only restore records, never regress them. It commits nothing.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Pipeline;
use crate::pipeline::{Applier, Outcome};
use crate::plugin::reload::load_checked;
use crate::plugin::PolicyHandle;
use crate::store::dynamo::DynamoStore;

/// How long a broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at applying one event while the store fails.
const ATTEMPTS: u32 = 5;

/// Where a replay starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This offset (or the earliest one still held, if later).
    Offset(i64),
    /// The first event at or after this instant.
    Time(OffsetDateTime),
}

impl FromStr for Start {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(offset) = s.parse::<i64>() {
            return if offset >= 0 {
                Ok(Self::Offset(offset))
            } else {
                Err("an offset is 0 or more".into())
            };
        }
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::Time)
            .map_err(|_| {
                format!(
                    "{s:?} is neither an offset nor an RFC 3339 time such as 2026-11-25T09:00:00Z"
                )
            })
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events read.
    pub events: u64,
    /// Events that changed a record.
    pub written: u64,
    /// Events older than the record.
    pub skipped: u64,
    /// Events the engine or the plugin refused (they are reported, not dead-lettered again).
    pub rejected: u64,
}

/// Replays `pipeline`'s topic on `brokers` from `start`. `progress(done, total)` is called
/// every few hundred events; `rejected(reason)` for each refused event.
pub async fn replay(
    pipeline: &Pipeline,
    brokers: &str,
    start: Start,
    mut progress: impl FnMut(u64, u64),
    mut rejected: impl FnMut(&str),
) -> anyhow::Result<Summary> {
    let policy = load_checked(&pipeline.plugin_spec())
        .with_context(|| format!("pipeline `{}`", pipeline.name))?;
    let store = DynamoStore::new(
        crate::store::dynamo::client().await,
        &pipeline.table,
        &pipeline.key_field,
    );
    let applier = Applier::new(
        store,
        PolicyHandle::new(Arc::new(policy)),
        &pipeline.key_field,
    );
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("ordo.replay.{}", pipeline.name))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .create()
        .context("Kafka consumer")?;
    let (assignment, ends) = plan(&consumer, &pipeline.topic, start)?;
    let total: u64 = ends
        .iter()
        .map(|(p, end)| {
            let from = assignment
                .find_partition(&pipeline.topic, *p)
                .and_then(|e| e.offset().to_raw())
                .unwrap_or(*end);
            (*end - from).max(0) as u64
        })
        .sum();
    let mut summary = Summary::default();
    if total == 0 {
        return Ok(summary);
    }
    consumer.assign(&assignment).context("assign partitions")?;
    let mut remaining: HashMap<i32, i64> = ends;
    remaining.retain(|p, end| {
        assignment
            .find_partition(&pipeline.topic, *p)
            .and_then(|e| e.offset().to_raw())
            .is_some_and(|from| from < *end)
    });
    while !remaining.is_empty() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("no event arrived for 30 s before the replay's end")?
            .context("reading the topic")?;
        let (partition, offset) = (message.partition(), message.offset());
        let Some(end) = remaining.get(&partition).copied() else {
            continue;
        };
        if offset >= end {
            remaining.remove(&partition);
            continue;
        }
        let outcome = apply(
            &applier,
            message.key(),
            message.payload().unwrap_or_default(),
        )
        .await?;
        summary.events += 1;
        match outcome {
            Outcome::Written => summary.written += 1,
            Outcome::Skipped(_) => summary.skipped += 1,
            Outcome::Rejected(reason) => {
                summary.rejected += 1;
                rejected(&format!("partition {partition} offset {offset}: {reason}"));
            }
        }
        if offset + 1 >= end {
            remaining.remove(&partition);
        }
        if summary.events % 200 == 0 {
            progress(summary.events, total);
        }
    }
    progress(summary.events, total);
    Ok(summary)
}

/// Applies one event, retrying a few times while the store fails.
async fn apply(
    applier: &Applier<DynamoStore>,
    key: Option<&[u8]>,
    payload: &[u8],
) -> anyhow::Result<Outcome> {
    let mut attempt = 1;
    loop {
        match applier.apply(key, payload).await {
            Ok(outcome) => return Ok(outcome),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "Replay: applying failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("applying an event kept failing"),
        }
    }
}

/// Where each partition starts and where it ended when the replay began.
fn plan(
    consumer: &StreamConsumer,
    topic: &str,
    start: Start,
) -> anyhow::Result<(TopicPartitionList, HashMap<i32, i64>)> {
    let partitions = crate::bus::admin::partitions(consumer, topic, REQUEST_TIMEOUT)?;
    if partitions.is_empty() {
        bail!("topic `{topic}` has no partitions (does it exist?)");
    }
    let mut ends = HashMap::new();
    let mut lows = HashMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("watermarks of partition {p}"))?;
        lows.insert(p, low);
        ends.insert(p, high);
    }
    let mut assignment = TopicPartitionList::new();
    match start {
        Start::Offset(offset) => {
            for &p in &partitions {
                let from = offset.max(lows[&p]).min(ends[&p]);
                assignment.add_partition_offset(topic, p, Offset::Offset(from))?;
            }
        }
        Start::Time(instant) => {
            let millis = (instant.unix_timestamp_nanos() / 1_000_000) as i64;
            let mut query = TopicPartitionList::new();
            for &p in &partitions {
                query.add_partition_offset(topic, p, Offset::Offset(millis))?;
            }
            let found = consumer
                .offsets_for_times(query, REQUEST_TIMEOUT)
                .context("offsets for the start time")?;
            for &p in &partitions {
                let from = found
                    .find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0)
                    .unwrap_or(ends[&p]);
                assignment.add_partition_offset(topic, p, Offset::Offset(from))?;
            }
        }
    }
    Ok((assignment, ends))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_an_offset_or_a_time() {
        assert_eq!("42".parse::<Start>(), Ok(Start::Offset(42)));
        assert!(matches!(
            "2026-11-25T09:00:00Z".parse::<Start>(),
            Ok(Start::Time(_))
        ));
        assert!("-1".parse::<Start>().is_err());
        let err = "yesterday".parse::<Start>().expect_err("not a start");
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
