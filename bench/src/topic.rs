//! The benchmarks' topics: one filled with a workload ([`crate::workload`]) before the
//! consumers start (a consumer catching up), and plain rdkafka readers of it.

use std::time::Instant;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::ClientConfig;

use crate::workload::{produce, workload, Shape};

/// `topic` (with `partitions` and its dead-letter topic) made and filled with `events` events
/// of the uniform shape; returns how many it holds.
pub async fn fill_uniform(
    brokers: &str,
    topic: &str,
    partitions: i32,
    events: usize,
) -> anyhow::Result<usize> {
    let w = workload(Shape::Uniform, events);
    crate::engine::ensure_consumed_topic(brokers, topic, partitions).await?;
    produce(brokers, topic, &w.events).await?;
    Ok(w.events.len())
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
