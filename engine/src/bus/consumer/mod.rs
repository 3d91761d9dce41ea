//! A pipeline's consumer group: per-key order, keys in parallel, offsets committed only when
//! durable.
//!
//! The dispatcher reads messages and queues them by (partition, key). A key has at most one
//! worker at a time, so its events apply in offset order; different keys run concurrently, up
//! to the pipeline's `concurrency`. A worker takes *every* event queued for its key, so a burst
//! on one key is merged through the plugin and written once. An offset is stored for commit
//! only when it and every earlier offset of its partition are durable in the table or in the
//! dead-letter topic ([`offsets`]); librdkafka commits stored offsets in the background, on
//! revoke, and once more at shutdown. A crash replays, never skips, and a replay is harmless
//! because writes are conditional.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

use super::{BusError, Publisher};
use crate::pipeline::Applier;
use crate::shutdown::Shutdown;
use crate::store::Store;

mod offsets;
pub mod stats;
mod worker;

use offsets::PartitionOffsets;
pub use stats::Stats;

/// Messages held (queued or in a worker) before the dispatcher stops reading.
const MAX_BUFFERED: usize = 10_000;
/// Longest a fetch waits for data, by default (`--fetch-wait-ms`). Apache Kafka answers a
/// fetch as soon as data is there, so this only sets how often an idle consumer asks. tansu
/// holds a fetch for the whole wait even when data arrives meanwhile, so there it is also
/// latency: measured here (`make bench`), POST → visible p50/p99 was 35/55 ms at 25 ms and
/// 22/33 ms at 10 ms (5 ms gained nothing more), for 23% → 43% of a core in an idle tansu.
/// librdkafka's 500 ms default read a third as fast from tansu as 25 ms.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_millis(10);
/// How long shutdown waits for running workers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a consumer reads, how hard it works, and where failures go.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The pipeline, for logs and dead-letter headers.
    pub pipeline: String,
    /// Bootstrap brokers.
    pub brokers: String,
    /// Consumer group id.
    pub group: String,
    /// The topic to read.
    pub topic: String,
    /// Where rejected events go.
    pub dead_letter_topic: String,
    /// Keys applied at once.
    pub concurrency: usize,
    /// Attempts before an event that keeps failing is dead-lettered; 0 retries forever.
    pub max_attempts: u32,
    /// Longest a fetch waits for data ([`DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
}

/// Partition changes, from librdkafka's rebalance callback to the dispatcher.
enum Control {
    /// These partitions are no longer ours: drop their queues, ignore late results.
    Revoked(Vec<i32>),
}

/// Logs assignments (one line per change) and tells the dispatcher about revocations.
struct GroupContext {
    /// The pipeline, for the log lines.
    pipeline: String,
    /// To the dispatcher.
    control: mpsc::UnboundedSender<Control>,
    /// The topic, whose partitions' lag is reported.
    topic: String,
    /// Where the lag goes.
    stats: Arc<Stats>,
}

