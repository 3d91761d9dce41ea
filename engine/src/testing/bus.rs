//! An in-memory bus: topics of a few partitions held in memory, a publisher that acknowledges
//! at once, and one consumer-group member that owns every partition until told otherwise.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::bus::{BusError, Consumer, Delivery, Message, Publisher, Revocations, Revoker};

/// A message as published, with where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The partition the key hashed to.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The key.
    pub key: String,
    /// The body.
    pub payload: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// When it was published (milliseconds since the Unix epoch), as Kafka's create time.
    pub timestamp: i64,
}

impl Published {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Topics in memory; cloning shares them.
#[derive(Clone)]
pub struct MemoryBus {
    /// The shared state.
    inner: Arc<Inner>,
}

struct Inner {
    /// Partitions every topic has.
    partitions: i32,
    /// Topic → partition → messages.
    topics: Mutex<HashMap<String, Vec<Vec<Published>>>>,
    /// Whether the broker is "down": publishes and checks fail.
    down: Mutex<bool>,
    /// Messages (payload and headers) larger than this are refused, as a broker would.
    max_message_bytes: Mutex<Option<usize>>,
    /// Topics that acknowledge nothing.
    down_topics: Mutex<Vec<String>>,
    /// Woken on every publish.
    arrived: Notify,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(3)
    }
}

