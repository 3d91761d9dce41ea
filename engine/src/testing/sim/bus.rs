//! The bus seam, simulated: one group member's consumer in one life, and the publisher its
//! dead letters and audit records go through. A dead member's calls never return, and what
//! it stores or commits is ignored: a crashed process has no more effects.

use std::sync::Arc;
use std::time::Duration;

use super::world::{Invariant, Life, Published, State, World};
use super::AUDIT_TOPIC;
use crate::bus::{BusError, Consumer, Delivery, Message, Publisher};

/// One member's consumer in one life.
pub struct SimConsumer {
    /// The world.
    pub world: Arc<World>,
    /// Whose.
    pub life: Life,
}

impl Consumer for SimConsumer {
    async fn recv(&self) -> Result<Message, BusError> {
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = self.world.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            match self.next() {
                Next::Message(m) => return Ok(*m),
                Next::Error => {
                    return Err(BusError::Read {
                        topic: super::TOPIC.into(),
                        reason: "simulated fetch error".into(),
                    })
                }
                Next::Dead => std::future::pending::<()>().await,
                Next::Nothing => arrived.await,
            }
        }
    }

    fn store_offset(&self, partition: i32, offset: i64) -> Result<(), BusError> {
        let mut w = self.world.lock();
        let owned = w.is_alive(self.life)
            && w.consumers
                .get(&self.life)
                .is_some_and(|c| c.owned.contains(&partition));
        if !owned {
            return Err(BusError::Client(format!(
                "partition {partition} is not assigned"
            )));
        }
        w.check_durable(partition, offset, self.life);
        w.trace(format_args!("{:?} stores p{partition}@{offset}", self.life));
        if let Some(c) = w.consumers.get_mut(&self.life) {
            c.stored.insert(partition, offset);
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), BusError> {
        let mut w = self.world.lock();
        if !w.is_alive(self.life) {
            return Err(BusError::Client("dead".into()));
        }
        commit(&mut w, self.life, None);
        Ok(())
    }
}

/// What a consumer's next look found.
enum Next {
    Message(Box<Message>),
    Error,
    Dead,
    Nothing,
}

impl SimConsumer {
    /// The next message of an owned partition, picked at random among those with one.
    fn next(&self) -> Next {
        let mut w = self.world.lock();
        if !w.is_alive(self.life) {
            return Next::Dead;
        }
        let Some(consumer) = w.consumers.get(&self.life) else {
            return Next::Dead;
        };
        let ready: Vec<(i32, i64)> = consumer
            .owned
            .difference(&consumer.revoking)
            .map(|p| (*p, consumer.positions.get(p).copied().unwrap_or(0)))
            .filter(|(p, at)| (*at as usize) < w.topic[*p as usize].len())
            .collect();
        if ready.is_empty() {
            return Next::Nothing;
        }
        if w.rng.u32(0..1_000) == 0 {
            w.trace(format_args!("{:?} fetch error", self.life));
            w.saw("fetch error");
            return Next::Error;
        }
        let (partition, offset) = ready[w.rng.usize(..ready.len())];
        let (index, message) = w.topic[partition as usize][offset as usize].clone();
        if let Some(c) = w.consumers.get_mut(&self.life) {
            c.positions.insert(partition, offset + 1);
        }
        let deliveries = w.deliveries.entry((partition, offset)).or_default();
        *deliveries += 1;
        if *deliveries > 1 {
            w.saw("delivery replayed");
        }
        let id = w.plan.events[index].id.clone();
        w.trace(format_args!(
            "{:?} receives p{partition}@{offset} ({id})",
            self.life
        ));
        Next::Message(Box::new(message))
    }
}

/// Commits `life`'s stored offsets (of `only` that partition, or of all it owns).
pub fn commit(w: &mut State, life: Life, only: Option<i32>) {
    let Some(consumer) = w.consumers.get(&life) else {
        return;
    };
    let stored: Vec<(i32, i64)> = consumer
        .stored
        .iter()
        .filter(|(p, _)| only.is_none_or(|o| o == **p) && consumer.owned.contains(*p))
        .map(|(p, o)| (*p, *o))
        .collect();
    for (p, o) in stored {
        if o > w.checked[p as usize] {
            let detail = format!("{life:?} committed p{p}@{o} beyond the offsets checked durable");
            w.violated(Invariant::CommitBeforeDurable, detail);
        }
        if w.committed[p as usize] != o {
            w.trace(format_args!("{life:?} commits p{p}@{o}"));
            w.committed[p as usize] = o;
        }
    }
}

/// The publisher of one member's life: dead letters and audit records.
pub struct SimPublisher {
    /// The world.
    pub world: Arc<World>,
    /// Whose.
    pub life: Life,
}

impl Publisher for SimPublisher {
    async fn publish(
        &self,
        topic: &str,
        _key: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Delivery, BusError> {
        let latency = {
            let mut w = self.world.lock();
            Duration::from_micros(w.rng.u64(100..3_000))
        };
        tokio::time::sleep(latency).await;
        if !self.world.lock().is_alive(self.life) {
            std::future::pending::<()>().await;
        }
        let mut w = self.world.lock();
        if State::during(w.faults.bus_down) || w.rng.u32(0..200) == 0 {
            w.trace(format_args!(
                "{:?} publish to {topic} not acknowledged",
                self.life
            ));
            w.saw("publish not acknowledged");
            return Err(BusError::NotAcknowledged {
                topic: topic.into(),
                reason: "simulated broker away".into(),
            });
        }
        let published = Published {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            payload: payload.to_vec(),
        };
        let offset = if topic == AUDIT_TOPIC {
            let record: serde_json::Value = serde_json::from_slice(payload).unwrap_or_default();
            let action = record["action"].as_str().unwrap_or_default().to_string();
            let id = record["request_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            w.trace(format_args!("{:?} audits {id} {action}", self.life));
            if matches!(action.as_str(), "apply" | "skip" | "dead-letter") {
                w.audited.insert(id);
            }
            w.audit.push(published);
            w.audit.len() - 1
        } else {
            let at = |name: &str| published.header(name).unwrap_or_default().to_string();
            w.trace(format_args!(
                "{:?} dead-letters p{}@{}",
                self.life,
                at("ordo-original-partition"),
                at("ordo-original-offset")
            ));
            w.letters.push(published);
            w.letters.len() - 1
        };
        Ok(Delivery {
            partition: 0,
            offset: offset as i64,
        })
    }

    fn flush(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }

    async fn check(&self, _: Duration) -> Result<(), BusError> {
        Ok(())
    }
}
