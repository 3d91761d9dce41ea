//! The benchmarks' workloads on a topic: events in one of two shapes, fixed before any figure
//! was read (issue 19), produced before the consumers start (a consumer catching up).

use std::time::Instant;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;

/// Updates per key in the bursty shape, sent back to back.
pub const BURST: usize = 20;

/// `events` updates as (key, JSON body) in one of the two shapes: `uniform`, one update per key
/// (every event a write); `bursty`, `BURST` updates per key, a key's updates back to back and
/// in order.
pub fn workload(shape: &str, events: usize) -> Vec<(String, String)> {
    let updates = if shape == "bursty" { BURST } else { 1 };
    let keys = (events / updates).max(1);
    let mut list = Vec::with_capacity(keys * updates);
    for k in 0..keys {
        for u in 0..updates {
            let body = serde_json::json!({
                "PatientId": format!("p{k}"), "FirstName": format!("v{u}"), "LastName": "Doe",
                "IsPregnant": "False", "Sex": "Female",
                "UpdatedAt": format!("2006-01-02T15:00:{:02}.{:09}+10:00", u / 1000, (u % 1000) * 1_000_000),
            });
            list.push((format!("p{k}"), body.to_string()));
        }
    }
    list
}

/// Produces `events` to `topic`, keyed, all in flight; returns once every one is acknowledged.
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
        s.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// `topic` (with `partitions` and its dead-letter topic) made and filled with `events` events
/// of the uniform shape; returns how many it holds.
pub async fn fill_uniform(
    brokers: &str,
    topic: &str,
    partitions: i32,
    events: usize,
) -> anyhow::Result<usize> {
    let w = workload("uniform", events);
    crate::engine::ensure_consumed_topic(brokers, topic, partitions).await?;
    produce(brokers, topic, &w).await?;
    Ok(w.len())
}

/// An rdkafka consumer of `topic` from its start, in consumer group `group`, fetching as
/// Ordo's consumer does, with `extra` settings.
pub fn consumer(
    brokers: &str,
    topic: &str,
    group: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<StreamConsumer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set(
            "fetch.wait.max.ms",
            ordo::bus::kafka::DEFAULT_FETCH_WAIT.as_millis().to_string(),
        );
    for (name, value) in extra {
        config.set(*name, *value);
    }
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Events a second `consumer` reads over its next `n` events while doing nothing with them,
/// from its first one (joining the group is not counted): the broker's ceiling for one
/// reader, which no consumer beats.
pub async fn read_rate(consumer: &StreamConsumer, n: usize) -> anyhow::Result<f64> {
    let first = consumer.recv().await?;
    std::hint::black_box(first.payload());
    let start = Instant::now();
    for _ in 1..n {
        let m = consumer.recv().await?;
        std::hint::black_box(m.payload());
    }
    Ok((n.max(2) - 1) as f64 / start.elapsed().as_secs_f64())
}
