//! The apply loop of one pipeline: per-key order, keys in parallel, offsets stored only when
//! durable.
//!
//! The dispatcher reads messages and queues them by (partition, key). A key has at most one
//! worker at a time, so its events apply in offset order; different keys run concurrently, up
//! to the pipeline's `concurrency`. A worker takes *every* event queued for its key, so a burst
//! on one key is merged through the plugin and written once. An offset is stored for commit
//! only when it and every earlier offset of its partition are durable in the table or in the
//! dead-letter topic ([`super::offsets`]); the bus commits stored offsets in the background,
//! on revoke, and once more at shutdown. A crash replays, never skips, and a replay is
//! harmless because writes are conditional.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::offsets::PartitionOffsets;
use super::pace::Pace;
use super::waits::Waits;
use super::worker::{self, Done, KeyId};
use super::Applier;
use crate::bus::{Consumer, Message, Publisher, Revocations};
use crate::config::{KeySource, Pipeline};
use crate::metrics::ConsumerMetrics;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// Messages held (queued or in a worker) before the dispatcher stops reading.
const MAX_BUFFERED: usize = 10_000;
/// How long shutdown waits for running workers.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition as the dispatcher tracks it.
struct PartitionState {
    /// The partition's generation in the fence when its events started coming: a worker
    /// applies them only while it holds.
    generation: u64,
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
    queued: Vec<Message>,
}

/// The dispatcher's state.
struct Dispatcher<C, S, P> {
    /// Where messages come from and offsets go.
    consumer: C,
    /// What every worker shares.
    work: worker::Shared<S, P>,
    /// Workers report here.
    done: mpsc::UnboundedSender<Done>,
    /// Partitions of the current assignment.
    partitions: HashMap<i32, PartitionState>,
    /// Keys with queued events or a worker.
    keys: HashMap<KeyId, KeyQueue>,
    /// Messages held, queued or in a worker.
    buffered: usize,
    /// Workers running.
    busy_workers: usize,
}

