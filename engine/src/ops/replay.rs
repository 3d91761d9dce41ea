//! `ordo replay`: re-applies a pipeline's events from an offset or a point in time, through
//! the same plugin and conditional writes as the consumer, up to where the topic ended when
//! the replay started. Safe beside live traffic: a replayed event older than the record is
//! skipped, so a replay can only restore records, never regress them. It commits nothing.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::bus::kafka::{self, KafkaConfig};
use crate::bus::{BusError, Message};
use crate::config::Pipeline;
use crate::pipeline::{changes, Applier, ApplyError, Event, Outcome};
use crate::plugin::PolicyHandle;
use crate::store::dynamo::DynamoStore;

/// Attempts at applying one event while the store fails.
const ATTEMPTS: u32 = 5;

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The pipeline's plugin could not be loaded.
    #[error(transparent)]
    Plugin(#[from] super::PluginLoadError),
    /// The topic could not be read.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// An event kept failing to apply (the store is down or contended).
    #[error("partition {partition} offset {offset}: applying the event kept failing: {source}")]
    Apply {
        /// The event's partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// The last failure.
        source: ApplyError,
    },
}

/// Where a replay starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// This offset (or the earliest one still held, if later).
    Offset(i64),
    /// The first event at or after this instant.
    Time(DateTime<FixedOffset>),
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
        DateTime::parse_from_rfc3339(s)
            .map(Self::Time)
            .map_err(|_| {
                format!(
                    "{s:?} is neither an offset nor an RFC 3339 time such as 2026-11-25T09:00:00Z"
                )
            })
    }
}

impl From<Start> for kafka::From {
    fn from(start: Start) -> Self {
        match start {
            Start::Offset(offset) => Self::Offset(offset),
            Start::Time(instant) => Self::Time(instant.timestamp_millis()),
        }
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

/// Replays `pipeline`'s topic from `start`. `progress(done, total)` is called every few
/// hundred events; `rejected(reason)` for each refused event.
pub async fn replay(
    pipeline: &Pipeline,
    kafka: &KafkaConfig,
    start: Start,
    mut progress: impl FnMut(u64, u64),
    mut rejected: impl FnMut(&str),
) -> Result<Summary, ReplayError> {
    let (policy, store) = super::plugin_and_table(pipeline).await?;
    let applier = Applier::new(
        store,
        PolicyHandle::new(Arc::new(policy)),
        &pipeline.key_field,
    )
    .with_key_source(pipeline.key_source)
    .with_change_feed(pipeline.changes_topic.is_some());
    // The change feed gets what a replay writes, as it gets what the engine writes.
    let feed = match &pipeline.changes_topic {
        Some(topic) => Some((
            topic.as_str(),
            kafka.producer(kafka::DEFAULT_DELIVERY_TIMEOUT)?,
        )),
        None => None,
    };
    let reader = kafka.reader(&format!("ordo.replay.{}", pipeline.name))?;
    let mut read = reader.to_end(&pipeline.topic, start.into())?;
    let total = read.total();
    let mut summary = Summary::default();
    if total == 0 {
        return Ok(summary);
    }
    while let Some(message) = read.next().await? {
        summary.events += 1;
        match apply(&applier, &message, pipeline, feed.as_ref()).await? {
            Outcome::Written => summary.written += 1,
            Outcome::Skipped(_) => summary.skipped += 1,
            Outcome::Rejected(reason) => {
                summary.rejected += 1;
                rejected(&format!(
                    "partition {} offset {}: {reason}",
                    message.partition, message.offset
                ));
            }
        }
        if summary.events % 200 == 0 {
            progress(summary.events, total);
        }
    }
    progress(summary.events, total);
    Ok(summary)
}

/// Applies one event, retrying a few times while the store fails; what it changed goes to the
/// change feed (`feed`: its topic and producer) before the next event.
async fn apply(
    applier: &Applier<DynamoStore>,
    message: &Message,
    pipeline: &Pipeline,
    feed: Option<&(&str, kafka::KafkaPublisher)>,
) -> Result<Outcome, ReplayError> {
    let event = Event {
        key: message.key.as_deref(),
        payload: message.payload.as_deref().unwrap_or_default(),
        timestamp: None,
        position: Some((message.partition, message.offset)),
    };
    let mut attempt = 1;
    let applied = loop {
        match applier.apply_batch(std::slice::from_ref(&event)).await {
            Ok(applied) => break applied,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, "Replay: applying failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                attempt += 1;
            }
            Err(source) => {
                return Err(ReplayError::Apply {
                    partition: message.partition,
                    offset: message.offset,
                    source,
                })
            }
        }
    };
    if let Some((topic, publisher)) = feed {
        let request_ids: Vec<&str> = message
            .header(crate::audit::REQUEST_ID_KAFKA_HEADER)
            .into_iter()
            .collect();
        for change in &applied.changes {
            changes::publish(publisher, topic, &pipeline.name, change, &request_ids).await?;
        }
    }
    let outcome = applied.outcomes.into_iter().next();
    Ok(outcome.unwrap_or(Outcome::Written))
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
