//! `ordo dlq replay`: re-drives a pipeline's dead-lettered events after a fix (a new plugin,
//! a repaired table). Each letter is produced again to the pipeline's topic with its original
//! key, so it takes the normal path: ordered with its key's other events, merged, written
//! conditionally, and dead-lettered again if it still fails. Progress is committed in the
//! consumer group `ordo.<pipeline>.dlq-replay`, so a second run re-drives only new letters.

use std::time::Duration;

use crate::bus::kafka::{From, KafkaConfig};
use crate::bus::{BusError, Publisher};
use crate::config::Pipeline;

/// How long the producer keeps trying one letter.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Header naming the dead-letter offset an event was re-driven from.
pub const REDRIVEN_HEADER: &str = "ordo-redriven-from";

/// Why a re-drive stopped; letters re-driven before it stay committed.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The dead-letter topic could not be read, or the producer not built.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A letter could not be produced again or its progress committed.
    #[error("{letter}: {source}")]
    Letter {
        /// `<dead-letter topic>/<partition>/<offset>`.
        letter: String,
        /// What failed.
        source: BusError,
    },
}

/// Re-drives every letter of `pipeline`'s dead-letter topic not re-driven yet, up to where
/// the topic ended when the run began. Returns how many; `progress(done, total)` reports.
pub async fn redrive(
    pipeline: &Pipeline,
    kafka: &KafkaConfig,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, RedriveError> {
    let dlq = &pipeline.dead_letter_topic;
    let reader = kafka.reader(&format!("ordo.{}.dlq-replay", pipeline.name))?;
    let publisher = kafka.producer(DELIVERY_TIMEOUT)?;
    let mut read = reader.to_end(dlq, From::Committed)?;
    let total = read.total();
    if total == 0 {
        return Ok(0);
    }
    let mut done = 0u64;
    while let Some(message) = read.next().await? {
        let letter = format!("{dlq}/{}/{}", message.partition, message.offset);
        let failed = |source| RedriveError::Letter {
            letter: letter.clone(),
            source,
        };
        let key = String::from_utf8_lossy(message.key.as_deref().unwrap_or_default()).into_owned();
        publisher
            .publish(
                &pipeline.topic,
                &key,
                message.payload.as_deref().unwrap_or_default(),
                &[(REDRIVEN_HEADER, &letter)],
            )
            .await
            .map_err(failed)?;
        reader
            .commit(dlq, message.partition, message.offset + 1)
            .map_err(failed)?;
        done += 1;
        if done % 100 == 0 {
            progress(done, total);
        }
    }
    progress(done, total);
    Ok(done)
}