/// Reads `pipeline`'s events from `consumer` until `shutdown`, applying them with `applier`;
/// rejected events go to `dead_letters`; partitions in `revoked` are dropped from the loop,
/// and their workers stop. `waits` shows keys waiting out a transient failure.
#[allow(clippy::too_many_arguments)]
pub async fn run<C: Consumer, S: Store, P: Publisher>(
    consumer: C,
    mut revoked: Revocations,
    pipeline: Arc<Pipeline>,
    applier: Arc<Applier<S>>,
    dead_letters: Arc<P>,
    metrics: ConsumerMetrics,
    waits: Waits,
    mut shutdown: Shutdown,
) {
    info!(pipeline = %pipeline.name, concurrency = pipeline.concurrency, "Consumer started.");
    let (done, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut d = Dispatcher {
        consumer,
        work: worker::Shared {
            pace: Pace::new(
                pipeline.concurrency,
                pipeline.adaptive_concurrency,
                metrics.concurrency.clone(),
            ),
            pipeline,
            applier,
            dead_letters,
            metrics: metrics.clone(),
            waits,
            fence: revoked.fence.clone(),
            shutdown: shutdown.clone(),
        },
        done,
        partitions: HashMap::new(),
        keys: HashMap::new(),
        buffered: 0,
        busy_workers: 0,
    };
    loop {
        tokio::select! {
            // Revocations first: a message of a partition assigned again must not be taken
            // under the generation it had before.
            biased;
            _ = shutdown.wait() => break,
            Some(partitions) = revoked.recv() => d.revoke(&partitions),
            Some(finished) = done_rx.recv() => d.finished(finished),
            received = d.consumer.recv(), if d.buffered < MAX_BUFFERED => match received {
                Ok(message) => d.take(message),
                Err(e) => warn!(pipeline = %d.work.pipeline.name, error = %e, "Kafka consumer error."),
            },
        }
    }
    d.drain(&mut done_rx).await;
    info!(pipeline = %d.work.pipeline.name, totals = %metrics, "Consumer stopped.");
}

impl<C: Consumer, S: Store, P: Publisher> Dispatcher<C, S, P> {
    /// Forgets revoked partitions: their queued events are dropped (the next owner replays
    /// them) and late results of their workers are ignored.
    fn revoke(&mut self, revoked: &[i32]) {
        for p in revoked {
            self.partitions.remove(p);
            let buffered = &mut self.buffered;
            self.keys.retain(|(kp, _), q| {
                if kp != p {
                    return true;
                }
                *buffered -= q.queued.len();
                q.queued.clear();
                q.busy
            });
        }
    }

    /// Queues `message` under its key, and starts a worker if the key has none.
    fn take(&mut self, message: Message) {
        let partition = message.partition;
        let fence = &self.work.fence;
        let state = self
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionState {
                generation: fence.generation(partition),
                offsets: PartitionOffsets::default(),
                stored: None,
            });
        state.offsets.start(message.offset);
        let generation = state.generation;
        let key = (partition, queue_key(&self.work.pipeline, &message));
        let queue = self.keys.entry(key.clone()).or_default();
        queue.queued.push(message);
        self.buffered += 1;
        if !queue.busy {
            self.busy_workers += 1;
            dispatch(&self.work, &self.done, key, queue, generation);
        }
    }

    /// Records a worker's result and hands its key's newer events (or, after a panic, the
    /// same ones again) to a new worker.
    fn finished(&mut self, mut done: Done) {
        self.busy_workers -= 1;
        let current = self
            .partitions
            .get(&done.key.0)
            .filter(|s| s.generation == done.generation)
            .is_some();
        let retry = done.retry.take().filter(|_| current);
        let released = if retry.is_some() {
            0
        } else {
            done.offsets.len()
        };
        self.buffered -= released;
        self.record(&done);
        let queue = self.keys.entry(done.key.clone()).or_default();
        queue.busy = false;
        if let Some(mut again) = retry {
            again.append(&mut queue.queued);
            queue.queued = again;
        }
        if queue.queued.is_empty() {
            self.keys.remove(&done.key);
        } else if let Some(generation) = self.partitions.get(&done.key.0).map(|s| s.generation) {
            self.busy_workers += 1;
            dispatch(&self.work, &self.done, done.key, queue, generation);
        }
    }

    /// Marks a finished worker's offsets done, if they belong to the current assignment of
    /// their partition, and stores the commit point if it moved.
    fn record(&mut self, done: &Done) {
        let partition = done.key.0;
        let Some(state) = self
            .partitions
            .get_mut(&partition)
            .filter(|s| s.generation == done.generation && done.finished)
        else {
            return;
        };
        for offset in &done.offsets {
            state.offsets.finish(*offset);
        }
        let Some(point) = state.offsets.commit_point() else {
            return;
        };
        if state.stored == Some(point) {
            return;
        }
        match self.consumer.store_offset(partition, point) {
            Ok(()) => state.stored = Some(point),
            // The partition was revoked meanwhile: the next owner replays from the last commit.
            Err(e) => {
                debug!(pipeline = %self.work.pipeline.name, partition, error = %e, "Offset not stored.")
            }
        }
    }

    /// Lets running workers finish (they give up retrying on shutdown), stores what is
    /// durable, and commits.
    async fn drain(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while self.busy_workers > 0 {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(done)) => {
                    self.busy_workers -= 1;
                    self.record(&done);
                }
                _ => {
                    warn!(pipeline = %self.work.pipeline.name, workers = self.busy_workers, "Shutdown deadline passed with events in flight; they will be replayed.");
                    break;
                }
            }
        }
        if let Err(e) = self.consumer.commit() {
            // Nothing stored since the last commit is also reported as an error; harmless.
            debug!(pipeline = %self.work.pipeline.name, error = %e, "Final commit.");
        }
    }
}

/// The key a message queues under: the entity's id, so that one entity's events apply one
/// at a time in offset order. A topic Ordo owns is keyed by it; a route-less pipeline taking
/// the id from the body reads it there (an unkeyed or differently keyed producer's messages
/// would otherwise wait behind each other, or apply one entity twice at once: still correct,
/// as the conditional write decides, but slower). A body without a readable id queues under
/// the message key and is refused by the applier.
fn queue_key(pipeline: &Pipeline, message: &Message) -> Vec<u8> {
    let from_message = || message.key.clone().unwrap_or_default();
    if pipeline.owns_topic() || pipeline.key_source != KeySource::Body {
        return from_message();
    }
    let id = message
        .payload
        .as_deref()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
        .and_then(|body| match body.get(&pipeline.key_field) {
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone().into_bytes()),
            _ => None,
        });
    id.unwrap_or_else(from_message)
}

