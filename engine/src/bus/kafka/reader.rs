//! Reading a topic outside the pipeline's consumer group, for the one-shot commands: a
//! bounded read of every partition from a start to where it ended when the read began
//! (`ordo replay`, `ordo dlq replay`), or an unbounded one from now or the start (`ordo tap`).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};

use super::context::OrdoContext;
use rdkafka::{Offset, TopicPartitionList};

use crate::bus::{BusError, Message};

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a bounded read waits for the next message before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a bounded read starts, in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// This offset (or the earliest one still held, if later).
    Offset(i64),
    /// The first message at or after this instant, in milliseconds since the Unix epoch.
    Time(i64),
    /// After the last offset the reader's group committed (the earliest held if none).
    Committed,
    /// The last this many messages of each partition (all of them, if fewer).
    Last(i64),
}

/// A consumer that assigns itself partitions (see [`super::KafkaConfig::reader`]).
pub struct KafkaReader {
    /// rdkafka's consumer; never subscribed, so it joins no group's assignment.
    consumer: StreamConsumer<OrdoContext>,
}

/// A read in progress up to each partition's end as it was when the read began.
pub struct ToEnd<'a> {
    /// The reader.
    reader: &'a KafkaReader,
    /// The topic.
    topic: String,
    /// Partition → the offset where the read stops, for partitions not finished.
    ends: HashMap<i32, i64>,
    /// Messages between the starts and the ends, over all partitions.
    total: u64,
}

impl KafkaReader {
    pub(super) fn new(consumer: StreamConsumer<OrdoContext>) -> Self {
        Self { consumer }
    }

    /// The partition ids of `topic` (empty when the topic does not exist).
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, BusError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| read_error(topic, format!("metadata: {e}")))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default())
    }

    /// Starts reading every partition of `topic` from `from` up to where it ends now.
    pub fn to_end(&self, topic: &str, from: From) -> Result<ToEnd<'_>, BusError> {
        let partitions = self.partitions(topic)?;
        if partitions.is_empty() {
            return Err(read_error(topic, "it has no partitions (does it exist?)"));
        }
        let starts = self.starts(topic, &partitions, from)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        let mut total = 0;
        for (partition, (start, end)) in starts {
            if start < end {
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(|e| read_error(topic, e))?;
                ends.insert(partition, end);
                total += (end - start) as u64;
            }
        }
        if !ends.is_empty() {
            self.consumer
                .assign(&assignment)
                .map_err(|e| read_error(topic, format!("assign: {e}")))?;
        }
        Ok(ToEnd {
            reader: self,
            topic: topic.to_string(),
            ends,
            total,
        })
    }

    /// (start, end) of each partition for a read from `from`.
    fn starts(
        &self,
        topic: &str,
        partitions: &[i32],
        from: From,
    ) -> Result<HashMap<i32, (i64, i64)>, BusError> {
        let mut marks = HashMap::new();
        for &p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .map_err(|e| read_error(topic, format!("watermarks of partition {p}: {e}")))?;
            marks.insert(p, (low, high));
        }
        let mut query = TopicPartitionList::new();
        for &p in partitions {
            let position = match from {
                From::Offset(_) | From::Committed | From::Last(_) => Offset::Invalid,
                From::Time(millis) => Offset::Offset(millis),
            };
            query
                .add_partition_offset(topic, p, position)
                .map_err(|e| read_error(topic, e))?;
        }
        let found = match from {
            From::Offset(_) | From::Last(_) => None,
            From::Time(_) => Some(
                self.consumer
                    .offsets_for_times(query, REQUEST_TIMEOUT)
                    .map_err(|e| read_error(topic, format!("offsets for the start time: {e}")))?,
            ),
            From::Committed => Some(
                self.consumer
                    .committed_offsets(query, REQUEST_TIMEOUT)
                    .map_err(|e| read_error(topic, format!("committed offsets: {e}")))?,
            ),
        };
        Ok(marks
            .into_iter()
            .map(|(p, (low, high))| {
                let looked_up = found
                    .as_ref()
                    .and_then(|f| f.find_partition(topic, p))
                    .and_then(|e| e.offset().to_raw())
                    .filter(|o| *o >= 0);
                let start = match from {
                    From::Offset(offset) => offset.max(low),
                    // No message at or after the time: nothing to read.
                    From::Time(_) => looked_up.unwrap_or(high),
                    From::Committed => looked_up.unwrap_or(low).max(low),
                    From::Last(n) => high.saturating_sub(n.max(0)).max(low),
                };
                (p, (start.min(high), high))
            })
            .collect())
    }

    /// Starts reading every partition of `topic` from its start (`from_beginning`) or from
    /// its end, without a bound: [`KafkaReader::next`] waits for new messages.
    pub fn follow(&self, topic: &str, from_beginning: bool) -> Result<(), BusError> {
        let position = if from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        let mut assignment = TopicPartitionList::new();
        for p in self.partitions(topic)? {
            assignment
                .add_partition_offset(topic, p, position)
                .map_err(|e| read_error(topic, e))?;
        }
        self.consumer
            .assign(&assignment)
            .map_err(|e| read_error(topic, format!("assign: {e}")))
    }

    /// The next message of the assigned partitions.
    pub async fn next(&self) -> Result<Message, BusError> {
        let message = self
            .consumer
            .recv()
            .await
            .map_err(|e| read_error("the assigned topic", e))?;
        Ok(super::message_of(&message))
    }

    /// Commits `offset` as the next one `partition` of `topic` reads, for the reader's group.
    pub fn commit(&self, topic: &str, partition: i32, offset: i64) -> Result<(), BusError> {
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| read_error(topic, e))?;
        self.consumer
            .commit(&position, CommitMode::Sync)
            .map_err(|e| read_error(topic, format!("commit: {e}")))
    }
}

impl ToEnd<'_> {
    /// Messages the read covers, over all partitions.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The next message before the end, or `None` once every partition reached its end.
    pub async fn next(&mut self) -> Result<Option<Message>, BusError> {
        while !self.ends.is_empty() {
            let message = tokio::time::timeout(STALL_TIMEOUT, self.reader.next())
                .await
                .map_err(|_| {
                    read_error(
                        &self.topic,
                        format!(
                            "no message for {} s before the end",
                            STALL_TIMEOUT.as_secs()
                        ),
                    )
                })??;
            let Some(&end) = self.ends.get(&message.partition) else {
                continue;
            };
            if message.offset + 1 >= end {
                self.ends.remove(&message.partition);
            }
            if message.offset < end {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }
}

fn read_error(topic: &str, reason: impl std::fmt::Display) -> BusError {
    BusError::Read {
        topic: topic.to_string(),
        reason: reason.to_string(),
    }
}
