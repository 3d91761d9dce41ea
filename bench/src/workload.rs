//! The consume benchmark's workloads, fixed before any figure was read, the same events for
//! every design: what is produced to the topic, and what the table must hold at the end.
//!
//! - **uniform**: every key updated once (nothing to fold: every event costs a write).
//! - **bursty**: every key updated [`BURST`] times back to back, in order.
//! - **shuffled** (issue 34): every key updated [`SHUFFLED_UPDATES`] times with a strictly
//!   increasing `UpdatedAt`, the whole list shuffled with a fixed seed ([`SHUFFLE_SEED`]) and
//!   produced keyed, so a key's updates reach its partition out of order: the seed's bug, where
//!   the last event consumed is not the newest.

use std::collections::HashMap;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

/// Updates per key in the bursty shape, sent back to back.
pub const BURST: usize = 20;
/// Updates per key in the shuffled shape.
pub const SHUFFLED_UPDATES: usize = 5;
/// The shuffled shape's seed: one seed, one order, in every run and on every machine.
pub const SHUFFLE_SEED: u64 = 34;
/// The field whose value orders a key's updates.
pub const VERSION_FIELD: &str = "UpdatedAt";

/// The shape of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// One update per key.
    Uniform,
    /// [`BURST`] updates per key, back to back and in order.
    Bursty,
    /// [`SHUFFLED_UPDATES`] updates per key, in a shuffled order.
    Shuffled,
}

impl Shape {
    /// Every shape, in the order the benchmark reports them.
    pub const ALL: [Shape; 3] = [Shape::Uniform, Shape::Bursty, Shape::Shuffled];

    /// The shape's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Uniform => "uniform",
            Shape::Bursty => "bursty",
            Shape::Shuffled => "shuffled",
        }
    }

    /// Updates per key.
    pub fn updates(self) -> usize {
        match self {
            Shape::Uniform => 1,
            Shape::Bursty => BURST,
            Shape::Shuffled => SHUFFLED_UPDATES,
        }
    }
}

/// The events of one workload and what the table must hold once they are all applied.
pub struct Workload {
    /// (Kafka key, JSON body), in the order they are produced.
    pub events: Vec<(String, String)>,
    /// Each key's newest `UpdatedAt`: what its stored record must carry at the end.
    pub newest: HashMap<String, String>,
}

/// The `UpdatedAt` of a key's update number `u`: one fixed format and offset, so that the
/// instants also order as strings (which the Quix Streams peer relies on).
fn updated_at(u: usize) -> String {
    format!(
        "2006-01-02T15:00:{:02}.{:09}+10:00",
        u / 1000,
        (u % 1000) * 1_000_000
    )
}

/// About `events` updates in `shape` (a whole number of keys, at least one).
pub fn workload(shape: Shape, events: usize) -> Workload {
    let updates = shape.updates();
    let keys = (events / updates).max(1);
    let mut list = Vec::with_capacity(keys * updates);
    let mut newest = HashMap::with_capacity(keys);
    for k in 0..keys {
        let key = format!("p{k}");
        for u in 0..updates {
            let body = serde_json::json!({
                "PatientId": key, "FirstName": format!("v{u}"), "LastName": "Doe",
                "IsPregnant": "False", "Sex": "Female", "UpdatedAt": updated_at(u),
            });
            list.push((key.clone(), body.to_string()));
        }
        newest.insert(key, updated_at(updates - 1));
    }
    if shape == Shape::Shuffled {
        fastrand::Rng::with_seed(SHUFFLE_SEED).shuffle(&mut list);
    }
    Workload {
        events: list,
        newest,
    }
}

/// Produces `events` to `topic`, keyed, all in flight at once; an idempotent producer keeps
/// each partition in the order of the list.
pub async fn produce(
    brokers: &str,
    topic: &str,
    events: &[(String, String)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()?;
    let sends: Vec<_> = events
        .iter()
        .map(|(k, v)| producer.send(FutureRecord::to(topic).key(k).payload(v), Timeout::Never))
        .collect();
    for s in futures::future::join_all(sends).await {
        s.map_err(|(e, _)| anyhow::anyhow!("produce to {topic}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each key's `UpdatedAt`s in the order the list holds them.
    fn versions(w: &Workload) -> HashMap<String, Vec<String>> {
        let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
        for (key, body) in &w.events {
            let body: serde_json::Value = serde_json::from_str(body).expect("the bench's JSON");
            let at = body[VERSION_FIELD].as_str().expect("a string").to_string();
            by_key.entry(key.clone()).or_default().push(at);
        }
        by_key
    }

    #[test]
    fn shuffled_keys_have_strictly_increasing_versions_arriving_out_of_order() {
        let w = workload(Shape::Shuffled, 1_000);
        assert_eq!(w.events.len(), 1_000);
        let by_key = versions(&w);
        assert_eq!(by_key.len(), 200);
        let mut out_of_order = 0;
        for (key, seen) in &by_key {
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), SHUFFLED_UPDATES, "{key}: distinct versions");
            assert_eq!(sorted.last(), w.newest.get(key), "{key}: the newest");
            out_of_order += usize::from(&sorted != seen);
        }
        // A random order of 5 is sorted once in 120: nearly every key must be out of order.
        assert!(out_of_order > 190, "only {out_of_order} keys out of order");
    }

    #[test]
    fn the_shuffle_is_the_same_every_time() {
        let (a, b) = (
            workload(Shape::Shuffled, 500),
            workload(Shape::Shuffled, 500),
        );
        assert_eq!(a.events, b.events);
    }

    #[test]
    fn uniform_and_bursty_keep_each_key_in_order() {
        for shape in [Shape::Uniform, Shape::Bursty] {
            let w = workload(shape, 400);
            for (key, seen) in versions(&w) {
                let mut sorted = seen.clone();
                sorted.sort();
                assert_eq!(sorted, seen, "{key} in {shape:?}");
                assert_eq!(seen.last(), w.newest.get(&key));
            }
        }
    }
}