/// Hands every event queued for `key` to a new worker.
fn dispatch<S: Store, P: Publisher>(
    work: &worker::Shared<S, P>,
    done: &mpsc::UnboundedSender<Done>,
    key: KeyId,
    queue: &mut KeyQueue,
    generation: u64,
) {
    queue.busy = true;
    let messages = std::mem::take(&mut queue.queued);
    let work = work.clone();
    let done = done.clone();
    tokio::spawn(async move {
        let result = work.run(key, generation, messages).await;
        let _ = done.send(result);
    });
}

#[cfg(test)]
mod tests {
    //! The loop's own logic over the in-memory bus and store; the same loop on Kafka and
    //! DynamoDB is tested end to end in `tests/ordered_consumer.rs` and `tests/faults.rs`.
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::plugin::PolicyHandle;
    use crate::testing::{pipeline, BusyFirst, MaxV, MemoryBus, MemoryConsumer, MemoryStore};

    /// A running loop over `bus`'s `t.events` topic, writing to `store`.
    struct Running {
        consumer: MemoryConsumer,
        metrics: ConsumerMetrics,
        waits: Waits,
        fence: crate::bus::Fence,
        stop: crate::shutdown::Trigger,
        task: tokio::task::JoinHandle<()>,
    }

    /// Starts the loop; an event is dead-lettered after `max_attempts` failures (0: never).
    fn start(bus: &MemoryBus, store: &MemoryStore, max_attempts: u32) -> Running {
        start_with(bus, store, max_attempts, Arc::new(MaxV))
    }

    /// As [`start`], with `policy`.
    fn start_with(
        bus: &MemoryBus,
        store: &MemoryStore,
        max_attempts: u32,
        policy: Arc<dyn crate::plugin::Policy>,
    ) -> Running {
        let mut p = pipeline("t");
        p.key_field = "k".into();
        p.max_attempts = max_attempts;
        p.audit_topic = Some("t.audit".into());
        let (consumer, revoked) = bus.consumer(&p.topic);
        let fence = revoked.fence.clone();
        let applier = Applier::new(store.clone(), PolicyHandle::new(policy), "k");
        let metrics = ConsumerMetrics::default();
        let waits = Waits::new("t", metrics.clone());
        let (stop, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(run(
            consumer.clone(),
            revoked,
            Arc::new(p),
            Arc::new(applier),
            Arc::new(bus.clone()),
            metrics.clone(),
            waits.clone(),
            shutdown,
        ));
        Running {
            consumer,
            metrics,
            waits,
            fence,
            stop,
            task,
        }
    }

    async fn send(bus: &MemoryBus, key: &str, body: serde_json::Value) -> (i32, i64) {
        let d = bus
            .publish("t.events", key, body.to_string().as_bytes(), &[])
            .await
            .expect("acknowledged");
        (d.partition, d.offset)
    }

    /// Waits (without sleeping a fixed time) until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("reached in time");
    }