impl ClientContext for GroupContext {
    /// librdkafka's periodic statistics: keeps each assigned partition's consumer lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(topic) = statistics.topics.get(&self.topic) {
            self.stats
                .set_lag(topic.partitions.values().filter_map(|p| {
                    let lag = u64::try_from(p.consumer_lag).ok();
                    (p.partition >= 0).then_some(p.partition).zip(lag)
                }));
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions revoked; abandoning their queued events (the next owner replays them).");
            let partitions = tpl.elements().iter().map(|e| e.partition()).collect();
            let _ = self.control.send(Control::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(pipeline = %self.pipeline, partitions = %describe(tpl), "Partitions assigned.")
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => {
                warn!(pipeline = %self.pipeline, error = %e, "Rebalance failed.")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| e.partition().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A partition as the dispatcher tracks it.
struct PartitionState {
    /// Distinguishes this assignment from an earlier one of the same partition.
    epoch: u64,
    /// Offsets in flight.
    offsets: PartitionOffsets,
    /// The last offset stored for commit.
    stored: Option<i64>,
}

/// The events of one key waiting for, or held by, a worker.
#[derive(Default)]
struct KeyQueue {
    /// A worker is applying this key's earlier events.
    busy: bool,
    /// Events that arrived meanwhile, in offset order.
    queued: Vec<OwnedMessage>,
}

/// (partition, message key): the unit of ordering.
type KeyId = (i32, Vec<u8>);

/// Consumes until `shutdown`, applying events with `applier`.
pub async fn run<S: Store, P: Publisher>(
    settings: ConsumerSettings,
    applier: Arc<Applier<S>>,
    dead_letters: Arc<P>,
    stats: Arc<Stats>,
    mut shutdown: Shutdown,
) -> Result<(), BusError> {
    let (control_tx, mut control) = mpsc::unbounded_channel();
    let mut config = ClientConfig::new();
    // librdkafka's own tracing (e.g. `cgrp,topic`), for diagnosing group behaviour.
    if let Ok(contexts) = std::env::var("ORDO_KAFKA_DEBUG") {
        config.set("debug", contexts);
    }
    let consumer: StreamConsumer<GroupContext> = config
        .set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("client.id", "ordo")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        // A crashed member's partitions move after 10 s rather than librdkafka's 45 s.
        .set("session.timeout.ms", "10000")
        .set(
            "fetch.wait.max.ms",
            settings.fetch_wait.as_millis().max(1).to_string(),
        )
        .set("heartbeat.interval.ms", "3000")
        .set(
            "reconnect.backoff.max.ms",
            super::producer::RECONNECT_BACKOFF_MAX_MS,
        )
        .set("statistics.interval.ms", "5000")
        .create_with_context(GroupContext {
            pipeline: settings.pipeline.clone(),
            control: control_tx,
            topic: settings.topic.clone(),
            stats: Arc::clone(&stats),
        })
        .map_err(|e| BusError::Client(e.to_string()))?;
    consumer
        .subscribe(&[&settings.topic])
        .map_err(|e| BusError::Client(format!("subscribe to `{}`: {e}", settings.topic)))?;
    info!(pipeline = %settings.pipeline, topic = %settings.topic, group = %settings.group, concurrency = settings.concurrency, "Consumer started.");

    let work = worker::Shared {
        settings: settings.clone(),
        applier,
        dead_letters,
        stats: Arc::clone(&stats),
        permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        shutdown: shutdown.clone(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<worker::Done>();
    let mut partitions: HashMap<i32, PartitionState> = HashMap::new();
    let mut keys: HashMap<KeyId, KeyQueue> = HashMap::new();
    let mut buffered = 0usize;
    let mut next_epoch = 0u64;
    let mut busy_workers = 0usize;

    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(Control::Revoked(revoked)) = control.recv() => {
                for p in revoked {
                    partitions.remove(&p);
                    keys.retain(|(kp, _), q| {
                        if *kp != p {
                            return true;
                        }
                        buffered -= q.queued.len();
                        q.queued.clear();
                        q.busy
                    });
                }
            }
            Some(done) = done_rx.recv() => {
                busy_workers -= 1;
                buffered -= done.offsets.len();
                record_done(&consumer, &settings, &mut partitions, &done);
                let queue = keys.entry(done.key.clone()).or_default();
                queue.busy = false;
                if queue.queued.is_empty() {
                    keys.remove(&done.key);
                } else if let Some(epoch) = partitions.get(&done.key.0).map(|s| s.epoch) {
                    busy_workers += 1;
                    dispatch(&work, &done_tx, done.key, queue, epoch);
                }
            }
            received = consumer.recv(), if buffered < MAX_BUFFERED => {
                let message = match received {
                    Ok(message) => message.detach(),
                    Err(e) => {
                        warn!(pipeline = %settings.pipeline, error = %e, "Kafka consumer error.");
                        continue;
                    }
                };
                let partition = message.partition();
                let state = partitions.entry(partition).or_insert_with(|| {
                    next_epoch += 1;
                    PartitionState { epoch: next_epoch, offsets: PartitionOffsets::default(), stored: None }
                });
                state.offsets.start(message.offset());
                let epoch = state.epoch;
                let key = (partition, message.key().unwrap_or_default().to_vec());
                let queue = keys.entry(key.clone()).or_default();
                queue.queued.push(message);
                buffered += 1;
                if !queue.busy {
                    busy_workers += 1;
                    dispatch(&work, &done_tx, key, queue, epoch);
                }
            }
        }
    }

    // Drain: let running workers finish (they give up retrying on shutdown), store what is
    // durable, commit, stop.
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while busy_workers > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some(done)) => {
                busy_workers -= 1;
                record_done(&consumer, &settings, &mut partitions, &done);
            }
            _ => {
                warn!(pipeline = %settings.pipeline, workers = busy_workers, "Shutdown deadline passed with events in flight; they will be replayed.");
                break;
            }
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is also reported as an error; harmless.
        debug!(pipeline = %settings.pipeline, error = %e, "Final commit.");
    }
    info!(pipeline = %settings.pipeline, totals = %stats, "Consumer stopped.");
    Ok(())
}

/// Hands every event queued for `key` to a new worker.
fn dispatch<S: Store, P: Publisher>(
    work: &worker::Shared<S, P>,
    done: &mpsc::UnboundedSender<worker::Done>,
    key: KeyId,
    queue: &mut KeyQueue,
    epoch: u64,
) {
    queue.busy = true;
    let messages = std::mem::take(&mut queue.queued);
    let work = work.clone();
    let done = done.clone();
    tokio::spawn(async move {
        let result = work.apply(key, epoch, messages).await;
        let _ = done.send(result);
    });
}

/// Marks a finished worker's offsets done, if they belong to the current assignment of their
/// partition, and stores the commit point.
fn record_done<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    settings: &ConsumerSettings,
    partitions: &mut HashMap<i32, PartitionState>,
    done: &worker::Done,
) {
    let partition = done.key.0;
    let Some(state) = partitions
        .get_mut(&partition)
        .filter(|s| s.epoch == done.epoch && done.finished)
    else {
        return;
    };
    for offset in &done.offsets {
        state.offsets.finish(*offset);
    }
    store_commit_point(consumer, settings, partition, state);
}

/// Stores the partition's commit point if it moved.
fn store_commit_point<C: ConsumerContext>(
    consumer: &StreamConsumer<C>,
    settings: &ConsumerSettings,
    partition: i32,
    state: &mut PartitionState,
) {
    let Some(point) = state.offsets.commit_point() else {
        return;
    };
    if state.stored == Some(point) {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(&settings.topic, partition, Offset::Offset(point))
        .is_err()
    {
        return;
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => state.stored = Some(point),
        // The partition was revoked meanwhile: the next owner replays from the last commit.
        Err(e) => {
            debug!(pipeline = %settings.pipeline, partition, error = %e, "Offset not stored.")
        }
    }
}