impl MemoryBus {
    /// A bus whose topics have `partitions` partitions.
    pub fn new(partitions: i32) -> Self {
        Self {
            inner: Arc::new(Inner {
                partitions: partitions.max(1),
                topics: Mutex::new(HashMap::new()),
                down: Mutex::new(false),
                max_message_bytes: Mutex::new(None),
                down_topics: Mutex::new(Vec::new()),
                arrived: Notify::new(),
            }),
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Vec<Vec<Published>>>> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes publishes and checks fail (`true`) or succeed again.
    pub fn set_down(&self, down: bool) {
        *self
            .inner
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = down;
    }

    /// Refuses messages whose payload and headers pass `bytes`, as a broker's
    /// `message.max.bytes` does.
    pub fn refuse_larger_than(&self, bytes: usize) {
        *self
            .inner
            .max_message_bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(bytes);
    }

    /// Makes `topic` acknowledge nothing (the rest of the broker stays up).
    pub fn set_topic_down(&self, topic: &str) {
        self.inner
            .down_topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(topic.to_string());
    }

    fn is_down(&self) -> bool {
        *self
            .inner
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every message of `topic`, by partition then offset.
    pub fn published(&self, topic: &str) -> Vec<Published> {
        self.topics()
            .get(topic)
            .map(|ps| ps.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The partition `key` hashes to.
    pub fn partition_of(&self, key: &str) -> i32 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.inner.partitions as u64) as i32
    }

    /// A group member reading `topic` from the start, owning every partition.
    pub fn consumer(&self, topic: &str) -> (MemoryConsumer, Revocations) {
        let (revoker, revocations) = crate::bus::revocations();
        let consumer = MemoryConsumer {
            bus: self.clone(),
            topic: topic.to_string(),
            state: Arc::new(Mutex::new(Member {
                owned: (0..self.inner.partitions).collect(),
                ..Member::default()
            })),
            revoker: Arc::new(revoker),
        };
        (consumer, revocations)
    }

    /// The next message of `topic` at or after `positions`, among `owned` partitions.
    fn next_after(
        &self,
        topic: &str,
        owned: &BTreeSet<i32>,
        positions: &HashMap<i32, i64>,
    ) -> Option<Published> {
        let topics = self.topics();
        let partitions = topics.get(topic)?;
        owned.iter().find_map(|p| {
            let at = positions.get(p).copied().unwrap_or(0);
            partitions.get(*p as usize)?.get(at as usize).cloned()
        })
    }
}

impl Publisher for MemoryBus {
    async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Delivery, BusError> {
        let topic_down = self
            .inner
            .down_topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .any(|t| t == topic);
        if self.is_down() || topic_down {
            return Err(BusError::NotAcknowledged {
                topic: topic.to_string(),
                reason: "the in-memory broker is down".into(),
            });
        }
        let size = payload.len()
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        let max = *self
            .inner
            .max_message_bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(max) = max.filter(|max| size > *max) {
            return Err(BusError::Refused {
                topic: topic.to_string(),
                reason: format!("message of {size} bytes is larger than {max}"),
            });
        }
        let partition = self.partition_of(key);
        let delivery = {
            let mut topics = self.topics();
            let partitions = topics
                .entry(topic.to_string())
                .or_insert_with(|| vec![Vec::new(); self.inner.partitions as usize]);
            let log = &mut partitions[partition as usize];
            let offset = log.len() as i64;
            log.push(Published {
                partition,
                offset,
                key: key.to_string(),
                payload: payload.to_vec(),
                timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
            Delivery { partition, offset }
        };
        self.inner.arrived.notify_waiters();
        Ok(delivery)
    }

    fn flush(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }

    async fn check(&self, _: Duration) -> Result<(), BusError> {
        if self.is_down() {
            Err(BusError::Unreachable("the in-memory broker is down".into()))
        } else {
            Ok(())
        }
    }
}

/// One member's view of the group; shared by its clones, so a test can watch the offsets the
/// apply loop stored.
#[derive(Debug, Default)]
struct Member {
    /// Partitions it owns.
    owned: BTreeSet<i32>,
    /// Next offset to hand out, per partition.
    positions: HashMap<i32, i64>,
    /// Offsets stored for commit, per partition.
    stored: HashMap<i32, i64>,
    /// Offsets committed, per partition.
    committed: HashMap<i32, i64>,
}

/// A consumer-group member on a [`MemoryBus`] topic.
#[derive(Clone)]
pub struct MemoryConsumer {
    /// The bus.
    bus: MemoryBus,
    /// The topic read.
    topic: String,
    /// Positions and offsets, shared by clones.
    state: Arc<Mutex<Member>>,
    /// Fences revoked partitions and tells the apply loop.
    revoker: Arc<Revoker>,
}

impl MemoryConsumer {
    fn member(&self) -> MutexGuard<'_, Member> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The offset of the next message `partition` hands out.
    pub fn position(&self, partition: i32) -> i64 {
        self.member()
            .positions
            .get(&partition)
            .copied()
            .unwrap_or(0)
    }

    /// The offsets stored for commit, per partition.
    pub fn stored(&self) -> HashMap<i32, i64> {
        self.member().stored.clone()
    }

    /// The offsets committed, per partition.
    pub fn committed(&self) -> HashMap<i32, i64> {
        self.member().committed.clone()
    }

    /// Takes `partitions` away, as a rebalance would: no more of their messages, no more
    /// offsets stored for them, their workers fenced and the apply loop told (without
    /// waiting for the workers: a test awaits [`crate::bus::Fence::held`] itself).
    pub fn revoke(&self, partitions: &[i32]) {
        {
            let mut member = self.member();
            for p in partitions {
                member.owned.remove(p);
            }
        }
        self.revoker.revoke_now(partitions);
    }
}

impl Consumer for MemoryConsumer {
    async fn recv(&self) -> Result<Message, BusError> {
        loop {
            // Registered before looking, so a publish in between is not missed.
            let arrived = self.bus.inner.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let next = {
                let member = self.member();
                self.bus
                    .next_after(&self.topic, &member.owned, &member.positions)
            };
            if let Some(published) = next {
                self.member()
                    .positions
                    .insert(published.partition, published.offset + 1);
                return Ok(Message {
                    topic: self.topic.clone(),
                    partition: published.partition,
                    offset: published.offset,
                    key: Some(published.key.into_bytes()),
                    payload: Some(published.payload),
                    timestamp: Some(published.timestamp),
                    headers: published.headers,
                });
            }
            arrived.await;
        }
    }

    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), BusError> {
        let mut member = self.member();
        if !member.owned.contains(&partition) {
            return Err(BusError::Client(format!(
                "partition {partition} is not assigned"
            )));
        }
        member.stored.insert(partition, offset);
        Ok(())
    }

    fn commit(&self) -> Result<(), BusError> {
        let mut member = self.member();
        member.committed = member.stored.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_published_message_is_consumed_in_order_per_partition() {
        let bus = MemoryBus::new(2);
        let (consumer, _revocations) = bus.consumer("t");
        for n in 0..3 {
            bus.publish("t", "k", format!("{n}").as_bytes(), &[])
                .await
                .expect("acknowledged");
        }
        let partition = bus.partition_of("k");
        for n in 0..3 {
            let m = consumer.recv().await.expect("a message");
            assert_eq!((m.partition, m.offset), (partition, n));
        }
        bus.set_down(true);
        assert!(bus.publish("t", "k", b"x", &[]).await.is_err());
        assert!(bus.check(Duration::ZERO).await.is_err());
    }
}