    #[tokio::test]
    async fn each_key_ends_at_its_newest_event_and_offsets_are_stored_past_all_of_them() {
        let (bus, store) = (MemoryBus::new(3), MemoryStore::new("k"));
        let running = start(&bus, &store, 2);
        let mut last: HashMap<i32, i64> = HashMap::new();
        for (key, v) in [("a", 3), ("b", 1), ("a", 9), ("c", 2), ("a", 4), ("b", 7)] {
            let (p, o) = send(&bus, key, json!({"k": key, "v": v})).await;
            last.insert(p, o);
        }
        let poison = bus
            .publish("t.events", "a", b"poison", &[])
            .await
            .expect("acknowledged");
        let (p, o) = (poison.partition, poison.offset);
        last.insert(p, o);
        until(|| running.metrics.settled() == 7).await;
        for (key, v) in [("a", 9), ("b", 7), ("c", 2)] {
            assert_eq!(store.record(key).map(|r| r["v"].clone()), Some(json!(v)));
        }
        let letters = bus.published("t.events.dlq");
        assert_eq!(letters.len(), 1, "the poison event is dead-lettered");
        assert_eq!(letters[0].header("ordo-pipeline"), Some("t"));
        assert!(letters[0]
            .header("ordo-reason")
            .is_some_and(|r| r.contains("not JSON")));
        assert_eq!(
            letters[0].header("ordo-original-offset"),
            Some(&*o.to_string())
        );
        // Each event has its audit record: what became of it, under which plugin.
        until(|| bus.published("t.audit").len() >= 7).await;
        let trail: Vec<serde_json::Value> = bus
            .published("t.audit")
            .iter()
            .map(|r| serde_json::from_slice(&r.payload).expect("JSON"))
            .collect();
        let count = |action: &str| trail.iter().filter(|r| r["action"] == action).count();
        assert_eq!(trail.len(), 7, "{trail:?}");
        assert_eq!(count("dead-letter"), 1);
        assert_eq!(count("apply") + count("skip"), 6);
        assert!(trail.iter().all(|r| r["plugin"] == "native:maxv"));
        // Every partition's commit point is one past its last event.
        until(|| {
            last.iter()
                .all(|(p, o)| running.consumer.stored().get(p) == Some(&(o + 1)))
        })
        .await;
        running.stop.fire();
        running.task.await.expect("the loop ends");
        assert_eq!(
            running.consumer.committed(),
            running.consumer.stored(),
            "shutdown commits what was stored"
        );
    }

    #[tokio::test]
    async fn a_store_outage_holds_the_commit_point_until_the_events_are_durable() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        store.set_down(true);
        let running = start(&bus, &store, 2);
        send(&bus, "a", json!({"k": "a", "v": 1})).await;
        // Two attempts fail (max_attempts = 2), then the event is dead-lettered with why.
        until(|| running.metrics.dead_lettered.get() == 1).await;
        let letters = bus.published("t.events.dlq");
        assert!(
            letters[0]
                .header("ordo-reason")
                .is_some_and(|r| r.contains("not applied after 2 attempts")),
            "{letters:?}"
        );
        until(|| running.consumer.stored().get(&0) == Some(&1)).await;
        store.set_down(false);
        send(&bus, "a", json!({"k": "a", "v": 2})).await;
        until(|| running.metrics.applied.get() == 1).await;
        assert_eq!(store.record("a").map(|r| r["v"].clone()), Some(json!(2)));
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn a_letter_the_broker_refuses_goes_without_its_event_and_the_partition_moves_on() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        // The event fits the topic, but not a dead letter (the event plus its headers).
        bus.refuse_larger_than(300);
        let running = start(&bus, &store, 2);
        let poison = format!("not json {}", "x".repeat(250));
        bus.publish("t.events", "a", poison.as_bytes(), &[])
            .await
            .expect("acknowledged");
        send(&bus, "b", json!({"k": "b", "v": 1})).await;
        until(|| running.metrics.settled() == 2).await;
        let letters = bus.published("t.events.dlq");
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert!(letters[0].payload.is_empty(), "the event is left out");
        assert!(letters[0]
            .header(super::super::worker::EVENT_LEFT_OUT_HEADER)
            .is_some_and(|why| why.contains("larger than 300")));
        assert_eq!(letters[0].header("ordo-original-offset"), Some("0"));
        until(|| running.consumer.stored().get(&0) == Some(&2)).await;
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn a_record_too_large_for_the_store_is_dead_lettered_not_retried() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        let running = start(&bus, &store, 0);
        let huge = "x".repeat(crate::store::item::MAX_ITEM_BYTES);
        send(&bus, "a", json!({"k": "a", "v": 1, "huge": huge})).await;
        send(&bus, "a", json!({"k": "a", "v": 2})).await;
        until(|| running.metrics.settled() == 2).await;
        let letters = bus.published("t.events.dlq");
        assert_eq!(letters.len(), 1);
        assert!(letters[0]
            .header("ordo-reason")
            .is_some_and(|r| r.contains("an item holds at most 409600")));
        assert_eq!(store.record("a").map(|r| r["v"].clone()), Some(json!(2)));
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn a_plugin_at_its_cap_is_retried_not_blamed_on_the_event() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        // Three busy calls, fewer than max_attempts: the event waits, then applies.
        let running = start_with(&bus, &store, 5, Arc::new(BusyFirst::new(3)));
        send(&bus, "a", json!({"k": "a", "v": 1})).await;
        until(|| running.metrics.applied.get() == 1).await;
        assert!(bus.published("t.events.dlq").is_empty(), "no dead letter");
        assert_eq!(store.record("a").map(|r| r["v"].clone()), Some(json!(1)));
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn a_revoked_partitions_workers_stop_and_its_queued_events_are_left_to_the_next_owner() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        store.set_down(true);
        let running = start(&bus, &store, 0);
        // v=1 is in a worker, retrying; v=2 waits behind it in the key's queue.
        send(&bus, "a", json!({"k": "a", "v": 1})).await;
        send(&bus, "a", json!({"k": "a", "v": 2})).await;
        until(|| running.consumer.position(0) == 2 && running.metrics.waiting.get() == 1).await;
        let fence = running.fence.clone();
        running.consumer.revoke(&[0]);
        // The retrying worker stops at once (it was in its backoff), so the revocation
        // completes with nothing of the partition applied by this member any more.
        until(|| fence.held(&[0]) == 0).await;
        store.set_down(false);
        running.stop.fire();
        running.task.await.expect("the loop ends");
        assert_eq!(
            store.record("a"),
            None,
            "nothing applied after the revocation"
        );
        assert_eq!(running.metrics.settled(), 0);
        assert_eq!(running.consumer.stored().get(&0), None);
        assert_eq!(running.metrics.waiting.get(), 0, "its wait ended with it");
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_by_default_and_shown_until_it_passes() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        store.set_down(true);
        let running = start(&bus, &store, crate::config::DEFAULT_MAX_ATTEMPTS);
        send(&bus, "a", json!({"k": "a", "v": 1})).await;
        send(&bus, "b", json!({"k": "b", "v": 1})).await;
        // Several failed attempts each, and nothing dead-lettered meanwhile.
        until(|| running.metrics.retries("unavailable") >= 6).await;
        assert!(
            running.waits.degraded().is_some_and(
                |why| why.contains("2 key(s)") && why.contains("in-memory store is down")
            )
        );
        assert_eq!(running.metrics.dead_lettered.get(), 0);
        assert!(bus.published("t.events.dlq").is_empty());
        assert_eq!(running.consumer.stored().get(&0), None, "nothing committed");
        store.set_down(false);
        until(|| running.metrics.applied.get() == 2).await;
        until(|| running.consumer.stored().get(&0) == Some(&2)).await;
        assert_eq!(running.waits.degraded(), None);
        assert_eq!(running.metrics.waiting.get(), 0);
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn throttling_slows_the_pace_and_never_dead_letters() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        // One attempt would be all a failing event gets; throttling does not count.
        let running = start(&bus, &store, 1);
        store.throttle(8);
        for key in ["a", "b", "c", "d"] {
            send(&bus, key, json!({"k": key, "v": 1})).await;
        }
        until(|| running.metrics.applied.get() == 4).await;
        assert_eq!(running.metrics.dead_lettered.get(), 0);
        assert!(running.metrics.retries("throttled") >= 1);
        let configured = crate::config::DEFAULT_CONCURRENCY as i64;
        assert!(
            running.metrics.concurrency.get() < configured,
            "the pace was lowered: {}",
            running.metrics.concurrency.get()
        );
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }

    #[tokio::test]
    async fn a_worker_that_panics_is_reported_and_its_events_applied_again() {
        let (bus, store) = (MemoryBus::new(1), MemoryStore::new("k"));
        let running = start_with(&bus, &store, 0, Arc::new(BusyFirst::panicking(1)));
        send(&bus, "a", json!({"k": "a", "v": 1})).await;
        send(&bus, "a", json!({"k": "a", "v": 2})).await;
        until(|| running.metrics.settled() == 2).await;
        assert_eq!(running.metrics.panics.get(), 1);
        assert_eq!(store.record("a").map(|r| r["v"].clone()), Some(json!(2)));
        until(|| running.consumer.stored().get(&0) == Some(&2)).await;
        running.stop.fire();
        running.task.await.expect("the loop ends");
    }
}
